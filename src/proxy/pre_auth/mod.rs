//! The bytes gatehouse holds for a caller before it has proved anything: a first-message
//! WebSocket connection until its auth message validates (see `websocket::metered`), and a
//! request body gatehouse reads itself (the ticket endpoint's JSON).
//!
//! Each holder may take at most `limits.pre_auth_bytes`, and all holders together at most
//! `limits.pre_auth_total_bytes`: a semaphore of bytes. Past either the holder is refused at
//! once, never queued, so a crowd of slow or silent clients costs bounded memory. What a
//! holder took is given back when its [`Held`] is dropped.

pub mod metered;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::validate::PreAuthLimits;

/// The shared budget; one per configuration generation.
#[derive(Clone, Debug)]
pub struct PreAuthBudget {
    all: Arc<Semaphore>,
    per_holder: usize,
    body_timeout: Duration,
}

/// Which bound a holder crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OverBudget {
    #[error("over the pre-authentication budget of one connection")]
    Holder,
    #[error("the pre-authentication budget of all connections is spent")]
    All,
}

impl OverBudget {
    /// Its label in `gatehouse_limit_hits_total`.
    pub fn limit(self) -> &'static str {
        match self {
            OverBudget::Holder => "pre_auth_bytes",
            OverBudget::All => "pre_auth_total_bytes",
        }
    }
}

/// Why a body gatehouse reads itself was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    Over(OverBudget),
    Timeout,
    Broken,
}

/// The bytes one holder has taken from the budget.
#[derive(Debug)]
pub struct Held {
    all: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
    taken: u64,
    limit: u64,
}

impl Held {
    /// Takes `bytes` more, or fails without taking any.
    pub fn take(&mut self, bytes: u64) -> Result<(), OverBudget> {
        let total = self.taken.saturating_add(bytes);
        if total > self.limit {
            return Err(OverBudget::Holder);
        }
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
        self.taken = total;
        Ok(())
    }
}

impl PreAuthBudget {
    pub fn new(limits: &PreAuthLimits) -> Self {
        Self {
            all: Arc::new(Semaphore::new(
                limits.total_bytes.min(Semaphore::MAX_PERMITS),
            )),
            per_holder: limits.bytes,
            body_timeout: limits.body_read_timeout,
        }
    }

    /// A new holder, with nothing taken yet.
    pub fn holder(&self) -> Held {
        Held {
            all: self.all.clone(),
            permit: None,
            taken: 0,
            limit: self.per_holder as u64,
        }
    }

    /// Reads a whole body of at most `max` bytes within `limits.body_read_timeout`, its
    /// bytes held against the budget while it arrives.
    pub async fn read_body<B>(&self, body: B, max: usize) -> Result<Bytes, BodyError>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
    {
        tokio::time::timeout(self.body_timeout, self.collect(body, max))
            .await
            .map_err(|_| BodyError::Timeout)?
    }

    async fn collect<B>(&self, mut body: B, max: usize) -> Result<Bytes, BodyError>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
    {
        let mut held = self.holder();
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
        let mut a = budget.holder();
        assert_eq!(a.take(0), Ok(()));
        assert_eq!(a.take(60), Ok(()));
        assert_eq!(a.take(41), Err(OverBudget::Holder));
        assert_eq!(a.take(40), Ok(()));
        let mut b = budget.holder();
        assert_eq!(b.take(60), Err(OverBudget::All));
        assert_eq!(b.take(50), Ok(()));
        assert_eq!(b.take(u64::MAX), Err(OverBudget::Holder));
        drop(a);
        assert_eq!(b.take(50), Ok(()));
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
        let mut hog = budget.holder();
        hog.take(90).unwrap();
        let body = http_body_util::Full::new(Bytes::from(vec![b' '; 20]));
        assert_eq!(
            budget.read_body(body, 64).await,
            Err(BodyError::Over(OverBudget::All))
        );
    }
}
