//! The TOML as written: `FileConfig` and its tables, with defaults filled in. Values that
//! need checking (durations, addresses, algorithm names) stay strings here, so one bad value
//! cannot hide the next; `validate` turns them into the typed `Config`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod limits;
pub use limits::{FileLimits, FilePaths, FileReload, FileShutdown};

/// The raw configuration, as written, with defaults filled in.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct FileConfig {
    pub listen: FileListen,
    pub admin: FileAdmin,
    pub runtime: FileRuntime,
    #[serde(rename = "issuer")]
    pub issuers: Vec<FileIssuer>,
    pub identity: FileIdentity,
    pub tickets: Option<FileTickets>,
    pub logout: Option<FileLogout>,
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
    pub trace: super::trace::FileTrace,
}

/// The top-level tables; only environment variables under one of these are overrides.
pub(super) const TOP_LEVEL_KEYS: &[&str] = &[
    "listen",
    "admin",
    "runtime",
    "issuer",
    "introspection",
    "identity",
    "tickets",
    "logout",
    "revocation",
    "log",
    "route",
    "shutdown",
    "limits",
    "reload",
    "paths",
    "trace",
];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct FileListen {
    pub addr: String,
    pub tls: Option<FileTls>,
    /// CIDRs whose `X-Forwarded-*` and PROXY headers are believed.
    pub trusted_proxies: Vec<String>,
    pub proxy_protocol: bool,
}

impl Default for FileListen {
    fn default() -> Self {
        Self {
            addr: "0.0.0.0:8443".into(),
            tls: None,
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct FileTls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// How often the certificate files (and the ticket key file) are checked for a change.
    pub reload_interval: String,
    /// Offer session resumption at all (tickets and session IDs); default true.
    pub resumption: Option<bool>,
    /// Shared ticket keys, one base64 48-byte key a line, the sealing key first.
    pub session_ticket_keys_file: Option<PathBuf>,
    /// How long a ticket resumes, whatever keys are still listed.
    pub session_ticket_lifetime: String,
    /// Sessions kept in memory per replica for clients that resume by session ID (and
    /// for every client when no key file is set).
    pub session_cache_size: Option<usize>,
    /// Key-exchange groups in order of preference.
    pub kx_groups: Option<Vec<String>>,
    /// `"aws-lc-rs"` (default) or `"ring"`.
    pub provider: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
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

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct FileRuntime {
    /// Tokio worker threads; 0 means one per core.
    pub worker_threads: usize,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct FileIdentity {
    pub subject_claim: String,
    pub role_claim: String,
    /// The claims `require.scopes` reads.
    pub scope_claims: Vec<String>,
    pub headers: BTreeMap<String, String>,
    /// Client headers removed besides the built-in list: names, or prefixes ending in `*`.
    pub strip_headers: Vec<String>,
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
            strip_headers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
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

/// `[logout]`: the caller's own sign-out endpoint; present = enabled.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct FileLogout {
    pub endpoint: String,
    /// Sign-outs per caller (issuer and subject) per minute; more get 429.
    pub rate_limit_per_minute: u32,
}

impl Default for FileLogout {
    fn default() -> Self {
        Self {
            endpoint: "/.gatehouse/logout".into(),
            rate_limit_per_minute: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// When set, an active answer's `aud` must name one of these.
    pub audiences: Vec<String>,
    /// When set, the issuer the endpoint answers for (an answer's `iss` must be it).
    pub issuer: String,
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
            audiences: Vec::new(),
            issuer: String::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct FileRoute {
    pub path: String,
    /// One URL or a list; see `config::upstream`.
    pub upstream: crate::config::upstream::FileUpstream,
    pub upstream_discovery: Option<crate::config::upstream::FileDiscovery>,
    /// `none` or `signalr`.
    pub affinity: String,
    pub affinity_key_file: Option<PathBuf>,
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
    /// Speak HTTP/2 to the upstream (prior knowledge for http://, ALPN h2 for https://).
    pub upstream_http2: bool,
    /// Streams gatehouse opens on one upstream HTTP/2 connection.
    pub upstream_http2_max_streams: usize,
    /// HTTP/2 connections gatehouse opens to one endpoint.
    pub upstream_http2_max_connections: usize,
    /// Idle upstream connections kept per endpoint.
    pub upstream_max_idle: usize,
    /// How long an idle upstream connection is kept.
    pub upstream_idle_timeout: String,
    /// Largest request body forwarded; larger → 413. 0 = no limit.
    pub max_body_bytes: u64,
    /// A WebSocket session ends (1001) after this long whatever its token says; "0s" = never.
    pub max_lifetime: String,
    /// Match the path prefix in exact case (the default folds ASCII case).
    pub case_sensitive: bool,
    /// CORS preflights: `"pass"` upstream, `"answer"` here, or a table (see `config/cors.rs`).
    pub cors: super::cors::FileCors,
}

impl Default for FileRoute {
    fn default() -> Self {
        Self {
            path: String::new(),
            upstream: crate::config::upstream::FileUpstream::default(),
            upstream_discovery: None,
            affinity: "none".into(),
            affinity_key_file: None,
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
            upstream_http2: false,
            upstream_http2_max_streams: 100,
            upstream_http2_max_connections: 16,
            upstream_max_idle: 64,
            upstream_idle_timeout: "60s".into(),
            max_body_bytes: 10 << 20,
            max_lifetime: "24h".into(),
            case_sensitive: false,
            cors: super::cors::FileCors::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct FileRequire {
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub claims: BTreeMap<String, serde_json::Value>,
}
