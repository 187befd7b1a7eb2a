//! Config parsing: `gatehouse::config::load_str` then `config::validate::validate` on fuzzed
//! TOML text — what `gatehouse check` and `gatehouse run` do with a config file.
//!
//! Relative key and certificate paths are resolved against the repository root (as
//! `gatehouse check` run from there would), so those of config/gatehouse.toml (a seed)
//! resolve. `validate` reads the files a config names; a config naming an absolute path or
//! one with `..` is only parsed, not validated, so the fuzzer cannot make it read /dev/zero
//! or a FIFO (an operator's choice, not attacker input).
//!
//! Checked beyond "no panic": the effective config `gatehouse check` prints
//! (`FileConfig::to_masked_toml`) loads again and prints the same.

#![no_main]

use std::path::{Component, Path, PathBuf};

use gatehouse::config::FileConfig;
use libfuzzer_sys::fuzz_target;

/// Not `set_current_dir`: libFuzzer reads its corpus by relative path after the first run.
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn safe_path(p: &Path) -> bool {
    p.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && !p.starts_with("target")
        && !p.starts_with("fuzz/target")
}

/// Every file path a config names, for checking and rewriting.
fn paths(raw: &mut FileConfig) -> Vec<&mut PathBuf> {
    let tls = raw
        .listen
        .tls
        .iter_mut()
        .flat_map(|t| [&mut t.cert, &mut t.key]);
    let issuers = raw.issuers.iter_mut().flat_map(|i| {
        [
            &mut i.jwks_file,
            &mut i.public_key_file,
            &mut i.private_key_file,
        ]
    });
    let routes = raw.routes.iter_mut().map(|r| &mut r.upstream_ca_file);
    tls.chain(issuers)
        .chain(routes)
        .filter_map(Option::as_mut)
        .collect()
}

/// Secrets for `*_env` keys: present and long enough, except names that say otherwise.
fn secret(name: &str) -> Option<String> {
    if name.starts_with("UNSET") {
        None
    } else if name.starts_with("SHORT") {
        Some("short".into())
    } else {
        Some(format!(
            "fuzz-secret-for-{name}-0123456789abcdef0123456789abcdef"
        ))
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut raw) = gatehouse::config::load_str(text) else {
        return;
    };
    let printed = raw.to_masked_toml();
    match gatehouse::config::load_str(&printed) {
        Ok(again) => assert_eq!(
            again.to_masked_toml(),
            printed,
            "the printed effective config reads back differently"
        ),
        Err(e) => panic!("the printed effective config does not load: {e}\n{printed}"),
    }
    let mut files = paths(&mut raw);
    if !files.iter().all(|p| safe_path(p)) {
        return;
    }
    for p in &mut files {
        **p = Path::new(ROOT).join(&**p);
    }
    let result = gatehouse::config::validate::validate(&raw, &secret);
    if std::env::var_os("GATEHOUSE_FUZZ_DEBUG").is_some() {
        match &result {
            Ok(c) => eprintln!(
                "valid: {} routes, {} issuers",
                c.routes.len(),
                c.issuers.len()
            ),
            Err(e) => eprintln!("invalid:\n{e}"),
        }
    }
    if let Ok(config) = result {
        // What `Proxy::new` derives from it without binding or connecting.
        let _ = gatehouse::proxy::route::RouteTable::new(
            config.routes.iter().map(|r| (r.path.clone(), ())),
        );
        let _ = gatehouse::redact::Redactor::new(config.redact_params.iter().map(String::as_str));
    }
});
