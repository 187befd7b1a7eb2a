//! Request-target canonicalisation (`gatehouse::canonical`).
//!
//! Input: the request target as sent on the request line (or as HTTP/2 `:path`).
//! Checked beyond "no panic", by `gatehouse::proxy::invariants::check` (the function
//! `tests/canonical_corpus.rs` replays the committed corpus through): canonicalising twice
//! changes nothing; the output has no `//`, dot segment, encoded `/` `\` `.`, double
//! encoding, backslash or NUL; and the route gatehouse picks for it is the route a lenient
//! backend picks after decoding, resolving dots, merging slashes, dropping `;params` and
//! folding case.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = gatehouse::proxy::invariants::check(data) {
        panic!("{broken}");
    }
});
