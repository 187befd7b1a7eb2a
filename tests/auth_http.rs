//! Authentication over HTTP: the rejection set (each with a positive control), policy,
//! identity headers, and what the upstream may and may not see.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use http::Response;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const INVALID: &str = "Bearer realm=\"gatehouse\", error=\"invalid_token\"";

struct World {
    idp: Idp,
    upstream: Upstream,
    proxy: TestProxy,
}

fn rsa() -> Key {
    Key::rsa("rsa1", "k1")
}

fn ec() -> Key {
    Key::ec("ec1", "e1")
}

async fn world() -> World {
    let idp = Idp::start(&[rsa(), ec()]).await;
    let upstream = Upstream::echo().await;
    let toml = format!(
        r#"
[limits]
max_header_bytes = 131072

[[issuer]]
name = "idp"
issuer = "{iss}"
audiences = ["api"]
discovery = true
algorithms = ["RS256", "ES256"]
leeway = "30s"

[identity]
headers = {{ "X-Auth-Subject" = "sub", "X-Auth-Roles" = "role", "X-Auth-Scopes" = "scope" }}

[[route]]
path = "/api"
upstream = "{up}"
tokens = ["header", "query:access_token", "cookie:at"]

[[route]]
path = "/scoped"
upstream = "{up}"
require.scopes = ["chat"]
require.roles = ["user"]
require.claims = {{ tenant = "acme" }}

[[route]]
path = "/bearer"
upstream = "{up}"
tokens = ["query:access_token", "header"]
upstream_auth = "bearer"

[[route]]
path = "/open"
upstream = "{up}"
auth = "none"
"#,
        iss = idp.issuer(),
        up = upstream.url()
    );
    let proxy = TestProxy::start(&toml).await;
    proxy.wait_ready().await;
    World {
        idp,
        upstream,
        proxy,
    }
}

impl World {
    fn claims(&self, extra: serde_json::Value) -> serde_json::Value {
        claims(&self.idp.issuer(), "api", extra)
    }

    fn good(&self) -> String {
        mint(&rsa(), &self.claims(json!({})))
    }

    async fn assert_refused(&self, what: &str, token: &str) {
        let before = self.upstream.requests().len();
        let answer = bearer(&self.proxy.url("/api/x"), token).await;
        assert_eq!(answer.status, 401, "{what}: {}", answer.body);
        assert_eq!(answer.header("www-authenticate"), Some(INVALID), "{what}");
        assert!(
            !answer.body.contains(token),
            "{what}: the body echoes the token"
        );
        assert!(answer.json()["error"].is_string(), "{what}");
        assert_eq!(
            self.upstream.requests().len(),
            before,
            "{what}: reached the upstream"
        );
    }
}

#[tokio::test]
async fn valid_tokens_pass_and_every_forgery_is_refused() {
    let w = world().await;
    let iss = w.idp.issuer();

    // Positive controls: both allowed algorithms, with and without kid.
    assert_eq!(bearer(&w.proxy.url("/api/x"), &w.good()).await.status, 200);
    assert_eq!(
        bearer(&w.proxy.url("/api/x"), &mint(&ec(), &w.claims(json!({}))))
            .await
            .status,
        200
    );

    let c = w.claims(json!({}));
    for alg in ["none", "None", "NONE", "nOnE"] {
        let unsigned = raw_token(&json!({"alg": alg, "typ": "JWT"}), &c, b"");
        w.assert_refused(&format!("alg {alg}"), &unsigned).await;
        let signed = raw_token(&json!({"alg": alg, "kid": "k1"}), &c, b"not-a-signature");
        w.assert_refused(&format!("alg {alg} with a signature"), &signed)
            .await;
    }

    // Algorithm confusion: HS256 keyed with the RSA public key the proxy trusts.
    let public_pem = std::fs::read(rsa().public_pem_path()).unwrap();
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("k1".into());
    w.assert_refused(
        "HS256 with the RSA public key",
        &mint_with(&h, &EncodingKey::from_secret(&public_pem), &c),
    )
    .await;

    w.assert_refused("unknown kid", &mint(&Key::rsa("rsa2", "unknown"), &c))
        .await;
    w.assert_refused(
        "right kid, other key",
        &mint(&Key::rsa("attacker", "k1"), &c),
    )
    .await;
    w.assert_refused(
        "expired",
        &mint(&rsa(), &w.claims(json!({"exp": now() - 120}))),
    )
    .await;
    w.assert_refused(
        "nbf in the future",
        &mint(&rsa(), &w.claims(json!({"nbf": now() + 120}))),
    )
    .await;
    w.assert_refused(
        "wrong iss",
        &mint(&rsa(), &claims("https://evil.example/", "api", json!({}))),
    )
    .await;
    w.assert_refused(
        "wrong aud",
        &mint(&rsa(), &claims(&iss, "other", json!({}))),
    )
    .await;
    w.assert_refused(
        "missing exp",
        &mint(&rsa(), &w.claims(json!({"exp": null}))),
    )
    .await;
    // Within leeway still passes: a positive control for the expiry checks.
    assert_eq!(
        bearer(
            &w.proxy.url("/api/x"),
            &mint(&rsa(), &w.claims(json!({"exp": now() - 5})))
        )
        .await
        .status,
        200
    );

    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("k1".into());
    h.crit = Some(vec!["https://example.com/ext".into()]);
    w.assert_refused("unknown crit", &mint_with(&h, &rsa().encoding_key(), &c))
        .await;

    // An embedded jwk carrying the attacker's own key must not be used.
    let attacker = Key::rsa("attacker", "k1");
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("k1".into());
    h.jwk = Some(serde_json::from_value(attacker.jwk()).unwrap());
    w.assert_refused("embedded jwk", &mint_with(&h, &attacker.encoding_key(), &c))
        .await;

    // jku pointing at a server we run: it must never be asked.
    let lure = Upstream::start(|_| async {
        Response::new(full(
            json!({"keys": [Key::rsa("attacker", "lure").jwk()]}).to_string(),
        ))
    })
    .await;
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("lure".into());
    h.jku = Some(format!("{}/jwks", lure.url()));
    h.x5u = Some(format!("{}/cert", lure.url()));
    w.assert_refused("jku/x5u", &mint_with(&h, &attacker.encoding_key(), &c))
        .await;
    assert!(
        lure.requests().is_empty(),
        "gatehouse fetched a key URL named by the token"
    );

    let good_es = mint(&ec(), &c);
    let mut parts: Vec<&str> = good_es.split('.').collect();
    let zeros = base64_url(&[0u8; 64]);
    parts[2] = &zeros;
    w.assert_refused("ES256 all-zero signature", &parts.join("."))
        .await;

    let good = w.good();
    w.assert_refused("truncated", &good[..good.len() - 10])
        .await;
    w.assert_refused("two segments", &good[..good.rfind('.').unwrap()])
        .await;
    w.assert_refused("not base64", "abc.d*f.ghi").await;
    w.assert_refused(
        "not JSON",
        &format!("{}.{}.c2ln", base64_url(b"{nope"), base64_url(b"[]")),
    )
    .await;
    w.assert_refused("64 KiB", &"a".repeat(64 * 1024)).await;

    let missing = get(&w.proxy.url("/api/x"), &[]).await;
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.header("www-authenticate"),
        Some("Bearer realm=\"gatehouse\"")
    );
    assert!(
        w.proxy
            .metric("gatehouse_auth_failures_total{reason=\"token_expired\"}")
            .await
            >= 1.0
    );
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `sub` and `jti` are strings (RFC 7519): revocation, sign-out and the access log read
/// them so, and a token with a number there could not be revoked while the upstream still
/// got its `X-Auth-Subject`. Such a token is refused, correctly signed or not.
#[tokio::test]
async fn a_sub_or_jti_that_is_not_a_string_is_refused() {
    let w = world().await;
    // jsonwebtoken itself refuses a `sub` that is an array (`malformed_token`).
    let long = "x".repeat(1025);
    for (extra, reason) in [
        (json!({"sub": 4242}), "bad_id_claim"),
        (json!({"jti": 99}), "bad_id_claim"),
        (json!({"jti": {"id": "x"}}), "bad_id_claim"),
        (json!({"sub": ["a"]}), "malformed_token"),
        (json!({"sub": "", "jti": "j"}), "bad_id_claim"),
        (json!({"jti": ""}), "bad_id_claim"),
        (json!({"sub": long}), "bad_id_claim"),
        (json!({"jti": long}), "bad_id_claim"),
    ] {
        let token = mint(&rsa(), &w.claims(extra.clone()));
        w.assert_refused(&extra.to_string(), &token).await;
        let answer = bearer(&w.proxy.url("/api/x"), &token).await;
        assert_eq!(answer.json()["error"], reason, "{extra}");
    }
    // `null` is no string either; `claims` drops a key set to `null`, so set it after.
    for name in ["sub", "jti"] {
        let mut claims = w.claims(json!({}));
        claims[name] = serde_json::Value::Null;
        let token = mint(&rsa(), &claims);
        w.assert_refused(name, &token).await;
        let answer = bearer(&w.proxy.url("/api/x"), &token).await;
        assert_eq!(answer.json()["error"], "bad_id_claim", "{name}: null");
    }
    // Neither: nothing could revoke it.
    let token = mint(&rsa(), &w.claims(json!({"sub": null, "jti": null})));
    w.assert_refused("neither sub nor jti", &token).await;
    let answer = bearer(&w.proxy.url("/api/x"), &token).await;
    assert_eq!(answer.json()["error"], "missing_claim");
    // The positive control: the same values as strings pass, and one of the two suffices.
    for extra in [json!({"sub": null}), json!({"jti": null})] {
        let token = mint(&rsa(), &w.claims(extra.clone()));
        let answer = bearer(&w.proxy.url("/api/x"), &token).await;
        assert_eq!(answer.status, 200, "{extra}: {}", answer.body);
    }
    let token = mint(&rsa(), &w.claims(json!({"sub": "4242", "jti": "99"})));
    let answer = bearer(&w.proxy.url("/api/x"), &token).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(w.upstream.last().headers["x-auth-subject"], "4242");
}

/// The token's time window as the README states it: `exp` fractions are dropped (not
/// rounded up by the JWT library), an `iat` in the future is not valid yet, and a `crit`
/// member with any value, `null` included, is refused.
#[tokio::test]
async fn the_time_window_and_crit_are_judged_as_documented() {
    let w = world().await;
    // The issuer's leeway is 30 s.
    let past = now() - 31;
    for (extra, reason) in [
        (json!({"exp": past as f64 + 0.5}), "token_expired"),
        (json!({"exp": past as f64 + 0.9}), "token_expired"),
        (json!({"iat": now() + 120}), "token_not_yet_valid"),
    ] {
        let token = mint(&rsa(), &w.claims(extra.clone()));
        w.assert_refused(&extra.to_string(), &token).await;
        let answer = bearer(&w.proxy.url("/api/x"), &token).await;
        assert_eq!(answer.json()["error"], reason, "{extra}");
    }
    let header = json!({"alg": "RS256", "typ": "JWT", "crit": null});
    let token = sign_raw(header, w.claims(json!({})), &rsa());
    w.assert_refused("crit: null", &token).await;
    let answer = bearer(&w.proxy.url("/api/x"), &token).await;
    assert_eq!(answer.json()["error"], "critical_header");
    // The positive controls: within the leeway either way, and no `crit`.
    for extra in [
        json!({"exp": past as f64 + 3.0}),
        json!({"iat": now() + 20}),
    ] {
        let token = mint(&rsa(), &w.claims(extra.clone()));
        assert_eq!(
            bearer(&w.proxy.url("/api/x"), &token).await.status,
            200,
            "{extra}"
        );
    }
    let header = json!({"alg": "RS256", "typ": "JWT"});
    let token = sign_raw(header, w.claims(json!({})), &rsa());
    assert_eq!(bearer(&w.proxy.url("/api/x"), &token).await.status, 200);
}

/// HTTP trims whitespace around a field value and list readers split on `,`: a claim that
/// would reach the upstream as another identity than the one gatehouse judged is left out.
#[tokio::test]
async fn an_identity_the_upstream_would_read_differently_is_left_out() {
    let w = world().await;
    for claims in [
        json!({"sub": " victim"}),
        json!({"sub": "victim\t", "role": ["user", " admin"]}),
        json!({"role": ["user", "x,admin"]}),
        json!({"role": "user,admin"}),
        json!({"role": ["user", {"admin": true}]}),
        json!({"role": 1e2}),
        // A scope header is read on spaces too: `x read` would read as granting `read`.
        json!({"scope": ["chat", "x read"]}),
    ] {
        let token = mint(&rsa(), &w.claims(claims.clone()));
        let answer = bearer(&w.proxy.url("/api/x"), &token).await;
        assert_eq!(answer.status, 200, "{claims}: {}", answer.body);
        let seen = w.upstream.last().headers;
        for (claim, header) in [
            ("sub", "x-auth-subject"),
            ("role", "x-auth-roles"),
            ("scope", "x-auth-scopes"),
        ] {
            if claims.get(claim).is_some() {
                assert!(seen.get(header).is_none(), "{claims}: {header} {seen:?}");
            }
        }
    }
    // The positive control: the same claims, faithfully renderable, pass through.
    let claims =
        json!({"sub": "victim", "role": ["user", "Domain Admins", 7], "scope": "chat read"});
    let token = mint(&rsa(), &w.claims(claims));
    assert_eq!(bearer(&w.proxy.url("/api/x"), &token).await.status, 200);
    let seen = w.upstream.last().headers;
    assert_eq!(seen["x-auth-subject"], "victim");
    assert_eq!(seen["x-auth-roles"], "user,Domain Admins,7");
    assert_eq!(seen["x-auth-scopes"], "chat read");
}

/// The page that sent a request may carry a token in its own URL; `Referer` would hand it
/// to the upstream. Its query loses the same parameters as the request's, on every route.
#[tokio::test]
async fn a_token_in_the_referers_query_never_reaches_the_upstream() {
    let w = world().await;
    let page = "https://app.example/chat";
    for (sent, forwarded) in [
        (
            format!("{page}?access_token=s3cr3t&room=7#top"),
            Some(format!("{page}?room=7#top")),
        ),
        (
            format!("{page}?ACCESS%5Ftoken=s3cr3t"),
            Some(page.to_string()),
        ),
        (format!("{page}?room=7"), Some(format!("{page}?room=7"))),
        (page.to_string(), Some(page.to_string())),
        // Unreadable with a query: it cannot be judged, so it goes.
        (format!("{page}?access_token=s3cr3t&x=\u{e9}"), None),
    ] {
        let answer = get(&w.proxy.url("/open/x"), &[("referer", &sent)]).await;
        assert_eq!(answer.status, 200, "{sent}");
        let seen = w.upstream.last();
        let referer = seen
            .headers
            .get("referer")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        assert_eq!(referer, forwarded, "{sent}");
    }
}

#[tokio::test]
async fn policy_answers_403_with_the_required_scope_and_200_when_met() {
    let w = world().await;
    let all = json!({"scope": "chat read", "role": ["user"], "tenant": "acme"});
    let ok = mint(&rsa(), &w.claims(all.clone()));
    assert_eq!(bearer(&w.proxy.url("/scoped"), &ok).await.status, 200);
    for (what, patch) in [
        ("scope", json!({"scope": "read"})),
        ("role", json!({"role": "guest"})),
        ("claim", json!({"tenant": "other"})),
    ] {
        let mut c = all.clone();
        c.as_object_mut()
            .unwrap()
            .extend(patch.as_object().unwrap().clone());
        let answer = bearer(&w.proxy.url("/scoped"), &mint(&rsa(), &w.claims(c))).await;
        assert_eq!(answer.status, 403, "missing {what}");
        assert_eq!(
            answer.header("www-authenticate"),
            Some("Bearer realm=\"gatehouse\", error=\"insufficient_scope\", scope=\"chat\""),
            "missing {what}"
        );
    }
    let answer = bearer(
        &w.proxy.url("/scoped"),
        &mint(
            &rsa(),
            &w.claims(json!({"scp": ["chat"], "role": "user", "tenant": "acme"})),
        ),
    )
    .await;
    assert_eq!(answer.status, 200, "scp array counts as scopes");
}

#[tokio::test]
async fn the_upstream_sees_identity_but_never_tokens_or_spoofed_headers() {
    let w = world().await;
    let token = mint(
        &rsa(),
        &w.claims(json!({"sub": "alice", "role": ["user", "ops"], "scope": "chat"})),
    );

    // Spoofed identity headers in any case, on a raw socket so the case reaches the proxy.
    let request = format!(
        "GET /api/x?keep=1&access_token={token} HTTP/1.1\r\nHost: edge.example\r\nX-AUTH-SUBJECT: mallory\r\n\
         x-auth-roles: admin\r\nX-Auth-Scopes: all\r\nCookie: at=nope; theme=dark\r\nConnection: close\r\n\r\n"
    );
    let mut socket = tokio::net::TcpStream::connect(w.proxy.addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    socket.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    let seen = w.upstream.last();
    assert_eq!(
        seen.uri, "/api/x?keep=1",
        "the query token reached the upstream URI"
    );
    let h = |name: &str| {
        seen.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(h("x-auth-subject"), ["alice"]);
    assert_eq!(h("x-auth-roles"), ["user,ops"]);
    assert_eq!(h("x-auth-scopes"), ["chat"]);
    assert!(h("authorization").is_empty());
    assert_eq!(h("x-forwarded-host"), ["edge.example"]);
    assert_eq!(h("x-forwarded-proto"), ["http"]);
    assert_eq!(h("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(h("x-request-id").len(), 1);

    // Header token: Authorization is dropped; cookie token: that cookie is dropped, others kept.
    bearer(&w.proxy.url("/api/y"), &token).await;
    assert!(w.upstream.last().headers.get("authorization").is_none());
    let answer = get(
        &w.proxy.url("/api/z"),
        &[("cookie", &format!("theme=dark; at={token}"))],
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(w.upstream.last().headers["cookie"], "theme=dark");

    // upstream_auth = "bearer": a query token moves into the header, out of the URI.
    let answer = get(
        &w.proxy
            .url(&format!("/bearer/hub?id=7&access_token={token}")),
        &[],
    )
    .await;
    assert_eq!(answer.status, 200);
    let seen = w.upstream.last();
    assert_eq!(seen.uri, "/bearer/hub?id=7");
    assert_eq!(
        seen.headers["authorization"],
        format!("Bearer {token}").as_str()
    );

    // auth = "none": no token needed, and spoofed identity headers still never pass.
    let answer = get(&w.proxy.url("/open/page"), &[("x-auth-subject", "mallory")]).await;
    assert_eq!(answer.status, 200);
    assert!(w.upstream.last().headers.get("x-auth-subject").is_none());
}

#[tokio::test]
async fn routes_match_whole_segments_and_unknown_paths_are_404() {
    let w = world().await;
    assert_eq!(get(&w.proxy.url("/apix"), &[]).await.status, 404);
    assert_eq!(get(&w.proxy.url("/"), &[]).await.status, 404);
    assert_eq!(get(&w.proxy.url("/open"), &[]).await.status, 200);
    assert_eq!(get(&w.proxy.url("/api"), &[]).await.status, 401);
    let request_id = get(&w.proxy.url("/apix"), &[("x-request-id", "trace-42")]).await;
    assert_eq!(request_id.header("x-request-id"), Some("trace-42"));
}

/// Found by fuzzing (fuzz/README.md): each of these once let a validated token through.
#[tokio::test]
async fn a_token_never_reaches_the_upstream_from_a_second_cookie_or_a_plain_request_subprotocol() {
    let idp = Idp::start(&[rsa()]).await;
    let upstream = Upstream::echo().await;
    let toml = format!(
        r#"
[[issuer]]
name = "idp"
issuer = "{iss}"
audiences = ["api"]
discovery = true
algorithms = ["RS256"]

[[route]]
path = "/cookies"
upstream = "{up}"
tokens = ["cookie:session_token", "cookie:legacy_token"]

[[route]]
path = "/ws"
upstream = "{up}"
websocket = true
tokens = ["subprotocol"]
"#,
        iss = idp.issuer(),
        up = upstream.url()
    );
    let proxy = TestProxy::start(&toml).await;
    proxy.wait_ready().await;
    let token = mint(&rsa(), &claims(&idp.issuer(), "api", json!({})));

    let answer = get(
        &proxy.url("/cookies/x"),
        &[("cookie", &format!("theme=dark; legacy_token={token}"))],
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(upstream.last().headers["cookie"], "theme=dark");

    let protocols = format!("chat, bearer.{token}");
    let answer = get(
        &proxy.url("/ws/plain"),
        &[("sec-websocket-protocol", &protocols)],
    )
    .await;
    assert_eq!(answer.status, 200);
    let seen = upstream.last();
    assert_eq!(seen.headers["sec-websocket-protocol"], "chat");
    assert!(!format!("{:?}", seen.headers).contains(&token));
}
