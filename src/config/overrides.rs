//! `GATEHOUSE_` environment overrides: which variables are config keys, and what to say when
//! one does not fit the key it names (serde's "expected a sequence" alone does not say the
//! value came from the environment, or what it should look like).

use figment::providers::Env;

use super::raw::TOP_LEVEL_KEYS;

/// The environment prefix of overrides; `__` separates key levels.
const ENV_PREFIX: &str = "GATEHOUSE_";

/// Arrays of tables: an override cannot name one element (`GATEHOUSE_ISSUER__0__…` makes
/// `issuer` a table, which is not the array the file has).
const ARRAYS_OF_TABLES: &[&str] = &["issuer", "introspection", "route"];

/// The provider of overrides.
pub(super) fn provider() -> Env {
    // Only variables under a config table are overrides: `GATEHOUSE_CONFIG` and the
    // secrets that `*_env` keys name live under the same prefix and must not be read as keys.
    Env::prefixed(ENV_PREFIX)
        .split("__")
        .filter(|key| is_override(key.as_str()))
}

fn is_override(dotted: &str) -> bool {
    let top = dotted.split('.').next().unwrap_or_default();
    TOP_LEVEL_KEYS.iter().any(|k| k.eq_ignore_ascii_case(top))
}

/// The overrides set in this process: (key path as `a.b.c`, lowercase; variable name).
pub(super) fn present() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter_map(|name| {
            // `get`, not slicing: a name may hold a multi-byte character anywhere.
            let (prefix, rest) = (name.get(..ENV_PREFIX.len())?, name.get(ENV_PREFIX.len()..)?);
            if !prefix.eq_ignore_ascii_case(ENV_PREFIX) {
                return None;
            }
            let dotted = rest.to_ascii_lowercase().replace("__", ".");
            is_override(&dotted).then_some((dotted, name))
        })
        .collect()
}

/// What to add to the error `kind` at key `path` when an override in `present` caused it.
pub(super) fn hint(path: &str, kind: &str, present: &[(String, String)]) -> Option<String> {
    let path = path.to_ascii_lowercase();
    if ARRAYS_OF_TABLES.contains(&path.as_str()) && kind.contains("expected a sequence") {
        let (_, var) = present
            .iter()
            .find(|(key, _)| key.starts_with(&format!("{path}.")))?;
        return Some(format!(
            "{var} is an environment override inside [[{path}]]: arrays of tables cannot be \
             overridden from the environment; change them in the file"
        ));
    }
    if kind.contains("expected a sequence") {
        let (_, var) = present.iter().find(|(key, _)| *key == path)?;
        return Some(format!(
            "{var} sets an array, which an override writes in TOML, like {var}='[\"a\", \"b\"]'"
        ));
    }
    None
}

/// The overrides behind a problem at `key` (dotted, `[n]` or `.n` for an index, any case)
/// or named in its `text`: an override of the key itself, of a table holding it (a TOML
/// table in one variable), or of a key inside it (which created the table).
fn behind<'a>(key: &str, text: &str, present: &'a [(String, String)]) -> Vec<&'a str> {
    let key = key.to_ascii_lowercase().replace('[', ".").replace(']', "");
    let text = text.to_ascii_lowercase();
    let mut vars: Vec<&str> = present
        .iter()
        .filter(|(set, _)| {
            key == *set
                || key.starts_with(&format!("{set}."))
                || (!key.is_empty() && set.starts_with(&format!("{key}.")))
                || names(&text, set)
        })
        .map(|(_, var)| var.as_str())
        .collect();
    vars.sort_unstable();
    vars.dedup();
    vars
}

/// Whether `text` names the key `set` as a whole word (not a longer key it begins).
fn names(text: &str, set: &str) -> bool {
    let part_of_key = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    text.match_indices(set).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + set.len()..].chars().next();
        !before.is_some_and(part_of_key) && !after.is_some_and(part_of_key)
    })
}

/// `text`, about `key`, with the overrides behind it named: an error reported against the
/// config file must say when the value came from the environment, where the file may hold
/// another value or no such key.
pub(super) fn annotate(text: &str, key: &str, present: &[(String, String)]) -> String {
    match behind(key, text, present).as_slice() {
        [] => text.to_string(),
        vars => format!("{text} (set by {})", vars.join(", ")),
    }
}

/// A validation message (`key: text`), annotated as [`annotate`] does.
pub(super) fn annotate_message(message: &str, present: &[(String, String)]) -> String {
    match message.split_once(": ") {
        Some((key, text)) => format!("{key}: {}", annotate(text, key, present)),
        None => annotate(message, "", present),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_array_of_tables_override_is_named_and_refused_with_the_reason() {
        let present = set(&[("issuer.0.leeway", "GATEHOUSE_ISSUER__0__LEEWAY")]);
        let hint = hint(
            "issuer",
            "invalid type: found map, expected a sequence",
            &present,
        );
        let hint = hint.unwrap_or_default();
        assert!(
            hint.contains("GATEHOUSE_ISSUER__0__LEEWAY")
                && hint.contains("arrays of tables cannot be overridden"),
            "{hint}"
        );
        assert_eq!(
            super::hint("route", "found map, expected a sequence", &present),
            None,
            "no override under [[route]]"
        );
    }

    #[test]
    fn an_array_override_is_shown_in_toml() {
        let present = set(&[(
            "listen.trusted_proxies",
            "GATEHOUSE_LISTEN__TRUSTED_PROXIES",
        )]);
        let hint = hint(
            "listen.trusted_proxies",
            "invalid type: found string \"10.0.0.0/8\", expected a sequence",
            &present,
        );
        assert_eq!(
            hint.as_deref(),
            Some(
                "GATEHOUSE_LISTEN__TRUSTED_PROXIES sets an array, which an override writes in \
                 TOML, like GATEHOUSE_LISTEN__TRUSTED_PROXIES='[\"a\", \"b\"]'"
            )
        );
    }

    #[test]
    fn an_error_names_the_override_behind_its_key_or_its_text() {
        let present = set(&[
            (
                "limits.max_connections",
                "GATEHOUSE_LIMITS__MAX_CONNECTIONS",
            ),
            (
                "limits.max_header_bytes",
                "GATEHOUSE_LIMITS__MAX_HEADER_BYTES",
            ),
            ("tickets.ttl", "GATEHOUSE_TICKETS__TTL"),
            ("listen", "GATEHOUSE_LISTEN"),
        ]);
        let named = |message: &str| annotate_message(message, &present);
        assert_eq!(
            named("limits.max_connections: must be at least 1"),
            "limits.max_connections: must be at least 1 (set by GATEHOUSE_LIMITS__MAX_CONNECTIONS)"
        );
        assert_eq!(
            named("limits.max_token_bytes: 16384 is more than limits.max_header_bytes (8192)"),
            "limits.max_token_bytes: 16384 is more than limits.max_header_bytes (8192) \
             (set by GATEHOUSE_LIMITS__MAX_HEADER_BYTES)"
        );
        // The override that created the table, and one that set the whole table.
        assert!(named("tickets: issuing tickets needs an issuer")
            .ends_with("(set by GATEHOUSE_TICKETS__TTL)"));
        assert!(
            named("listen.trusted_proxies[1]: not a range").ends_with("(set by GATEHOUSE_LISTEN)")
        );
        // A longer key that begins like an override's is not it.
        assert_eq!(
            named("limits.max_connections_per_ip: must be at most 5"),
            "limits.max_connections_per_ip: must be at most 5"
        );
        assert_eq!(
            named("route[0].timeout: must be longer than zero"),
            "route[0].timeout: must be longer than zero"
        );
    }

    /// The README's list of tables an override may name is the list the loader uses.
    #[test]
    fn the_readme_lists_every_table_an_override_may_name() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        let start = readme
            .find("Only variables whose first level names a config table (")
            .unwrap_or(0);
        let list = readme[start..].split(')').next().unwrap_or_default();
        let listed: Vec<&str> = list.split('`').skip(1).step_by(2).collect();
        assert_eq!(listed, TOP_LEVEL_KEYS, "README's list: {list}");
    }
}
