//! `[route.upstream_discovery]`: one DNS name (a Kubernetes headless Service) resolved every
//! `resolve_every`, every address an endpoint.
//!
//! Until the first answer the pool holds the name itself, which the connector resolves per
//! connection, so a route works from the first request. An empty or failed answer keeps the
//! previous set (see [`Pool::replace`]). The task holds only a `Weak` to the pool, so it ends
//! with the generation that built it (a reload builds a new one).

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use http::uri::Authority;

use super::affinity::Sealer;
use super::endpoints::Pool;

pub(crate) fn spawn(
    pool: &Arc<Pool>,
    name: Authority,
    every: Duration,
    sealer: Option<Arc<Sealer>>,
) {
    let weak: Weak<Pool> = Arc::downgrade(pool);
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    handle.spawn(async move {
        loop {
            let found = resolve(&name).await;
            let Some(pool) = weak.upgrade() else {
                return;
            };
            match found {
                Ok(addrs) => pool.replace(addrs, |a| tag_of(sealer.as_deref(), a)),
                Err(e) => tracing::warn!(name = %name, error = %e, "upstream discovery failed; keeping the endpoints we have"),
            }
            drop(pool);
            tokio::time::sleep(every).await;
        }
    });
}

pub(crate) fn tag_of(sealer: Option<&Sealer>, authority: &Authority) -> super::affinity::Tag {
    sealer.map_or([0; 6], |s| s.tag(authority))
}

/// Every address of `name`, as authorities, sorted so every replica lists them alike.
async fn resolve(name: &Authority) -> std::io::Result<Vec<Authority>> {
    let port = name.port_u16().unwrap_or(80);
    let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.host(), port))
        .await?
        .collect();
    addrs.sort();
    addrs.dedup();
    Ok(addrs
        .into_iter()
        .filter_map(|a| Authority::try_from(a.to_string()).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::endpoints::Endpoint;

    #[tokio::test]
    async fn localhost_resolves_to_its_addresses_with_the_port() {
        let found = resolve(&"localhost:5000".parse().unwrap()).await.unwrap();
        assert!(!found.is_empty());
        assert!(found.iter().all(|a| a.port_u16() == Some(5000)));
        assert!(found
            .iter()
            .any(|a| a.host() == "127.0.0.1" || a.host() == "[::1]"));
    }

    #[tokio::test]
    async fn the_task_replaces_the_name_by_its_addresses() {
        let name: Authority = "localhost:5000".parse().unwrap();
        let first = Arc::new(Endpoint::new(name.clone(), [0; 6]));
        let pool = Arc::new(Pool::new(http::uri::Scheme::HTTP, None, vec![first]));
        spawn(&pool, name, Duration::from_secs(3600), None);
        for _ in 0..200 {
            if pool.endpoints()[0].authority.host() != "localhost" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let now = pool.endpoints();
        assert!(
            now.iter().all(|e| e.authority.host() != "localhost"),
            "{:?}",
            now.iter()
                .map(|e| e.authority.to_string())
                .collect::<Vec<_>>()
        );
    }
}
