//! What every table's validator shares: the error list ([`ConfigErrors`]) and the parsers
//! of durations, addresses, URLs and secrets.

use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

use http::Uri;

use crate::secret::Secret;

/// Every problem found in a config, each with its key path.
#[derive(Debug, Default)]
pub struct ConfigErrors(pub(super) Vec<String>);

impl ConfigErrors {
    pub(super) fn push(&mut self, path: impl fmt::Display, message: impl fmt::Display) {
        self.0.push(format!("{path}: {message}"));
    }

    /// How many errors so far: a table's validator compares before and after.
    pub(super) fn count(&self) -> usize {
        self.0.len()
    }

    pub fn messages(&self) -> &[String] {
        &self.0
    }

    pub fn single(message: String) -> Self {
        Self(vec![message])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(e)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Looks up the value of an environment variable that a `*_env` key names.
pub type SecretLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads secrets from the process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

pub(super) fn socket_addr(e: &mut ConfigErrors, key: &str, raw: &str) -> SocketAddr {
    raw.parse().unwrap_or_else(|_| {
        e.push(key, format!("{raw:?} is not an address like 0.0.0.0:8443"));
        SocketAddr::from(([127, 0, 0, 1], 0))
    })
}

/// No setting needs more than a year, and clock arithmetic with absurd values overflows.
pub const LONGEST: Duration = Duration::from_secs(366 * 24 * 3600);
/// The shortest duration that is not zero.
pub const ABOVE_ZERO: Duration = Duration::from_nanos(1);
/// The shortest polling interval and probe timeout: a file polled more often than this, or
/// a probe given less time, only burns CPU or fails whatever it asks.
pub const SHORTEST_POLL: Duration = Duration::from_millis(100);

/// `raw` as a duration within `range`, or the reason it is not, in words that name the
/// bounds. Every duration gatehouse reads (config keys and command-line flags) goes
/// through it, so a bound is said the same way wherever it applies.
pub fn parse_duration(raw: &str, range: &RangeInclusive<Duration>) -> Result<Duration, String> {
    let (min, max) = (*range.start(), *range.end());
    let d = humantime::parse_duration(raw)
        .map_err(|_| format!("{raw:?} is not a duration like \"30s\" or \"5m\""))?;
    if range.contains(&d) {
        return Ok(d);
    }
    let shown = |d: Duration| humantime::format_duration(d).to_string();
    Err(match (min, max) {
        (_, LONGEST) if d > LONGEST => format!("{raw:?} is longer than a year"),
        (ABOVE_ZERO, LONGEST) => "must be longer than zero".to_string(),
        (min, LONGEST) => format!("must be at least {}", shown(min)),
        (Duration::ZERO | ABOVE_ZERO, max) => format!("must be at most {}", shown(max)),
        (min, max) => format!("must be between {} and {}", shown(min), shown(max)),
    })
}

/// A duration key: a timeout, interval, lifetime or grace. Zero is refused: a timeout of
/// zero fails every request, an interval of zero spins a loop, a retention of zero drops
/// what it was meant to keep. Keys where zero means something use [`duration_or_zero`],
/// keys with bounds of their own [`duration_within`].
pub(super) fn duration(e: &mut ConfigErrors, key: &str, raw: &str) -> Duration {
    duration_within(e, key, raw, ABOVE_ZERO..=LONGEST, "")
}

/// A duration key whose documentation says what zero means (no clock skew allowed, no
/// cap on a session, nothing cached).
pub(super) fn duration_or_zero(e: &mut ConfigErrors, key: &str, raw: &str) -> Duration {
    duration_within(e, key, raw, Duration::ZERO..=LONGEST, "")
}

/// A duration key with bounds of its own; `why` (may be empty) follows the bounds in the
/// one error a bad value gets.
pub(super) fn duration_within(
    e: &mut ConfigErrors,
    key: &str,
    raw: &str,
    range: RangeInclusive<Duration>,
    why: &str,
) -> Duration {
    match parse_duration(raw, &range) {
        Ok(d) => d,
        Err(message) if why.is_empty() => {
            e.push(key, message);
            Duration::ZERO
        }
        Err(message) => {
            e.push(key, format!("{message}: {why}"));
            Duration::ZERO
        }
    }
}

/// `raw`, or `default` when the key was left empty (validation resolves the default).
pub(super) fn or_default<'a>(raw: &'a str, default: &'a str) -> &'a str {
    if raw.is_empty() {
        default
    } else {
        raw
    }
}

pub(super) fn secret(
    e: &mut ConfigErrors,
    key: &str,
    var: &str,
    secrets: SecretLookup<'_>,
) -> Option<Secret> {
    match secrets(var) {
        Some(value) if !value.is_empty() => Some(Secret::new(value)),
        Some(_) => {
            e.push(key, format!("environment variable {var} is set but empty"));
            None
        }
        None => {
            e.push(key, format!("environment variable {var} is not set"));
            None
        }
    }
}

/// Where a secret came from, as far as validation is concerned.
pub(super) enum SecretSource {
    /// Neither `{base}_env` nor `{base}_file` is set.
    Unset,
    /// `key`: the one of `{base}_env` and `{base}_file` it came from, for errors about
    /// the value.
    Found { secret: Secret, key: String },
    /// Set but unusable; the error is already recorded.
    Invalid,
}

/// A secret named by `{base}_env` (an environment variable, read at start and at each
/// reload of the process's own environment) or `{base}_file` (a file, re-read and watched
/// on reload, so a rotated Kubernetes Secret needs no restart). One trailing newline is
/// dropped from a file. Error messages name the key and path, never the value.
pub(super) fn secret_source(
    e: &mut ConfigErrors,
    base: &str,
    env: Option<&str>,
    file: Option<&Path>,
    secrets: SecretLookup<'_>,
) -> SecretSource {
    match (env, file) {
        (None, None) => SecretSource::Unset,
        (Some(_), Some(_)) => {
            e.push(
                format!("{base}_env"),
                format!("set {base}_env or {base}_file, not both"),
            );
            SecretSource::Invalid
        }
        (Some(var), None) => {
            let key = format!("{base}_env");
            match secret(e, &key, var, secrets) {
                Some(secret) => SecretSource::Found { secret, key },
                None => SecretSource::Invalid,
            }
        }
        (None, Some(path)) => {
            let key = format!("{base}_file");
            match crate::files::read_to_string(path) {
                Ok(text) => {
                    let value = text
                        .strip_suffix('\n')
                        .map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
                    if value.is_empty() {
                        e.push(key, format!("{} is empty", path.display()));
                        SecretSource::Invalid
                    } else {
                        let secret = Secret::new(value.to_string());
                        SecretSource::Found { secret, key }
                    }
                }
                Err(err) => {
                    e.push(key, format!("reading {}: {err}", path.display()));
                    SecretSource::Invalid
                }
            }
        }
    }
}

pub(super) fn http_url(raw: &str) -> Option<Uri> {
    let uri: Uri = raw.parse().ok()?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    (scheme_ok && uri.authority().is_some()).then_some(uri)
}
