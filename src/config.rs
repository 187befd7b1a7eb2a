//! Configuration: `gatehouse.toml` plus `GATEHOUSE_` environment overrides.
//!
//! The pipeline is `TOML + env -> FileConfig (raw, defaults filled) -> Config (typed)`.
//! This module owns the first arrow: figment merges the sources and `serde_ignored`
//! collects every key nobody reads, so an operator sees *all* unknown keys at once rather
//! than the first one `deny_unknown_fields` would stop at. [`validate`] owns the second
//! arrow and the typed structs. Raw values that need checking (durations, addresses,
//! algorithm names) stay strings here so one bad value cannot hide the next.

mod claims;
mod issuer;
mod limits;
mod paths;
mod route;
mod stores;
mod types;
pub mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::value::{Dict, Value};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub use validate::{
    AuthMode, Config, ConfigErrors, IssuerConfig, KeySource, LogFormat, RouteConfig, TicketsConfig,
    TokenSource, UpstreamAuth,
};

/// Where `run` and `check` look when `--config` is not given and `$GATEHOUSE_CONFIG` is unset.
pub const DEFAULT_PATH: &str = "config/gatehouse.toml";

/// The environment prefix of overrides; `__` separates key levels.
const ENV_PREFIX: &str = "GATEHOUSE_";

/// The raw configuration, as written, with defaults filled in.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct FileConfig {
    pub listen: FileListen,
    pub admin: FileAdmin,
    pub runtime: FileRuntime,
    #[serde(rename = "issuer")]
    pub issuers: Vec<FileIssuer>,
    pub identity: FileIdentity,
    pub tickets: Option<FileTickets>,
    pub revocation: FileRevocation,
    #[serde(rename = "introspection")]
    pub introspections: Vec<FileIntrospection>,
    pub log: FileLog,
    #[serde(rename = "route")]
    pub routes: Vec<FileRoute>,
    pub shutdown: FileShutdown,
    pub limits: FileLimits,
    pub reload: FileReload,
    pub paths: FilePaths,
}

/// The top-level tables; only environment variables under one of these are overrides.
const TOP_LEVEL_KEYS: &[&str] = &[
    "listen",
    "admin",
    "runtime",
    "issuer",
    "introspection",
    "identity",
    "tickets",
    "revocation",
    "log",
    "route",
    "shutdown",
    "limits",
    "reload",
    "paths",
];

#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct FileListen {
    pub addr: String,
    pub tls: Option<FileTls>,
}

impl Default for FileListen {
    fn default() -> Self {
        Self {
            addr: "0.0.0.0:8443".into(),
            tls: None,
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct FileTls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// How often the certificate files are checked for a change.
    pub reload_interval: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct FileAdmin {
    pub addr: String,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
}

impl Default for FileAdmin {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:9090".into(),
            token_env: None,
            token_file: None,
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct FileRuntime {
    /// Tokio worker threads; 0 means one per core.
    pub worker_threads: usize,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct FileIssuer {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub discovery: bool,
    pub jwks_url: Option<String>,
    pub jwks_file: Option<PathBuf>,
    pub public_key_file: Option<PathBuf>,
    pub hmac_secret_env: Option<String>,
    pub hmac_secret_file: Option<PathBuf>,
    pub private_key_file: Option<PathBuf>,
    pub algorithms: Vec<String>,
    pub leeway: Option<String>,
    pub refresh: Option<String>,
    pub typ: Option<String>,
    /// Hosts besides the issuer's own a discovered `jwks_uri` may point to.
    pub jwks_hosts: Vec<String>,
    /// Accept a plain `http://` (non-loopback) issuer for discovery, or `jwks_url`.
    pub allow_http: bool,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct FileIdentity {
    pub subject_claim: String,
    pub role_claim: String,
    /// The claims `require.scopes` reads.
    pub scope_claims: Vec<String>,
    pub headers: BTreeMap<String, String>,
}

impl Default for FileIdentity {
    fn default() -> Self {
        Self {
            subject_claim: "sub".into(),
            role_claim: "role".into(),
            scope_claims: vec!["scope".into(), "scp".into()],
            headers: [("X-Auth-Subject", "sub")]
                .into_iter()
                .map(|(h, c)| (h.to_string(), c.to_string()))
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct FileTickets {
    pub endpoint: String,
    pub ttl: String,
    pub param: String,
    pub store: String,
    /// Where the ticket endpoint looks for the caller's token.
    pub tokens: Vec<String>,
    /// Ticket requests per client address per minute; more get 429.
    pub rate_limit_per_minute: u32,
}

impl Default for FileTickets {
    fn default() -> Self {
        Self {
            endpoint: "/.gatehouse/ticket".into(),
            ttl: "30s".into(),
            param: "ticket".into(),
            store: "memory".into(),
            tokens: vec!["header".into()],
            rate_limit_per_minute: 60,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct FileRevocation {
    pub store: String,
    pub on_store_error: String,
    /// How long a revocation is kept: at least the longest lifetime of the tokens you issue.
    pub retain: String,
    /// How often a replica re-reads every revocation from Redis, in case it missed a message.
    pub resync: String,
}

impl Default for FileRevocation {
    fn default() -> Self {
        Self {
            store: "memory".into(),
            on_store_error: "deny".into(),
            retain: "24h".into(),
            resync: "5s".into(),
        }
    }
}

/// An RFC 7662 introspection endpoint for opaque tokens.
#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct FileIntrospection {
    pub name: String,
    pub url: String,
    pub client_id: String,
    pub client_secret_env: String,
    pub client_secret_file: Option<PathBuf>,
    pub cache: String,
    pub cache_entries: usize,
    /// Inactive answers cached, apart from the active ones.
    pub negative_cache_entries: usize,
    /// Calls this endpoint may get a second (cache misses); past it a miss is 503.
    pub max_calls_per_second: u32,
    /// Accept a plain `http://` (non-loopback) `url`.
    pub allow_http: bool,
    pub timeout: String,
}

impl Default for FileIntrospection {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: String::new(),
            client_id: String::new(),
            client_secret_env: String::new(),
            client_secret_file: None,
            cache: "60s".into(),
            cache_entries: 10_000,
            negative_cache_entries: 10_000,
            max_calls_per_second: 50,
            allow_http: false,
            timeout: "5s".into(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct FileLog {
    pub format: String,
    pub redact_params: Vec<String>,
}

impl Default for FileLog {
    fn default() -> Self {
        Self {
            format: "json".into(),
            redact_params: ["access_token", "token", "ticket", "id_token", "code"]
                .map(String::from)
                .to_vec(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct FileRoute {
    pub path: String,
    pub upstream: String,
    pub auth: String,
    pub tokens: Vec<String>,
    pub websocket: bool,
    pub upstream_auth: String,
    pub require: FileRequire,
    pub allowed_origins: Vec<String>,
    pub close_on_expiry: bool,
    /// How long a `first-message` route waits for the auth message.
    pub first_message_timeout: String,
    /// Largest WebSocket message relayed; a larger one closes the connection with 1009.
    pub max_message_bytes: usize,
    /// A WebSocket with no message either way for this long is closed.
    pub idle_timeout: String,
    pub strip_prefix: bool,
    pub connect_timeout: String,
    pub timeout: String,
    /// Extra CA bundle (PEM) trusted for an `https://` upstream.
    pub upstream_ca_file: Option<PathBuf>,
    /// Largest request body forwarded; larger → 413. 0 = no limit.
    pub max_body_bytes: u64,
    /// A WebSocket session ends (1001) after this long whatever its token says; "0s" = never.
    pub max_lifetime: String,
    /// Match the path prefix in exact case (the default folds ASCII case).
    pub case_sensitive: bool,
}

impl Default for FileRoute {
    fn default() -> Self {
        Self {
            path: String::new(),
            upstream: String::new(),
            auth: "required".into(),
            tokens: vec!["header".into()],
            websocket: false,
            upstream_auth: "none".into(),
            require: FileRequire::default(),
            allowed_origins: Vec::new(),
            close_on_expiry: true,
            first_message_timeout: "5s".into(),
            max_message_bytes: 1 << 20,
            idle_timeout: "10m".into(),
            strip_prefix: false,
            connect_timeout: "5s".into(),
            timeout: "30s".into(),
            upstream_ca_file: None,
            max_body_bytes: 10 << 20,
            max_lifetime: "24h".into(),
            case_sensitive: false,
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct FileRequire {
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub claims: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct FileShutdown {
    pub grace: String,
}

impl Default for FileShutdown {
    fn default() -> Self {
        Self {
            grace: "10s".into(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct FileLimits {
    pub max_header_bytes: usize,
    pub max_token_bytes: usize,
    pub header_read_timeout: String,
    pub max_connections: usize,
    /// Open connections from one client address; 0 = no limit.
    pub max_connections_per_ip: usize,
    /// Requests a second from one client address; 0 = no limit.
    pub requests_per_ip_per_second: u32,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: String,
    /// A connection asked to close (idle, drain) that has not closed after this is dropped.
    pub close_grace: String,
    /// A response the client stops reading for this long is abandoned.
    pub write_timeout: String,
    /// A request body that sends nothing for this long, while the upstream waits for it, is cut.
    pub body_stall_timeout: String,
    pub http2_max_concurrent_streams: u32,
    /// Streams a client may reset after gatehouse accepted them, per connection.
    pub http2_max_resets: u32,
    pub token_cache_entries: usize,
    /// Bytes one connection may hold before its token validates; unset: max_token_bytes + 1 KiB.
    pub pre_auth_bytes: Option<usize>,
    /// Bytes all connections together may hold before their tokens validate.
    pub pre_auth_total_bytes: usize,
    /// How long gatehouse waits for a request body it reads itself (the ticket endpoint's).
    pub body_read_timeout: String,
}

impl Default for FileLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: 65536,
            max_token_bytes: 16384,
            header_read_timeout: "10s".into(),
            max_connections: 10_000,
            max_connections_per_ip: 0,
            requests_per_ip_per_second: 0,
            idle_timeout: "60s".into(),
            close_grace: "5s".into(),
            write_timeout: "60s".into(),
            body_stall_timeout: "60s".into(),
            http2_max_concurrent_streams: 100,
            http2_max_resets: 100,
            token_cache_entries: 100_000,
            pre_auth_bytes: None,
            pre_auth_total_bytes: 16 << 20,
            body_read_timeout: "10s".into(),
        }
    }
}

/// `[reload]`: SIGHUP always reloads; `watch` also polls the config file and the files it
/// names (issuer keys, upstream CAs) for changed content.
#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct FileReload {
    pub watch: bool,
    pub interval: String,
}

impl Default for FileReload {
    fn default() -> Self {
        Self {
            watch: true,
            interval: "2s".into(),
        }
    }
}

/// `[paths]`: how request paths are canonicalised (see `canonical`).
#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct FilePaths {
    pub merge_slashes: bool,
    /// `reject`, `keep` or `decode` for `%2F` and `%5C`.
    pub escaped_slashes: String,
    /// `reject`, `strip` or `keep` for `;params` in path segments.
    pub path_params: String,
}

impl Default for FilePaths {
    fn default() -> Self {
        Self {
            merge_slashes: true,
            escaped_slashes: "reject".into(),
            path_params: "reject".into(),
        }
    }
}

/// A config file could not be turned into a `FileConfig`.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Parse(String),
    #[error("unknown keys: {}", .0.join(", "))]
    UnknownKeys(Vec<String>),
}

/// Reads `path` and the process environment into a raw config.
pub fn load_file(path: &Path) -> Result<FileConfig, LoadError> {
    // Read by us rather than figment: a FIFO or a huge file here is an error, not a hang.
    let text = crate::files::read_to_string(path)
        .map_err(|e| LoadError::Parse(format!("reading {}: {e}", path.display())))?;
    let figment = Figment::new()
        .merge(Toml::string(&text))
        .merge(env_overrides());
    from_figment(&figment)
}

/// Reads TOML text (no file, no environment) into a raw config; demo and tests use it.
pub fn load_str(toml: &str) -> Result<FileConfig, LoadError> {
    from_figment(&Figment::new().merge(Toml::string(toml)))
}

fn env_overrides() -> Env {
    // Only variables under a config table are overrides: `GATEHOUSE_CONFIG` and the
    // secrets that `*_env` keys name live under the same prefix and must not be read as keys.
    Env::prefixed(ENV_PREFIX).split("__").filter(|key| {
        let top = key.as_str().split('.').next().unwrap_or_default();
        TOP_LEVEL_KEYS.iter().any(|k| k.eq_ignore_ascii_case(top))
    })
}

fn from_figment(figment: &Figment) -> Result<FileConfig, LoadError> {
    let dict: Dict = figment
        .extract()
        .map_err(|e| LoadError::Parse(describe(e)))?;
    let value = Value::from(dict);
    let mut unknown = Vec::new();
    let parsed = serde_ignored::deserialize(&value, |path| unknown.push(path.to_string()))
        .map_err(|e| LoadError::Parse(describe(e)))?;
    if unknown.is_empty() {
        Ok(parsed)
    } else {
        Err(LoadError::UnknownKeys(unknown))
    }
}

fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let path = e.path.join(".");
            let kind = without_source_lines(&e.kind.to_string());
            if path.is_empty() {
                kind
            } else {
                format!("{path}: {kind}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A TOML syntax error quotes the offending line, which may hold a Redis password; keep
/// the position and the reason only (these messages reach logs on reload).
fn without_source_lines(message: &str) -> String {
    let mut lines = message.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default();
    match lines.next_back() {
        Some(reason) if message.contains('|') => format!("{first}: {reason}"),
        _ => message.to_string(),
    }
}

impl FileConfig {
    /// The effective config as TOML, for `gatehouse check`. It holds no secret values
    /// (secrets are named by `*_env` keys), and credentials inside URLs are masked.
    pub fn to_masked_toml(&self) -> String {
        let mut value = match toml::Value::try_from(self) {
            Ok(v) => v,
            Err(e) => return format!("# could not render config: {e}\n"),
        };
        mask_urls(&mut value);
        toml::to_string_pretty(&value).unwrap_or_else(|e| format!("# could not render: {e}\n"))
    }
}

fn mask_urls(value: &mut toml::Value) {
    match value {
        toml::Value::String(s) => {
            if let Some(masked) = crate::redact::mask_userinfo(s) {
                *s = masked;
            }
        }
        toml::Value::Array(items) => items.iter_mut().for_each(mask_urls),
        toml::Value::Table(table) => table.iter_mut().for_each(|(_, v)| mask_urls(v)),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
