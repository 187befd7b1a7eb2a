//! What resolving the client costs per request, in nanoseconds: `Client::resolve` from an
//! untrusted peer (one range check: today's path), and from a trusted hop walking
//! `X-Forwarded-For` chains of one to four entries with `X-Forwarded-Proto`/`-Host`; plus
//! parsing a PROXY header (once per connection, not per request). Compare with
//! bench/run.sh's CPU-µs per request for the whole proxy.
//!
//! Run: cargo bench --bench client_addr

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Instant;

use gatehouse::cidr::CidrSet;
use gatehouse::edge::proxy_protocol;
use gatehouse::proxy::client::Client;
use http::{HeaderMap, HeaderValue};

const ROUNDS: usize = 7;
const CALLS: usize = 200_000;

fn headers(xff: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("app.example"));
    h.insert("user-agent", HeaderValue::from_static("bench/1"));
    h.insert("accept", HeaderValue::from_static("*/*"));
    if !xff.is_empty() {
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_str(xff).unwrap_or_else(|_| unreachable!()),
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("x-forwarded-host", HeaderValue::from_static("app.example"));
    }
    h
}

fn measure(name: &str, mut call: impl FnMut()) {
    let mut per_call = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for _ in 0..CALLS {
            call();
        }
        per_call.push(start.elapsed().as_nanos() as f64 / CALLS as f64);
    }
    per_call.sort_by(f64::total_cmp);
    println!(
        "{name:<44} median {:>5.0} ns  (min {:.0}, max {:.0}, {ROUNDS} rounds of {CALLS})",
        per_call[ROUNDS / 2],
        per_call[0],
        per_call[ROUNDS - 1]
    );
}

fn main() {
    let ranges = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"];
    let trusted = CidrSet::new(ranges.iter().filter_map(|r| r.parse().ok()).collect());
    let untrusted_peer: IpAddr = [203, 0, 113, 5].into();
    let ingress: IpAddr = [10, 42, 0, 7].into();
    let none = headers("");
    measure("untrusted peer (no walk)", || {
        black_box(Client::resolve(
            black_box(untrusted_peer),
            false,
            &none,
            &trusted,
        ));
    });
    for (name, xff) in [
        ("trusted hop, XFF 1 entry", "198.51.100.23"),
        ("trusted hop, XFF 2 entries", "198.51.100.23, 10.42.1.9"),
        (
            "trusted hop, XFF 4 (2 spoofed left)",
            "1.2.3.4, 10.0.0.1, 198.51.100.23, 10.42.1.9",
        ),
        (
            "trusted hop, XFF IPv6 with port",
            "[2001:db8::23]:4711, 10.42.1.9",
        ),
    ] {
        let h = headers(xff);
        measure(name, || {
            black_box(Client::resolve(black_box(ingress), false, &h, &trusted));
        });
    }
    let v1 = b"PROXY TCP4 198.51.100.23 10.42.0.7 54321 443\r\n";
    measure("PROXY v1 header (per connection)", || {
        black_box(proxy_protocol::parse(black_box(v1)));
    });
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[198, 51, 100, 23, 10, 42, 0, 7, 0xd4, 0x31, 0x01, 0xbb]);
    measure("PROXY v2 header (per connection)", || {
        black_box(proxy_protocol::parse(black_box(&v2)));
    });
}
