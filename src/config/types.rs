//! The validated configuration: what `validate` produces and the proxy runs with.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, Uri};
use jsonwebtoken::Algorithm;

pub use super::claims::IdentityClaims;
use crate::claim_path::ClaimPath;
use crate::secret::Secret;

/// The validated configuration the proxy runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen_addr: SocketAddr,
    /// `[trace]`.
    pub trace: super::trace::TraceConfig,
    pub tls: Option<TlsFiles>,
    /// `listen.trusted_proxies` and `listen.proxy_protocol`.
    pub client_trust: super::ClientTrust,
    pub admin_addr: SocketAddr,
    pub admin_token: Option<Secret>,
    /// Files secrets were read from (`*_file` keys); the reload watch follows them.
    pub secret_files: Vec<PathBuf>,
    pub worker_threads: usize,
    pub issuers: Vec<IssuerConfig>,
    /// `[identity]`'s claim paths: the subject, and where policy reads roles and scopes.
    pub claims: IdentityClaims,
    /// `(header, claim)` pairs; the headers are stripped from every client request.
    pub identity_headers: Vec<(HeaderName, ClaimPath)>,
    /// `[identity] strip_headers`: more client headers removed from every request.
    pub strip_headers: crate::upstream::strip_rules::StripRules,
    pub tickets: Option<TicketsConfig>,
    pub logout: Option<LogoutConfig>,
    pub revocation: RevocationConfig,
    pub introspections: Vec<IntrospectionConfig>,
    pub log_format: LogFormat,
    pub redact_params: Vec<String>,
    pub routes: Vec<RouteConfig>,
    pub shutdown_grace: Duration,
    pub max_header_bytes: usize,
    pub max_token_bytes: usize,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub requests_per_ip_per_second: u32,
    pub idle_timeout: Duration,
    pub close_grace: Duration,
    pub write_timeout: Duration,
    pub body_stall_timeout: Duration,
    pub http2_max_concurrent_streams: u32,
    pub http2_max_resets: u32,
    pub token_cache_entries: usize,
    pub pre_auth: PreAuthLimits,
    pub reload: ReloadConfig,
    /// `[paths]`: how request targets are canonicalised before anything reads them.
    pub paths: crate::canonical::PathRules,
}

/// What gatehouse holds for callers whose token has not validated yet (the proxy's pre-authentication budget).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreAuthLimits {
    /// Per connection or request body.
    pub bytes: usize,
    /// All of them together.
    pub total_bytes: usize,
    pub body_read_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadConfig {
    /// Poll the config file and the files it names; SIGHUP works either way.
    pub watch: bool,
    pub interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub reload_interval: Duration,
    pub resumption: Resumption,
    /// Key-exchange groups, the preferred first.
    pub kx_groups: Vec<KxGroup>,
    /// Which library does the handshake's cryptography.
    pub provider: TlsProvider,
}

/// The cryptography library behind rustls for the public listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsProvider {
    AwsLcRs,
    Ring,
}

impl TlsProvider {
    pub const ALL: [(&'static str, TlsProvider); 2] = [
        ("aws-lc-rs", TlsProvider::AwsLcRs),
        ("ring", TlsProvider::Ring),
    ];
}

/// How a returning TLS client skips the full handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resumption {
    /// Every connection does a full handshake.
    Off,
    /// Sessions stay in this replica's memory (at most `cache_size`, none older than
    /// `lifetime`); a client resumes only when it reaches the same replica.
    Cache {
        cache_size: usize,
        lifetime: Duration,
    },
    /// Stateless tickets sealed with the key file every replica shares, re-read when it
    /// changes; the cache still serves clients that resume by TLS 1.2 session ID. Nothing
    /// older than `lifetime` resumes, ticket or cached session.
    Tickets {
        keys_file: PathBuf,
        lifetime: Duration,
        cache_size: usize,
    },
}

/// A TLS key-exchange group gatehouse can offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KxGroup {
    X25519,
    P256,
    P384,
    X25519MlKem768,
}

impl KxGroup {
    pub const ALL: [(&'static str, KxGroup); 4] = [
        ("X25519", KxGroup::X25519),
        ("P-256", KxGroup::P256),
        ("P-384", KxGroup::P384),
        ("X25519MLKEM768", KxGroup::X25519MlKem768),
    ];
}

#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub keys: KeySource,
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    pub refresh: Duration,
    pub typ: Option<String>,
    /// Private key for `gatehouse token` and the demo; never used to verify.
    pub private_key_file: Option<PathBuf>,
    /// Hosts besides the issuer's a discovered `jwks_uri` may be on.
    pub jwks_hosts: Vec<String>,
    /// Plain http (non-loopback) accepted for discovery and `jwks_url`.
    pub allow_http: bool,
}

/// Where an issuer's verification keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    Discovery,
    JwksUrl(String),
    JwksFile(PathBuf),
    PublicKeyFile(PathBuf),
    Hmac(Secret),
}

impl KeySource {
    /// Remote sources are fetched in the background and refreshed; the others are read
    /// with the config, at start and at every reload (the reload watch follows their files).
    pub fn is_remote(&self) -> bool {
        matches!(self, KeySource::Discovery | KeySource::JwksUrl(_))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub path: String,
    /// The first endpoint, as a URL.
    pub upstream: Uri,
    /// Every endpoint, discovery and affinity.
    pub endpoints: super::upstream::Endpoints,
    pub auth: AuthMode,
    pub tokens: Vec<TokenSource>,
    pub websocket: bool,
    pub upstream_auth: UpstreamAuth,
    pub require_scopes: Vec<String>,
    pub require_roles: Vec<String>,
    pub require_claims: Vec<(ClaimPath, serde_json::Value)>,
    pub allowed_origins: Vec<String>,
    pub close_on_expiry: bool,
    pub first_message_timeout: Duration,
    pub max_message_bytes: usize,
    pub idle_timeout: Duration,
    pub strip_prefix: bool,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub upstream_ca_file: Option<PathBuf>,
    /// Speak HTTP/2 to the upstream (h2c for http://, ALPN h2 for https://).
    pub upstream_http2: bool,
    /// Streams on one upstream HTTP/2 connection (1 to 1000; never more than the upstream
    /// allows).
    pub upstream_http2_max_streams: usize,
    /// HTTP/2 connections to one endpoint (1 to 1024); a request that finds them all full
    /// waits for a stream, within `timeout`.
    pub upstream_http2_max_connections: usize,
    /// Idle upstream connections kept per endpoint; 0 = none kept.
    pub upstream_max_idle: usize,
    /// An idle upstream connection is closed after this long.
    pub upstream_idle_timeout: Duration,
    /// 0 = no limit.
    pub max_body_bytes: u64,
    /// `None`: a session may last as long as its token.
    pub max_lifetime: Option<Duration>,
    /// The path prefix matches in exact case; by default ASCII case is folded.
    pub case_sensitive: bool,
    pub cors: super::cors::CorsConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Required,
    Optional,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamAuth {
    None,
    Bearer,
}

/// A place a route looks for the caller's token, in the order the route lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Header,
    Query(String),
    Cookie(String),
    /// `bearer.<token>` offered in `Sec-WebSocket-Protocol` next to the real subprotocol.
    Subprotocol,
    /// A single-use ticket in the query parameter named by `[tickets].param`.
    Ticket(String),
    /// `{"type":"auth","token":"..."}` as the first WebSocket message.
    FirstMessage,
}

/// Where tickets and revocations live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    Memory,
    /// A `redis://` or `rediss://` URL (it may hold a password: never log it).
    Redis(Secret),
}

/// `[revocation]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RevocationConfig {
    pub store: StoreConfig,
    /// `true`: while the store is unreachable, requests get 503 (`on_store_error = "deny"`).
    pub deny_on_store_error: bool,
    pub retain: Duration,
    pub resync: Duration,
}

/// `[[introspection]]`: an RFC 7662 endpoint.
#[derive(Debug, Clone)]
pub struct IntrospectionConfig {
    pub name: String,
    pub url: Uri,
    pub client_id: String,
    pub client_secret: Secret,
    pub cache: Duration,
    pub cache_entries: usize,
    pub negative_cache_entries: usize,
    /// At least 1.
    pub max_calls_per_second: u32,
    pub allow_http: bool,
    pub timeout: Duration,
    /// Empty: any audience. Otherwise an active answer's `aud` must name one of these.
    pub audiences: Vec<String>,
    /// The issuer this endpoint speaks for: an answer naming another `iss` is not ours, and
    /// one naming none gets this one.
    pub issuer: Option<String>,
}

/// `[tickets]`: the single-use ticket endpoint.
#[derive(Debug, Clone)]
pub struct TicketsConfig {
    pub endpoint: String,
    pub store: StoreConfig,
    pub ttl: Duration,
    pub param: String,
    pub tokens: Vec<TokenSource>,
    pub rate_limit_per_minute: u32,
}

/// `[logout]`: `POST {endpoint}` revokes the caller's own token (or all of its subject's).
#[derive(Debug, Clone)]
pub struct LogoutConfig {
    pub endpoint: String,
    pub rate_limit_per_minute: u32,
}
