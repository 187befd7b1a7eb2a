//! `[tickets]`, `[revocation]` and `[[introspection]]` validation: the shared stores and
//! the RFC 7662 endpoints.

use std::time::Duration;

use super::fields::{
    duration, duration_or_zero, duration_within, http_url, secret_source, ConfigErrors,
    SecretLookup, SecretSource, LONGEST,
};
use super::route::token_source;
use super::types::{
    IntrospectionConfig, RevocationConfig, StoreConfig, TicketsConfig, TokenSource,
};
use crate::secret::Secret;

/// The `[tickets].param` rule: a query parameter name of letters, digits, `_` and `-`.
/// Public for the fuzz targets.
pub fn valid_ticket_param(param: &str) -> bool {
    !param.is_empty()
        && param
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub(super) fn validate_tickets(
    e: &mut ConfigErrors,
    raw: &super::FileTickets,
) -> Option<TicketsConfig> {
    let errors_before = e.count();
    if !raw.endpoint.starts_with('/') || raw.endpoint.contains(['?', '#']) {
        e.push("tickets.endpoint", "a path like /.gatehouse/ticket");
    }
    let ttl = duration_within(
        e,
        "tickets.ttl",
        &raw.ttl,
        Duration::from_secs(1)..=Duration::from_secs(600),
        "a ticket is meant to be redeemed at once",
    );
    if !valid_ticket_param(&raw.param) {
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
    (e.count() == errors_before).then(|| TicketsConfig {
        endpoint: raw.endpoint.trim_end_matches('/').to_string(),
        store,
        ttl,
        param: raw.param.clone(),
        tokens,
        rate_limit_per_minute: raw.rate_limit_per_minute,
    })
}

pub(super) fn validate_revocation(
    e: &mut ConfigErrors,
    raw: &super::FileRevocation,
) -> RevocationConfig {
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
    // Entries expire in whole seconds: under one second, a revocation would be gone as it
    // is written, and the admin API would answer 204 for nothing.
    let retain = duration_within(
        e,
        "revocation.retain",
        &raw.retain,
        Duration::from_secs(1)..=LONGEST,
        "set it to at least your longest token lifetime",
    );
    let resync = duration_within(
        e,
        "revocation.resync",
        &raw.resync,
        Duration::from_millis(100)..=Duration::from_secs(60),
        "",
    );
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

pub(super) fn validate_introspection(
    e: &mut ConfigErrors,
    path: &str,
    raw: &super::FileIntrospection,
    secrets: SecretLookup<'_>,
) -> Option<IntrospectionConfig> {
    let errors_before = e.count();
    if raw.name.is_empty() {
        e.push(format!("{path}.name"), "required");
    }
    let url = http_url(&raw.url);
    match &url {
        None => e.push(format!("{path}.url"), "the endpoint, an https:// URL"),
        Some(u) => {
            if let Err(why) = crate::outbound::transport(u, raw.allow_http) {
                e.push(format!("{path}.url"), why);
            }
        }
    }
    if raw.max_calls_per_second == 0 {
        e.push(
            format!("{path}.max_calls_per_second"),
            "at least 1: it bounds what made-up tokens can cost the endpoint",
        );
    }
    if raw.client_id.is_empty() {
        e.push(format!("{path}.client_id"), "required");
    }
    let env = Some(raw.client_secret_env.as_str()).filter(|v| !v.is_empty());
    let base = format!("{path}.client_secret");
    let client_secret =
        match secret_source(e, &base, env, raw.client_secret_file.as_deref(), secrets) {
            SecretSource::Found { secret, .. } => Some(secret),
            SecretSource::Invalid => None,
            SecretSource::Unset => {
                e.push(
                    format!("{base}_env"),
                    "name the client secret: client_secret_env (a variable) or client_secret_file",
                );
                None
            }
        };
    if raw.audiences.iter().any(String::is_empty) {
        e.push(format!("{path}.audiences"), "an audience may not be empty");
    }
    // Zero: every token is asked about each time (within `max_calls_per_second`).
    let cache = duration_or_zero(e, &format!("{path}.cache"), &raw.cache);
    let timeout = duration(e, &format!("{path}.timeout"), &raw.timeout);
    if e.count() > errors_before {
        return None;
    }
    Some(IntrospectionConfig {
        name: raw.name.clone(),
        url: url?,
        client_id: raw.client_id.clone(),
        client_secret: client_secret?,
        cache,
        cache_entries: raw.cache_entries,
        negative_cache_entries: raw.negative_cache_entries,
        max_calls_per_second: raw.max_calls_per_second,
        allow_http: raw.allow_http,
        timeout,
        audiences: raw.audiences.clone(),
        issuer: Some(raw.issuer.clone()).filter(|i| !i.is_empty()),
    })
}
