//! TLS session-ticket keys shared by every replica: the key file's format and the sealing
//! of tickets with it.
//!
//! The file holds one key a line, each the base64 of 48 random bytes (`openssl rand
//! -base64 48`): a 16-byte name that travels in the clear at the front of every ticket,
//! so any replica can pick the key that sealed it, then a 32-byte AES-256-GCM key. The
//! first key seals new tickets; every later one only opens tickets it sealed before it
//! was demoted. Removing a line retires its key: its tickets then fall back to a full
//! handshake. Blank lines and `#` comments are ignored.
//!
//! A sealed ticket is `name ‖ nonce ‖ AES-256-GCM(issued-at ‖ rustls session state) ‖ tag`
//! with the name as associated data. The issue time inside the seal lets every replica
//! refuse a ticket older than the configured lifetime, whatever keys are still listed.

use std::fmt;

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};

const NAME_LEN: usize = 16;
const SECRET_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const ISSUED_LEN: usize = 8;
/// More keys than this is a rotation job that never prunes; refuse it rather than try
/// every one of them on each resumption.
pub(crate) const MAX_KEYS: usize = 16;
/// rustls's session state is a few hundred bytes without client certificates. A longer
/// ticket is refused before any key is tried (it can only be forged or from elsewhere).
const MAX_TICKET_LEN: usize = 4096;
/// Replicas' clocks differ; a ticket issued this far in another replica's future is accepted.
const CLOCK_SKEW_SECS: u64 = 300;

struct TicketKey {
    name: [u8; NAME_LEN],
    key: LessSafeKey,
}

/// The keys from one read of the file, the sealing key first. Prints no key material.
pub(crate) struct KeyRing {
    keys: Vec<TicketKey>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyRing({} keys, REDACTED)", self.keys.len())
    }
}

impl KeyRing {
    /// Parses the file's text. Errors name the line, never its contents.
    pub(crate) fn parse(text: &str) -> Result<KeyRing, String> {
        let mut keys: Vec<TicketKey> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = parse_key(line).map_err(|why| format!("line {}: {why}", index + 1))?;
            if keys.iter().any(|k| k.name == key.name) {
                return Err(format!(
                    "line {}: repeats the name (first 16 bytes) of an earlier key",
                    index + 1
                ));
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err("holds no key; generate one with `openssl rand -base64 48`".into());
        }
        if keys.len() > MAX_KEYS {
            return Err(format!(
                "holds {} keys, more than {MAX_KEYS}; remove retired keys",
                keys.len()
            ));
        }
        Ok(KeyRing { keys })
    }

    /// Reads and parses the key file.
    pub(crate) fn load(path: &std::path::Path) -> Result<KeyRing, String> {
        let text = crate::files::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        KeyRing::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Seals `plain` with the first key, stamped with `now` (Unix seconds).
    pub(crate) fn seal(&self, plain: &[u8], now: u64) -> Option<Vec<u8>> {
        let key = self.keys.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        // A random nonce, not a counter: replicas share keys and cannot share a counter.
        SystemRandom::new().fill(&mut nonce).ok()?;
        let mut ticket =
            Vec::with_capacity(NAME_LEN + NONCE_LEN + ISSUED_LEN + plain.len() + TAG_LEN);
        ticket.extend_from_slice(&key.name);
        ticket.extend_from_slice(&nonce);
        ticket.extend_from_slice(&now.to_be_bytes());
        ticket.extend_from_slice(plain);
        let tag = key
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key.name),
                &mut ticket[NAME_LEN + NONCE_LEN..],
            )
            .ok()?;
        ticket.extend_from_slice(tag.as_ref());
        (ticket.len() <= MAX_TICKET_LEN).then_some(ticket)
    }

    /// Opens a ticket sealed by any listed key and issued at most `lifetime` seconds
    /// before `now`. The ticket is attacker-controlled: every failure is `None`.
    pub(crate) fn open(&self, ticket: &[u8], now: u64, lifetime: u64) -> Option<Vec<u8>> {
        if ticket.len() > MAX_TICKET_LEN
            || ticket.len() < NAME_LEN + NONCE_LEN + ISSUED_LEN + TAG_LEN
        {
            return None;
        }
        let (name, rest) = ticket.split_at(NAME_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let key = self.keys.iter().find(|k| k.name == name)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut sealed = sealed.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(key.name), &mut sealed)
            .ok()?;
        let (issued, state) = plain.split_at(ISSUED_LEN);
        let issued = u64::from_be_bytes(issued.try_into().ok()?);
        let fresh =
            issued <= now.saturating_add(CLOCK_SKEW_SECS) && now.saturating_sub(issued) <= lifetime;
        fresh.then(|| state.to_vec())
    }
}

fn parse_key(line: &str) -> Result<TicketKey, &'static str> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(line)
        .map_err(|_| "not base64")?;
    if bytes.len() != NAME_LEN + SECRET_LEN {
        return Err("a key is 48 bytes of base64 (`openssl rand -base64 48`)");
    }
    let (name, secret) = bytes.split_at(NAME_LEN);
    if name.iter().all(|b| *b == name[0]) || secret.iter().all(|b| *b == secret[0]) {
        return Err("not random (one byte repeated); generate it with `openssl rand -base64 48`");
    }
    let key = UnboundKey::new(&AES_256_GCM, secret).map_err(|_| "unusable AES-256 key")?;
    let mut fixed = [0u8; NAME_LEN];
    fixed.copy_from_slice(name);
    Ok(TicketKey {
        name: fixed,
        key: LessSafeKey::new(key),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> String {
        let bytes: Vec<u8> = (0..48u8)
            .map(|i| i.wrapping_mul(31).wrapping_add(seed))
            .collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn ring(seeds: &[u8]) -> KeyRing {
        let text: Vec<String> = seeds.iter().map(|s| key(*s)).collect();
        KeyRing::parse(&text.join("\n")).unwrap()
    }

    const NOW: u64 = 1_800_000_000;
    const DAY: u64 = 86_400;

    #[test]
    fn a_demoted_key_still_opens_and_a_retired_one_does_not() {
        let old = ring(&[1]);
        let ticket = old.seal(b"session", NOW).unwrap();
        assert_eq!(old.open(&ticket, NOW, DAY).unwrap(), b"session");
        let rotated = ring(&[2, 1]);
        assert_eq!(rotated.open(&ticket, NOW, DAY).unwrap(), b"session");
        let fresh = rotated.seal(b"next", NOW).unwrap();
        assert_eq!(&fresh[..NAME_LEN], &rotated.keys[0].name);
        assert!(
            old.open(&fresh, NOW, DAY).is_none(),
            "the old ring lacks the new key"
        );
        let retired = ring(&[2]);
        assert!(retired.open(&ticket, NOW, DAY).is_none());
        assert_eq!(retired.open(&fresh, NOW, DAY).unwrap(), b"next");
    }

    #[test]
    fn tampered_stale_and_future_tickets_are_refused() {
        let keys = ring(&[1]);
        let ticket = keys.seal(b"session", NOW).unwrap();
        for i in 0..ticket.len() {
            let mut bad = ticket.clone();
            bad[i] ^= 1;
            assert!(keys.open(&bad, NOW, DAY).is_none(), "byte {i}");
        }
        assert!(keys.open(&ticket[..ticket.len() - 1], NOW, DAY).is_none());
        assert!(keys.open(&[], NOW, DAY).is_none());
        assert!(keys.open(&vec![0; MAX_TICKET_LEN + 1], NOW, DAY).is_none());
        assert!(keys.open(&ticket, NOW + DAY, DAY).is_some());
        assert!(
            keys.open(&ticket, NOW + DAY + 1, DAY).is_none(),
            "older than its lifetime"
        );
        assert!(keys.open(&ticket, NOW - CLOCK_SKEW_SECS, DAY).is_some());
        assert!(
            keys.open(&ticket, NOW - CLOCK_SKEW_SECS - 1, DAY).is_none(),
            "from the future"
        );
    }

    #[test]
    fn nonces_differ_between_tickets() {
        let keys = ring(&[1]);
        let a = keys.seal(b"session", NOW).unwrap();
        let b = keys.seal(b"session", NOW).unwrap();
        assert_ne!(
            a[NAME_LEN..NAME_LEN + NONCE_LEN],
            b[NAME_LEN..NAME_LEN + NONCE_LEN]
        );
    }

    #[test]
    fn malformed_files_are_refused_by_line_without_echoing_keys() {
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let zeros = base64::engine::general_purpose::STANDARD.encode([0u8; 48]);
        let cases = [
            (String::new(), "holds no key"),
            ("# only a comment\n\n".to_string(), "holds no key"),
            (format!("{}\n!!!", key(1)), "line 2: not base64"),
            (format!("# c\n{short}"), "line 2: a key is 48 bytes"),
            (zeros.clone(), "line 1: not random"),
            (
                format!("{}\n{}", key(1), key(1)),
                "line 2: repeats the name",
            ),
            (
                (0..=MAX_KEYS as u8).map(key).collect::<Vec<_>>().join("\n"),
                "more than 16",
            ),
        ];
        for (text, want) in cases {
            let error = KeyRing::parse(&text).unwrap_err();
            assert!(error.contains(want), "{error} lacks {want}");
            for secret in [&short, &zeros, &key(1)] {
                assert!(!error.contains(secret.as_str()), "{error}");
            }
        }
        let ok = KeyRing::parse(&format!("# current\n{}\n\n  {}  \n", key(1), key(2))).unwrap();
        assert_eq!(ok.len(), 2);
        assert!(!format!("{ok:?}").contains(&key(1)));
    }
}
