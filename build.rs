//! Stamps the git commit and the build date into the binary (`gatehouse --version`,
//! `gatehouse::build_info`) as the compile-time variables `GATEHOUSE_COMMIT` and
//! `GATEHOUSE_BUILD_DATE`.
//!
//! - commit: `GATEHOUSE_BUILD_COMMIT` when set (container builds, whose context has no
//!   `.git`), else HEAD read from `.git` without running git, else `unknown` (a tarball).
//! - date: `SOURCE_DATE_EPOCH` when set (reproducible builds), else the time this script ran.
//!
//! The script reruns only when HEAD moves (the HEAD file and the ref it points to, in a
//! linked worktree too) or one of those variables changes, not on every source edit.

#[path = "build/version.rs"]
mod version;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() -> Result<(), String> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/version.rs");
    println!("cargo:rerun-if-env-changed=GATEHOUSE_BUILD_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");

    let root = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").ok_or("CARGO_MANIFEST_DIR is not set")?,
    );
    let head = version::head(&root);
    for path in &head.watch {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let given =
        version::given_commit(&std::env::var("GATEHOUSE_BUILD_COMMIT").unwrap_or_default())?;
    let commit = given.or(head.commit).unwrap_or_else(|| "unknown".into());

    let secs = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) => version::source_date_epoch(&value)?,
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| format!("the clock is before 1970: {e}"))?
            .as_secs(),
    };
    println!("cargo:rustc-env=GATEHOUSE_COMMIT={commit}");
    println!(
        "cargo:rustc-env=GATEHOUSE_BUILD_DATE={}",
        version::utc_timestamp(secs)
    );
    Ok(())
}
