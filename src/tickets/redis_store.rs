//! Tickets in Redis, for several replicas.
//!
//! Key: `gatehouse:ticket:` + hex SHA-256 of a label and the ticket. Value: the grant,
//! sealed with AES-256-GCM under a key derived from the ticket with another label, so
//! someone who can read Redis but holds no ticket learns nothing about who it stands for.
//! Issue is `SET … PX ttl NX`; redemption is one `GETDEL`, which Redis runs atomically:
//! of any number of concurrent redemptions on any number of replicas, one gets the value.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{new_ticket, Grant, Issued, TicketError};
use crate::auth::claims::Claims;
use crate::auth::key_board::KeyRef;
use crate::redis::RedisHandle;
use crate::secret::BearerToken;

const KEY_PREFIX: &str = "gatehouse:ticket:";
const HEX: &[u8; 16] = b"0123456789abcdef";

/// The sealed part of a Redis ticket entry.
#[derive(Serialize, Deserialize)]
struct Sealed {
    claims: Claims,
    token: Option<String>,
    route: Option<String>,
    /// Absent in tickets sealed by an earlier build, and for introspected tokens.
    #[serde(default)]
    key: Option<KeyRef>,
}

pub(crate) struct RedisTickets {
    handle: Arc<RedisHandle>,
    ttl: Duration,
}

impl RedisTickets {
    pub(crate) fn new(handle: Arc<RedisHandle>, ttl: Duration) -> Self {
        Self { handle, ttl }
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    pub(crate) async fn issue(
        &self,
        grant: Grant,
        expires_in: Duration,
    ) -> Result<Issued, TicketError> {
        let ticket = new_ticket();
        let sealed = Sealed {
            claims: (*grant.claims).clone(),
            token: grant.token.map(|t| t.expose().to_string()),
            route: grant.route,
            key: grant.key.map(|key| (*key).clone()),
        };
        let plaintext = serde_json::to_vec(&sealed).map_err(|_| TicketError::Unavailable)?;
        let value = seal(&ticket, plaintext)?;
        let millis = u64::try_from(expires_in.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut set = redis::cmd("SET");
        set.arg(key(&ticket))
            .arg(value)
            .arg("PX")
            .arg(millis)
            .arg("NX");
        self.handle
            .run::<Option<String>>(&set)
            .await
            .map_err(|_| TicketError::Unavailable)?;
        Ok(Issued {
            ticket,
            expires_at: SystemTime::now() + expires_in,
            expires_in,
        })
    }

    pub(crate) async fn redeem(
        &self,
        ticket: &BearerToken,
        route: &str,
    ) -> Result<Grant, TicketError> {
        let mut getdel = redis::cmd("GETDEL");
        getdel.arg(key(ticket.expose()));
        let value: Option<Vec<u8>> = self
            .handle
            .run(&getdel)
            .await
            .map_err(|_| TicketError::Unavailable)?;
        let value = value.ok_or(TicketError::Invalid)?;
        let sealed: Sealed = serde_json::from_slice(&open(ticket.expose(), value)?)
            .map_err(|_| TicketError::Invalid)?;
        if sealed.route.as_deref().is_some_and(|bound| bound != route) {
            return Err(TicketError::WrongRoute);
        }
        Ok(Grant {
            claims: Arc::new(sealed.claims),
            token: sealed.token.map(BearerToken::new),
            route: sealed.route,
            key: sealed.key.map(Arc::new),
        })
    }
}

fn derive(label: &str, ticket: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(label.as_bytes());
    hasher.update([0u8]);
    hasher.update(ticket.as_bytes());
    hasher.finalize().into()
}

fn key(ticket: &str) -> String {
    let id = derive("gatehouse ticket id", ticket);
    let mut key = String::with_capacity(KEY_PREFIX.len() + 64);
    key.push_str(KEY_PREFIX);
    for b in id {
        key.push(char::from(HEX[usize::from(b >> 4)]));
        key.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    key
}

fn cipher(ticket: &str) -> Result<LessSafeKey, TicketError> {
    let key = UnboundKey::new(&AES_256_GCM, &derive("gatehouse ticket key", ticket))
        .map_err(|_| TicketError::Unavailable)?;
    Ok(LessSafeKey::new(key))
}

/// `nonce || ciphertext || tag`.
fn seal(ticket: &str, mut plaintext: Vec<u8>) -> Result<Vec<u8>, TicketError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| TicketError::Unavailable)?;
    cipher(ticket)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::empty(),
            &mut plaintext,
        )
        .map_err(|_| TicketError::Unavailable)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&plaintext);
    Ok(out)
}

fn open(ticket: &str, value: Vec<u8>) -> Result<Vec<u8>, TicketError> {
    if value.len() < NONCE_LEN {
        return Err(TicketError::Invalid);
    }
    let (nonce, sealed) = value.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| TicketError::Invalid)?;
    let mut sealed = sealed.to_vec();
    let plain = cipher(ticket)?
        .open_in_place(nonce, Aad::empty(), &mut sealed)
        .map_err(|_| TicketError::Invalid)?;
    Ok(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_ticket_opens_its_entry() {
        let sealed = seal("ticket-a", b"{\"who\":\"alice\"}".to_vec()).unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("alice"));
        assert_eq!(
            open("ticket-a", sealed.clone()).unwrap(),
            b"{\"who\":\"alice\"}"
        );
        assert_eq!(open("ticket-b", sealed).unwrap_err(), TicketError::Invalid);
        assert_ne!(key("ticket-a"), key("ticket-b"));
        assert!(!key("ticket-a").contains("ticket-a"));
    }

    /// The key that verified the token travels with the ticket, so a session opened with
    /// it on another replica still ends when that key is withdrawn; a ticket sealed by an
    /// earlier build (no `key`) still opens.
    #[test]
    fn a_sealed_ticket_keeps_the_key_that_verified_its_token() {
        let key = KeyRef {
            iss: "https://idp.example/".into(),
            kid: Some("k1".into()),
            alg: jsonwebtoken::Algorithm::RS256,
            fingerprint: [7; 32],
        };
        let sealed = Sealed {
            claims: Claims::new(),
            token: None,
            route: None,
            key: Some(key.clone()),
        };
        let text = serde_json::to_vec(&sealed).unwrap();
        let opened: Sealed = serde_json::from_slice(&text).unwrap();
        assert_eq!(opened.key, Some(key));
        let older: Sealed =
            serde_json::from_slice(br#"{"claims":{},"token":null,"route":null}"#).unwrap();
        assert_eq!(older.key, None);
    }
}
