//! What `build.rs` stamps into the binary: the git commit and the build date, found without
//! running git (a source tarball has no `.git`, a container build has no git binary).
//!
//! Included by `build.rs` and by `tests/build_version.rs` (`#[path]`), so the resolution of
//! worktrees, packed refs and `SOURCE_DATE_EPOCH` is tested like any other code.

use std::fs;
use std::path::{Path, PathBuf};

/// The commit a source tree is at, and the files whose change means it moved on.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Head {
    /// The full hex object name, or `None` outside a readable git checkout.
    pub(crate) commit: Option<String>,
    /// Files (or one directory) for `cargo:rerun-if-changed`. Only existing paths: Cargo
    /// reruns a build script on every build while a path it watches is missing.
    pub(crate) watch: Vec<PathBuf>,
}

/// The git directories of the checkout whose top is `root`, if `root/.git` exists.
///
/// Only `root/.git` is looked at, never a parent's: a tarball unpacked inside some other
/// repository must not take that repository's commit. In a linked worktree `.git` is a file
/// (`gitdir: <path>`); its HEAD is in that directory and the branches are in the directory
/// named by its `commondir` file.
fn git_dirs(root: &Path) -> Option<(PathBuf, PathBuf)> {
    let dot_git = root.join(".git");
    let git_dir = if dot_git.is_dir() {
        dot_git
    } else {
        let text = fs::read_to_string(&dot_git).ok()?;
        let target = text.strip_prefix("gitdir:")?.trim();
        root.join(target)
    };
    let common = match fs::read_to_string(git_dir.join("commondir")) {
        Ok(text) => git_dir.join(text.trim()),
        Err(_) => git_dir.clone(),
    };
    Some((git_dir, common))
}

fn is_object_name(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit of `refname`, from its loose file (worktree-private refs first) or
/// `packed-refs`, with the paths that would change when the ref moves.
fn resolve_ref(
    git_dir: &Path,
    common: &Path,
    refname: &str,
    watch: &mut Vec<PathBuf>,
) -> Option<String> {
    // A ref name is a relative path below refs/; anything else in HEAD is not followed.
    if !refname.starts_with("refs/")
        || refname
            .split('/')
            .any(|part| part.is_empty() || part == "..")
    {
        return None;
    }
    for dir in [git_dir, common] {
        let loose = dir.join(refname);
        if loose.is_file() {
            watch.push(loose.clone());
            let hash = fs::read_to_string(&loose).ok()?;
            return Some(hash.trim().to_ascii_lowercase()).filter(|h| is_object_name(h));
        }
    }
    // Packed: the next commit writes a loose file, which the directory's watch notices.
    if let Some(parent) = common.join(refname).parent().filter(|p| p.is_dir()) {
        watch.push(parent.to_path_buf());
    }
    let packed = common.join("packed-refs");
    let text = fs::read_to_string(&packed).ok()?;
    watch.push(packed);
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with('^'))
        .filter_map(|line| line.split_once(' '))
        .find(|(_, name)| name.trim() == refname)
        .map(|(hash, _)| hash.to_ascii_lowercase())
        .filter(|h| is_object_name(h))
}

/// The commit HEAD names in the checkout at `root`, and what to watch for a change.
pub(crate) fn head(root: &Path) -> Head {
    let Some((git_dir, common)) = git_dirs(root) else {
        return Head::default();
    };
    let head_file = git_dir.join("HEAD");
    let Ok(text) = fs::read_to_string(&head_file) else {
        return Head::default();
    };
    let mut watch = vec![head_file];
    let text = text.trim();
    let commit = match text.strip_prefix("ref:") {
        Some(refname) => resolve_ref(&git_dir, &common, refname.trim(), &mut watch),
        None => Some(text.to_ascii_lowercase()).filter(|h| is_object_name(h)),
    };
    Head { commit, watch }
}

/// The commit given from outside (a container build has no `.git`): 7 to 64 hex digits.
pub(crate) fn given_commit(value: &str) -> Result<Option<String>, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if (7..=64).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(Some(value.to_ascii_lowercase()))
    } else {
        Err(format!(
            "GATEHOUSE_BUILD_COMMIT={value:?} is not a commit id (7 to 64 hex digits)"
        ))
    }
}

/// `SOURCE_DATE_EPOCH` as reproducible-builds.org defines it: decimal seconds since the
/// epoch. A malformed value fails the build rather than stamping some other date.
pub(crate) fn source_date_epoch(value: &str) -> Result<u64, String> {
    value
        .trim()
        .parse::<u64>()
        .map_err(|_| format!("SOURCE_DATE_EPOCH={value:?} is not a number of seconds since 1970"))
}

/// Seconds since the epoch as an RFC 3339 UTC timestamp, `2026-11-30T05:09:16Z`.
pub(crate) fn utc_timestamp(secs: u64) -> String {
    let days = secs / 86_400;
    let rest = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`,
/// for non-negative days only; a build script has no dependency that would do it).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}
