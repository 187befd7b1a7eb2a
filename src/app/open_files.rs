//! The process's open-file limit, against what the configured limits may open at worst.
//!
//! Every client connection is a descriptor, and each of its requests in flight holds one
//! upstream connection (an HTTP/2 client may have `http2_max_concurrent_streams` of them).
//! A process that runs out of descriptors fails in the worst places: accepts stop, the
//! admin listener stops answering `/healthz`, the Redis and JWKS clients cannot dial. So,
//! as Go's runtime and nginx's `worker_rlimit_nofile` do, the soft limit is raised to the
//! hard one at start, and a limit still below the worst case is said, with the keys that
//! decide it: at start, and after a reload that changes them.

/// Descriptors gatehouse holds besides client and upstream connections: listeners, the
/// admin listener and its clients, Redis, JWKS and introspection clients, files, the
/// runtime's own.
const BESIDES_CONNECTIONS: u64 = 1024;

/// The most descriptors the configured limits let callers make gatehouse hold: each client
/// connection, and one upstream connection per request it may have in flight.
fn worst_case(max_connections: usize, http2_max_concurrent_streams: u32) -> u64 {
    let per_connection = 1 + u64::from(http2_max_concurrent_streams);
    u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_mul(per_connection)
        .saturating_add(BESIDES_CONNECTIONS)
}

/// Raises the soft limit to the hard one and warns when even that is below the worst case
/// of these limits: at start, and after a reload that changed them.
pub(crate) fn prepare(max_connections: usize, http2_max_concurrent_streams: u32) {
    let Some(limit) = raise_to_hard() else {
        return;
    };
    let needed = worst_case(max_connections, http2_max_concurrent_streams);
    if limit < needed {
        tracing::warn!(
            open_file_limit = limit,
            worst_case = needed,
            max_connections,
            http2_max_concurrent_streams,
            "the open-file limit is below what limits.max_connections × (1 + \
             limits.http2_max_concurrent_streams) may open; raise it (ulimit -n, \
             LimitNOFILE) or lower those limits, or callers can exhaust it"
        );
    }
}

/// The soft `RLIMIT_NOFILE` after raising it as far as the hard limit allows; `None` when
/// it is unlimited.
fn raise_to_hard() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current?;
    if limit.maximum.is_none_or(|hard| hard > current) {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return limit.maximum;
        }
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_case_counts_every_stream_an_http2_client_may_hold() {
        assert_eq!(worst_case(10_000, 100), 10_000 * 101 + 1024);
        assert_eq!(worst_case(usize::MAX, 100), u64::MAX);
    }
}
