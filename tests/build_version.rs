//! `gatehouse --version` and the build script behind it: the commit is read from `.git`
//! without git (plain checkouts, linked worktrees, packed refs, detached HEAD, none at all),
//! `SOURCE_DATE_EPOCH` fixes the date, and the binary prints what the checkout is at.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../build/version.rs"]
mod version;

use std::fs;
use std::path::Path;
use std::process::Command;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const A: &str = "0123456789abcdef0123456789abcdef01234567";
const B: &str = "89abcdef0123456789abcdef0123456789abcdef";

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

#[test]
fn a_plain_checkout_reads_the_loose_ref_and_watches_head_and_ref() {
    let dir = tempfile::tempdir().unwrap();
    let git = dir.path().join(".git");
    write(&git.join("HEAD"), "ref: refs/heads/main\n");
    write(&git.join("refs/heads/main"), &format!("{A}\n"));
    let head = version::head(dir.path());
    assert_eq!(head.commit.as_deref(), Some(A));
    assert_eq!(head.watch, [git.join("HEAD"), git.join("refs/heads/main")]);
}

#[test]
fn a_linked_worktree_follows_gitdir_and_commondir() {
    // The layout `git worktree add` makes: `.git` is a file; HEAD is per worktree; the
    // branch lives in the main repository's refs.
    let dir = tempfile::tempdir().unwrap();
    let main_git = dir.path().join("main/.git");
    let wt_git = main_git.join("worktrees/ops");
    write(&wt_git.join("HEAD"), "ref: refs/heads/ops\n");
    write(&wt_git.join("commondir"), "../..\n");
    write(&main_git.join("refs/heads/ops"), B);
    write(&main_git.join("refs/heads/main"), A);
    let tree = dir.path().join("wt/ops");
    write(
        &tree.join(".git"),
        &format!("gitdir: {}\n", wt_git.display()),
    );

    let head = version::head(&tree);
    assert_eq!(head.commit.as_deref(), Some(B));
    assert_eq!(
        head.watch,
        [
            wt_git.join("HEAD"),
            wt_git.join("../..").join("refs/heads/ops")
        ]
    );
    assert!(
        head.watch.iter().all(|p| p.exists()),
        "a missing watched path reruns the script on every build"
    );
}

#[test]
fn a_relative_gitdir_is_read_from_the_checkout() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("real-git/HEAD"), &format!("{B}\n"));
    write(&dir.path().join("tree/.git"), "gitdir: ../real-git\n");
    assert_eq!(
        version::head(&dir.path().join("tree")).commit.as_deref(),
        Some(B)
    );
}

#[test]
fn a_packed_ref_is_found_and_its_directory_watched_for_the_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let git = dir.path().join(".git");
    write(&git.join("HEAD"), "ref: refs/heads/release\n");
    fs::create_dir_all(git.join("refs/heads")).unwrap();
    write(
        &git.join("packed-refs"),
        &format!("# pack-refs with: peeled fully-peeled sorted\n{A} refs/heads/main\n{B} refs/heads/release\n^{A}\n"),
    );
    let head = version::head(dir.path());
    assert_eq!(head.commit.as_deref(), Some(B));
    assert_eq!(
        head.watch,
        [
            git.join("HEAD"),
            git.join("refs/heads"),
            git.join("packed-refs")
        ]
    );
}

#[test]
fn a_detached_head_is_the_commit_itself() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join(".git/HEAD"),
        &format!("{}\n", A.to_uppercase()),
    );
    let head = version::head(dir.path());
    assert_eq!(head.commit.as_deref(), Some(A));
    assert_eq!(head.watch, [dir.path().join(".git/HEAD")]);
}

#[test]
fn no_git_means_no_commit_and_nothing_to_watch() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(version::head(dir.path()), version::Head::default());
    // A parent's repository is not this source tree's.
    let tree = dir.path().join("unpacked-tarball");
    fs::create_dir_all(&tree).unwrap();
    write(&dir.path().join(".git/HEAD"), &format!("{A}\n"));
    assert_eq!(version::head(&tree).commit, None);
}

#[test]
fn broken_heads_and_refs_give_no_commit() {
    for (head_text, ref_text) in [
        ("ref: refs/heads/main\n", "not-a-hash\n"),
        ("ref: refs/heads/../../../etc/passwd\n", A),
        ("ref: HEAD\n", A),
        ("garbage\n", A),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join(".git/HEAD"), head_text);
        write(&dir.path().join(".git/refs/heads/main"), ref_text);
        assert_eq!(version::head(dir.path()).commit, None, "{head_text:?}");
    }
}

#[test]
fn a_given_commit_must_be_hex() {
    assert_eq!(version::given_commit("").unwrap(), None);
    assert_eq!(
        version::given_commit(" ABCDEF1 ").unwrap().as_deref(),
        Some("abcdef1")
    );
    assert_eq!(version::given_commit(A).unwrap().as_deref(), Some(A));
    for bad in ["abc", "main", "0123456z89", &"a".repeat(65)] {
        assert!(version::given_commit(bad).is_err(), "{bad}");
    }
}

#[test]
fn source_date_epoch_is_decimal_seconds() {
    assert_eq!(
        version::source_date_epoch("1700000000").unwrap(),
        1_700_000_000
    );
    for bad in ["", "-1", "1.5", "2026-11-30", "0x10"] {
        assert!(version::source_date_epoch(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn timestamps_match_the_time_crate() {
    // Epoch, leap days in a year divisible by 400 and by 4, a century that is not a leap
    // year, the end of a day and of year 9999.
    for secs in [
        0,
        951_782_400,
        951_868_799,
        1_709_208_000,
        4_107_542_400,
        1_796_000_000,
        253_402_300_799,
    ] {
        let expected = OffsetDateTime::from_unix_timestamp(secs as i64)
            .unwrap()
            .format(&Rfc3339)
            .unwrap();
        assert_eq!(version::utc_timestamp(secs), expected, "{secs}");
    }
}

#[test]
fn version_names_the_crate_version_the_commit_and_the_build_date() {
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.trim_end();
    let rest = line
        .strip_prefix(&format!("gatehouse {} (commit ", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("{line}"));
    let (commit, rest) = rest.split_once(", built ").unwrap();
    let date = rest.strip_suffix(')').unwrap();
    OffsetDateTime::parse(date, &Rfc3339).unwrap_or_else(|e| panic!("{date}: {e}"));

    // The commit is the one this checkout's HEAD names (as the test is built from it), unless
    // the build was told the commit from outside.
    let expected = match std::env::var("GATEHOUSE_BUILD_COMMIT") {
        Ok(given) if !given.is_empty() => given.to_ascii_lowercase(),
        _ => version::head(Path::new(env!("CARGO_MANIFEST_DIR")))
            .commit
            .unwrap_or_else(|| "unknown".into()),
    };
    assert_eq!(commit, expected);
    assert_eq!(commit, gatehouse::build_info::COMMIT);
    assert_eq!(date, gatehouse::build_info::BUILD_DATE);
}
