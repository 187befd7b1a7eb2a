//! The plain-http URLs a config accepts for fetching keys or introspecting tokens (see
//! [`crate::outbound`] for the rules), named for `gatehouse check` and the startup log.

use super::{Config, KeySource};
use crate::outbound::plain_http;
use crate::redact::mask_url;

/// One line per plain-http URL the config accepts, for `check` and the startup log.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for issuer in &config.issuers {
        let url = match &issuer.keys {
            KeySource::Discovery => issuer.issuer.as_str(),
            KeySource::JwksUrl(url) => url.as_str(),
            _ => continue,
        };
        if let Some(kind) = plain_http(url, issuer.allow_http) {
            out.push(format!(
                "issuer {:?}: keys are fetched over plain http ({kind}) from {}; whoever can \
                 alter that traffic can sign tokens gatehouse accepts",
                issuer.name,
                mask_url(url).unwrap_or_else(|| url.to_string())
            ));
        }
    }
    for i in &config.introspections {
        let url = i.url.to_string();
        if let Some(kind) = plain_http(&url, i.allow_http) {
            out.push(format!(
                "introspection {:?}: the client secret and callers' tokens go over plain http \
                 ({kind}) to {}",
                i.name,
                mask_url(&url).unwrap_or(url)
            ));
        }
    }
    out
}
