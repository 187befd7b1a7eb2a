//! Raw `FileConfig` -> typed `Config`, reporting every problem with its key path.
//!
//! `gatehouse check` and `gatehouse run` call the same [`validate`], so a config that checks
//! clean is a config that starts. Nothing here binds a port. Each table has its own module
//! (`issuer`, `route`, `stores`); this one holds the top level, the error list and the
//! field parsers they share.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, Uri};

use super::issuer::validate_issuer;
use super::paths::{check_route_paths, validate_paths};
use super::route::validate_route;
#[cfg(test)]
pub(crate) use super::route::validate_route_for_tests;
use super::stores::{validate_introspection, validate_revocation, validate_tickets};
pub use super::types::*;
use super::FileConfig;
use crate::secret::Secret;

/// Every problem found in a config, each with its key path.
#[derive(Debug, Default)]
pub struct ConfigErrors(Vec<String>);

impl ConfigErrors {
    pub(super) fn push(&mut self, path: impl fmt::Display, message: impl fmt::Display) {
        self.0.push(format!("{path}: {message}"));
    }

    /// How many errors so far: a table's validator compares before and after.
    pub(super) fn count(&self) -> usize {
        self.0.len()
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

pub fn validate(raw: &FileConfig, secrets: SecretLookup<'_>) -> Result<Config, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let e = &mut errors;
    let tls = tls_files(e, raw);
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
    let introspections: Vec<IntrospectionConfig> = raw
        .introspections
        .iter()
        .enumerate()
        .filter_map(|(i, x)| validate_introspection(e, &format!("introspection[{i}]"), x, secrets))
        .collect();
    let can_validate = !issuers.is_empty() || !introspections.is_empty();
    let tickets = raw.tickets.as_ref().and_then(|t| validate_tickets(e, t));
    if tickets.is_some() && !can_validate {
        e.push(
            "tickets",
            "issuing tickets needs at least one [[issuer]] or [[introspection]]",
        );
    }
    let routes = routes(
        e,
        raw,
        can_validate,
        tickets.as_ref().map(|t| t.param.as_str()),
    );
    check_limits(e, raw);
    let paths = validate_paths(e, &raw.paths);
    check_route_paths(e, raw, &paths);
    let config = Config {
        trace: super::trace::validate_trace(e, &raw.trace),
        listen_addr: socket_addr(e, "listen.addr", &raw.listen.addr),
        tls,
        admin_addr: socket_addr(e, "admin.addr", &raw.admin.addr),
        admin_token: match secret_source(
            e,
            "admin.token",
            raw.admin.token_env.as_deref(),
            raw.admin.token_file.as_deref(),
            secrets,
        ) {
            SecretSource::Found(secret) => Some(secret),
            SecretSource::Unset | SecretSource::Invalid => None,
        },
        secret_files: secret_files(raw),
        worker_threads: raw.runtime.worker_threads,
        issuers,
        subject_claim: raw.identity.subject_claim.clone(),
        role_claim: raw.identity.role_claim.clone(),
        identity_headers: identity_headers(e, raw),
        tickets,
        revocation: validate_revocation(e, &raw.revocation),
        introspections,
        log_format: log_format(e, raw),
        redact_params: raw.log.redact_params.clone(),
        routes,
        shutdown_grace: duration(e, "shutdown.grace", &raw.shutdown.grace),
        max_header_bytes: raw.limits.max_header_bytes,
        max_token_bytes: raw.limits.max_token_bytes,
        header_read_timeout: duration(
            e,
            "limits.header_read_timeout",
            &raw.limits.header_read_timeout,
        ),
        max_connections: raw.limits.max_connections,
        max_connections_per_ip: raw.limits.max_connections_per_ip,
        requests_per_ip_per_second: raw.limits.requests_per_ip_per_second,
        idle_timeout: duration(e, "limits.idle_timeout", &raw.limits.idle_timeout),
        close_grace: duration(e, "limits.close_grace", &raw.limits.close_grace),
        write_timeout: duration(e, "limits.write_timeout", &raw.limits.write_timeout),
        body_stall_timeout: duration(
            e,
            "limits.body_stall_timeout",
            &raw.limits.body_stall_timeout,
        ),
        http2_max_concurrent_streams: raw.limits.http2_max_concurrent_streams,
        http2_max_resets: raw.limits.http2_max_resets,
        token_cache_entries: raw.limits.token_cache_entries,
        pre_auth: super::limits::pre_auth(e, &raw.limits),
        paths,
        reload: ReloadConfig {
            watch: raw.reload.watch,
            interval: duration(e, "reload.interval", &raw.reload.interval),
        },
    };
    if errors.0.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

/// Every `*_file` secret the config names, for the reload watch.
fn secret_files(raw: &FileConfig) -> Vec<PathBuf> {
    let admin = raw.admin.token_file.iter();
    let issuers = raw
        .issuers
        .iter()
        .filter_map(|i| i.hmac_secret_file.as_ref());
    let introspections = raw
        .introspections
        .iter()
        .filter_map(|i| i.client_secret_file.as_ref());
    admin
        .chain(issuers)
        .chain(introspections)
        .cloned()
        .collect()
}

fn tls_files(e: &mut ConfigErrors, raw: &FileConfig) -> Option<TlsFiles> {
    let t = raw.listen.tls.as_ref()?;
    let files = match (&t.cert, &t.key) {
        (Some(cert), Some(key)) => TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            reload_interval: duration_or(e, "listen.tls.reload_interval", &t.reload_interval, "2s"),
        },
        (None, None) => return None,
        _ => {
            e.push("listen.tls", "set both cert and key, or neither");
            return None;
        }
    };
    if let Err(err) = crate::tls::load_certified_key(&files.cert, &files.key) {
        e.push("listen.tls", err);
    }
    Some(files)
}

fn identity_headers(e: &mut ConfigErrors, raw: &FileConfig) -> Vec<(HeaderName, String)> {
    let mut headers = Vec::new();
    for (header, claim) in &raw.identity.headers {
        let key = format!("identity.headers.{header}");
        match HeaderName::try_from(header.as_str()) {
            Ok(name) if crate::upstream::headers::is_reserved(&name) => {
                e.push(key, "this header is managed by the proxy")
            }
            Ok(name) => headers.push((name, claim.clone())),
            Err(_) => e.push(key, "not a valid header name"),
        }
    }
    headers
}

fn log_format(e: &mut ConfigErrors, raw: &FileConfig) -> LogFormat {
    match raw.log.format.as_str() {
        "json" => LogFormat::Json,
        "text" => LogFormat::Text,
        other => {
            e.push(
                "log.format",
                format!("{other:?} is not \"json\" or \"text\""),
            );
            LogFormat::Json
        }
    }
}

fn routes(
    e: &mut ConfigErrors,
    raw: &FileConfig,
    can_validate: bool,
    ticket_param: Option<&str>,
) -> Vec<RouteConfig> {
    if raw.routes.is_empty() {
        e.push("route", "at least one [[route]] is needed");
    }
    let routes = raw
        .routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            validate_route(e, &format!("route[{i}]"), r, can_validate, ticket_param)
        })
        .collect();
    let normalized = raw
        .routes
        .iter()
        .map(|r| match r.path.trim_end_matches('/') {
            "" => "/",
            path => path,
        });
    unique(e, "route", "path", normalized);
    routes
}

fn check_limits(e: &mut ConfigErrors, raw: &FileConfig) {
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
    for (key, value) in [
        ("limits.max_connections", limits.max_connections as u64),
        (
            "limits.http2_max_concurrent_streams",
            u64::from(limits.http2_max_concurrent_streams),
        ),
        (
            "limits.http2_max_resets",
            u64::from(limits.http2_max_resets),
        ),
    ] {
        if value == 0 {
            e.push(key, "must be at least 1");
        }
    }
    for (key, value) in [
        ("limits.header_read_timeout", &limits.header_read_timeout),
        ("limits.idle_timeout", &limits.idle_timeout),
        ("limits.close_grace", &limits.close_grace),
        ("limits.write_timeout", &limits.write_timeout),
        ("limits.body_stall_timeout", &limits.body_stall_timeout),
        ("reload.interval", &raw.reload.interval),
    ] {
        if humantime::parse_duration(value).is_ok_and(|d| d.is_zero()) {
            e.push(key, "must be longer than zero");
        }
    }
}

fn socket_addr(e: &mut ConfigErrors, key: &str, raw: &str) -> SocketAddr {
    raw.parse().unwrap_or_else(|_| {
        e.push(key, format!("{raw:?} is not an address like 0.0.0.0:8443"));
        SocketAddr::from(([127, 0, 0, 1], 0))
    })
}

/// No setting needs more than a year, and clock arithmetic with absurd values overflows.
const LONGEST: Duration = Duration::from_secs(366 * 24 * 3600);

pub(super) fn duration(e: &mut ConfigErrors, key: &str, raw: &str) -> Duration {
    match humantime::parse_duration(raw) {
        Ok(d) if d <= LONGEST => d,
        Ok(_) => {
            e.push(key, format!("{raw:?} is longer than a year"));
            Duration::ZERO
        }
        Err(_) => {
            e.push(
                key,
                format!("{raw:?} is not a duration like \"30s\" or \"5m\""),
            );
            Duration::ZERO
        }
    }
}

pub(super) fn duration_or(e: &mut ConfigErrors, key: &str, raw: &str, default: &str) -> Duration {
    duration(e, key, if raw.is_empty() { default } else { raw })
}

pub(super) fn secret(
    e: &mut ConfigErrors,
    key: &str,
    var: &str,
    secrets: SecretLookup<'_>,
) -> Option<Secret> {
    match secrets(var) {
        Some(value) if !value.is_empty() => Some(Secret::new(value)),
        _ => {
            e.push(key, format!("environment variable {var} is not set"));
            None
        }
    }
}

/// Where a secret came from, as far as validation is concerned.
pub(super) enum SecretSource {
    /// Neither `{base}_env` nor `{base}_file` is set.
    Unset,
    Found(Secret),
    /// Set but unusable; the error is already recorded.
    Invalid,
}

/// A secret named by `{base}_env` (an environment variable, read at start and at each
/// reload of the process's own environment) or `{base}_file` (a file, re-read and watched
/// on reload, so a rotated Kubernetes Secret needs no restart). One trailing newline is
/// dropped from a file. Error messages name the key and path, never the value.
pub(super) fn secret_source(
    e: &mut ConfigErrors,
    base: &str,
    env: Option<&str>,
    file: Option<&Path>,
    secrets: SecretLookup<'_>,
) -> SecretSource {
    match (env, file) {
        (None, None) => SecretSource::Unset,
        (Some(_), Some(_)) => {
            e.push(base, format!("set {base}_env or {base}_file, not both"));
            SecretSource::Invalid
        }
        (Some(var), None) => secret(e, &format!("{base}_env"), var, secrets)
            .map_or(SecretSource::Invalid, SecretSource::Found),
        (None, Some(path)) => {
            let key = format!("{base}_file");
            match crate::files::read_to_string(path) {
                Ok(text) => {
                    let value = text
                        .strip_suffix('\n')
                        .map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
                    if value.is_empty() {
                        e.push(key, format!("{} is empty", path.display()));
                        SecretSource::Invalid
                    } else {
                        SecretSource::Found(Secret::new(value.to_string()))
                    }
                }
                Err(err) => {
                    e.push(key, format!("reading {}: {}", path.display(), err.kind()));
                    SecretSource::Invalid
                }
            }
        }
    }
}

pub(super) fn http_url(raw: &str) -> Option<Uri> {
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
