//! Identity-provider recipes: every `config/examples/<idp>.toml` passes `gatehouse check`,
//! and serves tokens shaped as that IdP documents them (claims and JOSE headers), signed by
//! a key its discovery and JWKS endpoints publish at the IdP's own paths, through a real
//! gatehouse to a real upstream: the identity headers the upstream sees, and a policy
//! allow and deny per IdP.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::Response;
use serde_json::{json, Value};
use support::*;

const UPSTREAM: &str = "http://orders.internal:8080";

fn example_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/examples")
        .join(format!("{name}.toml"))
}

#[test]
fn every_example_passes_check() {
    for name in ["keycloak", "entra", "auth0", "okta"] {
        let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["check", "--config", example_path(name).to_str().unwrap()])
            .env_remove("GATEHOUSE_CONFIG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// === An IdP's endpoints at its own paths ===

/// Serves discovery documents and JWKS at whatever paths an IdP uses.
struct Provider {
    server: Upstream,
    docs: Arc<Mutex<HashMap<String, String>>>,
}

impl Provider {
    async fn start() -> Provider {
        let docs: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let served = docs.clone();
        let server = Upstream::start(move |req| {
            let body = served.lock().unwrap().get(req.uri().path()).cloned();
            async move {
                match body {
                    Some(body) => Response::new(full(body)),
                    None => status(http::StatusCode::NOT_FOUND),
                }
            }
        })
        .await;
        Provider { server, docs }
    }

    fn base(&self) -> String {
        self.server.url()
    }

    /// Discovery for `issuer` (under its path, as OIDC Discovery §4 places it) naming the
    /// JWKS at `jwks_path`, and that JWKS.
    fn publish(&self, issuer: &str, jwks_path: &str, keys: Vec<Value>) {
        let base = self.base();
        let issuer_path = issuer.strip_prefix(&base).unwrap().trim_end_matches('/');
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("{base}{jwks_path}"),
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        let mut docs = self.docs.lock().unwrap();
        docs.insert(
            format!("{issuer_path}/.well-known/openid-configuration"),
            discovery.to_string(),
        );
        docs.insert(jwks_path.into(), json!({ "keys": keys }).to_string());
    }
}

/// The example with the IdP's host swapped for the local one, and local listeners.
fn example(name: &str, idp_base: &str, provider: &Provider, upstream: &Upstream) -> String {
    std::fs::read_to_string(example_path(name))
        .unwrap()
        .replace(idp_base, &provider.base())
        .replace(UPSTREAM, &upstream.url())
        .replace("addr = \"0.0.0.0:8443\"", "addr = \"127.0.0.1:0\"")
        .replace("addr = \"127.0.0.1:9090\"", "addr = \"127.0.0.1:0\"")
}

/// The key as the IdP's JWKS lists it: its usual members around `n`/`e`.
fn published(key: &Key, extra: Value) -> Value {
    let mut jwk = key.jwk();
    for (k, v) in extra.as_object().unwrap() {
        jwk[k] = v.clone();
    }
    jwk
}

struct Seen {
    status: u16,
    headers: Option<http::HeaderMap>,
}

/// Calls `path` with `token`, and what the upstream saw of that call, if it got there.
async fn call(proxy: &TestProxy, upstream: &Upstream, path: &str, token: &str) -> Seen {
    let before = upstream.requests().len();
    let answer = bearer(&proxy.url(path), token).await;
    let requests = upstream.requests();
    Seen {
        status: answer.status.as_u16(),
        headers: (requests.len() > before).then(|| requests[before].headers.clone()),
    }
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers
        .as_ref()
        .expect("the request did not reach the upstream")
        .get(name)
        .map(|v| v.to_str().unwrap())
}

// === Keycloak ===

#[tokio::test]
async fn keycloak_realm_and_client_roles_by_claim_path() {
    let (provider, upstream) = (Provider::start().await, Upstream::echo().await);
    let issuer = format!("{}/realms/shop", provider.base());
    let (signing, encryption) = (Key::rsa("rsa1", "kc-sig-1"), Key::rsa("rsa2", "kc-enc-1"));
    provider.publish(
        &issuer,
        "/realms/shop/protocol/openid-connect/certs",
        vec![
            published(&signing, json!({"x5t": "dGVzdC14NXQ"})),
            // Keycloak publishes its realm encryption key in the same set.
            published(&encryption, json!({"use": "enc", "alg": "RSA-OAEP"})),
        ],
    );
    let toml = example(
        "keycloak",
        "https://keycloak.example.com",
        &provider,
        &upstream,
    );
    let proxy = TestProxy::start(&toml).await;
    proxy.wait_ready().await;

    let token = |key: &Key, realm_roles: Value, client_roles: Value, aud: Value| {
        let kid = key.kid.clone().unwrap();
        sign_raw(
            json!({"alg": "RS256", "typ": "JWT", "kid": kid}),
            json!({
                "exp": now() + 300, "iat": now(), "auth_time": now(), "jti": "onrtac:6f1c",
                "iss": issuer, "aud": aud, "sub": "f4c0c6a2-3a4e-4d0b-9a8e-0d6f5e7c2b11",
                "typ": "Bearer", "azp": "shop-spa", "sid": "1b1d6c1e", "acr": "1",
                "allowed-origins": ["https://shop.example.com"],
                "realm_access": {"roles": realm_roles},
                "resource_access": {
                    "orders-api": {"roles": client_roles},
                    "account": {"roles": ["manage-account", "view-profile"]},
                },
                "scope": "openid email profile", "email_verified": true,
                "name": "Alice Doe", "preferred_username": "alice",
                "email": "alice@example.com",
            }),
            key,
        )
    };
    let aud = json!(["orders-api", "account"]);
    let customer = token(
        &signing,
        json!(["default-roles-shop", "customer"]),
        json!(["viewer"]),
        aud.clone(),
    );
    let seen = call(&proxy, &upstream, "/orders", &customer).await;
    assert_eq!(seen.status, 200);
    assert_eq!(
        header(&seen, "x-auth-subject"),
        Some("f4c0c6a2-3a4e-4d0b-9a8e-0d6f5e7c2b11")
    );
    assert_eq!(header(&seen, "x-auth-user"), Some("alice"));
    assert_eq!(header(&seen, "x-auth-email"), Some("alice@example.com"));
    assert_eq!(
        header(&seen, "x-auth-roles"),
        Some("default-roles-shop,customer")
    );
    assert_eq!(header(&seen, "x-auth-client-roles"), Some("viewer"));
    // The client role "admin" is missing: denied, and the upstream never hears of it.
    let denied = call(&proxy, &upstream, "/admin", &customer).await;
    assert_eq!((denied.status, denied.headers.is_some()), (403, false));

    let admin = token(&signing, json!([]), json!(["admin"]), aud.clone());
    assert_eq!(call(&proxy, &upstream, "/admin", &admin).await.status, 200);
    assert_eq!(call(&proxy, &upstream, "/orders", &admin).await.status, 403);

    // A top-level claim whose *name* has the dots is not the nested path.
    let mut flat = token(&signing, json!([]), json!([]), aud.clone());
    flat = {
        let mut claims: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(flat.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        claims["resource_access.orders-api.roles"] = json!(["admin"]);
        sign_raw(
            json!({"alg": "RS256", "typ": "JWT", "kid": "kc-sig-1"}),
            claims,
            &signing,
        )
    };
    assert_eq!(call(&proxy, &upstream, "/admin", &flat).await.status, 403);

    // Signed with the key published for encryption: not a verification key.
    let with_enc = token(&encryption, json!(["customer"]), json!([]), aud);
    assert_eq!(
        call(&proxy, &upstream, "/orders", &with_enc).await.status,
        401
    );
    // Keycloak's default audience only: a token for another client of the realm.
    let other = token(&signing, json!(["customer"]), json!([]), json!("account"));
    assert_eq!(call(&proxy, &upstream, "/orders", &other).await.status, 401);
}

// === Microsoft Entra ID ===

const CONTOSO: &str = "3f2a9c1e-0000-4000-8000-00000000c001";
const FABRIKAM: &str = "3f2a9c1e-0000-4000-8000-00000000f002";
const API_APP_ID: &str = "7d0c5b8a-0000-4000-8000-0000000a9101";

#[tokio::test]
async fn entra_v2_scp_roles_and_only_the_listed_tenants() {
    let (provider, upstream) = (Provider::start().await, Upstream::echo().await);
    // Microsoft signs every tenant's tokens with the same keys; each tenant publishes them.
    let key = Key::rsa("rsa1", "nOo3ZDrODXEK1jKWhXslHR_KXEg");
    let jwk = published(
        &key,
        json!({"x5t": "nOo3ZDrODXEK1jKWhXslHR_KXEg", "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0"}),
    );
    let tenant_issuer = |tid: &str| format!("{}/{tid}/v2.0", provider.base());
    for tid in [CONTOSO, FABRIKAM] {
        let jwks_path = format!("/{tid}/discovery/v2.0/keys");
        provider.publish(&tenant_issuer(tid), &jwks_path, vec![jwk.clone()]);
    }
    let toml = example(
        "entra",
        "https://login.microsoftonline.com",
        &provider,
        &upstream,
    );
    let proxy = TestProxy::start(&toml).await;
    proxy.wait_ready().await;

    let token = |tid: &str, extra: Value| {
        let mut claims = json!({
            "aud": API_APP_ID, "iss": tenant_issuer(tid),
            "iat": now(), "nbf": now(), "exp": now() + 3600,
            "aio": "AWQAm/8TAAAA", "azp": "0e7d8c4b-0000-4000-8000-00000000c11e", "azpacr": "0",
            "oid": "00000000-0000-4000-8000-0000000a11ce", "rh": "0.AAAA",
            "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", "tid": tid,
            "uti": "AbCdEf123456", "ver": "2.0",
        });
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        sign_raw(
            json!({"typ": "JWT", "alg": "RS256", "kid": "nOo3ZDrODXEK1jKWhXslHR_KXEg", "x5t": "nOo3ZDrODXEK1jKWhXslHR_KXEg"}),
            claims,
            &key,
        )
    };
    // A user's delegated token: scp is one space-separated string.
    let user = token(
        CONTOSO,
        json!({"name": "Alice", "preferred_username": "alice@contoso.example", "scp": "Orders.Read User.Read"}),
    );
    let seen = call(&proxy, &upstream, "/orders", &user).await;
    assert_eq!(seen.status, 200);
    assert_eq!(
        header(&seen, "x-auth-subject"),
        Some("00000000-0000-4000-8000-0000000a11ce")
    );
    assert_eq!(header(&seen, "x-auth-tenant"), Some(CONTOSO));
    assert_eq!(header(&seen, "x-auth-user"), Some("alice@contoso.example"));
    assert_eq!(
        header(&seen, "x-auth-scopes"),
        Some("Orders.Read User.Read")
    );
    assert_eq!(call(&proxy, &upstream, "/admin", &user).await.status, 403);

    // An application's token from the second tenant: app roles, no scp.
    let app = token(FABRIKAM, json!({"roles": ["Orders.Admin"], "idtyp": "app"}));
    let seen = call(&proxy, &upstream, "/admin", &app).await;
    assert_eq!(seen.status, 200);
    assert_eq!(header(&seen, "x-auth-roles"), Some("Orders.Admin"));
    assert_eq!(header(&seen, "x-auth-tenant"), Some(FABRIKAM));
    assert_eq!(call(&proxy, &upstream, "/orders", &app).await.status, 403);

    // Any tenant can hold a genuinely signed token for a multi-tenant app, with any of its
    // roles: one that is not listed is refused, whatever its claims say.
    let stranger = "3f2a9c1e-0000-4000-8000-0000000bad00";
    let foreign = token(
        stranger,
        json!({"roles": ["Orders.Admin"], "scp": "Orders.Read"}),
    );
    let refused = call(&proxy, &upstream, "/admin", &foreign).await;
    assert_eq!((refused.status, refused.headers.is_some()), (401, false));
    // Nor can a listed tenant's name in `tid` launder another tenant's issuer.
    let laundered = token(stranger, json!({"tid": CONTOSO, "roles": ["Orders.Admin"]}));
    assert_eq!(
        call(&proxy, &upstream, "/admin", &laundered).await.status,
        401
    );
}

// === Auth0 ===

#[tokio::test]
async fn auth0_namespaced_claims_and_permissions() {
    let (provider, upstream) = (Provider::start().await, Upstream::echo().await);
    let issuer = format!("{}/", provider.base());
    let key = Key::rsa("rsa1", "Yw3ZCnGa4aEzF-9Pb9nWf");
    provider.publish(
        &issuer,
        "/.well-known/jwks.json",
        vec![published(&key, json!({"x5t": "Yw3ZCnGa4aEzF-9Pb9nWf"}))],
    );
    let toml = example(
        "auth0",
        "https://example-shop.eu.auth0.com",
        &provider,
        &upstream,
    );
    let proxy = TestProxy::start(&toml).await;
    proxy.wait_ready().await;

    let token = |extra: Value| {
        let mut claims = json!({
            "iss": issuer, "sub": "auth0|65a1f0c2e4b0d1a2b3c4d5e6",
            "aud": ["https://api.example-shop.com/orders", format!("{issuer}userinfo")],
            "iat": now(), "exp": now() + 86400, "azp": "Xq2T7cA9bLm0Pz4RkS8vWy1J",
            "scope": "openid profile email",
        });
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        sign_raw(
            json!({"alg": "RS256", "typ": "JWT", "kid": "Yw3ZCnGa4aEzF-9Pb9nWf"}),
            claims,
            &key,
        )
    };
    let reader = token(json!({
        "permissions": ["read:orders"],
        "https://example-shop.com/roles": ["customer"],
        "https://example-shop.com/email": "alice@example.com",
    }));
    let seen = call(&proxy, &upstream, "/orders", &reader).await;
    assert_eq!(seen.status, 200);
    assert_eq!(
        header(&seen, "x-auth-subject"),
        Some("auth0|65a1f0c2e4b0d1a2b3c4d5e6")
    );
    assert_eq!(header(&seen, "x-auth-email"), Some("alice@example.com"));
    assert_eq!(header(&seen, "x-auth-roles"), Some("customer"));
    assert_eq!(header(&seen, "x-auth-permissions"), Some("read:orders"));
    assert_eq!(call(&proxy, &upstream, "/admin", &reader).await.status, 403);

    let admin = token(json!({"https://example-shop.com/roles": ["admin"]}));
    assert_eq!(call(&proxy, &upstream, "/admin", &admin).await.status, 200);
    // No permission: denied. The permission as a scope counts too (scope_claims).
    assert_eq!(call(&proxy, &upstream, "/orders", &admin).await.status, 403);
    let scoped = token(json!({"scope": "openid read:orders"}));
    assert_eq!(
        call(&proxy, &upstream, "/orders", &scoped).await.status,
        200
    );
    // A role outside the namespace is not the configured claim.
    let bare = token(json!({"roles": ["admin"], "https://example-shop.com": {"roles": ["admin"]}}));
    assert_eq!(call(&proxy, &upstream, "/admin", &bare).await.status, 403);
}

// === Okta ===

#[tokio::test]
async fn okta_custom_authorization_server_scp_array_and_groups() {
    let (provider, upstream) = (Provider::start().await, Upstream::echo().await);
    let issuer = format!("{}/oauth2/default", provider.base());
    let key = Key::rsa("rsa1", "2d1pXqOTCsFf8QhQJ8eLpDk3JQyDHW3yy5C5Ma4q9Do");
    provider.publish(&issuer, "/oauth2/default/v1/keys", vec![key.jwk()]);
    let toml = example(
        "okta",
        "https://example-shop.okta.com",
        &provider,
        &upstream,
    );
    let proxy = TestProxy::start(&toml).await;
    proxy.wait_ready().await;

    let token = |scp: Value, groups: Value| {
        sign_raw(
            // Okta's access token header: kid and alg, no typ.
            json!({"kid": "2d1pXqOTCsFf8QhQJ8eLpDk3JQyDHW3yy5C5Ma4q9Do", "alg": "RS256"}),
            json!({
                "ver": 1, "jti": "AT.4cR3Q2wQpL0aYt1lQ8V9m2k7vYxWcHh", "iss": issuer,
                "aud": "api://default", "iat": now(), "exp": now() + 3600,
                "cid": "0oa1b2c3d4e5f6g7h8i9", "uid": "00u1a2b3c4d5e6f7g8h9",
                "scp": scp, "auth_time": now(), "sub": "alice@example-shop.com",
                "groups": groups,
            }),
            &key,
        )
    };
    let admin = token(
        json!(["openid", "orders:read"]),
        json!(["Everyone", "Shop Admins"]),
    );
    let seen = call(&proxy, &upstream, "/orders", &admin).await;
    assert_eq!(seen.status, 200);
    assert_eq!(
        header(&seen, "x-auth-subject"),
        Some("00u1a2b3c4d5e6f7g8h9")
    );
    assert_eq!(header(&seen, "x-auth-user"), Some("alice@example-shop.com"));
    assert_eq!(header(&seen, "x-auth-client"), Some("0oa1b2c3d4e5f6g7h8i9"));
    assert_eq!(header(&seen, "x-auth-groups"), Some("Everyone,Shop Admins"));
    assert_eq!(header(&seen, "x-auth-scopes"), Some("openid,orders:read"));
    assert_eq!(call(&proxy, &upstream, "/admin", &admin).await.status, 200);

    let everyone = token(json!(["openid"]), json!(["Everyone"]));
    assert_eq!(
        call(&proxy, &upstream, "/orders", &everyone).await.status,
        403
    );
    assert_eq!(
        call(&proxy, &upstream, "/admin", &everyone).await.status,
        403
    );
}

// === Claim path syntax at check time ===

#[test]
fn check_refuses_a_malformed_claim_path_wherever_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[[issuer]]
name = "auth0"
issuer = "https://example-shop.eu.auth0.com/"
audiences = ["api"]
discovery = true

[identity]
subject_claim = "a..b"
role_claim = "https://example-shop.com/roles"
scope_claims = ["scope", "[\"open"]
headers = { "X-Auth-Roles" = "realm_access.", "X-Auth-Subject" = "sub" }

[[route]]
path = "/"
upstream = "http://orders.internal:8080"
require.claims = { "resource_access[orders].roles" = "admin", "tid" = "t", realm_access.roles = "x" }
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check", "--config", path.to_str().unwrap()])
        .env_remove("GATEHOUSE_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    for key in [
        "identity.subject_claim",
        "identity.role_claim",
        "identity.scope_claims[1]",
        "identity.headers.X-Auth-Roles",
        "route[0].require.claims.resource_access[orders].roles",
    ] {
        assert!(stderr.contains(key), "no error for {key}:\n{stderr}");
    }
    // Unquoted in TOML, the dotted key is a nested table: refused, with the fix.
    assert!(
        stderr.contains("route[0].require.claims.realm_access: the value is a table"),
        "{stderr}"
    );
    assert!(
        stderr.contains(r#"["https://example-shop.com/roles"]"#),
        "the error shows the quoted form:\n{stderr}"
    );
    assert_eq!(
        stderr.matches("claim path").count(),
        5,
        "exactly the five bad paths:\n{stderr}"
    );
}
