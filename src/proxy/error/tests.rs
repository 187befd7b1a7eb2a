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
        ProxyError::Upstream(UpstreamError::Timeout)
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
        ProxyError::MethodNotAllowed,
        ProxyError::Auth(AuthError::Expired),
        ProxyError::Auth(AuthError::KeysUnavailable),
        ProxyError::Upstream(UpstreamError::BodyStalled),
        ProxyError::Upstream(UpstreamError::Timeout),
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
