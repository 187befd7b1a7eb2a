//! The HTTP/1.1 framing scanner, `gatehouse::edge::framing::Framing`, which flags request heads
//! carrying both `Content-Length` and `Transfer-Encoding`.
//!
//! Checked beyond "no panic": the verdicts do not depend on how the bytes were split into
//! reads (whole, byte by byte, and at a split point taken from the input).

#![no_main]

use gatehouse::edge::framing::Framing;
use libfuzzer_sys::fuzz_target;

fn verdicts(pieces: &[&[u8]]) -> Vec<bool> {
    let mut framing = Framing::default();
    for piece in pieces {
        framing.feed(piece);
    }
    let mut out = Vec::new();
    // More than any input can hold heads for: the queue is drained, then reads false.
    for _ in 0..=pieces.iter().map(|p| p.len()).sum::<usize>() / 4 + 1 {
        out.push(framing.next_is_ambiguous());
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let whole = verdicts(&[data]);
    let bytes: Vec<&[u8]> = data.chunks(1).collect();
    assert_eq!(whole, verdicts(&bytes), "byte-by-byte reads disagree");
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let (a, b) = data.split_at(split);
    assert_eq!(whole, verdicts(&[a, b]), "a split at {split} disagrees");
});
