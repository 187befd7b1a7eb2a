//! Picking an endpoint: the power of two choices by least outstanding requests (open
//! WebSockets count), skipping ejected endpoints.
//!
//! Two random candidates and the less loaded of them: almost as good as scanning for the
//! least loaded, without every gatehouse replica herding onto the same one.
//!
//! When every endpoint is ejected, the pick is made among all of them anyway. The set is
//! the operator's, not the client's, so trying an ejected endpoint is no security decision:
//! refusing would answer 502 without asking, while trying may find a hub that came back
//! before its backoff ended (a rolling restart replaces every pod within seconds).

use std::sync::Arc;

use rand::Rng;

use super::endpoints::{Endpoint, Pool};

/// The endpoint for a new request, never one in `tried` unless nothing else is left.
pub(crate) fn pick(pool: &Pool, tried: &[Arc<Endpoint>]) -> Option<Arc<Endpoint>> {
    let set = pool.endpoints();
    if set.len() == 1 {
        return set.first().cloned();
    }
    let now = pool.now_ms();
    let untried = |e: &&Arc<Endpoint>| !tried.iter().any(|t| Arc::ptr_eq(t, e));
    let healthy = |e: &&Arc<Endpoint>| untried(e) && !pool.is_ejected_at(e, now);
    // Counted, then walked again, rather than collected: no allocation per request.
    if let Some(found) = two_choices(|| set.iter().filter(healthy)) {
        return Some(found.clone());
    }
    if let Some(found) = two_choices(|| set.iter().filter(untried)) {
        return Some(found.clone());
    }
    two_choices(|| set.iter()).cloned()
}

fn two_choices<'a, I>(candidates: impl Fn() -> I) -> Option<&'a Arc<Endpoint>>
where
    I: Iterator<Item = &'a Arc<Endpoint>>,
{
    match candidates().count() {
        0 => None,
        1 => candidates().next(),
        n => {
            let mut rng = rand::thread_rng();
            let a = rng.gen_range(0..n);
            // A second index distinct from the first, uniformly.
            let b = (a + rng.gen_range(1..n)) % n;
            let (a, b) = (candidates().nth(a)?, candidates().nth(b)?);
            Some(if b.outstanding() < a.outstanding() {
                b
            } else {
                a
            })
        }
    }
}

/// Whether another endpoint is worth a retry after `tried` refused connections.
pub(crate) fn has_untried(pool: &Pool, tried: &[Arc<Endpoint>]) -> bool {
    pool.endpoints()
        .iter()
        .any(|e| !tried.iter().any(|t| Arc::ptr_eq(t, e)))
}

#[cfg(test)]
mod tests {
    use http::uri::Scheme;

    use super::*;
    use crate::upstream::endpoints::InFlight;

    fn pool(n: usize) -> Pool {
        let set = (0..n)
            .map(|i| {
                let authority = format!("e{i}:1").parse().unwrap();
                Arc::new(Endpoint::new(authority, [0; 6]))
            })
            .collect();
        Pool::new(Scheme::HTTP, None, set)
    }

    #[test]
    fn load_follows_the_least_outstanding() {
        let p = pool(2);
        let busy = p.endpoints()[0].clone();
        let _held: Vec<_> = (0..5).map(|_| InFlight::start(busy.clone())).collect();
        for _ in 0..50 {
            let chosen = pick(&p, &[]).unwrap();
            assert_eq!(chosen.authority, "e1:1");
        }
    }

    #[test]
    fn spreads_when_idle_and_skips_ejected_endpoints() {
        let p = pool(3);
        let mut seen = [0usize; 3];
        let mut held = Vec::new();
        for _ in 0..300 {
            let e = pick(&p, &[]).unwrap();
            let i = p
                .endpoints()
                .iter()
                .position(|x| Arc::ptr_eq(x, &e))
                .unwrap();
            seen[i] += 1;
            held.push(InFlight::start(e));
        }
        assert!(seen.iter().all(|n| *n >= 90), "{seen:?}");
        drop(held);
        let dead = p.endpoints()[2].clone();
        p.eject(&dead);
        for _ in 0..50 {
            assert!(!Arc::ptr_eq(&pick(&p, &[]).unwrap(), &dead));
        }
    }

    #[test]
    fn all_ejected_still_picks_and_retries_avoid_tried_endpoints() {
        let p = pool(2);
        let (a, b) = (p.endpoints()[0].clone(), p.endpoints()[1].clone());
        p.eject(&a);
        p.eject(&b);
        assert!(pick(&p, &[]).is_some());
        for _ in 0..20 {
            assert!(Arc::ptr_eq(
                &pick(&p, std::slice::from_ref(&a)).unwrap(),
                &b
            ));
        }
        assert!(has_untried(&p, std::slice::from_ref(&a)));
        assert!(!has_untried(&p, &[a, b]));
    }
}
