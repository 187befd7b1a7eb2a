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
pub(crate) enum Transport {
    Https,
    /// Plain http to 127.0.0.0/8, `::1` or `localhost`.
    LoopbackHttp,
    /// Plain http elsewhere, allowed by `allow_http = true`.
    AllowedHttp,
}

/// Why a URL may not be fetched from.
pub(crate) const HTTP_REFUSED: &str = "must be https:// (plain http would let anyone on the path \
     swap keys or read secrets); set allow_http = true on this table to accept it";

/// The transport `uri` would use, or why it is refused.
pub(crate) fn transport(uri: &Uri, allow_http: bool) -> Result<Transport, &'static str> {
    match uri.scheme_str() {
        Some("https") => Ok(Transport::Https),
        Some("http") if uri.host().is_some_and(is_loopback) => Ok(Transport::LoopbackHttp),
        Some("http") if allow_http => Ok(Transport::AllowedHttp),
        Some("http") => Err(HTTP_REFUSED),
        _ => Err("must be an https:// URL"),
    }
}

/// Literal loopback addresses and `localhost`; no other name is trusted to stay on the host.
pub(crate) fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether a discovered `jwks_uri` host may serve the issuer's keys: the issuer's own host
/// (any port) or one listed in `jwks_hosts`.
pub(crate) fn jwks_host_allowed(issuer: &Uri, jwks: &Uri, extra_hosts: &[String]) -> bool {
    let Some(host) = jwks.host() else {
        return false;
    };
    issuer.host().is_some_and(|h| h.eq_ignore_ascii_case(host))
        || extra_hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
}

/// Whether a discovery document may send us to `jwks` for the issuer's keys: the transport
/// rule, no step down from https to plain http (the configured URL's scheme is what `check`
/// warned about, or did not; loopback is no excuse once the document came over https), and
/// a host the issuer allows.
pub(crate) fn discovered_jwks(
    issuer: &Uri,
    jwks: &Uri,
    allow_http: bool,
    extra_hosts: &[String],
) -> Result<(), String> {
    transport(jwks, allow_http).map_err(|why| format!("discovered jwks_uri {why}"))?;
    if issuer.scheme_str() == Some("https") && jwks.scheme_str() != Some("https") {
        return Err("discovered jwks_uri is plain http while the issuer is https".into());
    }
    if !jwks_host_allowed(issuer, jwks, extra_hosts) {
        return Err(format!(
            "discovered jwks_uri is on host {:?}, neither the issuer's nor listed in jwks_hosts",
            jwks.host().unwrap_or_default()
        ));
    }
    Ok(())
}

/// Which plain-http transport `url` would use (`None` for https or a refused URL).
pub(crate) fn plain_http(url: &str, allow_http: bool) -> Option<&'static str> {
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
    fn discovery_never_steps_down_from_https_to_http() {
        let https = uri("https://localhost:8443/realm");
        let down = uri("http://localhost:8080/keys");
        let why = discovered_jwks(&https, &down, true, &[]).unwrap_err();
        assert!(
            why.contains("plain http while the issuer is https"),
            "{why}"
        );
        assert!(discovered_jwks(&https, &uri("https://localhost/keys"), false, &[]).is_ok());
        // A plain-http issuer (loopback, warned about by `check`) may keep plain http.
        let plain = uri("http://127.0.0.1:8080/realm");
        assert!(discovered_jwks(&plain, &uri("http://127.0.0.1:9/keys"), false, &[]).is_ok());
        let remote = uri("http://10.0.0.1/keys");
        assert!(discovered_jwks(&plain, &remote, false, &[]).is_err());
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
