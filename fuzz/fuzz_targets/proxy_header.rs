//! The PROXY protocol header parser, `gatehouse::edge::proxy_protocol::parse`, and the
//! `X-Forwarded-For` walk, `gatehouse::proxy::client::Client::resolve`: the bytes an L4 balancer
//! or any client sends before and inside the first request.
//!
//! Checked beyond "no panic": a parsed header fits in the input and parses the same alone;
//! an `Incomplete` input is `Incomplete` at every cut (the answer does not depend on how
//! the bytes were split into reads); the walk's client is the hop itself or an address
//! written in the header, and from an untrusted hop always the hop.

#![no_main]

use std::net::IpAddr;

use gatehouse::cidr::CidrSet;
use gatehouse::edge::proxy_protocol::{parse, Parsed};
use gatehouse::proxy::client::{entry_address, Client};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fn header(data: &[u8]) {
    let answer = parse(data);
    match answer {
        Parsed::Header { len, .. } => {
            assert!(len <= data.len());
            assert_eq!(
                parse(&data[..len]),
                answer,
                "the header alone parses differently"
            );
        }
        Parsed::Incomplete => {
            for cut in 0..data.len() {
                assert_eq!(parse(&data[..cut]), Parsed::Incomplete, "cut at {cut}");
            }
        }
        Parsed::Invalid(_) => {}
    }
}

fn walk(data: &[u8]) {
    let trusted = CidrSet::new(vec![
        "10.0.0.0/8".parse().unwrap(),
        "fd00::/8".parse().unwrap(),
    ]);
    let mut headers = HeaderMap::new();
    let xff = HeaderName::from_static("x-forwarded-for");
    for line in data.split(|b| *b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(&xff, value);
        }
    }
    let hop: IpAddr = [10, 1, 1, 1].into();
    let client = Client::resolve(hop, false, &headers, &trusted).addr;
    let text = String::from_utf8_lossy(data);
    let written = text
        .split([',', '\n', ' ', '\t', '[', ']'])
        .any(|piece| entry_address(piece) == Some(client));
    assert!(
        client == hop || written,
        "{client} is neither the hop nor written in {text:?}"
    );
    let outside: IpAddr = [203, 0, 113, 1].into();
    assert_eq!(
        Client::resolve(outside, false, &headers, &trusted).addr,
        outside
    );
}

fuzz_target!(|data: &[u8]| {
    header(data);
    walk(data);
});
