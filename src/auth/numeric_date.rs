//! The date claims `exp`, `nbf` and `iat` (RFC 7519 NumericDate), read one way everywhere.
//!
//! A NumericDate is any JSON number of seconds since the epoch: `1893456000`,
//! `1893456000.5` and `1.893456e9` are all dates. Fractions are dropped, so a session or
//! ticket never outlives the second its token names. The whole seconds are those of the
//! number as written: serde_json reads a number with a fraction or exponent as an `f64`,
//! which rounds `1893455999.99999999` to `1893456000.0`, so [`settle`] reads such a claim
//! again from the token's JSON text and stores its exact whole seconds (integers, the usual
//! case, cost nothing extra). [`check`] runs on every token that
//! validates (JWT or introspected): a date claim that is not a number, is negative, or lies
//! past the end of year 9999 makes the token invalid, so every later reader (the WebSocket
//! expiry deadline, ticket lifetimes, the token cache, revocation by `iat`) only ever sees
//! values that time arithmetic can hold.

use serde_json::value::RawValue;
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

/// Replaces each date claim that serde_json read as an `f64` (a fraction or an exponent)
/// with the whole seconds of its JSON text in `payload`, the claims' own JSON, which is
/// only asked for when there is such a claim. A value that is negative or past [`LATEST`]
/// as written is `BadDateClaim`; so is a payload that names a date claim twice, since the
/// claims and the text could then disagree on which one counts.
pub(crate) fn settle(
    claims: &mut Claims,
    payload: impl FnOnce() -> Option<Vec<u8>>,
) -> Result<(), AuthError> {
    let inexact = |claims: &Claims, name: &str| {
        claims
            .get(name)
            .and_then(Value::as_number)
            .is_some_and(serde_json::Number::is_f64)
    };
    if !DATE_CLAIMS.iter().any(|name| inexact(claims, name)) {
        return Ok(());
    }
    #[derive(serde::Deserialize)]
    struct Dates<'a> {
        #[serde(borrow)]
        exp: Option<&'a RawValue>,
        #[serde(borrow)]
        nbf: Option<&'a RawValue>,
        #[serde(borrow)]
        iat: Option<&'a RawValue>,
    }
    let payload = payload().ok_or(AuthError::Malformed)?;
    let dates: Dates<'_> = serde_json::from_slice(&payload).map_err(|_| AuthError::BadDateClaim)?;
    for (name, raw) in [("exp", dates.exp), ("nbf", dates.nbf), ("iat", dates.iat)] {
        if !inexact(claims, name) {
            continue;
        }
        let whole = raw
            .and_then(|raw| whole_seconds(raw.get()))
            .ok_or(AuthError::BadDateClaim)?;
        claims.insert(name.to_string(), whole.into());
    }
    Ok(())
}

/// The whole seconds of a JSON number's text (`-? int frac? exp?`), exactly, without an
/// `f64` in between; `None` when it is negative, past [`LATEST`] or not a number.
fn whole_seconds(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.starts_with('-') {
        return None;
    }
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent),
        None => (text, "0"),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (mantissa, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let unsigned = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    if !digits(int) || !frac.is_none_or(digits) || !digits(unsigned) {
        return None;
    }
    let frac = frac.unwrap_or_default();
    // An exponent too long for an i64 moves the point past every digit either way.
    let shift = exponent
        .parse::<i64>()
        .unwrap_or(if exponent.starts_with('-') {
            i64::MIN / 2
        } else {
            i64::MAX / 2
        });
    // The decimal point sits after `point` of the digits int + frac.
    let point = (int.len() as i64).saturating_add(shift);
    let written = int.len() + frac.len();
    let mut whole = 0u64;
    for at in 0..usize::try_from(point).unwrap_or(0) {
        // Zeros past the written digits keep a zero zero: `0e999999` ends here, not after
        // 999999 rounds; any other value passes LATEST within a dozen.
        if at >= written && whole == 0 {
            break;
        }
        let digit = match at.checked_sub(int.len()) {
            None => int.as_bytes().get(at),
            Some(in_frac) => frac.as_bytes().get(in_frac),
        };
        let digit = u64::from(digit.map_or(0, |d| d - b'0'));
        whole = whole.checked_mul(10)?.checked_add(digit)?;
        if whole > LATEST {
            return None;
        }
    }
    Some(whole)
}

/// The JWT's time window as this module reads it, on the whole seconds [`settle`] left:
/// `exp` and `nbf` with their fractions dropped (jsonwebtoken rounds `N.5` to `N + 1`, so
/// its own checks are off, see `validate`), and an `iat` later than now (with `leeway`),
/// which jsonwebtoken does not check: a token cannot be issued in the future, and
/// revocation by issue time would never cover it.
pub(crate) fn check_window(claims: &Claims, now: u64, leeway: u64) -> Result<(), AuthError> {
    if get(claims, "exp").is_some_and(|exp| exp.saturating_add(leeway) < now) {
        return Err(AuthError::Expired);
    }
    let later_than_now = |name| get(claims, name).is_some_and(|t| t > now.saturating_add(leeway));
    if later_than_now("nbf") || later_than_now("iat") {
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
        assert_eq!(window(r#"{"nbf":1893456005.9}"#), Ok(()));
        assert_eq!(window(r#"{"nbf":1893456006}"#), Err(AuthError::NotYetValid));
    }

    /// serde_json reads these as f64s that round up to the next second (or further).
    #[test]
    fn a_fraction_or_exponent_counts_the_seconds_as_written() {
        let settled = |text: &str| {
            let mut c: Claims = serde_json::from_str(text).unwrap();
            settle(&mut c, || Some(text.as_bytes().to_vec())).map(|()| c)
        };
        let c = settled(
            r#"{"exp":1893455999.99999999,"nbf":189345599999999999e-8,"iat":1.8934559999999999999E+9,"x":1}"#,
        )
        .unwrap();
        for name in DATE_CLAIMS {
            assert_eq!(c[name].as_u64(), Some(1_893_455_999), "{name}");
        }
        assert_eq!(c["x"], 1, "other claims are left alone");
        let c = settled(r#"{"exp":253402300799.999999,"iat":0.999,"nbf":5e-1}"#).unwrap();
        assert_eq!(get(&c, "exp"), Some(LATEST));
        assert_eq!((get(&c, "iat"), get(&c, "nbf")), (Some(0), Some(0)));
        for bad in [
            r#"{"exp":-0.5}"#,
            r#"{"exp":1e300}"#,
            r#"{"iat":99999999999999999999}"#,
            r#"{"nbf":253402300800.0}"#,
            r#"{"exp":2,"exp":1.5}"#,
        ] {
            assert_eq!(settled(bad).err(), Some(AuthError::BadDateClaim), "{bad}");
        }
        // Nothing inexact: the payload is never asked for.
        let mut c: Claims = serde_json::from_str(r#"{"exp":5,"iat":"x","nbf":-1}"#).unwrap();
        assert_eq!(settle(&mut c, || panic!("payload read")), Ok(()));
    }

    #[test]
    fn whole_seconds_reads_every_json_number_spelling() {
        for (text, whole) in [
            ("0", Some(0)),
            ("12", Some(12)),
            ("12.999", Some(12)),
            ("1.2e1", Some(12)),
            ("1.29E+1", Some(12)),
            ("1299e-2", Some(12)),
            ("0.5", Some(0)),
            ("5e-1", Some(0)),
            ("0e999999999999999999999", Some(0)),
            ("1e-999999999999999999999", Some(0)),
            ("1e999999999999999999999", None),
            ("253402300799", Some(LATEST)),
            ("253402300800", None),
            ("-1", None),
            ("1.", None),
            (".5", None),
            ("1e", None),
            ("\"1\"", None),
        ] {
            assert_eq!(whole_seconds(text), whole, "{text}");
        }
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
