//! `[listen]` keys that say whom the public listener believes about the client:
//! `trusted_proxies` and `proxy_protocol`.

use super::fields::ConfigErrors;
use crate::cidr::{Cidr, CidrSet};

/// What the public listener believes about a connection's client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTrust {
    /// Peers whose `X-Forwarded-*` (and PROXY header) are believed.
    pub trusted_proxies: CidrSet,
    /// Every connection starts with a PROXY protocol v1 or v2 header.
    pub proxy_protocol: bool,
}

pub(super) fn client_trust(
    e: &mut ConfigErrors,
    trusted_proxies: &[String],
    proxy_protocol: bool,
) -> ClientTrust {
    let mut ranges = Vec::with_capacity(trusted_proxies.len());
    for (i, text) in trusted_proxies.iter().enumerate() {
        match text.parse::<Cidr>() {
            Ok(range) => ranges.push(range),
            Err(why) => e.push(format!("listen.trusted_proxies[{i}]"), why),
        }
    }
    if proxy_protocol && trusted_proxies.is_empty() {
        e.push(
            "listen.proxy_protocol",
            "needs listen.trusted_proxies (the balancer's addresses); to believe the header \
             from any peer, when only the balancer can reach this port, list \"0.0.0.0/0\" and \"::/0\"",
        );
    }
    ClientTrust {
        trusted_proxies: CidrSet::new(ranges),
        proxy_protocol,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ranges: &[&str], proxy_protocol: bool) -> Vec<String> {
        let mut e = ConfigErrors::default();
        let ranges: Vec<String> = ranges.iter().map(|r| r.to_string()).collect();
        client_trust(&mut e, &ranges, proxy_protocol);
        e.messages().to_vec()
    }

    #[test]
    fn every_bad_range_is_named_by_its_index() {
        let errors = check(&["10.0.0.0/8", "10.0.0.1/8", "fd00::/8", "pods"], false);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("listen.trusted_proxies[1]: "),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("listen.trusted_proxies[3]: "),
            "{errors:?}"
        );
    }

    #[test]
    fn proxy_protocol_needs_someone_to_trust() {
        let errors = check(&[], true);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("listen.proxy_protocol: "),
            "{errors:?}"
        );
        assert!(check(&["0.0.0.0/0", "::/0"], true).is_empty());
        assert!(check(&[], false).is_empty());
    }
}
