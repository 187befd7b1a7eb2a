//! Outbound trust: the rules for the URLs gatehouse itself fetches from — OIDC discovery,
//! JWKS and introspection endpoints — where keys come in and client secrets and tokens go
//! out. `https://` is required; plain `http://` is accepted for a loopback address (an IdP
//! on the same host: nothing crosses a network) and, elsewhere, only where the issuer or
//! introspection table says `allow_http = true`. Every plain-http URL that is accepted is
//! named by `config::outbound::warnings`, which `gatehouse check` and `gatehouse run` print.

use std::net::IpAddr;

use http::Uri;

/// How a URL may be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Https,
    /// Plain http to 127.0.0.0/8, `::1` or `localhost`.
    LoopbackHttp,
    /// Plain http elsewhere, allowed by `allow_http = true`.
    AllowedHttp,
}

/// Why a URL may not be fetched from.
pub const HTTP_REFUSED: &str = "must be https:// (plain http would let anyone on the path \
     swap keys or read secrets); set allow_http = true on this table to accept it";

/// The transport `uri` would use, or why it is refused.
pub fn transport(uri: &Uri, allow_http: bool) -> Result<Transport, &'static str> {
    match uri.scheme_str() {
        Some("https") => Ok(Transport::Https),
        Some("http") if uri.host().is_some_and(is_loopback) => Ok(Transport::LoopbackHttp),
        Some("http") if allow_http => Ok(Transport::AllowedHttp),
        Some("http") => Err(HTTP_REFUSED),
        _ => Err("must be an https:// URL"),
    }
}

/// Literal loopback addresses and `localhost`; no other name is trusted to stay on the host.
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether a discovered `jwks_uri` host may serve the issuer's keys: the issuer's own host
/// (any port) or one listed in `jwks_hosts`.
pub fn jwks_host_allowed(issuer: &Uri, jwks: &Uri, extra_hosts: &[String]) -> bool {
    let Some(host) = jwks.host() else {
        return false;
    };
    issuer.host().is_some_and(|h| h.eq_ignore_ascii_case(host))
        || extra_hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
}

/// Which plain-http transport `url` would use (`None` for https or a refused URL).
pub fn plain_http(url: &str, allow_http: bool) -> Option<&'static str> {
    match transport(&url.parse().ok()?, allow_http).ok()? {
        Transport::Https => None,
        Transport::LoopbackHttp => Some("loopback"),
        Transport::AllowedHttp => Some("allow_http = true"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn https_is_required_except_for_loopback_or_an_explicit_allow() {
        assert_eq!(
            transport(&uri("https://idp.example/x"), false),
            Ok(Transport::Https)
        );
        assert_eq!(
            transport(&uri("http://idp.example/x"), false),
            Err(HTTP_REFUSED)
        );
        assert_eq!(
            transport(&uri("http://idp.example/x"), true),
            Ok(Transport::AllowedHttp)
        );
        for local in [
            "http://127.0.0.1:9/x",
            "http://127.8.0.1/",
            "http://[::1]:9/",
            "http://LOCALHOST/",
        ] {
            assert_eq!(
                transport(&uri(local), false),
                Ok(Transport::LoopbackHttp),
                "{local}"
            );
        }
        for remote in [
            "http://127.0.0.1.nip.io/",
            "http://localhost.example/",
            "http://10.0.0.1/",
        ] {
            assert!(transport(&uri(remote), false).is_err(), "{remote}");
        }
        assert!(transport(&uri("ftp://idp.example/"), true).is_err());
    }

    #[test]
    fn a_jwks_uri_must_be_on_the_issuers_host_or_listed() {
        let issuer = uri("https://login.example.com/tenant");
        assert!(jwks_host_allowed(
            &issuer,
            &uri("https://LOGIN.example.com:8443/keys"),
            &[]
        ));
        assert!(!jwks_host_allowed(
            &issuer,
            &uri("https://evil.example/keys"),
            &[]
        ));
        assert!(!jwks_host_allowed(
            &issuer,
            &uri("https://example.com/keys"),
            &[]
        ));
        let listed = ["keys.example.net".to_string()];
        assert!(jwks_host_allowed(
            &issuer,
            &uri("https://keys.example.net/k"),
            &listed
        ));
    }
}
