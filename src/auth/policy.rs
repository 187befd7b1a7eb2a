//! Per-route policy: from verified claims to an [`Access`] permit, or `Forbidden`.
//!
//! Claims are found by [`ClaimPath`] (`realm_access.roles`), and one that does not resolve
//! denies. `require.scopes` must all be present in the scope claims (each a space-separated
//! string or an array); `require.roles` needs any one of the listed roles in the role claim
//! (string or array); `require.claims` must all equal the configured value (an array claim
//! passes when it contains it). An [`Identity`] can only be built here, so
//! the forwarding code, which takes one, has no path upstream that skipped policy.

use std::sync::Arc;

use serde_json::Value;

use crate::auth::claims::Claims;
use crate::auth::error::AuthError;
use crate::claim_path::{self, ClaimPath};
use crate::config::{AuthMode, IdentityClaims, RouteConfig};

/// A caller who passed validation and the route's policy.
#[derive(Debug, Clone)]
pub struct Identity {
    claims: Arc<Claims>,
}

impl Identity {
    pub fn claims(&self) -> &Claims {
        &self.claims
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

/// Decides whether a caller (with `claims`, or without a token) may use `route`, reading
/// roles and scopes where `names` says.
pub fn authorize(
    route: &RouteConfig,
    names: &IdentityClaims,
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
    let allowed = has_scopes(&claims, &names.scopes, &route.require_scopes)
        && has_any_role(&claims, &names.role, &route.require_roles)
        && route
            .require_claims
            .iter()
            .all(|(path, want)| claim_matches(path.resolve(&claims), want));
    if allowed {
        Ok(Access::Authenticated(Identity { claims }))
    } else {
        Err(AuthError::Forbidden {
            required_scopes: route.require_scopes.join(" "),
        })
    }
}

fn has_scopes(claims: &Claims, from: &[ClaimPath], required: &[String]) -> bool {
    if required.is_empty() {
        return true;
    }
    let granted: Vec<&str> = from
        .iter()
        .flat_map(|path| claim_path::scopes(path.resolve(claims)))
        .collect();
    required.iter().all(|r| granted.contains(&r.as_str()))
}

fn has_any_role(claims: &Claims, role_claim: &ClaimPath, required: &[String]) -> bool {
    required.is_empty()
        || claim_path::strings(role_claim.resolve(claims))
            .into_iter()
            .any(|role| required.iter().any(|r| r == role))
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
            .map(|(k, v)| (k.parse().unwrap(), v.clone()))
            .collect();
        r
    }

    fn names(role: &str) -> IdentityClaims {
        IdentityClaims {
            subject: ClaimPath::top("sub"),
            role: role.parse().unwrap(),
            scopes: vec![ClaimPath::top("scope"), ClaimPath::top("scp")],
        }
    }

    fn claims(v: Value) -> Option<Arc<Claims>> {
        Some(Arc::new(v.as_object().unwrap().clone()))
    }

    #[test]
    fn scopes_come_from_scope_string_or_scp_array() {
        let r = route(&["chat", "read"], &[], &[]);
        assert!(authorize(
            &r,
            &names("role"),
            claims(json!({"scope": "read chat write"}))
        )
        .is_ok());
        assert!(authorize(&r, &names("role"), claims(json!({"scp": ["chat", "read"]}))).is_ok());
        let denied = authorize(&r, &names("role"), claims(json!({"scope": "chat"}))).unwrap_err();
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
        assert!(authorize(&r, &names("role"), claims(json!({"role": "user"}))).is_ok());
        assert!(authorize(
            &r,
            &names("roles"),
            claims(json!({"roles": ["x", "admin"]}))
        )
        .is_ok());
        assert!(authorize(&r, &names("role"), claims(json!({"role": "guest"}))).is_err());
        assert!(authorize(&r, &names("role"), claims(json!({}))).is_err());
    }

    #[test]
    fn claims_must_equal() {
        let r = route(&[], &[], &[("tenant", json!("acme"))]);
        assert!(authorize(&r, &names("role"), claims(json!({"tenant": "acme"}))).is_ok());
        assert!(authorize(&r, &names("role"), claims(json!({"tenant": ["x", "acme"]}))).is_ok());
        assert!(authorize(&r, &names("role"), claims(json!({"tenant": "other"}))).is_err());
    }

    #[test]
    fn no_token_is_missing_unless_the_route_allows_anonymous() {
        let mut r = route(&[], &[], &[]);
        assert_eq!(
            authorize(&r, &names("role"), None).unwrap_err(),
            AuthError::Missing
        );
        r.auth = AuthMode::Optional;
        assert!(matches!(
            authorize(&r, &names("role"), None),
            Ok(Access::Anonymous)
        ));
        r.require_scopes = vec!["x".into()];
        assert_eq!(
            authorize(&r, &names("role"), None).unwrap_err(),
            AuthError::Missing
        );
        r.auth = AuthMode::None;
        assert!(matches!(
            authorize(&r, &names("role"), None),
            Ok(Access::Anonymous)
        ));
    }

    #[test]
    fn nested_and_quoted_paths_are_read_and_missing_ones_deny() {
        let keycloak = json!({
            "realm_access": {"roles": ["customer"]},
            "resource_access": {"orders-api": {"roles": ["admin"]}},
            "permissions": ["read:orders"],
            "https://example.com/roles": ["ops"],
        });
        let r = route(&[], &["customer"], &[]);
        assert!(authorize(&r, &names("realm_access.roles"), claims(keycloak.clone())).is_ok());
        assert!(authorize(&r, &names("realm_access.nope"), claims(keycloak.clone())).is_err());
        assert!(authorize(&r, &names("realm_access.roles.x"), claims(keycloak.clone())).is_err());
        let r = route(&[], &["ops"], &[]);
        let quoted = names("[\"https://example.com/roles\"]");
        assert!(authorize(&r, &quoted, claims(keycloak.clone())).is_ok());
        let r = route(
            &[],
            &[],
            &[("resource_access.orders-api.roles", json!("admin"))],
        );
        assert!(authorize(&r, &names("role"), claims(keycloak.clone())).is_ok());
        assert!(authorize(&r, &names("role"), claims(json!({"resource_access": []}))).is_err());
        // Scopes from every listed claim: here Auth0's permissions array.
        let r = route(&["read:orders"], &[], &[]);
        let mut auth0 = names("role");
        assert!(authorize(&r, &auth0, claims(keycloak.clone())).is_err());
        auth0.scopes.push(ClaimPath::top("permissions"));
        assert!(authorize(&r, &auth0, claims(keycloak)).is_ok());
    }
}
