//! Raw `FileConfig` -> typed `Config`, reporting every problem with its key path.
//!
//! `gatehouse check` and `gatehouse run` call the same [`validate`], so a config that checks
//! clean is a config that starts. Nothing here binds a port; static key files are parsed
//! here so a typo in a PEM path fails the check, not the first request.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, Uri};
use jsonwebtoken::Algorithm;

use super::{FileConfig, FileIssuer, FileRoute};
use crate::secret::Secret;

/// The validated configuration the proxy runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen_addr: SocketAddr,
    pub tls: Option<TlsFiles>,
    pub admin_addr: SocketAddr,
    pub admin_token: Option<Secret>,
    pub worker_threads: usize,
    pub issuers: Vec<IssuerConfig>,
    pub subject_claim: String,
    pub role_claim: String,
    /// `(header, claim)` pairs; the headers are stripped from every client request.
    pub identity_headers: Vec<(HeaderName, String)>,
    pub tickets: Option<TicketsConfig>,
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
    pub token_cache_entries: usize,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub reload_interval: Duration,
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
    /// Remote sources are fetched in the background and refreshed; the others load once.
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
    pub upstream: Uri,
    pub auth: AuthMode,
    pub tokens: Vec<TokenSource>,
    pub websocket: bool,
    pub upstream_auth: UpstreamAuth,
    pub require_scopes: Vec<String>,
    pub require_roles: Vec<String>,
    pub require_claims: Vec<(String, serde_json::Value)>,
    pub allowed_origins: Vec<String>,
    pub close_on_expiry: bool,
    pub first_message_timeout: Duration,
    pub max_message_bytes: usize,
    pub idle_timeout: Duration,
    pub strip_prefix: bool,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub upstream_ca_file: Option<PathBuf>,
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
#[derive(Debug, Clone)]
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
    pub timeout: Duration,
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

/// Every problem found in a config, each with its key path.
#[derive(Debug, Default)]
pub struct ConfigErrors(Vec<String>);

impl ConfigErrors {
    fn push(&mut self, path: impl fmt::Display, message: impl fmt::Display) {
        self.0.push(format!("{path}: {message}"));
    }

    pub fn messages(&self) -> &[String] {
        &self.0
    }

    pub fn single(message: String) -> Self {
        Self(vec![message])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(e)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Looks up the value of an environment variable that a `*_env` key names.
pub type SecretLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads secrets from the process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Validates a raw config; on failure returns every error found.
pub fn validate(raw: &FileConfig, secrets: SecretLookup<'_>) -> Result<Config, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let e = &mut errors;
    let listen_addr = socket_addr(e, "listen.addr", &raw.listen.addr);
    let tls = raw
        .listen
        .tls
        .as_ref()
        .and_then(|t| match (&t.cert, &t.key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                reload_interval: duration_or(
                    e,
                    "listen.tls.reload_interval",
                    &t.reload_interval,
                    "2s",
                ),
            }),
            (None, None) => None,
            _ => {
                e.push("listen.tls", "set both cert and key, or neither");
                None
            }
        });
    if let Some(files) = &tls {
        if let Err(err) = crate::tls::load_certified_key(&files.cert, &files.key) {
            e.push("listen.tls", err);
        }
    }
    let admin_addr = socket_addr(e, "admin.addr", &raw.admin.addr);
    let admin_token = raw
        .admin
        .token_env
        .as_deref()
        .and_then(|var| secret(e, "admin.token_env", var, secrets));

    let issuers: Vec<IssuerConfig> = raw
        .issuers
        .iter()
        .enumerate()
        .filter_map(|(i, issuer)| validate_issuer(e, &format!("issuer[{i}]"), issuer, secrets))
        .collect();
    unique(
        e,
        "issuer",
        "name",
        raw.issuers.iter().map(|i| i.name.as_str()),
    );
    unique(
        e,
        "issuer",
        "issuer",
        raw.issuers.iter().map(|i| i.issuer.as_str()),
    );

    let identity_headers = raw
        .identity
        .headers
        .iter()
        .filter_map(
            |(header, claim)| match HeaderName::try_from(header.as_str()) {
                Ok(name) if crate::upstream::headers::is_reserved(&name) => {
                    e.push(
                        format!("identity.headers.{header}"),
                        "this header is managed by the proxy",
                    );
                    None
                }
                Ok(name) => Some((name, claim.clone())),
                Err(_) => {
                    e.push(
                        format!("identity.headers.{header}"),
                        "not a valid header name",
                    );
                    None
                }
            },
        )
        .collect();

    let log_format = match raw.log.format.as_str() {
        "json" => LogFormat::Json,
        "text" => LogFormat::Text,
        other => {
            e.push(
                "log.format",
                format!("{other:?} is not \"json\" or \"text\""),
            );
            LogFormat::Json
        }
    };

    if raw.routes.is_empty() {
        e.push("route", "at least one [[route]] is needed");
    }
    let tickets = raw.tickets.as_ref().and_then(|t| validate_tickets(e, t));
    let revocation = validate_revocation(e, &raw.revocation);
    let introspections: Vec<IntrospectionConfig> = raw
        .introspections
        .iter()
        .enumerate()
        .filter_map(|(i, x)| validate_introspection(e, &format!("introspection[{i}]"), x, secrets))
        .collect();
    let ticket_param = tickets.as_ref().map(|t| t.param.as_str());
    let routes: Vec<RouteConfig> = raw
        .routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            validate_route(
                e,
                &format!("route[{i}]"),
                r,
                !issuers.is_empty() || !introspections.is_empty(),
                ticket_param,
            )
        })
        .collect();
    if tickets.is_some() && issuers.is_empty() && introspections.is_empty() {
        e.push(
            "tickets",
            "issuing tickets needs at least one [[issuer]] or [[introspection]]",
        );
    }
    let normalized = raw
        .routes
        .iter()
        .map(|r| match r.path.trim_end_matches('/') {
            "" => "/",
            path => path,
        });
    unique(e, "route", "path", normalized);

    let limits = &raw.limits;
    if limits.max_header_bytes < 8192 {
        e.push("limits.max_header_bytes", "must be at least 8192");
    }
    if limits.max_token_bytes == 0 || limits.max_token_bytes > limits.max_header_bytes {
        e.push(
            "limits.max_token_bytes",
            "must be between 1 and limits.max_header_bytes",
        );
    }
    if limits.max_connections == 0 {
        e.push("limits.max_connections", "must be at least 1");
    }
    let config = Config {
        listen_addr,
        tls,
        admin_addr,
        admin_token,
        worker_threads: raw.runtime.worker_threads,
        issuers,
        subject_claim: raw.identity.subject_claim.clone(),
        role_claim: raw.identity.role_claim.clone(),
        identity_headers,
        tickets,
        revocation,
        introspections,
        log_format,
        redact_params: raw.log.redact_params.clone(),
        routes,
        shutdown_grace: duration(e, "shutdown.grace", &raw.shutdown.grace),
        max_header_bytes: limits.max_header_bytes,
        max_token_bytes: limits.max_token_bytes,
        header_read_timeout: duration(e, "limits.header_read_timeout", &limits.header_read_timeout),
        max_connections: limits.max_connections,
        token_cache_entries: limits.token_cache_entries,
    };
    if errors.0.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

fn validate_issuer(
    e: &mut ConfigErrors,
    path: &str,
    raw: &FileIssuer,
    secrets: SecretLookup<'_>,
) -> Option<IssuerConfig> {
    let errors_before = e.0.len();
    if raw.name.is_empty() {
        e.push(format!("{path}.name"), "required");
    }
    if raw.issuer.is_empty() {
        e.push(
            format!("{path}.issuer"),
            "required: the exact `iss` of its tokens",
        );
    }
    if raw.audiences.is_empty() {
        e.push(
            format!("{path}.audiences"),
            "list at least one accepted `aud`",
        );
    }
    let keys = key_source(e, path, raw, secrets);
    let algorithms = algorithms(e, path, raw, keys.as_ref());
    let leeway = duration_or(
        e,
        &format!("{path}.leeway"),
        raw.leeway.as_deref().unwrap_or(""),
        "30s",
    );
    let refresh = duration_or(
        e,
        &format!("{path}.refresh"),
        raw.refresh.as_deref().unwrap_or(""),
        "10m",
    );
    if refresh < Duration::from_secs(1) {
        e.push(format!("{path}.refresh"), "must be at least 1s");
    }
    if let (Some(KeySource::JwksFile(_) | KeySource::PublicKeyFile(_)), Some(alg)) =
        (&keys, algorithms.first())
    {
        if let Err(err) = crate::jwks::load_static(keys.as_ref()?, *alg) {
            e.push(path, err);
        }
    }
    if let Some(file) = &raw.private_key_file {
        if !file.is_file() {
            e.push(
                format!("{path}.private_key_file"),
                format!("{} is not a readable file", file.display()),
            );
        }
    }
    if e.0.len() > errors_before {
        return None;
    }
    Some(IssuerConfig {
        name: raw.name.clone(),
        issuer: raw.issuer.clone(),
        audiences: raw.audiences.clone(),
        keys: keys?,
        algorithms,
        leeway,
        refresh,
        typ: raw.typ.clone(),
        private_key_file: raw.private_key_file.clone(),
    })
}

fn key_source(
    e: &mut ConfigErrors,
    path: &str,
    raw: &FileIssuer,
    secrets: SecretLookup<'_>,
) -> Option<KeySource> {
    let mut sources = Vec::new();
    if raw.discovery {
        sources.push(KeySource::Discovery);
    }
    if let Some(url) = &raw.jwks_url {
        if http_url(url).is_none() {
            e.push(
                format!("{path}.jwks_url"),
                "must be an http:// or https:// URL",
            );
        }
        sources.push(KeySource::JwksUrl(url.clone()));
    }
    if let Some(file) = &raw.jwks_file {
        sources.push(KeySource::JwksFile(file.clone()));
    }
    if let Some(file) = &raw.public_key_file {
        sources.push(KeySource::PublicKeyFile(file.clone()));
    }
    if let Some(var) = &raw.hmac_secret_env {
        if let Some(s) = secret(e, &format!("{path}.hmac_secret_env"), var, secrets) {
            if s.expose().len() < 32 {
                e.push(
                    format!("{path}.hmac_secret_env"),
                    "the secret must be at least 32 bytes",
                );
            }
            sources.push(KeySource::Hmac(s));
        }
    }
    if raw.discovery && http_url(&raw.issuer).is_none() {
        e.push(
            format!("{path}.discovery"),
            "needs an http(s) issuer URL to discover from",
        );
    }
    match sources.len() {
        1 => sources.pop(),
        0 if raw.hmac_secret_env.is_some() => None,
        0 => {
            e.push(
                path,
                "no key source: set one of discovery, jwks_url, jwks_file, public_key_file, hmac_secret_env",
            );
            None
        }
        _ => {
            e.push(path, "more than one key source; keep exactly one");
            None
        }
    }
}

fn algorithms(
    e: &mut ConfigErrors,
    path: &str,
    raw: &FileIssuer,
    keys: Option<&KeySource>,
) -> Vec<Algorithm> {
    let hmac = matches!(keys, Some(KeySource::Hmac(_)));
    if raw.algorithms.is_empty() {
        return if hmac {
            vec![Algorithm::HS256]
        } else {
            vec![Algorithm::RS256, Algorithm::ES256]
        };
    }
    let mut out = Vec::new();
    for (i, name) in raw.algorithms.iter().enumerate() {
        let key = format!("{path}.algorithms[{i}]");
        if name.eq_ignore_ascii_case("none") {
            e.push(key, "\"none\" can never be allowed");
            continue;
        }
        match name.parse::<Algorithm>() {
            Ok(alg) if is_hmac(alg) != hmac => e.push(
                key,
                if hmac {
                    format!(
                        "{name} needs a public key; an HMAC issuer allows only HS256/HS384/HS512"
                    )
                } else {
                    format!("{name} is an HMAC algorithm; it needs hmac_secret_env")
                },
            ),
            Ok(Algorithm::EdDSA) => e.push(key, "EdDSA is not supported"),
            Ok(alg) => out.push(alg),
            Err(_) => e.push(key, format!("unknown algorithm {name:?}")),
        }
    }
    out
}

pub(crate) fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn validate_tickets(e: &mut ConfigErrors, raw: &super::FileTickets) -> Option<TicketsConfig> {
    let errors_before = e.0.len();
    if !raw.endpoint.starts_with('/') || raw.endpoint.contains(['?', '#']) {
        e.push("tickets.endpoint", "a path like /.gatehouse/ticket");
    }
    let ttl = duration(e, "tickets.ttl", &raw.ttl);
    if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&ttl) {
        e.push(
            "tickets.ttl",
            "between 1s and 10m: a ticket is meant to be redeemed at once",
        );
    }
    if raw.param.is_empty()
        || !raw
            .param
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        e.push(
            "tickets.param",
            "a query parameter name of letters, digits, _ and -",
        );
    }
    let store = store(e, "tickets.store", &raw.store);
    let tokens: Vec<TokenSource> = raw
        .tokens
        .iter()
        .enumerate()
        .filter_map(|(i, t)| token_source(e, &format!("tickets.tokens[{i}]"), t, None))
        .collect();
    if tokens.is_empty()
        || tokens.iter().any(|t| {
            !matches!(
                t,
                TokenSource::Header | TokenSource::Query(_) | TokenSource::Cookie(_)
            )
        })
    {
        e.push(
            "tickets.tokens",
            "list header, query:NAME or cookie:NAME sources",
        );
    }
    if raw.rate_limit_per_minute == 0 {
        e.push("tickets.rate_limit_per_minute", "must be at least 1");
    }
    (e.0.len() == errors_before).then(|| TicketsConfig {
        endpoint: raw.endpoint.trim_end_matches('/').to_string(),
        store,
        ttl,
        param: raw.param.clone(),
        tokens,
        rate_limit_per_minute: raw.rate_limit_per_minute,
    })
}

fn validate_revocation(e: &mut ConfigErrors, raw: &super::FileRevocation) -> RevocationConfig {
    let deny_on_store_error = match raw.on_store_error.as_str() {
        "deny" => true,
        "allow" => false,
        other => {
            e.push(
                "revocation.on_store_error",
                format!("{other:?} is not \"deny\" or \"allow\""),
            );
            true
        }
    };
    let retain = duration(e, "revocation.retain", &raw.retain);
    let resync = duration(e, "revocation.resync", &raw.resync);
    if resync < Duration::from_millis(100) || resync > Duration::from_secs(60) {
        e.push("revocation.resync", "between 100ms and 60s");
    }
    RevocationConfig {
        store: store(e, "revocation.store", &raw.store),
        deny_on_store_error,
        retain,
        resync,
    }
}

fn store(e: &mut ConfigErrors, key: &str, raw: &str) -> StoreConfig {
    if raw == "memory" {
        return StoreConfig::Memory;
    }
    if (raw.starts_with("redis://") || raw.starts_with("rediss://"))
        && redis::Client::open(raw).is_ok()
    {
        return StoreConfig::Redis(Secret::new(raw.to_string()));
    }
    e.push(
        key,
        "\"memory\" or a redis://host:6379/0 (rediss:// for TLS) URL",
    );
    StoreConfig::Memory
}

fn validate_introspection(
    e: &mut ConfigErrors,
    path: &str,
    raw: &super::FileIntrospection,
    secrets: SecretLookup<'_>,
) -> Option<IntrospectionConfig> {
    let errors_before = e.0.len();
    if raw.name.is_empty() {
        e.push(format!("{path}.name"), "required");
    }
    let url = http_url(&raw.url);
    if url.is_none() {
        e.push(
            format!("{path}.url"),
            "the endpoint, an http:// or https:// URL",
        );
    }
    if raw.client_id.is_empty() {
        e.push(format!("{path}.client_id"), "required");
    }
    let client_secret = if raw.client_secret_env.is_empty() {
        e.push(
            format!("{path}.client_secret_env"),
            "name the environment variable holding the client secret",
        );
        None
    } else {
        secret(
            e,
            &format!("{path}.client_secret_env"),
            &raw.client_secret_env,
            secrets,
        )
    };
    let cache = duration(e, &format!("{path}.cache"), &raw.cache);
    let timeout = duration(e, &format!("{path}.timeout"), &raw.timeout);
    if e.0.len() > errors_before {
        return None;
    }
    Some(IntrospectionConfig {
        name: raw.name.clone(),
        url: url?,
        client_id: raw.client_id.clone(),
        client_secret: client_secret?,
        cache,
        cache_entries: raw.cache_entries,
        timeout,
    })
}

fn validate_route(
    e: &mut ConfigErrors,
    path: &str,
    raw: &FileRoute,
    have_issuers: bool,
    ticket_param: Option<&str>,
) -> Option<RouteConfig> {
    let errors_before = e.0.len();
    let route_path = normalize_route_path(e, &format!("{path}.path"), &raw.path);
    let upstream = match http_url(&raw.upstream) {
        Some(uri) if uri.path() == "/" && uri.query().is_none() => Some(uri),
        Some(_) => {
            e.push(
                format!("{path}.upstream"),
                "give scheme and authority only, like http://host:port",
            );
            None
        }
        None if raw.upstream.is_empty() => {
            e.push(
                format!("{path}.upstream"),
                "required: the backend, like http://chat-hub:5000",
            );
            None
        }
        None => {
            e.push(
                format!("{path}.upstream"),
                "must be an http:// or https:// URL",
            );
            None
        }
    };
    let auth = match raw.auth.as_str() {
        "required" => AuthMode::Required,
        "optional" => AuthMode::Optional,
        "none" => AuthMode::None,
        other => {
            e.push(
                format!("{path}.auth"),
                format!("{other:?} is not required, optional or none"),
            );
            AuthMode::Required
        }
    };
    let tokens: Vec<TokenSource> = raw
        .tokens
        .iter()
        .enumerate()
        .filter_map(|(i, t)| token_source(e, &format!("{path}.tokens[{i}]"), t, ticket_param))
        .collect();
    for (i, source) in tokens.iter().enumerate() {
        let key = format!("{path}.tokens[{i}]");
        match source {
            TokenSource::Subprotocol | TokenSource::FirstMessage if !raw.websocket => {
                e.push(
                    key,
                    "this source exists only on WebSocket upgrades: set websocket = true",
                );
            }
            TokenSource::FirstMessage if i + 1 != tokens.len() => {
                e.push(key, "first-message must come last: it is the fallback when nothing else carried a token");
            }
            _ => {}
        }
    }
    if auth != AuthMode::None {
        if tokens.is_empty() {
            e.push(format!("{path}.tokens"), "list at least one token source");
        }
        if !have_issuers {
            e.push(
                format!("{path}.auth"),
                "authenticating routes need at least one [[issuer]] or [[introspection]]",
            );
        }
    }
    let upstream_auth = match raw.upstream_auth.as_str() {
        "none" => UpstreamAuth::None,
        "bearer" => UpstreamAuth::Bearer,
        other => {
            e.push(
                format!("{path}.upstream_auth"),
                format!("{other:?} is not none or bearer"),
            );
            UpstreamAuth::None
        }
    };
    for (i, origin) in raw.allowed_origins.iter().enumerate() {
        if origin != "*"
            && http_url(origin).is_none_or(|u| u.path() != "/" || origin.ends_with('/'))
        {
            e.push(
                format!("{path}.allowed_origins[{i}]"),
                "an origin is scheme://host[:port]",
            );
        }
    }
    if let Some(ca) = &raw.upstream_ca_file {
        if !ca.is_file() {
            e.push(
                format!("{path}.upstream_ca_file"),
                format!("{} is not a readable file", ca.display()),
            );
        }
    }
    if raw.max_message_bytes < 125 {
        e.push(
            format!("{path}.max_message_bytes"),
            "must be at least 125 (a control frame)",
        );
    }
    let first_message_timeout = duration(
        e,
        &format!("{path}.first_message_timeout"),
        &raw.first_message_timeout,
    );
    let idle_timeout = duration(e, &format!("{path}.idle_timeout"), &raw.idle_timeout);
    let connect_timeout = duration(e, &format!("{path}.connect_timeout"), &raw.connect_timeout);
    let timeout = duration(e, &format!("{path}.timeout"), &raw.timeout);
    if e.0.len() > errors_before {
        return None;
    }
    Some(RouteConfig {
        path: route_path?,
        upstream: upstream?,
        auth,
        tokens,
        websocket: raw.websocket,
        upstream_auth,
        require_scopes: raw.require.scopes.clone(),
        require_roles: raw.require.roles.clone(),
        require_claims: raw
            .require
            .claims
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        allowed_origins: raw.allowed_origins.clone(),
        close_on_expiry: raw.close_on_expiry,
        first_message_timeout,
        max_message_bytes: raw.max_message_bytes,
        idle_timeout,
        strip_prefix: raw.strip_prefix,
        connect_timeout,
        timeout,
        upstream_ca_file: raw.upstream_ca_file.clone(),
    })
}

fn normalize_route_path(e: &mut ConfigErrors, key: &str, raw: &str) -> Option<String> {
    if !raw.starts_with('/') {
        e.push(key, "must start with /");
        return None;
    }
    if raw.contains(['?', '#', '*']) || raw.contains("//") {
        e.push(
            key,
            "a plain path prefix, without query, fragment, wildcards or empty segments",
        );
        return None;
    }
    let trimmed = raw.trim_end_matches('/');
    Some(if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.into()
    })
}

fn token_source(
    e: &mut ConfigErrors,
    key: &str,
    raw: &str,
    ticket_param: Option<&str>,
) -> Option<TokenSource> {
    let (kind, name) = match raw.split_once(':') {
        Some((kind, name)) => (kind, Some(name)),
        None => (raw, None),
    };
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'=' && b != b';')
    };
    match (kind, name) {
        ("header", None) => Some(TokenSource::Header),
        ("query", Some(n)) if valid_name(n) => Some(TokenSource::Query(n.into())),
        ("cookie", Some(n)) if valid_name(n) => Some(TokenSource::Cookie(n.into())),
        ("query" | "cookie", _) => {
            e.push(key, format!("write {kind}:NAME, like {kind}:access_token"));
            None
        }
        ("subprotocol", None) => Some(TokenSource::Subprotocol),
        ("first-message", None) => Some(TokenSource::FirstMessage),
        ("ticket", None) => match ticket_param {
            Some(param) => Some(TokenSource::Ticket(param.to_string())),
            None => {
                e.push(key, "the ticket source needs a [tickets] table");
                None
            }
        },
        _ => {
            e.push(
                key,
                format!(
                    "unknown token source {raw:?}; use header, query:NAME, cookie:NAME, subprotocol, ticket or first-message"
                ),
            );
            None
        }
    }
}

fn socket_addr(e: &mut ConfigErrors, key: &str, raw: &str) -> SocketAddr {
    raw.parse().unwrap_or_else(|_| {
        e.push(key, format!("{raw:?} is not an address like 0.0.0.0:8443"));
        SocketAddr::from(([127, 0, 0, 1], 0))
    })
}

fn duration(e: &mut ConfigErrors, key: &str, raw: &str) -> Duration {
    humantime::parse_duration(raw).unwrap_or_else(|_| {
        e.push(
            key,
            format!("{raw:?} is not a duration like \"30s\" or \"5m\""),
        );
        Duration::ZERO
    })
}

fn duration_or(e: &mut ConfigErrors, key: &str, raw: &str, default: &str) -> Duration {
    duration(e, key, if raw.is_empty() { default } else { raw })
}

fn secret(e: &mut ConfigErrors, key: &str, var: &str, secrets: SecretLookup<'_>) -> Option<Secret> {
    match secrets(var) {
        Some(value) if !value.is_empty() => Some(Secret::new(value)),
        _ => {
            e.push(key, format!("environment variable {var} is not set"));
            None
        }
    }
}

fn http_url(raw: &str) -> Option<Uri> {
    let uri: Uri = raw.parse().ok()?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    (scheme_ok && uri.authority().is_some()).then_some(uri)
}

fn unique<'a>(e: &mut ConfigErrors, table: &str, key: &str, values: impl Iterator<Item = &'a str>) {
    let mut seen = HashSet::new();
    for (i, v) in values.enumerate() {
        if !v.is_empty() && !seen.insert(v) {
            e.push(
                format!("{table}[{i}].{key}"),
                format!("{v:?} appears twice"),
            );
        }
    }
}

#[cfg(test)]
pub(crate) fn validate_route_for_tests(raw: &FileRoute) -> RouteConfig {
    let mut errors = ConfigErrors::default();
    let route = validate_route(&mut errors, "route", raw, true, Some("ticket"));
    assert!(errors.0.is_empty(), "{errors}");
    route.unwrap()
}
