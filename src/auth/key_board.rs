//! Whether the key that verified a long-lived session's token is still published.
//!
//! Pulling a key from the IdP's set (or from the config) is how a leaked signing key is
//! answered. New requests stop validating at the next refresh (`validate.rs` drops cached
//! validations too), but a WebSocket or a streamed response was authenticated once, and a
//! forger chose its `exp` and `sub`, so neither expiry nor a revocation by subject reaches
//! it. Such a session watches this board instead: it ends when its key is no longer
//! published by its issuer in the generation serving now.
//!
//! The board holds the current generation's key stores (set at start and on each reload)
//! and a counter every key-set change bumps; a session waits on the counter, so an idle
//! session costs no timer.

use std::sync::Arc;

use arc_swap::ArcSwap;
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::auth::jwks::KeyStore;

/// The key that verified a token: its issuer's `iss`, the `kid` the token named, the
/// algorithm and the key's fingerprint. Stored with a ticket, so it survives the trip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeyRef {
    pub iss: Box<str>,
    pub kid: Option<Box<str>>,
    pub alg: Algorithm,
    pub fingerprint: [u8; 32],
}

pub(crate) struct KeyBoard {
    stores: ArcSwap<Vec<Arc<KeyStore>>>,
    /// Bumped by every store on the board when it installs a key set, and on publish.
    changes: Arc<watch::Sender<u64>>,
}

impl KeyBoard {
    pub(crate) fn new() -> Arc<KeyBoard> {
        Arc::new(KeyBoard {
            stores: ArcSwap::from_pointee(Vec::new()),
            changes: Arc::new(watch::Sender::new(0)),
        })
    }

    /// The stores of the generation that now serves; every session looks again.
    pub(crate) fn publish(self: &Arc<Self>, stores: &[Arc<KeyStore>]) {
        for store in stores {
            store.report_to(&self.changes);
        }
        self.stores.store(Arc::new(stores.to_vec()));
        self.changed();
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Whether `key` is published now: its issuer is still configured, and would still try
    /// this key for the token's `kid` and algorithm. An issuer whose keys a reload has not
    /// fetched yet counts as holding it, until its first set arrives.
    pub(crate) fn holds(&self, key: &KeyRef) -> bool {
        self.stores
            .load()
            .iter()
            .filter(|store| *store.issuer().issuer == *key.iss)
            .any(|store| {
                store
                    .keys()
                    .is_none_or(|keys| keys.holds(key.kid.as_deref(), key.alg, &key.fingerprint))
            })
    }

    /// Resolves once `key` is no longer published; never while it is.
    pub(crate) async fn withdrawn(&self, key: &KeyRef) {
        let mut changes = self.changes.subscribe();
        loop {
            if !self.holds(key) {
                return;
            }
            if changes.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

/// A session's hold on the key that verified it.
pub(crate) struct KeyWatch {
    pub board: Arc<KeyBoard>,
    pub key: Arc<KeyRef>,
}

impl KeyWatch {
    /// Resolves once the watched key is withdrawn; never without a watch.
    pub(crate) async fn withdrawn(watch: &Option<KeyWatch>) {
        match watch {
            Some(w) => w.board.withdrawn(&w.key).await,
            None => std::future::pending().await,
        }
    }
}
