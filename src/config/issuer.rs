//! `[[issuer]]` validation: key source, algorithm allow-list, timings. Static key files
//! are loaded here, so a broken PEM fails `check`, not the first request.

use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::fields::{
    duration_within, http_url, or_default, secret_source, ConfigErrors, SecretLookup, SecretSource,
    LONGEST,
};
use super::types::{IssuerConfig, KeySource};
use crate::auth::jwks::keys::{jwks_file, public_key_file};
use crate::config::FileIssuer;

pub(super) fn validate_issuer(
    e: &mut ConfigErrors,
    path: &str,
    raw: &FileIssuer,
    secrets: SecretLookup<'_>,
) -> Option<IssuerConfig> {
    let errors_before = e.count();
    check_names(e, path, raw);
    let keys = key_source(e, path, raw, secrets);
    let algorithms = algorithms(e, path, raw, keys.as_ref());
    let (leeway, refresh) = timings(e, path, raw);
    check_key_files(e, path, raw, (keys.as_ref(), algorithms.first()));
    if e.count() > errors_before {
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
        jwks_hosts: raw.jwks_hosts.clone(),
        allow_http: raw.allow_http,
    })
}

/// `name`, `issuer` and `audiences`: what a token is matched against.
fn check_names(e: &mut ConfigErrors, path: &str, raw: &FileIssuer) {
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
}

/// Clock skew allowed on `exp`/`nbf` when `leeway` is unset.
pub(super) const DEFAULT_LEEWAY: &str = "30s";
/// How often remote keys are fetched when `refresh` is unset.
pub(super) const DEFAULT_REFRESH: &str = "10m";

/// The allow-list when `algorithms` is unset: the HMAC family's first for an HMAC issuer.
pub(super) fn default_algorithms(hmac: bool) -> Vec<Algorithm> {
    if hmac {
        vec![Algorithm::HS256]
    } else {
        vec![Algorithm::RS256, Algorithm::ES256]
    }
}

/// `leeway` (clock skew: zero allowed, at most 1h) and `refresh` (how often keys are
/// fetched, at least 1s).
fn timings(e: &mut ConfigErrors, path: &str, raw: &FileIssuer) -> (Duration, Duration) {
    let leeway = duration_within(
        e,
        &format!("{path}.leeway"),
        or_default(raw.leeway.as_deref().unwrap_or(""), DEFAULT_LEEWAY),
        Duration::ZERO..=Duration::from_secs(3600),
        "leeway is for clock skew",
    );
    let refresh = duration_within(
        e,
        &format!("{path}.refresh"),
        or_default(raw.refresh.as_deref().unwrap_or(""), DEFAULT_REFRESH),
        Duration::from_secs(1)..=LONGEST,
        "",
    );
    (leeway, refresh)
}

/// Loads the static key files with the loaders `run` uses, and checks the signing key
/// (for `gatehouse token`) is there.
fn check_key_files(
    e: &mut ConfigErrors,
    path: &str,
    raw: &FileIssuer,
    (keys, algorithm): (Option<&KeySource>, Option<&Algorithm>),
) {
    // The loaders `run` uses, so `check` refuses what would not load.
    let loaded = match (keys, algorithm) {
        (Some(KeySource::JwksFile(file)), Some(_)) => Some(("jwks_file", jwks_file(file))),
        (Some(KeySource::PublicKeyFile(file)), Some(alg)) => {
            Some(("public_key_file", public_key_file(file, *alg)))
        }
        _ => None,
    };
    if let Some((key, Err(err))) = loaded {
        e.push(format!("{path}.{key}"), err);
    }
    if let Some(file) = &raw.private_key_file {
        if !file.is_file() {
            e.push(
                format!("{path}.private_key_file"),
                crate::files::not_readable(file),
            );
        }
    }
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
        remote_url(e, &format!("{path}.jwks_url"), url, raw.allow_http);
        sources.push(KeySource::JwksUrl(url.clone()));
    }
    if let Some(file) = &raw.jwks_file {
        sources.push(KeySource::JwksFile(file.clone()));
    }
    if let Some(file) = &raw.public_key_file {
        sources.push(KeySource::PublicKeyFile(file.clone()));
    }
    let hmac = secret_source(
        e,
        &format!("{path}.hmac_secret"),
        raw.hmac_secret_env.as_deref(),
        raw.hmac_secret_file.as_deref(),
        secrets,
    );
    let hmac_named = !matches!(hmac, SecretSource::Unset);
    if let SecretSource::Found { secret, key } = hmac {
        if secret.expose().len() < 32 {
            e.push(key, "the secret must be at least 32 bytes");
        }
        sources.push(KeySource::Hmac(secret));
    }
    if raw.discovery {
        remote_url(e, &format!("{path}.issuer"), &raw.issuer, raw.allow_http);
    }
    jwks_hosts(e, path, raw);
    match sources.len() {
        1 => sources.pop(),
        0 if hmac_named => None,
        0 => {
            e.push(
                path,
                "no key source: set one of discovery, jwks_url, jwks_file, public_key_file, hmac_secret_env, hmac_secret_file",
            );
            None
        }
        _ => {
            e.push(path, "more than one key source; keep exactly one");
            None
        }
    }
}

/// A URL keys are fetched from: https, or http where [`crate::outbound`] allows it.
fn remote_url(e: &mut ConfigErrors, key: &str, url: &str, allow_http: bool) {
    match http_url(url) {
        None => e.push(key, "must be an https:// URL to fetch keys from"),
        Some(uri) => {
            if let Err(why) = crate::outbound::transport(&uri, allow_http) {
                e.push(key, why);
            }
        }
    }
}

/// `jwks_hosts` holds bare host names (no scheme, port or path), and only means something
/// with discovery: a configured `jwks_url` is trusted as written.
fn jwks_hosts(e: &mut ConfigErrors, path: &str, raw: &FileIssuer) {
    if !raw.jwks_hosts.is_empty() && !raw.discovery {
        e.push(
            format!("{path}.jwks_hosts"),
            "only used with discovery = true (a jwks_url is trusted as written)",
        );
    }
    for (i, host) in raw.jwks_hosts.iter().enumerate() {
        let bare = format!("https://{host}/")
            .parse::<http::Uri>()
            .ok()
            .is_some_and(|u| u.host() == Some(host.as_str()) && u.port().is_none());
        if !bare || host.is_empty() {
            e.push(
                format!("{path}.jwks_hosts[{i}]"),
                "a bare host name like \"keys.example.com\" (no scheme, port or path)",
            );
        }
    }
}

fn algorithms(
    e: &mut ConfigErrors,
    path: &str,
    raw: &FileIssuer,
    keys: Option<&KeySource>,
) -> Vec<Algorithm> {
    let family = hmac_family(raw, keys);
    let hmac = family == Some(true);
    if raw.algorithms.is_empty() {
        return default_algorithms(hmac);
    }
    let mut out = Vec::new();
    for (i, name) in raw.algorithms.iter().enumerate() {
        let key = format!("{path}.algorithms[{i}]");
        if name.eq_ignore_ascii_case("none") {
            e.push(key, "\"none\" can never be allowed");
            continue;
        }
        match name.parse::<Algorithm>() {
            Ok(alg) if family.is_some_and(|hmac| is_hmac(alg) != hmac) => e.push(
                key,
                if hmac {
                    format!(
                        "{name} needs a public key; an HMAC issuer allows only HS256/HS384/HS512"
                    )
                } else {
                    format!(
                        "{name} is an HMAC algorithm; it needs hmac_secret_env or hmac_secret_file"
                    )
                },
            ),
            Ok(alg) => out.push(alg),
            Err(_) => e.push(key, format!("unknown algorithm {name:?}")),
        }
    }
    out
}

/// Whether the issuer's keys are an HMAC secret: from the source that loaded or, when none
/// did (its secret unset, say), from the sources the file names, so that one error is not
/// followed by "HS256 needs hmac_secret_env" on an issuer that has one. `None` when the
/// file names an HMAC secret and another source (already an error of its own).
fn hmac_family(raw: &FileIssuer, keys: Option<&KeySource>) -> Option<bool> {
    if let Some(keys) = keys {
        return Some(matches!(keys, KeySource::Hmac(_)));
    }
    let hmac_named = raw.hmac_secret_env.is_some() || raw.hmac_secret_file.is_some();
    let other_named = raw.discovery
        || raw.jwks_url.is_some()
        || raw.jwks_file.is_some()
        || raw.public_key_file.is_some();
    match (hmac_named, other_named) {
        (true, true) => None,
        (hmac, _) => Some(hmac),
    }
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}
