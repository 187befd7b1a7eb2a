//! The date claims `exp`, `nbf` and `iat` (RFC 7519 NumericDate), read one way everywhere.
//!
//! A NumericDate is any JSON number of seconds since the epoch: `1893456000`,
//! `1893456000.5` and `1.893456e9` are all dates. Fractions are dropped, so a session or
//! ticket never outlives the second its token names. [`check`] runs on every token that
//! validates (JWT or introspected): a date claim that is not a number, is negative, or lies
//! past the end of year 9999 makes the token invalid, so every later reader (the WebSocket
//! expiry deadline, ticket lifetimes, the token cache, revocation by `iat`) only ever sees
//! values that time arithmetic can hold.

use serde_json::Value;

use crate::auth::claims::Claims;
use crate::auth::error::AuthError;

/// 9999-12-31T23:59:59Z: later than any real token, and far inside what `Duration`,
/// `Instant` and `SystemTime` can add.
pub(crate) const LATEST: u64 = 253_402_300_799;

const DATE_CLAIMS: [&str; 3] = ["exp", "nbf", "iat"];

/// Refuses claims whose `exp`, `nbf` or `iat` is present but not a usable date.
pub(crate) fn check(claims: &Claims) -> Result<(), AuthError> {
    for name in DATE_CLAIMS {
        if claims.get(name).is_some_and(|v| seconds(v).is_none()) {
            return Err(AuthError::BadDateClaim);
        }
    }
    Ok(())
}

/// The JWT's time window as this module reads it: `exp` with its fraction dropped
/// (jsonwebtoken rounds `N.5` up to `N + 1`, so its own check lets such a token live a
/// second longer than it names), and an `iat` later than now (with `leeway`), which
/// jsonwebtoken does not check: a token cannot be issued in the future, and revocation
/// by issue time would never cover it.
pub(crate) fn check_window(claims: &Claims, now: u64, leeway: u64) -> Result<(), AuthError> {
    if get(claims, "exp").is_some_and(|exp| exp.saturating_add(leeway) < now) {
        return Err(AuthError::Expired);
    }
    if get(claims, "iat").is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(AuthError::NotYetValid);
    }
    Ok(())
}

/// The claim in whole seconds; `None` when absent (or unusable, which [`check`] refuses).
pub(crate) fn get(claims: &Claims, name: &str) -> Option<u64> {
    claims.get(name).and_then(seconds)
}

fn seconds(value: &Value) -> Option<u64> {
    let number = value.as_number()?;
    let whole = match (number.as_u64(), number.as_f64()) {
        (Some(n), _) => n,
        // The range test is also false for NaN; inside it the cast is exact.
        (None, Some(f)) if (0.0..=LATEST as f64).contains(&f) => f.floor() as u64,
        _ => return None,
    };
    (whole <= LATEST).then_some(whole)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Claims {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn every_json_number_kind_is_a_date() {
        let text = r#"{"a":1893456000,"b":1893456000.5,"c":1.893456e9,"d":0,"e":253402300799}"#;
        let c: Claims = serde_json::from_str(text).unwrap();
        assert_eq!(get(&c, "a"), Some(1_893_456_000));
        assert_eq!(get(&c, "b"), Some(1_893_456_000));
        assert_eq!(get(&c, "c"), Some(1_893_456_000));
        assert_eq!(get(&c, "d"), Some(0));
        assert_eq!(get(&c, "e"), Some(LATEST));
        assert_eq!(get(&c, "missing"), None);
    }

    #[test]
    fn the_window_drops_fractions_and_refuses_tokens_from_the_future() {
        let now = 1_893_456_000;
        let window = |text: &str| check_window(&serde_json::from_str(text).unwrap(), now, 5);
        assert_eq!(window(r#"{"exp":1893455995}"#), Ok(()));
        assert_eq!(window(r#"{"exp":1893455994.9}"#), Err(AuthError::Expired));
        assert_eq!(window(r#"{"exp":1893455994.5}"#), Err(AuthError::Expired));
        assert_eq!(window(r#"{"iat":1893456005.9}"#), Ok(()));
        assert_eq!(window(r#"{"iat":1893456006}"#), Err(AuthError::NotYetValid));
    }

    #[test]
    fn absurd_dates_make_the_token_invalid() {
        for bad in [
            json!(-1),
            json!(-0.5),
            json!(253_402_300_800_u64),
            json!(u64::MAX),
            json!(1e300),
            json!(1.8e19),
            json!("1893456000"),
            json!(null),
            json!([1]),
        ] {
            for name in DATE_CLAIMS {
                let c = Claims::from_iter([(name.to_string(), bad.clone())]);
                assert_eq!(check(&c), Err(AuthError::BadDateClaim), "{name}: {bad}");
                assert_eq!(get(&c, name), None);
            }
        }
        assert_eq!(
            check(&claims(json!({"exp": 1.5, "iat": 1, "x": -1}))),
            Ok(())
        );
        assert_eq!(check(&claims(json!({}))), Ok(()));
    }
}
