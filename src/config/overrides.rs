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
