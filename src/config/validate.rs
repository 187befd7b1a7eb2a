//! Raw `FileConfig` -> typed `Config`, reporting every problem with its key path.
//!
//! `gatehouse check` and `gatehouse run` call the same [`validate`], so a config that checks
//! clean is a config that starts. Nothing here binds a port. Each table has its own module
//! (`issuer`, `route`, `stores`); this one holds the top level, the error list and the
//! field parsers they share.

use std::collections::HashSet;
use std::path::PathBuf;

use http::HeaderName;

use crate::claim_path::ClaimPath;
use crate::upstream::strip_rules::StripRules;

use super::fields::{
    duration, duration_within, or_default, secret_source, socket_addr, ConfigErrors, SecretLookup,
    SecretSource, LONGEST, SHORTEST_POLL,
};
use super::issuer::validate_issuer;
use super::paths::{check_route_paths, validate_paths};
use super::route::validate_route;
#[cfg(test)]
pub(crate) use super::route::validate_route_for_tests;
use super::stores::{validate_introspection, validate_revocation, validate_tickets};
pub use super::types::*;
use super::FileConfig;

pub fn validate(raw: &FileConfig, secrets: SecretLookup<'_>) -> Result<Config, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let tables = tables(&mut errors, raw, secrets);
    let config = assemble(&mut errors, raw, secrets, tables);
    if errors.0.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

/// The tables that are judged against each other (tickets and routes need something that
/// validates tokens; route paths need `[paths]`), checked before the config is assembled.
struct Tables {
    tls: Option<TlsFiles>,
    issuers: Vec<IssuerConfig>,
    introspections: Vec<IntrospectionConfig>,
    tickets: Option<TicketsConfig>,
    logout: Option<LogoutConfig>,
    routes: Vec<RouteConfig>,
    paths: crate::canonical::PathRules,
}

fn tables(e: &mut ConfigErrors, raw: &FileConfig, secrets: SecretLookup<'_>) -> Tables {
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
    // Judged by the tables present, not the ones that passed: an issuer with an error of its
    // own must not add "needs at least one [[issuer]]" to every route that uses it.
    let can_validate = !raw.issuers.is_empty() || !raw.introspections.is_empty();
    let tickets = raw.tickets.as_ref().and_then(|t| validate_tickets(e, t));
    if tickets.is_some() && !can_validate {
        e.push(
            "tickets",
            "issuing tickets needs at least one [[issuer]] or [[introspection]]",
        );
    }
    let logout = super::logout::validate_logout(e, raw, can_validate);
    // The table's own param even when the table has errors of its own: a route's ticket
    // source must not add "needs a [tickets] table" next to them.
    let ticket_param = tickets
        .as_ref()
        .map(|t| t.param.as_str())
        .or_else(|| raw.tickets.as_ref().map(|t| t.param.as_str()));
    let routes = routes(e, raw, can_validate, ticket_param);
    check_limits(e, raw);
    let paths = validate_paths(e, &raw.paths);
    check_route_paths(e, raw, &paths);
    Tables {
        tls,
        issuers,
        introspections,
        tickets,
        logout,
        routes,
        paths,
    }
}

/// The typed config: the checked tables and every top-level key.
fn assemble(
    e: &mut ConfigErrors,
    raw: &FileConfig,
    secrets: SecretLookup<'_>,
    tables: Tables,
) -> Config {
    let max_token_bytes = super::limits::head_and_token(e, &raw.limits);
    Config {
        trace: super::trace::validate_trace(e, &raw.trace),
        listen_addr: socket_addr(e, "listen.addr", &raw.listen.addr),
        tls: tables.tls,
        client_trust: super::listen::client_trust(
            e,
            &raw.listen.trusted_proxies,
            raw.listen.proxy_protocol,
        ),
        admin_addr: socket_addr(e, "admin.addr", &raw.admin.addr),
        admin_token: admin_token(e, raw, secrets),
        secret_files: secret_files(raw),
        worker_threads: worker_threads(e, raw),
        issuers: tables.issuers,
        claims: super::claims::identity_claims(e, &raw.identity),
        identity_headers: identity_headers(e, raw),
        strip_headers: strip_headers(e, raw),
        tickets: tables.tickets,
        logout: tables.logout,
        revocation: validate_revocation(e, &raw.revocation),
        introspections: tables.introspections,
        log_format: log_format(e, raw),
        redact_params: raw.log.redact_params.clone(),
        routes: tables.routes,
        shutdown_grace: duration(e, "shutdown.grace", &raw.shutdown.grace),
        max_header_bytes: raw.limits.max_header_bytes,
        max_token_bytes,
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
        pre_auth: super::limits::pre_auth(e, &raw.limits, max_token_bytes),
        paths: tables.paths,
        reload: ReloadConfig {
            watch: raw.reload.watch,
            interval: duration_within(
                e,
                "reload.interval",
                &raw.reload.interval,
                SHORTEST_POLL..=LONGEST,
                "the config file is polled that often",
            ),
        },
    }
}

/// `[admin] token_env` / `token_file`: the token `/metrics` demands, if any.
fn admin_token(
    e: &mut ConfigErrors,
    raw: &FileConfig,
    secrets: SecretLookup<'_>,
) -> Option<crate::secret::Secret> {
    match secret_source(
        e,
        "admin.token",
        raw.admin.token_env.as_deref(),
        raw.admin.token_file.as_deref(),
        secrets,
    ) {
        SecretSource::Found { secret, .. } => Some(secret),
        SecretSource::Unset | SecretSource::Invalid => None,
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
    let kx_groups = super::tls::kx_groups(e, t);
    let provider = super::tls::provider(e, t, &kx_groups);
    let files = match (&t.cert, &t.key) {
        (Some(cert), Some(key)) => TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            reload_interval: duration_within(
                e,
                "listen.tls.reload_interval",
                or_default(&t.reload_interval, super::tls::DEFAULT_RELOAD_INTERVAL),
                SHORTEST_POLL..=LONGEST,
                "the certificate files are polled that often",
            ),
            resumption: super::tls::resumption(e, t),
            kx_groups,
            provider,
        },
        (None, None) => return None,
        _ => {
            e.push("listen.tls", "set both cert and key, or neither");
            return None;
        }
    };
    if let Err(err) = crate::edge::tls::load_certified_key(&files.cert, &files.key, files.provider)
    {
        e.push("listen.tls", err);
    }
    Some(files)
}

fn identity_headers(e: &mut ConfigErrors, raw: &FileConfig) -> Vec<(HeaderName, ClaimPath)> {
    let mut headers = Vec::new();
    for (header, claim) in &raw.identity.headers {
        let key = format!("identity.headers.{header}");
        let path = super::claims::claim_path(e, &key, claim);
        match HeaderName::try_from(header.as_str()) {
            Ok(name) if crate::upstream::headers::is_reserved(&name) => {
                e.push(key, "this header is managed by the proxy")
            }
            Ok(name) => headers.extend(path.map(|path| (name, path))),
            Err(_) => e.push(key, "not a valid header name"),
        }
    }
    headers
}

fn strip_headers(e: &mut ConfigErrors, raw: &FileConfig) -> StripRules {
    StripRules::parse(&raw.identity.strip_headers).unwrap_or_else(|(index, reason)| {
        e.push(format!("identity.strip_headers[{index}]"), reason);
        StripRules::default()
    })
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

/// The `[limits]` counts; the durations are checked where they are read.
fn check_limits(e: &mut ConfigErrors, raw: &FileConfig) {
    let limits = &raw.limits;
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
}

/// Each worker is an OS thread with its own stack, all started before anything is served:
/// a count past this is a typo, and one of 100000 would hang the start.
const MOST_WORKER_THREADS: usize = 1024;

/// `runtime.worker_threads`: 0 (one per core) up to [`MOST_WORKER_THREADS`].
fn worker_threads(e: &mut ConfigErrors, raw: &FileConfig) -> usize {
    let threads = raw.runtime.worker_threads;
    if threads > MOST_WORKER_THREADS {
        e.push(
            "runtime.worker_threads",
            format!("must be at most {MOST_WORKER_THREADS} (0 = one per CPU core)"),
        );
    }
    threads
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
