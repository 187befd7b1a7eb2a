//! Reading the files gatehouse watches (config, TLS certificate and key, issuer keys,
//! CA bundles, `*_file` secrets): regular files only, and at most [`MAX_FILE_BYTES`].
//!
//! These paths are polled on the runtime and re-read on every reload, so a FIFO, a device
//! or a runaway file put there must become an error for that read, never a hang: the open
//! does not wait for a FIFO's writer (`O_NONBLOCK`), anything but a regular file is
//! refused before a byte is read, and the read stops one byte past the cap.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// No watched file is anywhere near this; a system CA bundle is about 200 KiB.
pub(crate) const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Reads a whole regular file of at most [`MAX_FILE_BYTES`]. Blocking but bounded: it
/// never waits on a peer, so callers on the runtime may use it for a poll tick.
pub(crate) fn read(path: &Path) -> io::Result<Vec<u8>> {
    read_capped(path, MAX_FILE_BYTES)
}

/// [`read`] as UTF-8 text.
pub(crate) fn read_to_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read(path)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

fn read_capped(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let file = open_nonblocking(path).map_err(|e| located(path, e))?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut contents = Vec::new();
    file.take(cap.saturating_add(1))
        .read_to_end(&mut contents)?;
    if contents.len() as u64 > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {cap} bytes"),
        ));
    }
    Ok(contents)
}

/// A relative path that is not found gets the directory it was looked for in: the sample
/// config's `config/example/tls.crt` is only found from the repository's root, and "No such
/// file or directory" alone does not say so.
fn located(path: &Path, err: io::Error) -> io::Error {
    match where_relative(path) {
        Some(hint) if err.kind() == io::ErrorKind::NotFound => {
            io::Error::new(err.kind(), format!("{err}; {hint}"))
        }
        _ => err,
    }
}

/// For a relative path: "relative paths are resolved from the working directory, DIR".
pub(crate) fn where_relative(path: &Path) -> Option<String> {
    if path.is_absolute() {
        return None;
    }
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|_| "(unknown)".into());
    Some(format!(
        "relative paths are resolved from the working directory, {cwd}"
    ))
}

/// "PATH is not a readable file", naming the working directory for a relative path.
pub(crate) fn not_readable(path: &Path) -> String {
    match where_relative(path) {
        Some(hint) => format!("{} is not a readable file ({hint})", path.display()),
        None => format!("{} is not a readable file", path.display()),
    }
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> io::Result<File> {
    File::open(path)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("key.pem");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let error = read(&fifo).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn devices_and_oversized_files_are_refused() {
        assert!(read(Path::new("/dev/zero")).is_err());
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; 11]).unwrap();
        assert_eq!(
            read_capped(&big, 10).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert_eq!(read_capped(&big, 11).unwrap().len(), 11);
    }
}
