//! The effective config `gatehouse check` prints: the file as read, with the defaults that
//! validation applies to keys left out written in, so the printed config says what runs
//! and, checked again, prints itself.

use super::cors::{FileCors, FileCorsTable};
use super::raw::{
    FileConfig, FileIntrospection, FileIssuer, FileListen, FileLogout, FileRoute, FileTickets,
    FileTls,
};
use super::types::{KxGroup, TlsProvider};
use super::upstream::FileDiscovery;

/// Defaults of keys that stay unset (`Option`, or an empty string) in the raw config
/// because validation resolves them; each default comes from the module that applies it.
pub(super) fn fill_defaults(raw: &mut FileConfig) {
    if let Some(tls) = raw.listen.tls.as_mut() {
        tls_defaults(tls);
    }
    for issuer in &mut raw.issuers {
        issuer_defaults(issuer);
    }
    let limits = &mut raw.limits;
    let token = *limits
        .max_token_bytes
        .get_or_insert(super::limits::default_max_token_bytes(
            limits.max_header_bytes,
        ));
    limits
        .pre_auth_bytes
        .get_or_insert(super::limits::default_pre_auth_bytes(token));
}

/// A config with one of every table (optional tables present, one element in each array
/// of tables), defaults filled in: what each key holds when it is left out, for wording
/// an error about the key.
pub(super) fn every_table() -> FileConfig {
    let mut raw = FileConfig {
        listen: FileListen {
            tls: Some(FileTls::default()),
            ..FileListen::default()
        },
        issuers: vec![FileIssuer::default()],
        introspections: vec![FileIntrospection::default()],
        tickets: Some(FileTickets::default()),
        logout: Some(FileLogout::default()),
        routes: vec![FileRoute {
            upstream_discovery: Some(FileDiscovery::default()),
            cors: FileCors::Table(FileCorsTable::default()),
            ..FileRoute::default()
        }],
        ..FileConfig::default()
    };
    fill_defaults(&mut raw);
    raw
}

fn tls_defaults(tls: &mut FileTls) {
    tls.resumption.get_or_insert(true);
    tls.session_cache_size
        .get_or_insert(super::tls::DEFAULT_CACHE_SIZE);
    tls.kx_groups.get_or_insert_with(|| {
        super::tls::DEFAULT_KX_GROUPS
            .iter()
            .filter_map(|group| KxGroup::ALL.iter().find(|(_, g)| g == group))
            .map(|(name, _)| name.to_string())
            .collect()
    });
    tls.provider.get_or_insert_with(|| {
        TlsProvider::ALL
            .iter()
            .find(|(_, p)| *p == TlsProvider::AwsLcRs)
            .map_or("aws-lc-rs", |(name, _)| name)
            .to_string()
    });
    if tls.reload_interval.is_empty() {
        tls.reload_interval = super::tls::DEFAULT_RELOAD_INTERVAL.into();
    }
    if tls.session_ticket_lifetime.is_empty() {
        tls.session_ticket_lifetime = super::tls::DEFAULT_TICKET_LIFETIME.into();
    }
}

fn issuer_defaults(issuer: &mut FileIssuer) {
    issuer
        .leeway
        .get_or_insert_with(|| super::issuer::DEFAULT_LEEWAY.into());
    issuer
        .refresh
        .get_or_insert_with(|| super::issuer::DEFAULT_REFRESH.into());
    if issuer.algorithms.is_empty() {
        let hmac = issuer.hmac_secret_env.is_some() || issuer.hmac_secret_file.is_some();
        issuer.algorithms = super::issuer::default_algorithms(hmac)
            .iter()
            .map(|alg| format!("{alg:?}"))
            .collect();
    }
}
