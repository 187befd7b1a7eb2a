//! Stateless TLS session tickets sealed with the replicas' shared key file, which is
//! re-read when it changes, so a rotation needs no restart.
//!
//! rustls asks a [`ProducesTickets`] to seal the session state it hands to a client and
//! to open whatever a client presents. Ours seals with the key ring's first key and opens
//! with any listed key ([`crate::ticket_keys`]); a replica that has not yet seen a new
//! file simply fails to open the new key's tickets, and that client does a full handshake.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rustls::server::ProducesTickets;
use tokio_util::sync::CancellationToken;

use crate::ticket_keys::KeyRing;

/// Seals and opens tickets with whatever key file was read last.
#[derive(Debug)]
pub(crate) struct SharedTicketer {
    keys: ArcSwap<KeyRing>,
    lifetime: u32,
}

impl SharedTicketer {
    pub(crate) fn new(keys: KeyRing, lifetime: Duration) -> SharedTicketer {
        SharedTicketer {
            keys: ArcSwap::from_pointee(keys),
            lifetime: u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX),
        }
    }

    /// Replaces the key ring for every later seal and open.
    pub(crate) fn replace(&self, keys: KeyRing) {
        self.keys.store(Arc::new(keys));
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ProducesTickets for SharedTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.lifetime
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.keys.load().seal(plain, now())
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.keys
            .load()
            .open(cipher, now(), u64::from(self.lifetime))
    }
}

/// Re-reads the key file every `every` and swaps the ring in when its contents changed
/// and parse. A file that no longer parses (half-written, a bad key) keeps the old ring:
/// tickets keep working and the warning says which line is wrong, never what it holds.
pub(crate) async fn watch(
    ticketer: Arc<SharedTicketer>,
    path: PathBuf,
    every: Duration,
    stop: CancellationToken,
) {
    let mut seen = read(&path).await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let now = read(&path).await;
        if now == seen {
            continue;
        }
        let parsed = match &now {
            Some(Ok(text)) => KeyRing::parse(text),
            Some(Err(error)) => Err(error.clone()),
            None => Err("the read was cancelled".into()),
        };
        match parsed {
            Ok(keys) => {
                let count = keys.len();
                ticketer.replace(keys);
                tracing::info!(file = %path.display(), keys = count, "TLS session ticket keys reloaded");
            }
            Err(error) => tracing::warn!(
                file = %path.display(),
                %error,
                "TLS session ticket key file changed but does not load; keeping the old keys"
            ),
        }
        seen = now;
    }
}

/// The file's text, or why it could not be read. Compared by content, as the certificate is.
async fn read(path: &std::path::Path) -> Option<Result<String, String>> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        crate::files::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))
    })
    .await
    .ok()
}
