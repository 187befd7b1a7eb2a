//! The `canonical_path` fuzz target as a regression run: every committed seed in
//! `fuzz/corpus/canonical_path/` (and whatever a fuzzing run added there) goes through the
//! same invariant function the fuzz target calls, `gatehouse::proxy::invariants::check`.
//! A second test sweeps every short combination of the pieces attackers use, so the
//! invariants are checked on thousands of targets on every `cargo test`, fuzzer or not.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

#[test]
fn every_corpus_file_keeps_the_invariants() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/canonical_path");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let input = std::fs::read(&path).unwrap();
        if let Err(broken) = gatehouse::proxy::invariants::check(&input) {
            panic!("{}: {broken}", path.display());
        }
        checked += 1;
    }
    assert!(checked >= 50, "only {checked} seeds in {}", dir.display());
}

#[test]
fn every_short_combination_of_attack_pieces_keeps_the_invariants() {
    const PIECES: &[&str] = &[
        "/", ".", "..", "%2e", "%2f", "%5c", ";", "%25", "2e", "api", "ADMIN", "%c4%b1", "\\",
    ];
    let mut checked = 0;
    // Four pieces after the leading slash: 13^4 + 13^3 + ... targets, about 31,000.
    let mut stack: Vec<(String, usize)> = vec![("/".to_string(), 0)];
    while let Some((prefix, depth)) = stack.pop() {
        if let Err(broken) = gatehouse::proxy::invariants::check(prefix.as_bytes()) {
            panic!("{prefix:?}: {broken}");
        }
        checked += 1;
        if depth < 4 {
            stack.extend(PIECES.iter().map(|p| (format!("{prefix}{p}"), depth + 1)));
        }
    }
    assert!(checked > 30_000, "{checked}");
}
