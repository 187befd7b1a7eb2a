//! What canonicalising a request target costs per request, in nanoseconds: the canonical
//! path plus the origin-form URI that replaces the client's (what `Proxy::handle` does
//! before routing). Compare with bench/run.sh's CPU-µs per request for the whole proxy.
//!
//! Run: cargo bench --bench canonical

use std::hint::black_box;
use std::time::Instant;

use gatehouse::canonical::{self, PathRules};

const TARGETS: &[&str] = &[
    "/api/hello",
    "/hubs/chat/negotiate",
    "/hubs/chat",
    "/api/v1/users/42/orders",
    "/api/%61dmin/../x//y",
];
const ROUNDS: usize = 7;
const CALLS: usize = 200_000;

fn main() {
    let rules = PathRules::default();
    for target in TARGETS {
        let mut per_call = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let start = Instant::now();
            for _ in 0..CALLS {
                let path = canonical::path(black_box(target), &rules);
                let uri = path
                    .ok()
                    .and_then(|p| http::Uri::try_from(format!("{p}?room=1")).ok());
                black_box(uri);
            }
            per_call.push(start.elapsed().as_nanos() as f64 / CALLS as f64);
        }
        per_call.sort_by(f64::total_cmp);
        println!(
            "{target:<28} median {:>6.0} ns  (min {:.0}, max {:.0}, {ROUNDS} rounds of {CALLS})",
            per_call[ROUNDS / 2],
            per_call[0],
            per_call[ROUNDS - 1]
        );
    }
}
