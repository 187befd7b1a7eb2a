//! Per-route policy: from verified claims to an [`Access`] permit, or `Forbidden`.
//!
//! Claims are found by [`ClaimPath`] (`realm_access.roles`), and one that does not resolve
//! denies. `require.scopes` must all be present in the scope claims (each a space-separated
//! string or an array); `require.roles` needs any one of the listed roles in the role claim
//! (string or array); `require.claims` must all equal the configured value (an array claim
//! passes when it contains it).
//!
//! ```
//! use gatehouse::auth::policy::{authorize, Permitted};
//! use gatehouse::config::{IdentityClaims, RouteConfig};
//! // The one way in: the route's policy, here for a caller without a token.
//! fn permit(route: &RouteConfig, names: &IdentityClaims) -> Option<Permitted<()>> {
//!     authorize(route, names, None, ()).ok()
//! }
//! ```
//!
//! [`authorize`] is the only way to get a [`Permitted`]: its fields are private, it has no
//! other constructor, no `Clone` and no `Default`, and [`Permitted::session`] only copies a
//! permit that already exists. `Upstream::rewrite`, `Upstream::forward` and the WebSocket
//! relay each demand one, so no path reaches an upstream without passing policy:
//!
//! ```compile_fail
//! use gatehouse::auth::policy::{Access, Permitted};
//! // Outside this module a permit cannot be written down...
//! let forged = Permitted { value: (), access: Access::Anonymous };
//! ```
//!
//! ```compile_fail
//! fn copy(p: &gatehouse::auth::policy::Permitted<()>) -> gatehouse::auth::policy::Permitted<()> {
//!     // ...nor cloned into a second one.
//!     p.clone()
//! }
//! ```

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

    /// The claims, shared (a relay watches them for expiry and revocation).
    pub fn shared_claims(&self) -> Arc<Claims> {
        self.claims.clone()
    }

    /// The shared claims themselves: the token cache hands out one `Claims` per token, so
    /// a caller's requests can be told to carry the very same ones.
    pub fn shared(&self) -> &Arc<Claims> {
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

/// The proof that `value` (a request on its way upstream, a relay session) belongs to a
/// caller who passed the route's policy, and with what [`Access`].
#[derive(Debug)]
pub struct Permitted<T> {
    value: T,
    access: Access,
}

impl<T> Permitted<T> {
    pub fn access(&self) -> &Access {
        &self.access
    }

    pub fn get(&self) -> &T {
        &self.value
    }

    pub fn get_mut(&mut self) -> &mut T {
        &mut self.value
    }

    /// The same permit over what the value became (request parts -> the request).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Permitted<U> {
        Permitted {
            value: f(self.value),
            access: self.access,
        }
    }

    /// The permitted value and its access, for the code that finally uses them.
    pub fn into_parts(self) -> (T, Access) {
        (self.value, self.access)
    }

    /// A permit for what follows this value upstream (the relay of an upgrade it opens).
    pub fn session(&self) -> Permitted<()> {
        Permitted {
            value: (),
            access: self.access.clone(),
        }
    }
}

/// Decides whether a caller (with `claims`, or without a token) may use `route` with
/// `value`, reading roles and scopes where `names` says; the only constructor of [`Permitted`].
pub fn authorize<T>(
    route: &RouteConfig,
    names: &IdentityClaims,
    claims: Option<Arc<Claims>>,
    value: T,
) -> Result<Permitted<T>, AuthError> {
    let access = access(route, names, claims)?;
    Ok(Permitted { value, access })
}

/// A CORS preflight goes upstream anonymous whatever the route requires: browsers send
/// none with it, and `proxy::preflight` strips every credential before it is forwarded.
pub fn preflight<T>(value: T) -> Permitted<T> {
    Permitted {
        value,
        access: Access::Anonymous,
    }
}

fn access(
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
        assert!(access(
            &r,
            &names("role"),
            claims(json!({"scope": "read chat write"}))
        )
        .is_ok());
        assert!(access(&r, &names("role"), claims(json!({"scp": ["chat", "read"]}))).is_ok());
        let denied = access(&r, &names("role"), claims(json!({"scope": "chat"}))).unwrap_err();
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
        assert!(access(&r, &names("role"), claims(json!({"role": "user"}))).is_ok());
        assert!(access(
            &r,
            &names("roles"),
            claims(json!({"roles": ["x", "admin"]}))
        )
        .is_ok());
        assert!(access(&r, &names("role"), claims(json!({"role": "guest"}))).is_err());
        assert!(access(&r, &names("role"), claims(json!({}))).is_err());
    }

    #[test]
    fn claims_must_equal() {
        let r = route(&[], &[], &[("tenant", json!("acme"))]);
        assert!(access(&r, &names("role"), claims(json!({"tenant": "acme"}))).is_ok());
        assert!(access(&r, &names("role"), claims(json!({"tenant": ["x", "acme"]}))).is_ok());
        assert!(access(&r, &names("role"), claims(json!({"tenant": "other"}))).is_err());
    }

    #[test]
    fn no_token_is_missing_unless_the_route_allows_anonymous() {
        let mut r = route(&[], &[], &[]);
        assert_eq!(
            access(&r, &names("role"), None).unwrap_err(),
            AuthError::Missing
        );
        r.auth = AuthMode::Optional;
        assert!(matches!(
            access(&r, &names("role"), None),
            Ok(Access::Anonymous)
        ));
        r.require_scopes = vec!["x".into()];
        assert_eq!(
            access(&r, &names("role"), None).unwrap_err(),
            AuthError::Missing
        );
        r.auth = AuthMode::None;
        assert!(matches!(
            access(&r, &names("role"), None),
            Ok(Access::Anonymous)
        ));
    }

    #[test]
    fn a_permit_carries_the_access_authorize_decided() {
        let r = route(&[], &["admin"], &[]);
        let claims = claims(json!({"role": "admin", "sub": "ann"}));
        let permit = authorize(&r, &names("role"), claims, "request").unwrap();
        assert_eq!(*permit.get(), "request");
        let session = permit.session();
        let sub = session.access().identity().and_then(|i| i.claim_str("sub"));
        assert_eq!(sub, Some("ann"));
        let (value, _) = permit.map(str::len).into_parts();
        assert_eq!(value, 7);
        assert!(authorize(&r, &names("role"), None, ()).is_err());
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
        assert!(access(&r, &names("realm_access.roles"), claims(keycloak.clone())).is_ok());
        assert!(access(&r, &names("realm_access.nope"), claims(keycloak.clone())).is_err());
        assert!(access(&r, &names("realm_access.roles.x"), claims(keycloak.clone())).is_err());
        let r = route(&[], &["ops"], &[]);
        let quoted = names("[\"https://example.com/roles\"]");
        assert!(access(&r, &quoted, claims(keycloak.clone())).is_ok());
        let r = route(
            &[],
            &[],
            &[("resource_access.orders-api.roles", json!("admin"))],
        );
        assert!(access(&r, &names("role"), claims(keycloak.clone())).is_ok());
        assert!(access(&r, &names("role"), claims(json!({"resource_access": []}))).is_err());
        // Scopes from every listed claim: here Auth0's permissions array.
        let r = route(&["read:orders"], &[], &[]);
        let mut auth0 = names("role");
        assert!(access(&r, &auth0, claims(keycloak.clone())).is_err());
        auth0.scopes.push(ClaimPath::top("permissions"));
        assert!(access(&r, &auth0, claims(keycloak)).is_ok());
    }
}
