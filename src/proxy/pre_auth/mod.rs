//! The bytes gatehouse holds for a caller before it has proved anything: a first-message
//! WebSocket connection until its auth message validates (see `websocket::metered`), and a
//! request body gatehouse reads itself (the ticket endpoint's JSON).
//!
//! Each holder may take at most `limits.pre_auth_bytes`, and all holders together at most
//! `limits.pre_auth_total_bytes`: a semaphore of bytes. Past either the holder is refused at
//! once, never queued, so a crowd of slow or silent clients costs bounded memory. The
//! holders of one client address (a /64 for IPv6) together may take at most a sixteenth of
//! the total ([`CLIENT_SHARE`]): one anonymous client that opens connections and announces
//! large frames cannot spend the budget every other caller needs. What a holder took is
//! given back when its [`Held`] is dropped.

pub(crate) mod metered;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::validate::PreAuthLimits;

/// The part of `pre_auth_total_bytes` one client address may hold: a sixteenth.
pub(crate) const CLIENT_SHARE: usize = 16;

/// The shared budget; one per configuration generation.
#[derive(Clone, Debug)]
pub(crate) struct PreAuthBudget {
    all: Arc<Semaphore>,
    per_holder: usize,
    /// What each client address holds now; an address holding nothing has no entry.
    clients: Arc<DashMap<IpAddr, u64>>,
    per_client: u64,
    body_timeout: Duration,
}

/// Which bound a holder crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OverBudget {
    #[error("over the pre-authentication budget of one connection")]
    Holder,
    #[error("the pre-authentication budget of all connections is spent")]
    All,
    #[error("the pre-authentication share of one client address is spent")]
    Client,
}

impl OverBudget {
    /// Its label in `gatehouse_limit_hits_total`.
    pub(crate) fn limit(self) -> &'static str {
        match self {
            OverBudget::Holder => "pre_auth_bytes",
            OverBudget::All => "pre_auth_total_bytes",
            OverBudget::Client => "pre_auth_client_bytes",
        }
    }
}

/// Why a body gatehouse reads itself was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyError {
    TooLarge,
    Over(OverBudget),
    Timeout,
    Broken,
}

/// The bytes one holder has taken from the budget.
#[derive(Debug)]
pub(crate) struct Held {
    all: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
    taken: u64,
    limit: u64,
    /// The client address it is charged to; none for a caller that has already
    /// authenticated.
    client: Option<ClientShare>,
}

/// One client address's part of the budget.
#[derive(Debug)]
struct ClientShare {
    addr: IpAddr,
    holding: Arc<DashMap<IpAddr, u64>>,
    limit: u64,
}

impl Held {
    /// Takes `bytes` more, or fails without taking any.
    pub(crate) fn take(&mut self, bytes: u64) -> Result<(), OverBudget> {
        let total = self.taken.saturating_add(bytes);
        if total > self.limit {
            return Err(OverBudget::Holder);
        }
        if let Some(share) = &self.client {
            let mut held = share.holding.entry(share.addr).or_insert(0);
            if held.saturating_add(bytes) > share.limit {
                return Err(OverBudget::Client);
            }
            *held += bytes;
        }
        if let Err(over) = self.take_from_all(bytes) {
            self.give_back_to_client(bytes);
            return Err(over);
        }
        self.taken = total;
        Ok(())
    }

    fn take_from_all(&mut self, bytes: u64) -> Result<(), OverBudget> {
        let Ok(n @ 1..) = u32::try_from(bytes) else {
            // Zero needs no permit; more than u32::MAX is over any per-holder limit anyway.
            return if bytes == 0 {
                Ok(())
            } else {
                Err(OverBudget::Holder)
            };
        };
        let permit = self
            .all
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| OverBudget::All)?;
        match &mut self.permit {
            Some(held) => held.merge(permit),
            None => self.permit = Some(permit),
        }
        Ok(())
    }

    fn give_back_to_client(&self, bytes: u64) {
        if let Some(share) = &self.client {
            // Removed when it reaches zero, so the map holds only addresses holding bytes.
            share.holding.remove_if_mut(&share.addr, |_, held| {
                *held = held.saturating_sub(bytes);
                *held == 0
            });
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.give_back_to_client(self.taken);
    }
}

impl PreAuthBudget {
    pub(crate) fn new(limits: &PreAuthLimits) -> Self {
        Self {
            all: Arc::new(Semaphore::new(
                limits.total_bytes.min(Semaphore::MAX_PERMITS),
            )),
            per_holder: limits.bytes,
            clients: Arc::new(DashMap::new()),
            per_client: (limits.total_bytes / CLIENT_SHARE).max(limits.bytes) as u64,
            body_timeout: limits.body_read_timeout,
        }
    }

    /// A new holder, with nothing taken yet, charged to `client`'s share when the caller
    /// has not authenticated (a first-message connection).
    pub(crate) fn holder(&self, client: Option<IpAddr>) -> Held {
        Held {
            all: self.all.clone(),
            permit: None,
            taken: 0,
            limit: self.per_holder as u64,
            client: client.map(|addr| ClientShare {
                addr: crate::cidr::client_key(addr),
                holding: self.clients.clone(),
                limit: self.per_client,
            }),
        }
    }

    /// Reads a whole body of at most `max` bytes within `limits.body_read_timeout`, its
    /// bytes held against the budget while it arrives.
    pub(crate) async fn read_body<B>(&self, body: B, max: usize) -> Result<Bytes, BodyError>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
    {
        // A Content-Length over the limit is refused before a byte of it is awaited: the
        // client may be waiting for a `100 Continue` or stalling, and neither should cost
        // it the body clock.
        if body.size_hint().lower() > max as u64 {
            return Err(BodyError::TooLarge);
        }
        tokio::time::timeout(self.body_timeout, self.collect(body, max))
            .await
            .map_err(|_| BodyError::Timeout)?
    }

    async fn collect<B>(&self, mut body: B, max: usize) -> Result<Bytes, BodyError>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
    {
        let mut held = self.holder(None);
        let mut out = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(|_| BodyError::Broken)?.into_data() else {
                continue; // trailers
            };
            if out.len().saturating_add(data.len()) > max {
                return Err(BodyError::TooLarge);
            }
            held.take(data.len() as u64).map_err(BodyError::Over)?;
            out.extend_from_slice(&data);
        }
        Ok(out.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(bytes: usize, total_bytes: usize) -> PreAuthBudget {
        PreAuthBudget::new(&PreAuthLimits {
            bytes,
            total_bytes,
            body_read_timeout: Duration::from_secs(1),
        })
    }

    #[test]
    fn a_holder_is_bounded_alone_and_together_and_gives_back_on_drop() {
        let budget = budget(100, 150);
        let mut a = budget.holder(None);
        assert_eq!(a.take(0), Ok(()));
        assert_eq!(a.take(60), Ok(()));
        assert_eq!(a.take(41), Err(OverBudget::Holder));
        assert_eq!(a.take(40), Ok(()));
        let mut b = budget.holder(None);
        assert_eq!(b.take(60), Err(OverBudget::All));
        assert_eq!(b.take(50), Ok(()));
        assert_eq!(b.take(u64::MAX), Err(OverBudget::Holder));
        drop(a);
        assert_eq!(b.take(50), Ok(()));
    }

    #[test]
    fn one_client_address_holds_at_most_its_share() {
        // 1600 in all: a client address may hold 100, its connections together.
        let budget = budget(80, 1600);
        let attacker: IpAddr = "192.0.2.7".parse().unwrap();
        let mut first = budget.holder(Some(attacker));
        assert_eq!(first.take(80), Ok(()));
        let mut second = budget.holder(Some(attacker));
        assert_eq!(second.take(30), Err(OverBudget::Client));
        assert_eq!(second.take(20), Ok(()));
        // Another address, and a caller who already authenticated, are not charged to it.
        let mut other = budget.holder(Some("192.0.2.8".parse().unwrap()));
        assert_eq!(other.take(80), Ok(()));
        assert_eq!(budget.holder(None).take(80), Ok(()));
        // The same /64 is the same client.
        let v6 = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let mut a = budget.holder(v6("2001:db8::1"));
        assert_eq!(a.take(80), Ok(()));
        assert_eq!(
            budget.holder(v6("2001:db8::2")).take(30),
            Err(OverBudget::Client)
        );
        // Given back on drop, and the entry goes with the last byte.
        drop((first, second));
        assert_eq!(budget.holder(Some(attacker)).take(80), Ok(()));
        drop((a, other));
        assert!(budget.clients.is_empty());
    }

    #[tokio::test]
    async fn bodies_are_read_whole_within_size_and_budget() {
        let budget = budget(100, 100);
        let body = http_body_util::Full::new(Bytes::from_static(b"{\"route\":\"/x\"}"));
        assert_eq!(
            budget.read_body(body, 64).await.as_deref(),
            Ok(&b"{\"route\":\"/x\"}"[..])
        );
        let big = http_body_util::Full::new(Bytes::from(vec![b' '; 65]));
        assert_eq!(budget.read_body(big, 64).await, Err(BodyError::TooLarge));
        let mut hog = budget.holder(None);
        hog.take(90).unwrap();
        let body = http_body_util::Full::new(Bytes::from(vec![b' '; 20]));
        assert_eq!(
            budget.read_body(body, 64).await,
            Err(BodyError::Over(OverBudget::All))
        );
    }
}
