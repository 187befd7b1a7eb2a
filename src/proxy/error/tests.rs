use super::*;

fn challenge(e: AuthError) -> (StatusCode, Option<String>) {
    let r = ProxyError::Auth(e).into_response();
    let h = r
        .headers()
        .get(WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    (r.status(), h)
}

#[test]
fn missing_token_gets_a_challenge_without_error_code() {
    let (status, header) = challenge(AuthError::Missing);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(header.as_deref(), Some("Bearer realm=\"gatehouse\""));
}

#[test]
fn invalid_token_says_invalid_token() {
    for e in [
        AuthError::Expired,
        AuthError::BadSignature,
        AuthError::TooLarge,
        AuthError::UnknownKey,
    ] {
        let (status, header) = challenge(e);
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            header.as_deref(),
            Some("Bearer realm=\"gatehouse\", error=\"invalid_token\"")
        );
    }
}

#[test]
fn forbidden_names_the_required_scope() {
    let (status, header) = challenge(AuthError::Forbidden {
        required_scopes: "chat admin".into(),
    });
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        header.as_deref(),
        Some("Bearer realm=\"gatehouse\", error=\"insufficient_scope\", scope=\"chat admin\"")
    );
}

#[test]
fn upstream_timeout_is_504_and_no_route_404() {
    assert_eq!(
        ProxyError::Upstream(UpstreamError::Timeout("1s".into()))
            .into_response()
            .status(),
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(
        ProxyError::NoRoute.into_response().status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn every_response_carries_its_rows_status_and_code() {
    use http_body_util::BodyExt;
    let errors = [
        ProxyError::NoRoute,
        ProxyError::Revoked,
        ProxyError::StoreUnavailable,
        ProxyError::Ticket(TicketError::Unavailable),
        ProxyError::Ticket(TicketError::WrongRoute),
        ProxyError::BodyTimeout,
        ProxyError::BodyTooLarge,
        ProxyError::MethodNotAllowed,
        ProxyError::WebSocketVersion,
        ProxyError::Auth(AuthError::Expired),
        ProxyError::Auth(AuthError::KeysUnavailable),
        ProxyError::Upstream(UpstreamError::BodyStalled),
        ProxyError::Upstream(UpstreamError::Timeout("1s".into())),
    ];
    for error in errors {
        let row = error.reason();
        let response = error.into_response();
        assert_eq!(response.status(), row.status, "{}", row.code);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], row.code);
    }
}

#[test]
fn a_revoked_token_and_a_store_outage_are_not_upstream_errors() {
    let revoked = ProxyError::from(RevocationError::Revoked).reason();
    assert_eq!(
        (revoked.code, revoked.counted),
        ("token_revoked", Counted::AuthFailure)
    );
    let down = ProxyError::from(RevocationError::Unavailable).reason();
    assert_eq!(
        (down.code, down.status.as_u16()),
        ("store_unavailable", 503)
    );
}

/// Every refusal the reason table can make, one per row and reason code.
fn every_refusal() -> Vec<ProxyError> {
    use crate::canonical::Refusal;
    use crate::proxy::pre_auth::OverBudget;
    let auth = [
        AuthError::Missing,
        AuthError::TooLarge,
        AuthError::Malformed,
        AuthError::DisallowedAlgorithm,
        AuthError::CriticalHeader,
        AuthError::WrongType,
        AuthError::UnknownIssuer,
        AuthError::UnknownKey,
        AuthError::BadSignature,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::WrongAudience,
        AuthError::MissingClaim,
        AuthError::BadDateClaim,
        AuthError::BadIdClaim,
        AuthError::KeysUnavailable,
        AuthError::Inactive,
        AuthError::IntrospectionUnavailable,
        AuthError::Forbidden {
            required_scopes: String::new(),
        },
    ];
    let unbuildable = http::Response::builder().header("a\nb", "x").body(()).err();
    let mut upstream = vec![
        UpstreamError::Connect("refused".into()),
        UpstreamError::Failed("reset".into()),
        UpstreamError::Timeout("1s".into()),
        UpstreamError::BodyTooLarge { sent: false },
        UpstreamError::BadSubprotocol,
        UpstreamError::BodyStalled,
        UpstreamError::BodyBroken,
        UpstreamError::NoConnection,
        UpstreamError::Negotiate(crate::upstream::negotiate::NegotiateError::NotJson),
    ];
    upstream.extend(unbuildable.map(UpstreamError::BadRequest));
    let mut all = vec![
        ProxyError::NoRoute,
        ProxyError::Ticket(TicketError::Invalid),
        ProxyError::Ticket(TicketError::WrongRoute),
        ProxyError::Ticket(TicketError::Unavailable),
        ProxyError::OriginNotAllowed,
        ProxyError::RateLimited {
            retry_after_secs: 1,
            limit: "requests_per_ip",
        },
        ProxyError::BadRequest("x"),
        ProxyError::MethodNotAllowed,
        ProxyError::WebSocketVersion,
        ProxyError::Revoked,
        ProxyError::StoreUnavailable,
        ProxyError::OverBudget(OverBudget::Holder),
        ProxyError::OverBudget(OverBudget::All),
        ProxyError::BodyTimeout,
        ProxyError::BodyTooLarge,
    ];
    for refusal in [
        Refusal::Backslash,
        Refusal::ControlByte,
        Refusal::NotOriginForm,
        Refusal::Connect,
    ] {
        all.push(ProxyError::Path(refusal));
    }
    all.extend(auth.into_iter().map(ProxyError::Auth));
    all.extend(upstream.into_iter().map(ProxyError::Upstream));
    all
}

fn readme_section(heading: &str) -> &'static str {
    let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
    let start = readme.find(heading).unwrap_or(0);
    let rest = &readme[start + heading.len()..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// The README's Responses table lists every reason code with its status, and the
/// auth-failure metric's row every code counted there.
#[test]
fn the_readme_lists_every_reason_code_with_its_status() {
    let table = readme_section("\n## Responses\n");
    let metrics = readme_section("\n## Admin endpoints and metrics");
    let failures = metrics
        .lines()
        .find(|l| l.starts_with("| `gatehouse_auth_failures_total`"))
        .unwrap_or_default();
    for error in every_refusal() {
        let row = error.reason();
        let (status, code) = (
            format!("| `{}` |", row.status.as_u16()),
            format!("`{}`", row.code),
        );
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(&status) && l.contains(&code)),
            "README Responses has no {status} row naming {code}"
        );
        if row.counted == Counted::AuthFailure {
            assert!(
                failures.contains(&code),
                "auth_failures_total does not list {code}"
            );
        }
    }
}

#[test]
fn the_readme_lists_every_websocket_upgrade_result() {
    let metrics = readme_section("\n## Admin endpoints and metrics");
    let upgrades = metrics
        .lines()
        .find(|l| l.starts_with("| `gatehouse_websocket_upgrades_total`"))
        .unwrap_or_default();
    for result in crate::metrics::UPGRADE_RESULTS {
        assert!(upgrades.contains(&format!("`{result}`")), "{result}");
    }
}
