use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::websocket::scan_check::{by_scanner, check, End};

/// A frame as a client or a hostile peer might write it: any opcode, flags and mask, and
/// a length written in the short, 16-bit or 64-bit form whether or not that is minimal.
fn random_frame(rng: &mut StdRng, from_client: bool, out: &mut Vec<u8>) {
    let opcode = match rng.gen_range(0..20) {
        0..=5 => frame::OP_TEXT,
        6..=8 => frame::OP_BINARY,
        9..=12 => frame::OP_CONTINUATION,
        13 | 14 => frame::OP_PING,
        15 => frame::OP_PONG,
        16 => frame::OP_CLOSE,
        _ => rng.gen_range(0..16),
    };
    let fin = rng.gen_bool(0.7);
    let rsv = if rng.gen_bool(0.03) {
        rng.gen_range(1..8)
    } else {
        0
    };
    let masked = from_client != rng.gen_bool(0.03);
    let len: u64 = match rng.gen_range(0..10) {
        0..=6 => rng.gen_range(0..40),
        7 => rng.gen_range(100..140),
        8 => rng.gen_range(126..600),
        _ => [u64::MAX, 1 << 63, 70_000][rng.gen_range(0..3)],
    };
    out.push(u8::from(fin) << 7 | rsv << 4 | opcode);
    let mask_bit = if masked { 0x80 } else { 0 };
    match (len, rng.gen_range(0..8)) {
        (0..=125, 0..=5) => out.push(mask_bit | len as u8),
        (0..=0xffff, 0..=6) => {
            out.push(mask_bit | 126);
            out.extend((len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend(len.to_be_bytes());
        }
    }
    if masked {
        out.extend(rng.gen::<[u8; 4]>());
    }
    let body = len.min(600) as usize;
    if opcode == frame::OP_CLOSE && body >= 2 && rng.gen_bool(0.8) {
        let code: u16 = [1000, 1001, 1005, 4000, 4401, 999, 2999][rng.gen_range(0..7)];
        out.extend(code.to_be_bytes());
        out.extend((0..body - 2).map(|_| b'a' + rng.gen_range(0..26)));
    } else {
        out.extend((0..body).map(|_| rng.gen::<u8>()));
    }
}

#[test]
fn the_copying_scanner_passes_on_what_a_decoding_relay_would_at_any_read_split() {
    let mut rng = StdRng::seed_from_u64(0x6a7e_4a05);
    let mut endings = std::collections::HashMap::new();
    for case in 0..20_000 {
        let from_client = case % 2 == 0;
        let mut input = Vec::new();
        for _ in 0..rng.gen_range(1..8) {
            random_frame(&mut rng, from_client, &mut input);
        }
        // Sometimes the stream stops in the middle of something.
        if rng.gen_bool(0.2) {
            input.truncate(rng.gen_range(0..=input.len()));
        }
        let cuts: Vec<usize> = (0..rng.gen_range(0..6)).map(|_| rng.gen()).collect();
        let max = [125usize, 300, 1 << 20][rng.gen_range(0..3)];
        if let Err(e) = check(&input, &cuts, from_client, max) {
            panic!("case {case}: {e}");
        }
        let bytewise: Vec<usize> = (0..input.len()).collect();
        if let Err(e) = check(&input, &bytewise, from_client, max) {
            panic!("case {case}, one byte per read: {e}");
        }
        let end = by_scanner(&input, &cuts, from_client, max).map(|r| r.end);
        *endings
            .entry(format!("{end:?}").chars().take(8).collect::<String>())
            .or_insert(0) += 1;
    }
    // The generator reaches every way a scan can end.
    for kind in ["Ok(More)", "Ok(Close", "Ok(TooBi", "Ok(Viola"] {
        assert!(
            endings.get(kind).copied().unwrap_or(0) > 100,
            "{kind}: {endings:?}"
        );
    }
}

fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    frame::control(first & 0x0f, payload, Some([9, 8, 7, 6]))
        .into_iter()
        .enumerate()
        .map(|(i, b)| if i == 0 { first } else { b })
        .collect()
}

#[test]
fn frames_a_proxy_must_refuse_are_never_passed_on() {
    let max = 1 << 20;
    let refused: [(&str, Vec<u8>, bool); 8] = [
        (
            "unmasked client frame",
            frame::control(frame::OP_TEXT, b"hi", None),
            true,
        ),
        ("masked upstream frame", masked(0x81, b"hi"), false),
        ("reserved bit", masked(0xC1, b"hi"), true),
        ("unknown opcode", masked(0x83, b"hi"), true),
        ("fragmented ping", masked(0x09, b"hi"), true),
        ("long ping", masked(0x89, &[0u8; 126]), true),
        ("continuation first", masked(0x80, b"hi"), true),
        ("one-byte close", masked(0x88, b"x"), true),
    ];
    for (what, bytes, from_client) in refused {
        let r = by_scanner(&bytes, &[], from_client, max).unwrap();
        assert_eq!((r.end, r.out.len()), (End::Violation, 0), "{what}");
    }
    // A 64-bit length with its top bit set is over every limit: nothing of it goes on.
    let mut top = vec![0x82, 0xff];
    top.extend((1u64 << 63 | 5).to_be_bytes());
    top.extend([1, 2, 3, 4, 0, 0, 0, 0, 0]);
    let r = by_scanner(&top, &[3], true, usize::MAX >> 1).unwrap();
    assert_eq!((r.end, r.out.len()), (End::TooBig, 0));
}

#[test]
fn a_fragmented_message_is_limited_by_its_sum_and_lengths_are_rewritten_minimal() {
    let mut stream = masked(0x01, &[b'a'; 100]);
    stream.extend(masked(0x80, &[b'b'; 100]));
    let r = by_scanner(&stream, &[], true, 199).unwrap();
    assert_eq!(r.end, End::TooBig);
    assert_eq!(
        r.out,
        masked(0x01, &[b'a'; 100]),
        "the first fragment went on whole"
    );
    // `len = 2` written in the 16-bit form goes on in the short form, payload untouched.
    let long_form = [0x82, 0x80 | 126, 0, 2, 1, 2, 3, 4, 0xaa, 0xbb];
    let r = by_scanner(&long_form, &[1, 5], true, 100).unwrap();
    assert_eq!(r.out, [0x82, 0x82, 1, 2, 3, 4, 0xaa, 0xbb]);
}
