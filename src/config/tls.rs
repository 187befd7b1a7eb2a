//! `[listen.tls]` handshake keys: resumption (`resumption`, `session_ticket_keys_file`,
//! `session_ticket_lifetime`, `session_cache_size`), `kx_groups` and `provider`.

use std::time::Duration;

use super::fields::{duration_within, or_default, ConfigErrors};
use super::raw::FileTls;
use super::types::{KxGroup, Resumption, TlsProvider};
use crate::ticket_keys::KeyRing;

/// Cheapest first, by the figures in bench/README.md ("TLS handshakes").
pub(super) const DEFAULT_KX_GROUPS: [KxGroup; 2] = [KxGroup::X25519, KxGroup::P256];
pub(super) const DEFAULT_CACHE_SIZE: usize = 20_000;
/// rustls reserves the whole cache at start (about 100 bytes per entry before any session
/// is stored, a few hundred per stored one): a size that cannot be allocated would abort
/// the process, so it is bounded here, where `check` sees it.
const LARGEST_CACHE_SIZE: usize = 1_000_000;
/// How often the certificate and ticket key files are checked for a change.
pub(super) const DEFAULT_RELOAD_INTERVAL: &str = "2s";
/// A client cannot resume after this; the key file's rotation must keep a key listed at
/// least this long after it stops sealing.
pub(super) const DEFAULT_TICKET_LIFETIME: &str = "12h";
/// rustls sends the lifetime as a 32-bit count of seconds; RFC 8446 caps it at 7 days.
const LONGEST_TICKET_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

pub(super) fn resumption(e: &mut ConfigErrors, t: &FileTls) -> Resumption {
    let cache_size = t.session_cache_size.unwrap_or(DEFAULT_CACHE_SIZE);
    if t.session_cache_size == Some(0) {
        e.push(
            "listen.tls.session_cache_size",
            "must be at least 1; to turn resumption off set resumption = false",
        );
    }
    if cache_size > LARGEST_CACHE_SIZE {
        e.push(
            "listen.tls.session_cache_size",
            format!("must be at most {LARGEST_CACHE_SIZE} (the whole cache is reserved at start)"),
        );
    }
    let lifetime = duration_within(
        e,
        "listen.tls.session_ticket_lifetime",
        or_default(&t.session_ticket_lifetime, DEFAULT_TICKET_LIFETIME),
        Duration::from_secs(1)..=LONGEST_TICKET_LIFETIME,
        "",
    );
    if t.resumption == Some(false) {
        if t.session_ticket_keys_file.is_some() {
            e.push(
                "listen.tls.session_ticket_keys_file",
                "is set but resumption = false; remove one of them",
            );
        }
        return Resumption::Off;
    }
    let Some(keys_file) = &t.session_ticket_keys_file else {
        return Resumption::Cache {
            cache_size,
            lifetime,
        };
    };
    // Fail closed: a key file that does not load stops `check` and start-up, rather than
    // quietly serving per-replica sessions.
    if let Err(why) = KeyRing::load(keys_file) {
        e.push("listen.tls.session_ticket_keys_file", why);
    }
    Resumption::Tickets {
        keys_file: keys_file.clone(),
        lifetime,
        cache_size,
    }
}

pub(super) fn kx_groups(e: &mut ConfigErrors, t: &FileTls) -> Vec<KxGroup> {
    let Some(names) = &t.kx_groups else {
        return DEFAULT_KX_GROUPS.to_vec();
    };
    if names.is_empty() {
        e.push("listen.tls.kx_groups", "lists no group");
    }
    let mut groups = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let key = format!("listen.tls.kx_groups[{i}]");
        match KxGroup::ALL.iter().find(|(known, _)| known == name) {
            Some((_, group)) if groups.contains(group) => e.push(key, "is listed twice"),
            Some((_, group)) => groups.push(*group),
            None => {
                let known: Vec<&str> = KxGroup::ALL.iter().map(|(n, _)| *n).collect();
                e.push(key, format!("{name:?} is not one of {}", known.join(", ")));
            }
        }
    }
    groups
}

/// aws-lc-rs by default: its handshakes cost less than ring's (bench/README.md, "TLS
/// termination"), and only it has the hybrid post-quantum group.
pub(super) fn provider(e: &mut ConfigErrors, t: &FileTls, groups: &[KxGroup]) -> TlsProvider {
    let Some(name) = &t.provider else {
        return TlsProvider::AwsLcRs;
    };
    let Some((_, provider)) = TlsProvider::ALL.iter().find(|(known, _)| known == name) else {
        let known: Vec<&str> = TlsProvider::ALL.iter().map(|(n, _)| *n).collect();
        let why = format!("{name:?} is not one of {}", known.join(", "));
        e.push("listen.tls.provider", why);
        return TlsProvider::AwsLcRs;
    };
    if *provider == TlsProvider::Ring && groups.contains(&KxGroup::X25519MlKem768) {
        let why = "X25519MLKEM768 needs provider = \"aws-lc-rs\"";
        e.push("listen.tls.kx_groups", why);
    }
    *provider
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml: &str) -> (Resumption, Vec<KxGroup>, Vec<String>) {
        let t: FileTls = toml::from_str(toml).unwrap();
        let mut e = ConfigErrors::default();
        let r = resumption(&mut e, &t);
        let k = kx_groups(&mut e, &t);
        provider(&mut e, &t, &k);
        (r, k, e.messages().to_vec())
    }

    #[test]
    fn the_provider_is_aws_lc_rs_unless_ring_is_asked_for() {
        let chosen = |toml: &str| {
            let t: FileTls = toml::from_str(toml).unwrap();
            let mut e = ConfigErrors::default();
            (provider(&mut e, &t, &[]), e.messages().to_vec())
        };
        assert_eq!(chosen(""), (TlsProvider::AwsLcRs, vec![]));
        assert_eq!(chosen("provider = \"ring\""), (TlsProvider::Ring, vec![]));
        let (_, errors) = chosen("provider = \"openssl\"");
        assert_eq!(
            errors,
            ["listen.tls.provider: \"openssl\" is not one of aws-lc-rs, ring"]
        );
        let (_, _, errors) = check("provider = \"ring\"\nkx_groups = [\"X25519MLKEM768\"]");
        assert_eq!(
            errors,
            ["listen.tls.kx_groups: X25519MLKEM768 needs provider = \"aws-lc-rs\""]
        );
    }

    #[test]
    fn defaults_are_a_cache_and_the_cheapest_groups() {
        let (r, k, errors) = check("");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            r,
            Resumption::Cache {
                cache_size: 20_000,
                lifetime: Duration::from_secs(12 * 3600)
            }
        );
        assert_eq!(k, DEFAULT_KX_GROUPS.to_vec());
        assert_eq!(check("resumption = false").0, Resumption::Off);
    }

    #[test]
    fn a_key_file_that_does_not_load_fails_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "c2hvcnQ=\n").unwrap();
        for (file, want) in [
            (bad.display().to_string(), "line 1: a key is 48 bytes"),
            (dir.path().join("missing").display().to_string(), "reading"),
        ] {
            let (_, _, errors) = check(&format!("session_ticket_keys_file = {file:?}"));
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].starts_with("listen.tls.session_ticket_keys_file: "));
            assert!(errors[0].contains(want), "{errors:?}");
        }
        let good = dir.path().join("good");
        std::fs::write(
            &good,
            "87heYZXmwh//WluIzjJbEY3PKcPhepy+Yi9sQWA4jp1ivAV9nhrS2SbgpwqSPZy0\n",
        )
        .unwrap();
        let (r, _, errors) = check(&format!(
            "session_ticket_keys_file = {:?}\nsession_ticket_lifetime = \"6h\"",
            good.display().to_string()
        ));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            r,
            Resumption::Tickets {
                keys_file: good.clone(),
                lifetime: Duration::from_secs(6 * 3600),
                cache_size: 20_000
            }
        );
        let (_, _, errors) = check(&format!(
            "resumption = false\nsession_ticket_keys_file = {:?}",
            good.display().to_string()
        ));
        assert_eq!(errors.len(), 1, "{errors:?}");
    }

    #[test]
    fn bad_lifetimes_sizes_and_groups_are_named() {
        for (toml, want) in [
            ("session_cache_size = 0", "listen.tls.session_cache_size: "),
            (
                "session_cache_size = 4294967296",
                "listen.tls.session_cache_size: must be at most 1000000",
            ),
            (
                "session_ticket_lifetime = \"8d\"",
                "listen.tls.session_ticket_lifetime: ",
            ),
            (
                "session_ticket_lifetime = \"1ms\"",
                "listen.tls.session_ticket_lifetime: must be between 1s and 7days",
            ),
            ("kx_groups = []", "listen.tls.kx_groups: lists no group"),
            (
                "kx_groups = [\"X25519\", \"X448\"]",
                "listen.tls.kx_groups[1]: \"X448\"",
            ),
            (
                "kx_groups = [\"P-256\", \"P-256\"]",
                "listen.tls.kx_groups[1]: is listed twice",
            ),
        ] {
            let (_, _, errors) = check(toml);
            assert_eq!(errors.len(), 1, "{toml}: {errors:?}");
            assert!(errors[0].starts_with(want), "{toml}: {errors:?}");
        }
        let (_, k, _) = check("kx_groups = [\"P-256\", \"X25519MLKEM768\"]");
        assert_eq!(k, vec![KxGroup::P256, KxGroup::X25519MlKem768]);
    }
}
