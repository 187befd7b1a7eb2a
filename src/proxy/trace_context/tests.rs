use super::*;

const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn headers(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.append((*name).clone(), HeaderValue::from_str(value).unwrap());
    }
    h
}

#[test]
fn the_spec_example_parses() {
    let p = parse_traceparent_value(VALID.as_bytes()).unwrap();
    assert_eq!(hex(&p.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(hex(&p.parent_id), "00f067aa0ba902b7");
    assert_eq!(p.flags, 1);
}

#[test]
fn malformed_traceparents_are_refused() {
    let bad = [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // uppercase
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", // v00 with more
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-+1",
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", // future version, no '-'
        " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ];
    for value in bad {
        assert_eq!(parse_traceparent_value(value.as_bytes()), None, "{value:?}");
    }
}

#[test]
fn a_future_version_is_read_up_to_what_we_know() {
    let v = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-adds";
    assert!(parse_traceparent_value(v.as_bytes()).is_some());
}

#[test]
fn two_traceparent_fields_count_as_none() {
    let h = headers(&[(&TRACEPARENT, VALID), (&TRACEPARENT, VALID)]);
    assert_eq!(parse_traceparent(&h), None);
}

#[test]
fn an_untrusted_parent_starts_a_new_trace_and_is_never_forwarded() {
    let h = headers(&[(&TRACEPARENT, VALID), (&TRACESTATE, "congo=t61rcWkgMzE")]);
    let ctx = TraceContext::for_request(&h, false, true, &Drawn::new());
    assert_ne!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        (ctx.parent_id, ctx.sampled, &ctx.tracestate),
        (None, true, &None)
    );
    let mut upstream = h.clone();
    ctx.apply(&mut upstream, Held::ANY);
    let sent = upstream[&TRACEPARENT].to_str().unwrap();
    assert!(
        sent.starts_with(&format!("00-{}-", ctx.trace_id_hex())),
        "{sent}"
    );
    assert!(sent.ends_with("-01"));
    assert!(upstream.get(&TRACESTATE).is_none());
    assert_eq!(upstream.get_all(&TRACEPARENT).iter().count(), 1);
}

#[test]
fn a_trusted_parent_is_continued_with_our_own_span() {
    let h = headers(&[
        (&TRACEPARENT, &VALID.replace("-01", "-00")),
        (&TRACESTATE, "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE"),
    ]);
    let ctx = TraceContext::for_request(&h, true, true, &Drawn::new());
    assert_eq!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        ctx.parent_id.map(|p| hex(&p)).as_deref(),
        Some("00f067aa0ba902b7")
    );
    assert_ne!(hex(&ctx.span_id), "00f067aa0ba902b7");
    assert!(!ctx.sampled, "the caller's sampling decision holds");
    let mut upstream = HeaderMap::new();
    ctx.apply(&mut upstream, Held::ANY);
    let sent = upstream[&TRACEPARENT].to_str().unwrap().to_string();
    assert_eq!(
        sent,
        format!(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-{}-00",
            hex(&ctx.span_id)
        )
    );
    assert_eq!(
        upstream[&TRACESTATE],
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    );
}

#[test]
fn a_trusted_but_malformed_parent_starts_a_new_trace() {
    let h = headers(&[
        (&TRACEPARENT, &VALID.to_uppercase()),
        (&TRACESTATE, "congo=t61rcWkgMzE"),
    ]);
    let ctx = TraceContext::for_request(&h, true, false, &Drawn::new());
    assert_eq!(
        (ctx.parent_id, ctx.sampled, ctx.tracestate),
        (None, false, None)
    );
}

#[test]
fn tracestate_is_joined_across_fields_and_refused_whole_when_invalid() {
    let joined = headers(&[(&TRACESTATE, "a=1,,  b@sys=2"), (&TRACESTATE, "c-*/_9=x y")]);
    assert_eq!(parse_tracestate(&joined).unwrap(), "a=1,b@sys=2,c-*/_9=x y");
    let bad = [
        "A=1",     // uppercase key
        "a=1,a=2", // duplicate key
        "a=",      // empty value
        "a=1 ",    // value ends in a space -- trimmed as OWS, so see below
        "a",       // no '='
        "1a=1",    // key starts with a digit
        "a=b=c",   // '=' in the value
        "t@system-name-too-long=1",
        "a=\u{7f}",
    ];
    for value in bad {
        let Ok(v) = HeaderValue::from_str(value) else {
            continue;
        };
        let mut h = HeaderMap::new();
        h.insert(TRACESTATE.clone(), v);
        if value == "a=1 " {
            // Trailing whitespace is list OWS (RFC 9110 §5.6.1), not part of the value.
            assert!(parse_tracestate(&h).is_some());
            continue;
        }
        assert_eq!(parse_tracestate(&h), None, "{value:?}");
    }
    let many = (0..33)
        .map(|i| format!("k{i}=v"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(parse_tracestate(&headers(&[(&TRACESTATE, &many)])), None);
    let long = (0..5)
        .map(|i| format!("k{i}={}", "v".repeat(120)))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(parse_tracestate(&headers(&[(&TRACESTATE, &long)])), None);
}

fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0; bytes.len() * 2];
    hex_into(bytes, &mut out);
    String::from_utf8(out).unwrap()
}

/// Ids drawn at once keep the spec's rule: never all zeros, drawn again if they were; the
/// request id is a version 4 UUID.
#[test]
fn drawn_ids_are_never_zero_and_the_request_id_is_a_v4_uuid() {
    let zeros = Drawn([0; 40]);
    assert_ne!(zeros.trace_id(), [0; 16]);
    assert_ne!(zeros.span_id(), [0; 8]);
    let uuid = zeros.request_uuid();
    assert_eq!(uuid.get_version_num(), 4);
    assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
    let drawn = Drawn::new();
    assert_eq!(&drawn.trace_id()[..], &drawn.0[..16]);
    assert_eq!(&drawn.span_id()[..], &drawn.0[16..24]);
    assert_ne!(drawn.request_uuid(), Drawn::new().request_uuid());
}
