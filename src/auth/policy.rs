//! Per-route policy: from verified claims to an [`Access`] permit, or `Forbidden`.
//!
//! `require.scopes` must all be present (`scope` as a space-separated string, or `scp` as
//! an array or string); `require.roles` needs any one of the listed roles in the configured
//! role claim (string or array); `require.claims` must all equal the configured value (an
//! array claim passes when it contains it). An [`Identity`] can only be built here, so
//! the forwarding code, which takes one, has no path upstream that skipped policy.

use std::sync::Arc;

use serde_json::Value;

use crate::auth::claims::Claims;
use crate::auth::error::AuthError;
use crate::config::{AuthMode, RouteConfig};

/// A caller who passed validation and the route's policy.
#[derive(Debug, Clone)]
pub struct Identity {
    claims: Arc<Claims>,
}

impl Identity {
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

/// The proof that a request may go upstream.
#[derive(Debug, Clone)]
pub enum Access {
    Authenticated(Identity),
    /// `auth = "none"`, or `auth = "optional"` with no token and no requirements.
    Anonymous,
}

impl Access {
    pub fn identity(&self) -> Option<&Identity> {
        match self {
            Access::Authenticated(identity) => Some(identity),
            Access::Anonymous => None,
        }
    }
}

/// Decides whether a caller (with `claims`, or without a token) may use `route`.
pub fn authorize(
    route: &RouteConfig,
    role_claim: &str,
    claims: Option<Arc<Claims>>,
) -> Result<Access, AuthError> {
    let Some(claims) = claims else {
        let has_requirements = !route.require_scopes.is_empty()
            || !route.require_roles.is_empty()
            || !route.require_claims.is_empty();
        return match route.auth {
            AuthMode::None => Ok(Access::Anonymous),
            AuthMode::Optional if !has_requirements => Ok(Access::Anonymous),
            AuthMode::Optional | AuthMode::Required => Err(AuthError::Missing),
        };
    };
    let allowed = has_scopes(&claims, &route.require_scopes)
        && has_any_role(&claims, role_claim, &route.require_roles)
        && route
            .require_claims
            .iter()
            .all(|(name, want)| claim_matches(claims.get(name), want));
    if allowed {
        Ok(Access::Authenticated(Identity { claims }))
    } else {
        Err(AuthError::Forbidden {
            required_scopes: route.require_scopes.join(" "),
        })
    }
}

fn has_scopes(claims: &Claims, required: &[String]) -> bool {
    if required.is_empty() {
        return true;
    }
    let mut granted: Vec<&str> = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => granted.extend(s.split(' ').filter(|s| !s.is_empty())),
            Some(Value::Array(items)) => granted.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    required.iter().all(|r| granted.contains(&r.as_str()))
}

fn has_any_role(claims: &Claims, role_claim: &str, required: &[String]) -> bool {
    if required.is_empty() {
        return true;
    }
    match claims.get(role_claim) {
        Some(Value::String(role)) => required.iter().any(|r| r == role),
        Some(Value::Array(roles)) => roles
            .iter()
            .filter_map(Value::as_str)
            .any(|role| required.iter().any(|r| r == role)),
        _ => false,
    }
}

fn claim_matches(actual: Option<&Value>, want: &Value) -> bool {
    match actual {
        Some(Value::Array(items)) if !want.is_array() => items.contains(want),
        Some(value) => value == want,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn route(scopes: &[&str], roles: &[&str], claims: &[(&str, Value)]) -> RouteConfig {
        let raw = crate::config::load_str(
            "[[route]]\npath = \"/\"\nupstream = \"http://u\"\nauth = \"required\"\n",
        )
        .unwrap();
        let mut r = crate::config::validate::validate_route_for_tests(&raw.routes[0]);
        r.require_scopes = scopes.iter().map(|s| s.to_string()).collect();
        r.require_roles = roles.iter().map(|s| s.to_string()).collect();
        r.require_claims = claims
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        r
    }

    fn claims(v: Value) -> Option<Arc<Claims>> {
        Some(Arc::new(v.as_object().unwrap().clone()))
    }

    #[test]
    fn scopes_come_from_scope_string_or_scp_array() {
        let r = route(&["chat", "read"], &[], &[]);
        assert!(authorize(&r, "role", claims(json!({"scope": "read chat write"}))).is_ok());
        assert!(authorize(&r, "role", claims(json!({"scp": ["chat", "read"]}))).is_ok());
        let denied = authorize(&r, "role", claims(json!({"scope": "chat"}))).unwrap_err();
        assert_eq!(
            denied,
            AuthError::Forbidden {
                required_scopes: "chat read".into()
            }
        );
    }

    #[test]
    fn any_listed_role_is_enough() {
        let r = route(&[], &["admin", "user"], &[]);
        assert!(authorize(&r, "role", claims(json!({"role": "user"}))).is_ok());
        assert!(authorize(&r, "roles", claims(json!({"roles": ["x", "admin"]}))).is_ok());
        assert!(authorize(&r, "role", claims(json!({"role": "guest"}))).is_err());
        assert!(authorize(&r, "role", claims(json!({}))).is_err());
    }

    #[test]
    fn claims_must_equal() {
        let r = route(&[], &[], &[("tenant", json!("acme"))]);
        assert!(authorize(&r, "role", claims(json!({"tenant": "acme"}))).is_ok());
        assert!(authorize(&r, "role", claims(json!({"tenant": ["x", "acme"]}))).is_ok());
        assert!(authorize(&r, "role", claims(json!({"tenant": "other"}))).is_err());
    }

    #[test]
    fn no_token_is_missing_unless_the_route_allows_anonymous() {
        let mut r = route(&[], &[], &[]);
        assert_eq!(authorize(&r, "role", None).unwrap_err(), AuthError::Missing);
        r.auth = AuthMode::Optional;
        assert!(matches!(authorize(&r, "role", None), Ok(Access::Anonymous)));
        r.require_scopes = vec!["x".into()];
        assert_eq!(authorize(&r, "role", None).unwrap_err(), AuthError::Missing);
        r.auth = AuthMode::None;
        assert!(matches!(authorize(&r, "role", None), Ok(Access::Anonymous)));
    }
}
