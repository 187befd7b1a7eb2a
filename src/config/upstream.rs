//! A route's upstream endpoints: `upstream` as one URL or a list, `[route.upstream_discovery]`
//! (one DNS name, every address it resolves to an endpoint, re-resolved periodically), and
//! `affinity` with its seal key.
//!
//! Every endpoint of a route shares one scheme and the empty path, so a request means the
//! same thing whichever endpoint gets it; only the authority differs.

use std::path::PathBuf;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use serde::{Deserialize, Serialize};

use super::fields::{duration_within, http_url, ConfigErrors, LONGEST};

/// `upstream = "http://a:5000"` or `upstream = ["http://a:5000", "http://b:5000"]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged, expecting = "expected a URL in quotes, or a list of them")]
pub enum FileUpstream {
    One(String),
    Many(Vec<String>),
}

impl Default for FileUpstream {
    fn default() -> Self {
        FileUpstream::One(String::new())
    }
}

impl From<&str> for FileUpstream {
    fn from(url: &str) -> Self {
        FileUpstream::One(url.to_string())
    }
}

impl FileUpstream {
    fn urls(&self) -> Vec<&str> {
        match self {
            FileUpstream::One(url) if url.is_empty() => Vec::new(),
            FileUpstream::One(url) => vec![url.as_str()],
            FileUpstream::Many(urls) => urls.iter().map(String::as_str).collect(),
        }
    }
}

/// `[route.upstream_discovery]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct FileDiscovery {
    pub resolve_every: String,
}

impl Default for FileDiscovery {
    fn default() -> Self {
        Self {
            resolve_every: "10s".into(),
        }
    }
}

/// The endpoints of one route, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub scheme: Scheme,
    /// The listed authorities; with discovery, the one name to resolve.
    pub authorities: Vec<Authority>,
    /// Resolve `authorities[0]` every this long; every address is an endpoint.
    pub resolve_every: Option<Duration>,
    pub affinity: Affinity,
    /// The seal key; `None`: derived from the route's path.
    pub affinity_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affinity {
    None,
    /// The endpoint is sealed into the negotiate answer's connection token.
    SignalR,
}

/// The raw keys this module reads from one `[[route]]`.
pub(super) struct RawEndpoints<'a> {
    pub upstream: &'a FileUpstream,
    pub discovery: Option<&'a FileDiscovery>,
    pub affinity: &'a str,
    pub affinity_key_file: Option<&'a PathBuf>,
}

pub(super) fn validate_endpoints(
    e: &mut ConfigErrors,
    path: &str,
    raw: RawEndpoints<'_>,
) -> Option<Endpoints> {
    let before = e.count();
    let key = format!("{path}.upstream");
    let urls = raw.upstream.urls();
    if urls.is_empty() {
        e.push(&key, "required: the backend, like http://chat-hub:5000");
        return None;
    }
    let (scheme, authorities) = endpoint_urls(e, &key, raw.upstream, &urls);
    let resolve_every = discovery(e, path, &raw, &authorities, scheme.as_ref());
    let affinity = affinity(e, path, &raw);
    (e.count() == before).then(|| Endpoints {
        scheme: scheme.unwrap_or(Scheme::HTTP),
        authorities,
        resolve_every,
        affinity,
        affinity_key_file: raw.affinity_key_file.cloned(),
    })
}

/// The scheme every listed URL shares and their authorities, each listed once.
fn endpoint_urls(
    e: &mut ConfigErrors,
    key: &str,
    upstream: &FileUpstream,
    urls: &[&str],
) -> (Option<Scheme>, Vec<Authority>) {
    let mut scheme: Option<Scheme> = None;
    let mut authorities = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let key = match upstream {
            FileUpstream::One(_) => key.to_owned(),
            FileUpstream::Many(_) => format!("{key}[{i}]"),
        };
        let Some((s, authority)) = one_url(e, &key, url) else {
            continue;
        };
        match &scheme {
            Some(first) if *first != s => {
                e.push(&key, "every endpoint of a route uses the same scheme")
            }
            Some(_) => {}
            None => scheme = Some(s),
        }
        if authorities.contains(&authority) {
            e.push(key, format!("{authority} is listed twice"));
        }
        authorities.push(authority);
    }
    (scheme, authorities)
}

/// `affinity`, and the key file only affinity uses.
fn affinity(e: &mut ConfigErrors, path: &str, raw: &RawEndpoints<'_>) -> Affinity {
    let affinity = match raw.affinity {
        "none" => Affinity::None,
        "signalr" => Affinity::SignalR,
        other => {
            e.push(
                format!("{path}.affinity"),
                format!("{other:?} is not none or signalr"),
            );
            Affinity::None
        }
    };
    if let Some(file) = raw.affinity_key_file {
        if affinity == Affinity::None {
            e.push(format!("{path}.affinity_key_file"), "only with affinity");
        } else if !file.is_file() {
            let why = crate::files::not_readable(file);
            e.push(format!("{path}.affinity_key_file"), why);
        }
    }
    affinity
}

fn one_url(e: &mut ConfigErrors, key: &str, url: &str) -> Option<(Scheme, Authority)> {
    match http_url(url) {
        // Never sent: gatehouse does not authenticate to upstreams, so a password here would
        // only sit unused in the file (and `check` hides it).
        Some(uri) if uri.authority().is_some_and(|a| a.as_str().contains('@')) => {
            e.push(
                key,
                "user:password@ in an upstream URL is never sent upstream; remove it",
            );
            None
        }
        Some(uri) if uri.path() == "/" && uri.query().is_none() => {
            let parts = uri.into_parts();
            Some((parts.scheme?, parts.authority?))
        }
        Some(_) => {
            e.push(key, "give scheme and authority only, like http://host:port");
            None
        }
        None => {
            e.push(key, "must be an http:// or https:// URL");
            None
        }
    }
}

/// Discovery resolves one name, and only for plain http: the addresses it yields carry
/// no name a certificate could be checked against.
fn discovery(
    e: &mut ConfigErrors,
    path: &str,
    raw: &RawEndpoints<'_>,
    authorities: &[Authority],
    scheme: Option<&Scheme>,
) -> Option<Duration> {
    let found = raw.discovery?;
    let key = format!("{path}.upstream_discovery");
    let every = duration_within(
        e,
        &format!("{key}.resolve_every"),
        &found.resolve_every,
        Duration::from_secs(1)..=LONGEST,
        "",
    );
    if !matches!(raw.upstream, FileUpstream::One(_)) {
        e.push(
            &key,
            "discovery resolves one name: give upstream as one URL",
        );
    }
    if scheme == Some(&Scheme::HTTPS) {
        e.push(
            &key,
            "discovered addresses cannot be checked against a certificate: use http:// \
             inside the cluster, or list the https:// URLs",
        );
    }
    if authorities.first().is_some_and(|a| a.port_u16().is_none()) {
        e.push(&key, "give the port, like http://hub-headless:5000");
    }
    Some(every)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(upstream: FileUpstream, discovery: Option<FileDiscovery>, affinity: &str) -> String {
        let mut e = ConfigErrors::default();
        let raw = RawEndpoints {
            upstream: &upstream,
            discovery: discovery.as_ref(),
            affinity,
            affinity_key_file: None,
        };
        let found = validate_endpoints(&mut e, "route[0]", raw);
        assert_eq!(found.is_some(), e.messages().is_empty());
        e.to_string()
    }

    fn many(urls: &[&str]) -> FileUpstream {
        FileUpstream::Many(urls.iter().map(|u| u.to_string()).collect())
    }

    #[test]
    fn one_url_and_lists_are_accepted() {
        assert_eq!(check("http://hub:5000".into(), None, "none"), "");
        assert_eq!(
            check(many(&["http://a:5000", "http://b:5000"]), None, "signalr"),
            ""
        );
        let disc = Some(FileDiscovery::default());
        assert_eq!(
            check("http://hub-headless:5000".into(), disc, "signalr"),
            ""
        );
    }

    #[test]
    fn mixed_schemes_paths_and_repeats_are_refused() {
        let mixed = check(many(&["http://a:5000", "https://b:5000"]), None, "none");
        assert!(
            mixed.contains("route[0].upstream[1]: every endpoint"),
            "{mixed}"
        );
        let path = check(many(&["http://a:5000", "http://b:5000/api"]), None, "none");
        assert!(path.contains("route[0].upstream[1]: give scheme"), "{path}");
        let twice = check(many(&["http://a:5000", "http://a:5000"]), None, "none");
        assert!(twice.contains("listed twice"), "{twice}");
        assert!(check(many(&[]), None, "none").contains("required"));
        assert!(check("http://hub:5000".into(), None, "sticky").contains("affinity"));
    }

    #[test]
    fn discovery_needs_one_plain_http_name_with_a_port() {
        let disc = || Some(FileDiscovery::default());
        let list = check(many(&["http://a:5000", "http://b:5000"]), disc(), "none");
        assert!(list.contains("resolves one name"), "{list}");
        let tls = check("https://hub:5001".into(), disc(), "none");
        assert!(tls.contains("certificate"), "{tls}");
        let port = check("http://hub".into(), disc(), "none");
        assert!(port.contains("give the port"), "{port}");
        let fast = FileDiscovery {
            resolve_every: "10ms".into(),
        };
        assert!(check("http://hub:5000".into(), Some(fast), "none").contains("at least 1s"));
    }
}
