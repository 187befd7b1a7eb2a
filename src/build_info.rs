//! What this binary is: the crate version, the git commit and the build date that
//! `build.rs` stamped in. `gatehouse --version` prints [`LONG_VERSION`]; a release's commit
//! is the one its tag names.

/// The crate version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The full git commit the binary was built from, or `unknown` (a build without `.git` and
/// without `GATEHOUSE_BUILD_COMMIT`).
pub const COMMIT: &str = env!("GATEHOUSE_COMMIT");

/// When it was built, RFC 3339 UTC; `SOURCE_DATE_EPOCH` when the build set it.
pub const BUILD_DATE: &str = env!("GATEHOUSE_BUILD_DATE");

/// `0.1.0 (commit 0123abcd..., built 2026-11-30T05:09:16Z)`
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("GATEHOUSE_COMMIT"),
    ", built ",
    env!("GATEHOUSE_BUILD_DATE"),
    ")"
);
