//! Reading an RFC 7662 answer strictly: `active` is required, and the time claims an active
//! answer carries must be numbers we can trust, or the whole answer is refused (the caller
//! then gets 503, never a token that lives forever).

use crate::auth::claims::{unix_now, Claims};

/// An `exp` further ahead than this is no expiry at all (a millisecond timestamp read as
/// seconds, or a placeholder): the answer is refused rather than trusted for ever.
pub(super) const EXP_HORIZON_SECS: u64 = 10 * 365 * 24 * 3600;

/// What one endpoint said.
#[derive(Debug)]
pub(super) enum Answer {
    Active(Claims),
    Inactive,
}

/// Why an answer is refused; logged, never shown to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum BadAnswer {
    #[error("not a JSON object")]
    NotJson,
    #[error("no boolean `active`")]
    NoActive,
    #[error("`{0}` is not a NumericDate")]
    NotADate(&'static str),
    #[error("`exp` is further ahead than any token lives")]
    BeyondHorizon,
}

/// An active token past `exp` or before `nbf` counts as inactive whatever the endpoint
/// says. `exp` and `nbf`, when present, must be non-negative numbers (RFC 7519 NumericDate:
/// fractions allowed) and are stored back as whole seconds, rounded toward the stricter
/// side, so everything downstream reads them as integers.
pub(super) fn parse(bytes: &[u8]) -> Result<Answer, BadAnswer> {
    let mut claims: Claims = serde_json::from_slice(bytes).map_err(|_| BadAnswer::NotJson)?;
    let active = claims
        .remove("active")
        .and_then(|v| v.as_bool())
        .ok_or(BadAnswer::NoActive)?;
    if !active || !an_access_token(&claims) {
        return Ok(Answer::Inactive);
    }
    let now = unix_now();
    let exp = numeric_date(&claims, "exp")?.map(f64::floor);
    let nbf = numeric_date(&claims, "nbf")?.map(f64::ceil);
    if exp.is_some_and(|e| e > (now + EXP_HORIZON_SECS) as f64) {
        return Err(BadAnswer::BeyondHorizon);
    }
    // Both are now whole, non-negative and below 2^53 (or far ahead, for nbf): exact as u64.
    let whole = |v: f64| v.min(u64::MAX as f64) as u64;
    let exp = exp.map(whole);
    let nbf = nbf.map(whole);
    if let Some(exp) = exp {
        claims.insert("exp".into(), exp.into());
    }
    if let Some(nbf) = nbf {
        claims.insert("nbf".into(), nbf.into());
    }
    let expired = exp.is_some_and(|e| e <= now);
    let early = nbf.is_some_and(|n| n > now);
    Ok(if expired || early {
        Answer::Inactive
    } else {
        Answer::Active(claims)
    })
}

/// Whether an active answer's `aud` (a string or an array of them) names one of
/// `audiences`; any answer does when none are configured. RFC 7662 §4 leaves this check to
/// the resource server: without it, a token the same authorization server issued for
/// another API would pass here.
pub(super) fn for_audience(claims: &Claims, audiences: &[String]) -> bool {
    if audiences.is_empty() {
        return true;
    }
    let listed = |value: &serde_json::Value| {
        value
            .as_str()
            .is_some_and(|a| audiences.iter().any(|w| w == a))
    };
    match claims.get("aud") {
        Some(serde_json::Value::Array(values)) => values.iter().any(listed),
        Some(value) => listed(value),
        None => false,
    }
}

/// Binds an active answer to the issuer its endpoint speaks for. With `issuer` set, another
/// `iss` is not a token for us, and an answer without one gets it: a route pinned with
/// `require.claims = { iss = ... }` then reads introspected tokens as it reads JWTs, and a
/// partner's endpoint cannot meet a pin to another issuer by naming it. Without `issuer`,
/// the answer's `iss` stands as the endpoint wrote it.
pub(super) fn bind_issuer(claims: &mut Claims, issuer: Option<&str>) -> bool {
    let Some(issuer) = issuer else {
        return true;
    };
    match claims.get("iss") {
        None => {
            claims.insert("iss".into(), issuer.into());
            true
        }
        Some(named) => named.as_str() == Some(issuer),
    }
}

/// gatehouse asks about access tokens (`token_type_hint=access_token`), but a hint binds
/// no server: an answer that says it described another kind of token is no bearer
/// credential for an API, and counts as inactive. The spellings servers use: `token_type`
/// `refresh_token` or `id_token` (also as RFC 8693 URNs), Keycloak's `typ` `Refresh`,
/// `Offline` or `ID`, and a `token_use` (Ory Hydra, Amazon Cognito) other than an access
/// token's.
fn an_access_token(claims: &Claims) -> bool {
    let text = |name: &str| claims.get(name).and_then(serde_json::Value::as_str);
    let is_any = |value: &str, names: &[&str]| names.iter().any(|n| value.eq_ignore_ascii_case(n));
    let other_type = text("token_type").is_some_and(|t| {
        let t = t
            .strip_prefix("urn:ietf:params:oauth:token-type:")
            .unwrap_or(t);
        is_any(t, &["refresh_token", "refresh", "id_token"])
    });
    let other_typ = text("typ").is_some_and(|t| is_any(t, &["refresh", "offline", "id"]));
    let other_use = claims.get("token_use").is_some_and(|u| {
        !u.as_str()
            .is_some_and(|u| is_any(u, &["access_token", "access"]))
    });
    !(other_type || other_typ || other_use)
}

fn numeric_date(claims: &Claims, name: &'static str) -> Result<Option<f64>, BadAnswer> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    match value.as_f64() {
        Some(v) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
        _ => Err(BadAnswer::NotADate(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audience_is_a_string_or_an_array_and_none_listed_takes_any() {
        let claims = |aud: serde_json::Value| {
            active(&serde_json::json!({"active": true, "aud": aud}).to_string())
        };
        let wanted = ["orders".to_string()];
        assert!(for_audience(&claims("orders".into()), &wanted));
        assert!(for_audience(
            &claims(serde_json::json!(["x", "orders"])),
            &wanted
        ));
        assert!(!for_audience(&claims("Orders".into()), &wanted));
        assert!(!for_audience(
            &claims(serde_json::json!([7, "other"])),
            &wanted
        ));
        assert!(!for_audience(&active(r#"{"active": true}"#), &wanted));
        assert!(for_audience(&active(r#"{"active": true}"#), &[]));
    }

    #[test]
    fn an_endpoints_issuer_binds_its_answers() {
        let mut bare = active(r#"{"active": true}"#);
        assert!(bind_issuer(&mut bare, Some("https://as.example/")));
        assert_eq!(bare["iss"], "https://as.example/");
        let mut other = active(r#"{"active": true, "iss": "https://idp.example/"}"#);
        assert!(!bind_issuer(&mut other, Some("https://as.example/")));
        assert!(bind_issuer(&mut other, None));
        assert_eq!(other["iss"], "https://idp.example/");
    }

    #[test]
    fn a_refresh_token_is_never_active() {
        for text in [
            r#"{"active": true, "token_type": "refresh_token"}"#,
            r#"{"active": true, "token_type": "Refresh"}"#,
            r#"{"active": true, "typ": "Offline"}"#,
            r#"{"active": true, "token_use": "refresh_token"}"#,
            r#"{"active": true, "token_use": "id"}"#,
            r#"{"active": true, "token_use": null}"#,
            r#"{"active": true, "token_type": "urn:ietf:params:oauth:token-type:refresh_token"}"#,
            r#"{"active": true, "token_type": "id_token"}"#,
        ] {
            assert!(
                matches!(parse(text.as_bytes()), Ok(Answer::Inactive)),
                "{text}"
            );
        }
        active(r#"{"active": true, "token_type": "Bearer", "typ": "Bearer"}"#);
        active(r#"{"active": true, "token_use": "access_token"}"#);
        active(r#"{"active": true, "token_use": "access"}"#);
        active(
            r#"{"active": true, "token_type": "urn:ietf:params:oauth:token-type:access_token"}"#,
        );
    }

    fn active(text: &str) -> Claims {
        match parse(text.as_bytes()) {
            Ok(Answer::Active(c)) => c,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn answers_parse_per_rfc_7662() {
        let later = unix_now() + 60;
        let c = active(&format!(
            r#"{{"active":true,"sub":"a","scope":"x y","exp":{later}}}"#
        ));
        assert!(c["sub"] == "a" && !c.contains_key("active"));
        assert!(matches!(
            parse(br#"{"active":false}"#),
            Ok(Answer::Inactive)
        ));
        assert!(matches!(
            parse(br#"{"active":true,"exp":1}"#),
            Ok(Answer::Inactive)
        ));
        assert_eq!(
            parse(br#"{"sub":"a"}"#).unwrap_err(),
            BadAnswer::NoActive,
            "active is required"
        );
        assert_eq!(
            parse(br#"{"active":"yes"}"#).unwrap_err(),
            BadAnswer::NoActive
        );
        assert_eq!(parse(b"<html>").unwrap_err(), BadAnswer::NotJson);
    }

    #[test]
    fn time_claims_must_be_numeric_dates_within_the_horizon() {
        for exp in [r#""never""#, "null", "-5", "true", r#"{"a":1}"#] {
            let text = format!(r#"{{"active":true,"exp":{exp}}}"#);
            assert_eq!(
                parse(text.as_bytes()).unwrap_err(),
                BadAnswer::NotADate("exp"),
                "{exp}"
            );
        }
        for exp in ["1.5e12", "1e300", "18446744073709551615"] {
            let text = format!(r#"{{"active":true,"exp":{exp}}}"#);
            assert_eq!(
                parse(text.as_bytes()).unwrap_err(),
                BadAnswer::BeyondHorizon,
                "{exp}"
            );
        }
        assert_eq!(
            parse(br#"{"active":true,"nbf":"soon"}"#).unwrap_err(),
            BadAnswer::NotADate("nbf")
        );
        // Fractions are NumericDates: stored as whole seconds, rounded to the strict side.
        let now = unix_now();
        let c = active(&format!(
            r#"{{"active":true,"exp":{}.75,"nbf":{}.25}}"#,
            now + 100,
            now - 10
        ));
        assert_eq!(c["exp"].as_u64(), Some(now + 100));
        assert_eq!(c["nbf"].as_u64(), Some(now - 9));
        assert!(matches!(
            parse(format!(r#"{{"active":true,"nbf":{}.5}}"#, now + 100).as_bytes()),
            Ok(Answer::Inactive)
        ));
        // An inactive answer's time claims do not matter.
        assert!(matches!(
            parse(br#"{"active":false,"exp":"never"}"#),
            Ok(Answer::Inactive)
        ));
    }
}
