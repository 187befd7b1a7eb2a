//! Claim paths named by the config (`[identity]`, `require.claims`), parsed here once so
//! requests only walk them, and a malformed one fails `check` with its key.

use super::fields::ConfigErrors;
use crate::claim_path::ClaimPath;
use crate::config::FileIdentity;
use serde_json::Value;

/// `[identity]`'s claim paths: who the caller is, and where policy reads roles and scopes.
#[derive(Debug, Clone)]
pub struct IdentityClaims {
    pub subject: ClaimPath,
    pub role: ClaimPath,
    pub scopes: Vec<ClaimPath>,
}

impl IdentityClaims {
    /// The caller's name, for the access log and per-caller limits, when it is a string.
    pub fn subject_of<'a>(
        &self,
        claims: &'a serde_json::Map<String, serde_json::Value>,
    ) -> Option<&'a str> {
        self.subject.string(claims)
    }
}

pub(super) fn identity_claims(e: &mut ConfigErrors, raw: &FileIdentity) -> IdentityClaims {
    let fallback = |name: &str| ClaimPath::top(name);
    let subject = claim_path(e, "identity.subject_claim", &raw.subject_claim);
    let role = claim_path(e, "identity.role_claim", &raw.role_claim);
    let scopes = raw
        .scope_claims
        .iter()
        .enumerate()
        .filter_map(|(i, text)| claim_path(e, &format!("identity.scope_claims[{i}]"), text))
        .collect();
    // On an error the config is refused anyway; the fallbacks only keep the value whole.
    IdentityClaims {
        subject: subject.unwrap_or_else(|| fallback("sub")),
        role: role.unwrap_or_else(|| fallback("role")),
        scopes,
    }
}

/// `require.claims`: each key a claim path, each value what it must equal (or contain).
pub(super) fn required_claims<'a>(
    e: &mut ConfigErrors,
    route: &str,
    raw: impl IntoIterator<Item = (&'a String, &'a Value)>,
) -> Vec<(ClaimPath, Value)> {
    let mut out = Vec::new();
    for (text, want) in raw {
        let key = format!("{route}.require.claims.{text}");
        if want.is_object() {
            // Almost always an unquoted TOML key: `{ a.b = 1 }` is `{ a = { b = 1 } }`.
            e.push(
                key,
                format!("the value is a table; to require a nested claim, quote its path as one key: \"{text}.<name>\" = ..."),
            );
            continue;
        }
        if let Some(path) = claim_path(e, &key, text) {
            out.push((path, want.clone()));
        }
    }
    out
}

/// Parses one path, or records why not under `key`.
pub(super) fn claim_path(e: &mut ConfigErrors, key: &str, text: &str) -> Option<ClaimPath> {
    match text.parse() {
        Ok(path) => Some(path),
        Err(why) => {
            e.push(key, format!("not a claim path: {why}"));
            None
        }
    }
}
