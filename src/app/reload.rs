//! Reloading the config without a restart: on SIGHUP, and when the config file or a file
//! it names (issuer keys, `*_file` secrets, upstream CA bundles) changes.
//!
//! Files are watched by content, polled every `reload.interval`, rather than by inotify:
//! Kubernetes updates a mounted ConfigMap or Secret by swapping a symlink, which file
//! watchers miss or see twice, and hashing a few small files every two seconds is cheap.
//!
//! A reload validates the whole file first. If anything is wrong the running generation
//! stays, every error is logged and `gatehouse_config_reloads_total{result="error"}` counts
//! it. Otherwise a new generation is built and swapped in. Settings bound to sockets,
//! threads or shared stores (listen addresses, TLS file paths, worker threads, the
//! ticket and revocation stores, the log format, the drain grace) need a restart: a change
//! to them is reported and the rest of the new config is applied.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, KeySource};
use crate::generation::{Current, Generation};
use crate::shared::Shared;

/// How long a reload waits for a newly added remote issuer's first key set.
const FIRST_KEYS_WAIT: Duration = Duration::from_secs(5);

pub(crate) struct Reloader {
    path: PathBuf,
    current: Current,
    shared: Shared,
    /// The files' fingerprint when the watch began.
    started: Fingerprint,
}

impl Reloader {
    /// Takes the files' fingerprint now, before the caller goes on: taken later, in the
    /// spawned watch, it could already include a change made after start-up, which would
    /// then never be loaded.
    pub(crate) fn new(path: PathBuf, current: Current, shared: Shared) -> Self {
        let started = fingerprint(&path, &current.load().config);
        Self {
            path,
            current,
            shared,
            started,
        }
    }

    /// Waits for SIGHUP or a changed file, reloads, and repeats until `stop`.
    pub(crate) async fn run(self, stop: CancellationToken) {
        let mut hangups = hangup_signals();
        let mut seen = Some(self.started);
        loop {
            let reload = self.current.load().config.reload.clone();
            let hangup = async {
                match hangups.as_mut() {
                    Some(signals) => signals.recv().await,
                    None => std::future::pending().await,
                }
            };
            let why = tokio::select! {
                _ = stop.cancelled() => return,
                // None: the signal driver is gone with the runtime; nothing more will come.
                received = hangup => match received {
                    Some(()) => "SIGHUP",
                    None => return,
                },
                _ = tokio::time::sleep(reload.interval) => {
                    if !reload.watch || self.fingerprint().await == seen {
                        continue;
                    }
                    "file changed"
                }
            };
            // Taken before the reload reads anything: a file written while it reads (one of
            // two secrets rotated a moment apart) is then still a change on the next tick.
            // Taken after it, the reload could have read the old contents and recorded
            // the new ones as seen, and would never load them.
            let (watched, before) = (self.watched(), self.fingerprint().await);
            let _ = self.reload(why).await;
            // A reload that changed which files are watched is compared by the new set, or
            // the set itself would look like another change.
            seen = if self.watched() == watched {
                before
            } else {
                self.fingerprint().await
            };
        }
    }

    /// The files the current config has watched.
    fn watched(&self) -> Vec<PathBuf> {
        watched_files(&self.path, &self.current.load().config).collect()
    }

    /// The watched files' fingerprint, read on the blocking pool.
    async fn fingerprint(&self) -> Option<Fingerprint> {
        let (path, current) = (self.path.clone(), self.current.load_full());
        tokio::task::spawn_blocking(move || fingerprint(&path, &current.config))
            .await
            .ok()
    }

    /// Loads, validates and (when valid) swaps in the config at `path`.
    pub(crate) async fn reload(&self, why: &str) -> Result<(), Vec<String>> {
        let path = self.path.display().to_string();
        let path_buf = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || load(&path_buf))
            .await
            .unwrap_or_else(|e| Err(vec![format!("reading the config failed: {e}")]));
        let config = match loaded {
            Ok(config) => config,
            Err(errors) => {
                self.shared.metrics.reload(false);
                tracing::error!(
                    config = %path,
                    trigger = why,
                    errors = %errors.join("; "),
                    "config reload failed; still running the previous config"
                );
                return Err(errors);
            }
        };
        let previous = self.current.load_full();
        let restart = needs_restart(&previous.config, &config);
        let open_files = |c: &Config| (c.max_connections, c.http2_max_concurrent_streams);
        let new_open_files = open_files(&config);
        let open_files_changed = open_files(&previous.config) != new_open_files;
        // Building reads key and CA files and sets up TLS clients: off the request workers.
        let (shared, old) = (self.shared.clone(), previous.clone());
        let built =
            tokio::task::spawn_blocking(move || Generation::build(config, &shared, Some(&old)))
                .await
                .unwrap_or_else(|e| Err(format!("building the new config failed: {e}")));
        let generation = match built {
            Ok(generation) => generation,
            Err(error) => {
                self.shared.metrics.reload(false);
                tracing::error!(config = %path, trigger = why, %error, "config reload failed; still running the previous config");
                return Err(vec![error]);
            }
        };
        if !generation.keys_ready(FIRST_KEYS_WAIT).await {
            tracing::warn!(config = %path, "reloaded config names an issuer whose keys could not be fetched yet");
        }
        self.shared.key_board.publish(&generation.key_stores);
        let old = self.current.swap(Arc::new(generation));
        old.retire();
        self.shared.metrics.reload(true);
        if open_files_changed {
            super::open_files::prepare(new_open_files.0, new_open_files.1);
        }
        if restart.is_empty() {
            tracing::info!(config = %path, trigger = why, "config reloaded");
        } else {
            tracing::warn!(
                config = %path,
                trigger = why,
                unchanged_until_restart = %restart.join(", "),
                "config reloaded; these settings take effect only after a restart"
            );
        }
        Ok(())
    }
}

fn load(path: &Path) -> Result<Config, Vec<String>> {
    config::load_validated(path, &config::fields::process_env)
        .map(|(_, config)| config)
        .map_err(|refused| refused.messages())
}

/// The settings a running process cannot change, by key, when they differ.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let tls = |c: &Config| c.tls.clone();
    let tickets_store = |c: &Config| c.tickets.as_ref().map(|t| t.store.clone());
    [
        ("listen.addr", old.listen_addr != new.listen_addr),
        ("listen.tls", tls(old) != tls(new)),
        ("admin.addr", old.admin_addr != new.admin_addr),
        (
            "runtime.worker_threads",
            old.worker_threads != new.worker_threads,
        ),
        ("tickets.store", tickets_store(old) != tickets_store(new)),
        ("revocation", old.revocation != new.revocation),
        ("log.format", old.log_format != new.log_format),
        ("shutdown.grace", old.shutdown_grace != new.shutdown_grace),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
}

/// What the watch compares: the config file and every file it names, by content.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Fingerprint([u8; 32]);

fn fingerprint(path: &Path, config: &Config) -> Fingerprint {
    let mut hash = Sha256::new();
    for file in watched_files(path, config) {
        hash.update(file.as_os_str().as_encoded_bytes());
        match crate::files::read(&file) {
            Ok(contents) => hash.update(Sha256::digest(&contents)),
            // A missing or unreadable file is a state too: its return is a change.
            Err(e) => hash.update(format!("unreadable: {:?}", e.kind())),
        }
    }
    Fingerprint(hash.finalize().into())
}

/// The config file, then the files it names.
fn watched_files<'a>(path: &Path, config: &'a Config) -> impl Iterator<Item = PathBuf> + 'a {
    std::iter::once(path.to_path_buf()).chain(named_files(config))
}

/// Files the config points at whose contents a reload re-reads. TLS files are not here:
/// `tls.rs` watches and swaps the certificate on its own.
fn named_files(config: &Config) -> impl Iterator<Item = PathBuf> + '_ {
    let keys = config.issuers.iter().filter_map(|i| match &i.keys {
        KeySource::JwksFile(p) | KeySource::PublicKeyFile(p) => Some(p.clone()),
        _ => None,
    });
    let cas = config
        .routes
        .iter()
        .filter_map(|r| r.upstream_ca_file.clone());
    keys.chain(cas).chain(config.secret_files.iter().cloned())
}

#[cfg(unix)]
fn hangup_signals() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{signal, SignalKind};
    signal(SignalKind::hangup())
        .map_err(|e| tracing::warn!(error = %e, "SIGHUP reloads unavailable"))
        .ok()
}

/// No SIGHUP off Unix: only the file watch reloads.
#[cfg(not(unix))]
struct NoSignals;

#[cfg(not(unix))]
impl NoSignals {
    async fn recv(&mut self) -> Option<()> {
        std::future::pending().await
    }
}

#[cfg(not(unix))]
fn hangup_signals() -> Option<NoSignals> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        let raw = config::load_str(text).unwrap();
        config::validate::validate(&raw, &|_| None).unwrap()
    }

    const BASE: &str = r#"
[listen]
addr = "127.0.0.1:8443"
[[route]]
path = "/"
upstream = "http://a:80"
auth = "none"
"#;

    #[test]
    fn only_socket_and_store_settings_need_a_restart() {
        let old = config(BASE);
        let routes = config(&BASE.replace("http://a:80", "http://b:80"));
        assert!(needs_restart(&old, &routes).is_empty());
        let moved = config(&format!(
            "{}\n[shutdown]\ngrace = \"3s\"\n[log]\nformat = \"text\"\n",
            BASE.replace("8443", "9443")
        ));
        assert_eq!(
            needs_restart(&old, &moved),
            ["listen.addr", "log.format", "shutdown.grace"]
        );
    }

    #[test]
    fn the_fingerprint_follows_named_files_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let (main, ca) = (dir.path().join("g.toml"), dir.path().join("ca.pem"));
        std::fs::write(&main, BASE).unwrap();
        std::fs::write(&ca, "one").unwrap();
        let mut with_ca = config(BASE);
        with_ca.routes[0].upstream_ca_file = Some(ca.clone());
        let before = fingerprint(&main, &with_ca);
        assert!(before == fingerprint(&main, &with_ca), "not stable");
        std::fs::write(&ca, "two").unwrap();
        assert!(
            before != fingerprint(&main, &with_ca),
            "a named file's change was missed"
        );
        std::fs::remove_file(&ca).unwrap();
        assert!(
            before != fingerprint(&main, &with_ca),
            "a named file's removal was missed"
        );
    }
}
