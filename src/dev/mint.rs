//! `gatehouse token`: mint a token with an issuer's local signing key, for development and
//! tests. Refuses when the config holds no local key: a production config, whose keys
//! live at the IdP, cannot mint.

use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey, Header};
use serde_json::{Map, Value};

use crate::auth::claims::unix_now;
use crate::config::{Config, IssuerConfig, KeySource};

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("no [[issuer]] has a local signing key (private_key_file, hmac_secret_env or hmac_secret_file)")]
    NoLocalKey,
    #[error("no issuer named {0:?} has a local signing key")]
    UnknownIssuer(String),
    #[error("claim {0:?} is not NAME=VALUE")]
    BadClaim(String),
    #[error("{0}")]
    Key(String),
}

/// What to put in the token beyond `iss`, `aud`, `iat`, `exp` and `jti`.
pub struct Request<'a> {
    pub subject: &'a str,
    pub claims: &'a [String],
    pub ttl: Duration,
    pub issuer: Option<&'a str>,
}

pub fn mint(config: &Config, request: &Request<'_>) -> Result<String, MintError> {
    let issuer = config
        .issuers
        .iter()
        .filter(|i| i.private_key_file.is_some() || matches!(i.keys, KeySource::Hmac(_)))
        .find(|i| request.issuer.is_none_or(|name| name == i.name))
        .ok_or_else(|| match request.issuer {
            Some(name) => MintError::UnknownIssuer(name.to_string()),
            None => MintError::NoLocalKey,
        })?;
    let (key, alg) = signing_key(issuer)?;
    let now = unix_now();
    let mut claims = Map::new();
    claims.insert("iss".into(), issuer.issuer.clone().into());
    if let Some(aud) = issuer.audiences.first() {
        claims.insert("aud".into(), aud.clone().into());
    }
    claims.insert("sub".into(), request.subject.into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + request.ttl.as_secs()).into());
    claims.insert("jti".into(), uuid::Uuid::new_v4().to_string().into());
    for raw in request.claims {
        let (name, value) = raw
            .split_once('=')
            .ok_or_else(|| MintError::BadClaim(raw.clone()))?;
        let value =
            serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
        claims.insert(name.to_string(), value);
    }
    let mut header = Header::new(alg);
    header.typ = issuer.typ.clone().or_else(|| Some("JWT".into()));
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| MintError::Key(e.to_string()))
}

fn signing_key(issuer: &IssuerConfig) -> Result<(EncodingKey, Algorithm), MintError> {
    let pick = |family: AlgorithmFamily| {
        issuer
            .algorithms
            .iter()
            .copied()
            .find(|a| a.family() == family)
            .ok_or_else(|| {
                MintError::Key(format!(
                    "issuer {} allows no {family:?} algorithm",
                    issuer.name
                ))
            })
    };
    if let KeySource::Hmac(secret) = &issuer.keys {
        return Ok((
            EncodingKey::from_secret(secret.expose().as_bytes()),
            pick(AlgorithmFamily::Hmac)?,
        ));
    }
    let path = issuer
        .private_key_file
        .as_ref()
        .ok_or(MintError::NoLocalKey)?;
    let pem = crate::files::read(path)
        .map_err(|e| MintError::Key(format!("reading {}: {e}", path.display())))?;
    if let Ok(key) = EncodingKey::from_ec_pem(&pem) {
        return Ok((key, pick(AlgorithmFamily::Ec)?));
    }
    if let Ok(key) = EncodingKey::from_ed_pem(&pem) {
        return Ok((key, pick(AlgorithmFamily::Ed)?));
    }
    let key = EncodingKey::from_rsa_pem(&pem).map_err(|_| {
        MintError::Key(format!(
            "{} holds no RSA, EC or Ed25519 private key in PEM",
            path.display()
        ))
    })?;
    Ok((key, pick(AlgorithmFamily::Rsa)?))
}
