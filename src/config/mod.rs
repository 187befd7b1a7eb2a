//! Configuration: `gatehouse.toml` plus `GATEHOUSE_` environment overrides.
//!
//! The pipeline is `TOML + env -> FileConfig (raw, defaults filled) -> Config (typed)`.
//! This module owns the first arrow: figment merges the sources and `serde_ignored`
//! collects every key nobody reads, so an operator sees *all* unknown keys at once rather
//! than the first one `deny_unknown_fields` would stop at. [`validate`] owns the second
//! arrow and the typed structs. Raw values that need checking (durations, addresses,
//! algorithm names) stay strings here so one bad value cannot hide the next.

mod claims;
mod cors;
mod effective;
pub mod fields;
mod issuer;
mod limits;
mod listen;
mod logout;
pub mod outbound;
mod overrides;
mod paths;
mod plain;
mod raw;
pub mod redaction;
mod route;
mod stores;
mod tls;
pub mod trace;
mod types;
pub mod upstream;
pub mod validate;

use std::path::Path;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Value};
use figment::Figment;

pub use cors::{normalize_origin, origin_listed, origin_named, CorsAnswer, CorsConfig};
pub use fields::ConfigErrors;
pub use listen::ClientTrust;
pub use raw::*;
pub use route::{normalize_route_path, token_source};
pub use stores::valid_ticket_param;
pub use validate::{
    AuthMode, Config, IdentityClaims, IssuerConfig, KeySource, KxGroup, LogFormat, LogoutConfig,
    Resumption, RouteConfig, TicketsConfig, TlsFiles, TlsProvider, TokenSource, UpstreamAuth,
};

/// Where `run` and `check` look when `--config` is not given and `$GATEHOUSE_CONFIG` is unset.
pub const DEFAULT_PATH: &str = "config/gatehouse.toml";

/// A config file could not be turned into a `FileConfig`.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not read, or not TOML: nothing in it could be checked.
    #[error("{0}")]
    Parse(String),
    /// Keys whose values have the wrong type (every one), then the unknown keys found
    /// beside them. The values themselves are judged once every type is right.
    #[error("{}", .0.join("; "))]
    Types(Vec<String>),
    /// Keys nobody reads; the config read without them comes along, so its other errors can
    /// be reported in the same run.
    #[error("unknown keys: {}", .0.join(", "))]
    UnknownKeys(Vec<String>, Box<FileConfig>),
}

/// Why [`load_validated`] refused a config file.
#[derive(Debug)]
pub enum Refused {
    /// Not read, or not TOML: nothing in it could be checked.
    Unreadable(String),
    /// Every problem found: unknown keys first, then what validation found in the rest (or
    /// the keys of the wrong type, which stop validation).
    Invalid(Vec<String>),
}

impl Refused {
    pub fn messages(&self) -> Vec<String> {
        match self {
            Refused::Unreadable(message) => vec![message.clone()],
            Refused::Invalid(messages) => messages.clone(),
        }
    }
}

/// Reads and validates `path` as `check`, `run` and a reload do. A file with unknown keys
/// is still validated, so one run reports them together with every other error. An error
/// whose value an environment override set names the variable.
pub fn load_validated(
    path: &Path,
    secrets: fields::SecretLookup<'_>,
) -> Result<(FileConfig, Config), Refused> {
    let present = overrides::present();
    let (raw, mut errors) = match load_file_with(path, &present) {
        Ok(raw) => (raw, Vec::new()),
        Err(LoadError::UnknownKeys(keys, raw)) => {
            (*raw, vec![format!("unknown keys: {}", keys.join(", "))])
        }
        Err(LoadError::Types(messages)) => return Err(Refused::Invalid(messages)),
        Err(e @ LoadError::Parse(_)) => return Err(Refused::Unreadable(e.to_string())),
    };
    match validate::validate(&raw, secrets) {
        Ok(config) if errors.is_empty() => Ok((raw, config)),
        Ok(_) => Err(Refused::Invalid(errors)),
        Err(invalid) => {
            let named = invalid.messages().iter();
            errors.extend(named.map(|m| overrides::annotate_message(m, &present)));
            Err(Refused::Invalid(errors))
        }
    }
}

/// Reads `path` and the process environment into a raw config.
pub fn load_file(path: &Path) -> Result<FileConfig, LoadError> {
    load_file_with(path, &overrides::present())
}

/// `present`: the environment overrides set, as [`overrides::present`] lists them.
fn load_file_with(path: &Path, present: &[(String, String)]) -> Result<FileConfig, LoadError> {
    // Read by us rather than figment: a FIFO or a huge file here is an error, not a hang.
    let text = crate::files::read_to_string(path)
        .map_err(|e| LoadError::Parse(format!("reading {}: {e}", path.display())))?;
    let figment = Figment::new()
        .merge(Toml::string(&text))
        .merge(overrides::provider());
    from_figment(&figment, present)
}

/// Reads TOML text (no file, no environment) into a raw config; demo and tests use it.
pub fn load_str(toml: &str) -> Result<FileConfig, LoadError> {
    from_figment(&Figment::new().merge(Toml::string(toml)), &[])
}

/// `present`: the environment overrides set, as [`overrides::present`] lists them.
fn from_figment(figment: &Figment, present: &[(String, String)]) -> Result<FileConfig, LoadError> {
    let dict: Dict = figment
        .extract()
        .map_err(|e| LoadError::Parse(plain::describe(e, present)))?;
    let value = Value::from(dict);
    let mut unknown = Vec::new();
    let read = serde_ignored::deserialize(&value, |path| unknown.push(plain::key_path(&path)));
    let named = |keys: Vec<String>| -> Vec<String> {
        keys.iter()
            .map(|key| overrides::annotate(key, key, present))
            .collect()
    };
    match read {
        Ok(parsed) if unknown.is_empty() => Ok(parsed),
        Ok(parsed) => Err(LoadError::UnknownKeys(named(unknown), Box::new(parsed))),
        Err(first) => {
            let (mut errors, unknown) = plain::every_type_error(&value, first, present);
            if !unknown.is_empty() {
                errors.insert(0, format!("unknown keys: {}", named(unknown).join(", ")));
            }
            Err(LoadError::Types(errors))
        }
    }
}

impl FileConfig {
    /// The effective config as TOML, for `gatehouse check`. It holds no secret values
    /// (secrets are named by `*_env` keys), and credentials inside URLs are masked.
    pub fn to_masked_toml(&self) -> String {
        let mut filled = self.clone();
        effective::fill_defaults(&mut filled);
        let mut value = match toml::Value::try_from(&filled) {
            Ok(v) => v,
            Err(e) => return format!("# could not render config: {e}\n"),
        };
        mask_urls(&mut value);
        toml::to_string_pretty(&value).unwrap_or_else(|e| format!("# could not render: {e}\n"))
    }
}

fn mask_urls(value: &mut toml::Value) {
    match value {
        toml::Value::String(s) => {
            if let Some(masked) = crate::redact::mask_url(s) {
                *s = masked;
            }
        }
        toml::Value::Array(items) => items.iter_mut().for_each(mask_urls),
        toml::Value::Table(table) => table.iter_mut().for_each(|(_, v)| mask_urls(v)),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
