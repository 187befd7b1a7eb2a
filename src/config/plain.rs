//! Load errors in the words of the config file: key paths as the operator wrote them
//! (without serde's markers for optional tables), types as TOML names them (a whole
//! number, text in quotes, a table) rather than as Rust does (`usize`, `struct
//! FileLimits`), and the `GATEHOUSE_*` variable named when an override set the value.
//!
//! serde stops a document at its first error; [`every_type_error`] reads each key again
//! on its own, so one `check` lists every key of the wrong type.

use figment::error::{Actual, Kind};
use figment::value::{Dict, Value};

use super::overrides;
use super::raw::FileConfig;

/// An unread key's path, dotted: `route.1.upstream_discovery.resolve_evry`. serde_ignored
/// marks an optional table's level (`tickets`, `[listen.tls]`,
/// `[route.upstream_discovery]`) with a `?` of its own, which names no key.
pub(super) fn key_path(path: &serde_ignored::Path<'_>) -> String {
    let mut segments = Vec::new();
    let mut at = path;
    loop {
        at = match at {
            serde_ignored::Path::Root => break,
            serde_ignored::Path::Seq { parent, index } => {
                segments.push(index.to_string());
                parent
            }
            serde_ignored::Path::Map { parent, key } => {
                segments.push(key.clone());
                parent
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => parent,
        };
    }
    segments.reverse();
    segments.join(".")
}

/// What reading `value` into a `FileConfig` found when it failed (with `first`): every
/// key of the wrong type, described, and the unknown keys beside them. Each key that holds
/// a value is read on its own, in a document that holds nothing else; the errors come in
/// the order of the keys, each once.
pub(super) fn every_type_error(
    value: &Value,
    first: figment::Error,
    present: &[(String, String)],
) -> (Vec<String>, Vec<String>) {
    let mut probes = Vec::new();
    walk(value, &mut Vec::new(), &mut probes);
    let (mut errors, mut unknown) = (Vec::new(), Vec::new());
    for probe in &probes {
        let read: Result<FileConfig, _> =
            serde_ignored::deserialize(probe, |path| unknown.push(key_path(&path)));
        if let Err(e) = read {
            errors.push(describe(e, present));
        }
    }
    if errors.is_empty() {
        // Not a key's type (none failed alone): the document's own error stands.
        errors.push(describe(first, present));
    }
    (once_each(errors), once_each(unknown))
}

/// A step from a table to one of its values.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// One probe per key that holds a value (not a table, not an array of tables): the
/// document with that key alone, at the same path.
fn walk<'a>(value: &'a Value, at: &mut Vec<Step<'a>>, probes: &mut Vec<Value>) {
    match value {
        Value::Dict(_, dict) if !dict.is_empty() => {
            for (key, inner) in dict {
                at.push(Step::Key(key));
                walk(inner, at, probes);
                at.pop();
            }
        }
        Value::Array(_, items)
            if !items.is_empty() && items.iter().all(|i| matches!(i, Value::Dict(..))) =>
        {
            for (index, item) in items.iter().enumerate() {
                at.push(Step::Index(index));
                walk(item, at, probes);
                at.pop();
            }
        }
        leaf => probes.push(alone(at, leaf.clone())),
    }
}

/// `leaf` at the path `at`, in a document that holds nothing else. An array of tables
/// keeps the index: the tables before it are empty (their defaults).
fn alone(at: &[Step<'_>], leaf: Value) -> Value {
    at.iter().rev().fold(leaf, |inner, step| match step {
        Step::Key(key) => Value::from(Dict::from([(key.to_string(), inner)])),
        Step::Index(index) => {
            let mut items = vec![Value::from(Dict::new()); *index];
            items.push(inner);
            Value::from(items)
        }
    })
}

fn once_each(items: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|item| seen.insert(item.clone()))
        .collect()
}

/// One line per error: `path: what is wrong`, the override that set the value named.
pub(super) fn describe(error: figment::Error, present: &[(String, String)]) -> String {
    error
        .into_iter()
        .map(|e| {
            let path = e.path.join(".");
            // The hints read serde's own words; the operator reads ours.
            let serde_words = e.kind.to_string();
            let kind = match &e.kind {
                Kind::Message(_) => without_source_lines(&serde_words),
                kind => in_words(kind, &e.path),
            };
            let kind = match overrides::hint(&path, &serde_words, present) {
                Some(hint) => format!("{kind} ({hint})"),
                None => overrides::annotate(&kind, &path, present),
            };
            if path.is_empty() {
                kind
            } else {
                format!("{path}: {kind}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A TOML syntax error quotes the offending line, which may hold a Redis password; keep
/// the position and the reason only (these messages reach logs on reload).
fn without_source_lines(message: &str) -> String {
    let mut lines = message.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default();
    match lines.next_back() {
        Some(reason) if message.contains('|') => format!("{first}: {reason}"),
        _ => message.to_string(),
    }
}

/// A type error as the file's writer would put it, with the fix when it is a duration
/// written without quotes.
fn in_words(kind: &Kind, path: &[String]) -> String {
    match kind {
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            let number = matches!(
                actual,
                Actual::Unsigned(_) | Actual::Signed(_) | Actual::Float(_)
            );
            let fix = if number && expected == "a string" && is_duration(path) {
                " (a duration is text with a unit, like \"10s\")"
            } else {
                ""
            };
            format!(
                "expected {}, found {}{fix}",
                expected_in_words(expected),
                actual_in_words(actual)
            )
        }
        Kind::InvalidLength(len, expected) => {
            format!(
                "expected {}, found a list of {len}",
                expected_in_words(expected)
            )
        }
        Kind::UnknownVariant(found, known) => {
            format!("{found:?} is not one of {}", known.join(", "))
        }
        Kind::ISizeOutOfRange(n) => format!("the number {n} is out of range"),
        Kind::USizeOutOfRange(n) => format!("the number {n} is out of range"),
        other => other.to_string(),
    }
}

fn expected_in_words(expected: &str) -> String {
    match expected {
        "u8" => "a whole number from 0 to 255".into(),
        "u16" => "a whole number from 0 to 65535".into(),
        "u32" => "a whole number from 0 to 4294967295".into(),
        "u64" | "u128" | "usize" => "a whole number, 0 or more".into(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a string" | "a borrowed string" => "text in quotes".into(),
        "a boolean" => "true or false".into(),
        "a sequence" => "a list, like [\"a\", \"b\"]".into(),
        "a map" => "a table".into(),
        "a character" => "one character in quotes".into(),
        other if other.starts_with("struct ") => "a table".into(),
        other => other.into(),
    }
}

fn actual_in_words(actual: &Actual) -> String {
    match actual {
        Actual::Bool(v) => v.to_string(),
        Actual::Unsigned(v) => format!("the number {v}"),
        Actual::Signed(v) => format!("the number {v}"),
        Actual::Float(v) => format!("the number {v}"),
        Actual::Str(v) => format!("the text {v:?}"),
        Actual::Seq => "a list".into(),
        Actual::Map => "a table".into(),
        other => other.to_string(),
    }
}

/// Whether the key at `path` holds a duration: its default (from a config with one of
/// every table, defaults filled in as `check` prints them) reads as one. Asked only to
/// word an error, so it costs nothing on a good config.
fn is_duration(path: &[String]) -> bool {
    let Ok(mut at) = toml::Value::try_from(super::effective::every_table()) else {
        return false;
    };
    for segment in path {
        at = match at {
            // An array of tables: its one sample stands for every index.
            toml::Value::Array(mut items) if segment.parse::<usize>().is_ok() => {
                match items.pop() {
                    Some(item) => item,
                    None => return false,
                }
            }
            toml::Value::Table(mut table) => match table.remove(segment) {
                Some(value) => value,
                None => return false,
            },
            _ => return false,
        };
    }
    at.as_str()
        .is_some_and(|s| humantime::parse_duration(s).is_ok())
}
