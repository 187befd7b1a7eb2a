//! Single-use tickets: a short-lived stand-in for a token, made for URLs.
//!
//! A browser cannot put a token in a WebSocket's headers, so it asks the ticket endpoint
//! (with its token in a header, where it is safe) for a ticket and puts that in the URL.
//! A ticket is 256 bits from the OS RNG, stored only under a hash next to the identity it
//! stands for, redeemed exactly once (an atomic remove, so of any number of concurrent
//! redemptions one wins), and dead after `ttl` or the token's own `exp`, whichever is first.
//!
//! Two stores: in memory for one replica, and Redis for several ([`redis_store`]), where the
//! redemption is one `GETDEL` and the stored identity is encrypted with a key derived from
//! the ticket itself, so reading Redis without a ticket reveals nothing.

mod redis_store;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use dashmap::DashMap;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::auth::claims::Claims;
use crate::auth::key_board::KeyRef;
use crate::secret::BearerToken;

/// What a ticket stands for.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub claims: Arc<Claims>,
    /// The original token, kept only for `upstream_auth = "bearer"` routes.
    pub token: Option<BearerToken>,
    /// The route path the ticket is bound to, when the caller named one.
    pub route: Option<String>,
    /// The key that verified the token the ticket was issued for.
    pub key: Option<Arc<KeyRef>>,
}

/// Why a ticket did not redeem. Deliberately coarse: a caller learns nothing about
/// whether a guessed ticket ever existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TicketError {
    #[error("ticket unknown, used or expired")]
    Invalid,
    #[error("ticket issued for another route")]
    WrongRoute,
    #[error("the ticket store is unavailable")]
    Unavailable,
}

impl TicketError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            TicketError::Invalid => "invalid_ticket",
            TicketError::WrongRoute => "ticket_wrong_route",
            TicketError::Unavailable => "store_unavailable",
        }
    }
}

/// Where tickets live.
pub(crate) enum TicketStore {
    Memory(MemoryTickets),
    Redis(redis_store::RedisTickets),
}

impl TicketStore {
    pub(crate) fn memory(ttl: Duration) -> Self {
        TicketStore::Memory(MemoryTickets::new(ttl))
    }

    pub(crate) fn redis(handle: Arc<crate::redis::RedisHandle>, ttl: Duration) -> Self {
        TicketStore::Redis(redis_store::RedisTickets::new(handle, ttl))
    }

    /// Issues a ticket for `grant` that lives `lifetime` (see [`lifetime`]).
    pub(crate) async fn issue(
        &self,
        grant: Grant,
        lifetime: Duration,
    ) -> Result<Issued, TicketError> {
        match self {
            TicketStore::Memory(m) => Ok(m.issue(grant, lifetime)),
            TicketStore::Redis(r) => r.issue(grant, lifetime).await,
        }
    }

    pub(crate) async fn redeem(
        &self,
        ticket: &BearerToken,
        route: &str,
    ) -> Result<Grant, TicketError> {
        match self {
            TicketStore::Memory(m) => m.redeem(ticket, route),
            TicketStore::Redis(r) => r.redeem(ticket, route).await,
        }
    }

    pub(crate) fn ttl(&self) -> Duration {
        match self {
            TicketStore::Memory(m) => m.ttl,
            TicketStore::Redis(r) => r.ttl(),
        }
    }

    /// Memory only: Redis expires tickets itself.
    pub(crate) fn sweep(&self) {
        if let TicketStore::Memory(m) = self {
            m.sweep();
        }
    }
}

/// How long a ticket for a token expiring at `token_exp` (unix seconds) may live: `ttl`,
/// but never past `token_exp`. `None` when that leaves less than a second. A token past
/// `exp` still validates within the issuer's `leeway`, but a ticket must not outlive the
/// token, and one of no or a few milliseconds' life would be a `201` whose ticket can never
/// redeem: the caller is better told its token expired, so it fetches a new one.
pub(crate) fn lifetime(ttl: Duration, token_exp: u64) -> Option<Duration> {
    let since_epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let left = Duration::from_secs(token_exp).saturating_sub(since_epoch);
    Some(ttl.min(left)).filter(|life| *life >= Duration::from_secs(1))
}

fn new_ticket() -> String {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// A freshly issued ticket, the only time its value exists outside the caller.
pub(crate) struct Issued {
    pub ticket: String,
    pub expires_at: SystemTime,
    pub expires_in: Duration,
}

struct Entry {
    grant: Grant,
    expires: Instant,
}

/// The in-memory ticket store, for one replica.
pub(crate) struct MemoryTickets {
    entries: DashMap<[u8; 32], Entry>,
    ttl: Duration,
}

impl MemoryTickets {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            entries: DashMap::new(),
            ttl,
        }
    }

    /// Issues a ticket for `grant`, living `expires_in`.
    pub(crate) fn issue(&self, grant: Grant, expires_in: Duration) -> Issued {
        let ticket = new_ticket();
        self.entries.insert(
            digest(&ticket),
            Entry {
                grant,
                expires: Instant::now() + expires_in,
            },
        );
        Issued {
            ticket,
            expires_at: SystemTime::now() + expires_in,
            expires_in,
        }
    }

    /// Redeems a ticket once. The entry is removed before anything is checked, so a ticket
    /// presented on the wrong route is spent too: it was exposed, it must not work later.
    pub(crate) fn redeem(&self, ticket: &BearerToken, route: &str) -> Result<Grant, TicketError> {
        let (_, entry) = self
            .entries
            .remove(&digest(ticket.expose()))
            .ok_or(TicketError::Invalid)?;
        if entry.expires <= Instant::now() {
            return Err(TicketError::Invalid);
        }
        if entry
            .grant
            .route
            .as_deref()
            .is_some_and(|bound| bound != route)
        {
            return Err(TicketError::WrongRoute);
        }
        Ok(entry.grant)
    }

    /// Drops expired tickets; runs every `ttl`.
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        self.entries.retain(|_, e| e.expires > now);
    }
}

fn digest(ticket: &str) -> [u8; 32] {
    Sha256::digest(ticket.as_bytes()).into()
}

/// Drops expired tickets every `ttl` until `stop`.
pub(crate) async fn sweep(store: Arc<TicketStore>, stop: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(store.ttl()) => store.sweep(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(route: Option<&str>) -> Grant {
        Grant {
            claims: Arc::new(Claims::new()),
            token: None,
            route: route.map(String::from),
            key: None,
        }
    }

    fn far() -> Duration {
        Duration::from_secs(30)
    }

    #[test]
    fn a_ticket_redeems_once_and_is_not_stored_in_clear() {
        let store = MemoryTickets::new(Duration::from_secs(30));
        let issued = store.issue(grant(None), far());
        assert!(issued.ticket.len() >= 43, "at least 256 bits, base64url");
        assert!(!store
            .entries
            .iter()
            .any(|e| e.key().as_slice() == issued.ticket.as_bytes()));
        let ticket = BearerToken::new(issued.ticket);
        assert!(store.redeem(&ticket, "/any").is_ok());
        assert_eq!(
            store.redeem(&ticket, "/any").unwrap_err(),
            TicketError::Invalid
        );
    }

    #[test]
    fn a_bound_ticket_works_only_on_its_route_and_is_spent_either_way() {
        let store = MemoryTickets::new(Duration::from_secs(30));
        let ticket = BearerToken::new(store.issue(grant(Some("/hubs/chat")), far()).ticket);
        assert_eq!(
            store.redeem(&ticket, "/other").unwrap_err(),
            TicketError::WrongRoute
        );
        assert_eq!(
            store.redeem(&ticket, "/hubs/chat").unwrap_err(),
            TicketError::Invalid
        );
        let ticket = BearerToken::new(store.issue(grant(Some("/hubs/chat")), far()).ticket);
        assert!(store.redeem(&ticket, "/hubs/chat").is_ok());
    }

    #[test]
    fn tickets_never_outlive_their_token_and_none_is_issued_for_less_than_a_second() {
        let ttl = Duration::from_secs(30);
        let now = crate::auth::claims::unix_now();
        assert_eq!(lifetime(ttl, now + 3600), Some(ttl));
        let short = lifetime(ttl, now + 10).unwrap();
        assert!(short <= Duration::from_secs(10) && short > Duration::from_secs(8));
        assert_eq!(lifetime(ttl, now), None, "the second exp names has begun");
        assert_eq!(lifetime(ttl, now.saturating_sub(5)), None, "within leeway");
        assert_eq!(lifetime(ttl, u64::MAX), Some(ttl), "no exp: the full ttl");
        let store = MemoryTickets::new(ttl);
        let issued = store.issue(grant(None), Duration::ZERO);
        assert_eq!(
            store
                .redeem(&BearerToken::new(issued.ticket), "/")
                .unwrap_err(),
            TicketError::Invalid
        );
        store.sweep();
        assert!(store.entries.is_empty());
    }

    #[test]
    fn concurrent_redemptions_have_one_winner() {
        let store = Arc::new(MemoryTickets::new(Duration::from_secs(30)));
        let ticket = BearerToken::new(store.issue(grant(None), far()).ticket);
        let wins: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|_| s.spawn(|| usize::from(store.redeem(&ticket, "/").is_ok())))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(wins, 1);
    }
}
