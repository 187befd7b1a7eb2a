use super::*;

fn addr(text: &str) -> Option<SocketAddr> {
    Some(text.parse().unwrap())
}

fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.push(0x20 | command);
    header.push(family);
    header.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    header.extend_from_slice(body);
    header
}

fn v2_inet(command: u8, tlvs: &[u8]) -> Vec<u8> {
    let mut body = vec![203, 0, 113, 7, 10, 0, 0, 9, 0xd4, 0x31, 0x01, 0xbb];
    body.extend_from_slice(tlvs);
    v2(command, 0x11, &body)
}

/// Every proper prefix of a whole header is `Incomplete`: the parse does not depend on
/// how the bytes were split into reads.
fn whole(header: &[u8]) -> Parsed {
    for cut in 0..header.len() {
        assert_eq!(
            parse(header.get(..cut).unwrap()),
            Parsed::Incomplete,
            "cut at {cut}"
        );
    }
    let mut more = header.to_vec();
    more.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let parsed = parse(&more);
    assert_eq!(
        parsed,
        parse(header),
        "bytes after the header changed the parse"
    );
    parsed
}

#[test]
fn v1_names_the_client() {
    let line = b"PROXY TCP4 203.0.113.7 10.0.0.9 54321 443\r\n";
    assert_eq!(
        whole(line),
        Parsed::Header {
            len: line.len(),
            source: addr("203.0.113.7:54321")
        }
    );
    let line = b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 443\r\n";
    assert_eq!(
        whole(line),
        Parsed::Header {
            len: line.len(),
            source: addr("[2001:db8::7]:65535")
        }
    );
    for unknown in [
        &b"PROXY UNKNOWN\r\n"[..],
        b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n",
    ] {
        assert_eq!(
            whole(unknown),
            Parsed::Header {
                len: unknown.len(),
                source: None
            }
        );
    }
}

#[test]
fn v2_names_the_client_and_skips_tlvs() {
    let header = v2_inet(1, &[]);
    assert_eq!(
        whole(&header),
        Parsed::Header {
            len: 28,
            source: addr("203.0.113.7:54321")
        }
    );
    // An AWS-style TLV (type 0xEA, VPC endpoint id) after the addresses.
    let header = v2_inet(1, &[0xea, 0x00, 0x05, 0x01, b'v', b'p', b'c', b'e']);
    assert_eq!(
        whole(&header),
        Parsed::Header {
            len: 36,
            source: addr("203.0.113.7:54321")
        }
    );
    let mut body = [0u8; 36];
    body[..16].copy_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
    body[32..34].copy_from_slice(&8080u16.to_be_bytes());
    let header = v2(1, 0x21, &body);
    assert_eq!(
        whole(&header),
        Parsed::Header {
            len: 52,
            source: addr("[2001:db8::7]:8080")
        }
    );
}

#[test]
fn v2_local_and_unspec_mean_the_peer() {
    for header in [
        v2_inet(0, &[]),
        v2(1, 0x00, &[]),
        v2(0, 0x00, &[1, 2, 3]),
        v2(1, 0x31, &[0; 216]),
    ] {
        assert!(
            matches!(whole(&header), Parsed::Header { source: None, len } if len == header.len()),
            "{header:?}"
        );
    }
}

#[test]
fn anything_else_is_invalid_as_soon_as_it_shows() {
    let invalid = |bytes: &[u8]| matches!(parse(bytes), Parsed::Invalid(_));
    for bad in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"\x16\x03\x01\x02\x00",
        b"G",
        b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 010.0.0.1 10.0.0.9 1 2\r\n",
        b"PROXY TCP4 0x0a.0.0.1 10.0.0.9 1 2\r\n",
        b"PROXY TCP4 10.0.0.1 10.0.0.9 01 2\r\n",
        b"PROXY TCP4 10.0.0.1 10.0.0.9 65536 2\r\n",
        b"PROXY TCP4 10.0.0.1 10.0.0.9 -1 2\r\n",
        b"PROXY TCP4 10.0.0.1  10.0.0.9 1 2\r\n",
        b"PROXY TCP4 2001:db8::1 10.0.0.9 1 2\r\n",
        b"PROXY TCP6 10.0.0.1 2001:db8::1 1 2\r\n",
        b"PROXY TCP6 fe80::1%eth0 2001:db8::1 1 2\r\n",
        b"PROXY TCP4 10.0.0.1 10.0.0.9 1 2\n",
        b"PROXY TCP4 10.0.0.1 10.0.0.9 1\r\n",
        b"PROXY UDP4 10.0.0.1 10.0.0.9 1 2\r\n",
        b"PROXY \xff\r\n",
        b"\r\n\r\n\0\r\nQUIT\x0a\x11\x11\x00\x0c",
        b"\r\n\r\n\0\r\nQUIT\n\x22\x11\x00\x0c",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x12\x00\x0c",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x41\x00\x0c",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff",
    ] {
        assert!(invalid(bad), "{:?}", String::from_utf8_lossy(bad));
    }
    // Too short for its addresses: a PROXY command must name them.
    assert!(invalid(&v2(1, 0x11, &[1, 2, 3, 4])));
    assert!(invalid(&v2(1, 0x21, &[0; 12])));
    // A v1 line that never ends stops at the spec's 107 bytes.
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(V1_MAX - 1, b'x');
    assert_eq!(parse(&long), Parsed::Incomplete);
    long.push(b'x');
    assert!(invalid(&long));
}

#[test]
fn no_bytes_make_it_panic_and_splits_never_change_the_answer() {
    // A cheap deterministic stand-in for the fuzz target, so CI runs it too.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let starts: [Vec<u8>; 3] = [V2_SIGNATURE.to_vec(), V1_PREFIX.to_vec(), Vec::new()];
    for round in 0..20_000u32 {
        let mut bytes = starts[(round % 3) as usize].clone();
        let extra = (next() % 64) as usize;
        bytes.extend((0..extra).map(|_| {
            let r = next();
            // Mostly bytes a header is made of, so deep paths are reached.
            b"PROXY TCP46UNKOWN0123456789.: \r\n\x00\x01\x02\x11\x20\x21"
                .get((r % 40) as usize)
                .copied()
                .unwrap_or((r >> 8) as u8)
        }));
        let answer = parse(&bytes);
        if let Parsed::Header { len, .. } = answer {
            assert!(len <= bytes.len());
            assert_eq!(parse(&bytes[..len]), answer);
        }
        if answer == Parsed::Incomplete {
            for cut in 0..bytes.len() {
                assert_eq!(parse(&bytes[..cut]), Parsed::Incomplete);
            }
        }
    }
}

#[tokio::test]
async fn reading_keeps_the_bytes_after_the_header() {
    let (mut far, mut near) = tokio::io::duplex(1024);
    let task = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        // In two writes: the header arrives split, with the request glued to its end.
        far.write_all(b"PROXY TCP4 203.0.113.7 10.0").await.unwrap();
        tokio::task::yield_now().await;
        far.write_all(b".0.9 54321 443\r\nGET / HTTP/1.1\r\n")
            .await
            .unwrap();
        far
    });
    let (source, rest) = read_header(&mut near).await.unwrap();
    assert_eq!(source, addr("203.0.113.7:54321"));
    let mut rewound = super::super::rewind::Rewind::new(rest, near);
    let mut head = [0u8; 16];
    tokio::io::AsyncReadExt::read_exact(&mut rewound, &mut head)
        .await
        .unwrap();
    assert_eq!(&head, b"GET / HTTP/1.1\r\n");
    drop(task.await);

    let (far, mut near) = tokio::io::duplex(64);
    drop(far);
    assert!(matches!(
        read_header(&mut near).await,
        Err(HeaderError::Closed)
    ));
}
