use super::*;

fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut b = http::Request::get(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn sources() -> Vec<TokenSource> {
    vec![
        TokenSource::Header,
        TokenSource::Query("access_token".into()),
        TokenSource::Cookie("at".into()),
    ]
}

fn found(p: &Parts) -> Option<(String, Origin)> {
    extract(p, &sources(), 100)
        .unwrap()
        .map(|f| (f.token.expose().to_string(), f.origin))
}

#[test]
fn sources_are_tried_in_order() {
    let p = parts(
        "/x?access_token=q.q.q",
        &[("authorization", "Bearer h.h.h"), ("cookie", "at=c.c.c")],
    );
    assert_eq!(found(&p), Some(("h.h.h".into(), Origin::Header)));
    let p = parts("/x?a=1&access_token=q.q.q", &[("cookie", "x=1; at=c.c.c")]);
    assert_eq!(found(&p), Some(("q.q.q".into(), Origin::Query)));
    let p = parts("/x", &[("cookie", "x=1"), ("cookie", "at=c.c.c")]);
    assert_eq!(found(&p), Some(("c.c.c".into(), Origin::Cookie)));
    assert_eq!(found(&parts("/x?token=1", &[])), None);
}

#[test]
fn bearer_scheme_is_case_insensitive_and_other_schemes_are_ignored() {
    assert_eq!(
        found(&parts("/", &[("authorization", "bEaReR  a.b.c")])),
        Some(("a.b.c".into(), Origin::Header))
    );
    assert_eq!(
        found(&parts("/", &[("authorization", "Basic dXNlcjpwYXNz")])),
        None
    );
    let empty = parts("/", &[("authorization", "Bearer ")]);
    assert_eq!(
        extract(&empty, &sources(), 100).unwrap_err(),
        AuthError::Malformed
    );
    // hyper trims the trailing space, so `Bearer ` arrives as `Bearer`; a tab is no
    // separator. Both are malformed, never a reason to try the next source's token.
    for value in ["Bearer", "bearer", "Bearer\ta.b.c", "Bearer\t"] {
        let p = parts("/x?access_token=q.q.q", &[("authorization", value)]);
        assert_eq!(
            extract(&p, &sources(), 100).err(),
            Some(AuthError::Malformed),
            "{value:?}"
        );
    }
    assert_eq!(
        found(&parts("/", &[("authorization", "Bearerish a.b.c")])),
        None
    );
}

#[test]
fn query_values_are_percent_decoded() {
    let p = parts("/x?access_token=a%2Eb.c", &[]);
    assert_eq!(found(&p), Some(("a.b.c".into(), Origin::Query)));
}

#[test]
fn oversized_and_malformed_tokens_are_refused() {
    let big = "a".repeat(101);
    let p = parts("/", &[("authorization", &format!("Bearer {big}"))]);
    assert_eq!(
        extract(&p, &sources(), 100).unwrap_err(),
        AuthError::TooLarge
    );
    let p = parts("/x?access_token=a%00b", &[]);
    assert_eq!(
        extract(&p, &sources(), 100).unwrap_err(),
        AuthError::Malformed
    );
    let p = parts(
        "/",
        &[("authorization", "Bearer a"), ("authorization", "Bearer b")],
    );
    assert_eq!(
        extract(&p, &sources(), 100).unwrap_err(),
        AuthError::Malformed
    );
}

#[test]
fn the_b64token_check_takes_exactly_the_rfc_6750_characters() {
    for b in 0..=255u8 {
        let rfc = b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
        assert_eq!(is_b64token_byte(b), rfc, "byte {b:#04x}");
    }
    // One bad byte anywhere in a long token, in every block position, is found.
    let good = "aZ09-._~+/=".repeat(70);
    assert!(is_b64token(good.as_bytes()));
    for at in [0, 31, 32, 33, 500, good.len() - 1] {
        for bad in [b' ', b'%', b'\xc3', b'@', b'[', b'`', b'{'] {
            let mut token = good.clone().into_bytes();
            token[at] = bad;
            assert!(!is_b64token(&token), "byte {bad:#04x} at {at}");
        }
    }
}

/// The folded test of a b64token byte takes exactly RFC 6750's set, of all 256 bytes.
#[test]
fn b64token_bytes_are_exactly_rfc_6750s() {
    for b in 0..=255u8 {
        let rfc = b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
        assert_eq!(is_b64token_byte(b), rfc, "{b:#04x}");
        assert_eq!(is_b64token(&[b; 40]), rfc, "{b:#04x}");
    }
    // One bad byte anywhere, in a whole block or in the tail, spoils the token.
    for at in 0..70 {
        let mut token = [b'a'; 70];
        token[at] = b',';
        assert!(!is_b64token(&token), "{at}");
    }
}

/// A token the cache holds skips only the character check: the size limit still comes
/// first, an empty token is never asked about, and any other token is checked as ever.
#[test]
fn a_known_token_skips_only_the_character_check() {
    let p = parts("/x", &[("authorization", "Bearer a.b.c")]);
    let mut asked = Vec::new();
    let known = |raw: &str, origin: Origin| {
        asked.push((raw.to_string(), origin));
        true
    };
    let found = extract_unless_known(&p, &sources(), 100, known).unwrap();
    assert_eq!(found.map(|f| f.origin), Some(Origin::Header));
    assert_eq!(asked, [("a.b.c".to_string(), Origin::Header)]);

    let long = format!("Bearer {}", "a".repeat(101));
    let p = parts("/x", &[("authorization", &long)]);
    let result = extract_unless_known(&p, &sources(), 100, |_, _| panic!("asked"));
    assert!(matches!(result, Err(AuthError::TooLarge)));

    let p = parts("/x", &[("cookie", "at=a!b")]);
    let result = extract_unless_known(&p, &sources(), 100, |_, _| false);
    assert!(matches!(result, Err(AuthError::Malformed)));
    let p = parts("/x", &[("cookie", "at=")]);
    let result = extract_unless_known(&p, &sources(), 100, |_, _| panic!("asked"));
    assert!(matches!(result, Err(AuthError::Malformed)));
}
