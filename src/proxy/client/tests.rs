use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn trusted() -> CidrSet {
    CidrSet::new(
        ["10.0.0.0/8", "2001:db8:ffff::/48"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect(),
    )
}

fn headers(fields: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in fields {
        h.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value.as_bytes()).unwrap(),
        );
    }
    h
}

fn client_of(hop: &str, fields: &[(&str, &str)]) -> IpAddr {
    Client::resolve(ip(hop), false, &headers(fields), &trusted()).addr
}

#[test]
fn an_untrusted_hop_is_the_client_whatever_it_says() {
    let fields = [
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "admin.internal"),
        ("forwarded", "for=198.51.100.1;proto=https"),
    ];
    let client = Client::resolve(ip("203.0.113.5"), false, &headers(&fields), &trusted());
    assert_eq!(
        client,
        Client {
            addr: ip("203.0.113.5"),
            https: false,
            host: None,
            via_trusted: false
        }
    );
    assert_eq!(client_of("::ffff:203.0.113.5", &fields), ip("203.0.113.5"));
}

#[test]
fn the_rightmost_untrusted_entry_is_the_client() {
    let xff = |v| [("x-forwarded-for", v)];
    // The client spoofs a trusted address; the ingress appends the real one.
    assert_eq!(
        client_of("10.1.1.1", &xff("10.0.0.1, 203.0.113.5")),
        ip("203.0.113.5")
    );
    assert_eq!(
        client_of(
            "10.1.1.1",
            &xff("198.51.100.9, 203.0.113.5, 10.2.2.2, 10.3.3.3")
        ),
        ip("203.0.113.5")
    );
    // Every entry trusted: the leftmost.
    assert_eq!(
        client_of("10.1.1.1", &xff("10.9.9.9, 10.2.2.2")),
        ip("10.9.9.9")
    );
    // No header: the trusted hop itself (its own health checks).
    assert_eq!(client_of("10.1.1.1", &[]), ip("10.1.1.1"));
    assert_eq!(client_of("10.1.1.1", &xff(" , ,")), ip("10.1.1.1"));
}

#[test]
fn several_field_lines_are_one_list_in_order() {
    let fields = [
        ("x-forwarded-for", "198.51.100.1"),
        ("x-forwarded-for", "203.0.113.5, 10.2.2.2"),
        ("x-forwarded-for", "10.3.3.3"),
    ];
    assert_eq!(client_of("10.1.1.1", &fields), ip("203.0.113.5"));
}

#[test]
fn ports_brackets_and_mapped_addresses_are_read() {
    let xff = |v| [("x-forwarded-for", v)];
    for (entry, want) in [
        ("203.0.113.5:4711", "203.0.113.5"),
        ("[2001:db8::5]", "2001:db8::5"),
        ("[2001:db8::5]:4711", "2001:db8::5"),
        ("2001:db8::5", "2001:db8::5"),
        ("::ffff:203.0.113.5", "203.0.113.5"),
        ("[::ffff:203.0.113.5]:1", "203.0.113.5"),
        ("\t203.0.113.5 ", "203.0.113.5"),
    ] {
        assert_eq!(client_of("10.1.1.1", &xff(entry)), ip(want), "{entry}");
    }
    // A mapped trusted address is trusted too, and walked past.
    assert_eq!(
        client_of("10.1.1.1", &xff("203.0.113.5, ::ffff:10.2.2.2")),
        ip("203.0.113.5")
    );
    assert_eq!(
        client_of("::ffff:10.1.1.1", &xff("203.0.113.5")),
        ip("203.0.113.5")
    );
}

#[test]
fn an_unreadable_entry_stops_the_walk_at_the_hop_that_handed_it_over() {
    let xff = |v: &str| client_of("10.1.1.1", &[("x-forwarded-for", v)]);
    for garbage in [
        "010.0.0.1",
        "0x0a.0.0.1",
        "10.1",
        "167772161",
        "unknown",
        "_hidden",
        "203.0.113.5:http",
        "203.0.113.5:65536",
        "203.0.113.5:",
        "[203.0.113.5]",
        "[2001:db8::5",
        "[2001:db8::5]x",
        "fe80::1%eth0",
        "for=203.0.113.5",
        "\"203.0.113.5\"",
        "203.0.113.5 198.51.100.1",
    ] {
        let spoof = format!("198.51.100.1, {garbage}");
        assert_eq!(xff(&spoof), ip("10.1.1.1"), "{garbage}");
        let deeper = format!("{garbage}, 10.2.2.2");
        assert_eq!(xff(&deeper), ip("10.2.2.2"), "{garbage}");
    }
    let obs_text = [("x-forwarded-for", "203.0.113.\u{e9}")];
    assert_eq!(client_of("10.1.1.1", &obs_text), ip("10.1.1.1"));
}

/// nginx's `$proxy_add_x_forwarded_for` appends the client it saw to the client's own
/// line: an unreadable byte the client wrote spoils its own entry only, never the address
/// the trusted proxy appended after it (which would make the proxy itself the client).
#[test]
fn a_bad_byte_spoils_its_own_entry_and_not_what_a_proxy_appended() {
    let xff = |value: &[u8]| {
        let mut h = HeaderMap::new();
        h.append(&X_FORWARDED_FOR, HeaderValue::from_bytes(value).unwrap());
        h.append(
            &X_FORWARDED_PROTO,
            HeaderValue::from_bytes(b"\xff, https").unwrap(),
        );
        Client::resolve(ip("10.1.1.1"), false, &h, &trusted())
    };
    for spoiled in [
        &b"\xc3\xa9, 203.0.113.9"[..],
        b"\xff6.6.6.6, 203.0.113.9",
        b"\xff,203.0.113.9",
    ] {
        let client = xff(spoiled);
        assert_eq!(client.addr, ip("203.0.113.9"), "{spoiled:?}");
        assert!(
            client.https,
            "the nearest hop's proto, after the client's bad byte"
        );
    }
    // The bad entry itself still stops the walk where it stands.
    assert_eq!(xff(b"203.0.113.9, \xff, 10.2.2.2").addr, ip("10.2.2.2"));
}

#[test]
fn only_the_exact_name_is_read() {
    for name in [
        "x_forwarded_for",
        "X_Forwarded-For",
        "x-forwarded_for",
        "x-real-ip",
        "forwarded",
    ] {
        let fields = [(name, "203.0.113.5")];
        assert_eq!(client_of("10.1.1.1", &fields), ip("10.1.1.1"), "{name}");
    }
    assert_eq!(
        client_of("10.1.1.1", &[("X-Forwarded-For", "203.0.113.5")]),
        ip("203.0.113.5")
    );
}

#[test]
fn the_walk_is_bounded() {
    let chain = vec!["10.2.2.2"; 100].join(", ");
    let fields = [("x-forwarded-for", format!("203.0.113.5, {chain}"))];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert_eq!(client_of("10.1.1.1", &fields), ip("10.2.2.2"));
}

#[test]
fn a_trusted_hop_keeps_proto_and_host() {
    let resolve = |fields: &[(&str, &str)]| {
        Client::resolve(ip("10.1.1.1"), false, &headers(fields), &trusted())
    };
    let client = resolve(&[
        ("x-forwarded-for", "203.0.113.5"),
        ("x-forwarded-proto", "HTTPS"),
        ("x-forwarded-host", "app.example:8443"),
    ]);
    assert!(client.https && client.via_trusted);
    assert_eq!(
        client.host,
        Some(HeaderValue::from_static("app.example:8443"))
    );
    // The nearest hop's value: the last element.
    let client = resolve(&[
        ("x-forwarded-proto", "http"),
        ("x-forwarded-proto", "wss, https"),
    ]);
    assert!(client.https);
    for (proto, host) in [
        ("javascript", "evil@app.example"),
        ("", "app.example/x"),
        ("https x", "a b"),
        ("ftp", "app.example:99999"),
        ("gopher", "app;example"),
    ] {
        let client = resolve(&[("x-forwarded-proto", proto), ("x-forwarded-host", host)]);
        assert!(!client.https, "{proto}");
        assert_eq!(client.host, None, "{host}");
    }
    let tls = Client::resolve(ip("10.1.1.1"), true, &HeaderMap::new(), &trusted());
    assert!(tls.https, "no header: our own listener's scheme");
}

#[test]
fn ipv6_hops_and_clients() {
    let xff = [("x-forwarded-for", "2001:db8:1::5, 2001:db8:ffff:1::1")];
    assert_eq!(client_of("2001:db8:ffff::9", &xff), ip("2001:db8:1::5"));
    assert_eq!(client_of("2001:db8:fffe::9", &xff), ip("2001:db8:fffe::9"));
}
