//! SignalR affinity without shared state or cookies: the endpoint that answered a
//! negotiate is sealed into the connection token it issued, and every request that comes
//! back with `id=<token>` (WebSocket connect, long-polling GET and POST, SSE, DELETE) is
//! sent to that endpoint with the hub's own token restored, so the hub never sees the seal.
//!
//! A sealed token is `<seal>.<token>`, where the seal is 22 base64url characters of
//! `tag (6 bytes) || mac (10 bytes)`: the tag is a keyed hash of the endpoint's authority
//! (it names the endpoint without disclosing its address, and is the same on every replica
//! and after every re-resolution or reordering of the endpoint list), the MAC binds the tag
//! to the token under the same key.
//! A client that edits either gets a seal that fails the check and a 404, exactly what the
//! hub answers for an id it does not know. Every replica with the same config (and key
//! file) computes the same tags and MACs, so any replica can unseal what another sealed.
//!
//! A long-polling or SSE client sends the same `id` on every request, so each [`Sealer`]
//! remembers the `id` values whose MAC it has checked, compared whole: an entry exists only
//! for a value that passed the check, so remembering never accepts anything the MAC would
//! refuse (the key is fixed for the sealer's life, so a check once passed always passes).

use std::ops::Range;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use dashmap::DashMap;
use http::uri::Authority;
use ring::hmac;

use crate::redact::{folds_to, query_pairs, split_pair};

/// The keyed name of an endpoint inside a seal.
pub(crate) type Tag = [u8; 6];

const MAC_BYTES: usize = 10;
/// Base64url of the 16 seal bytes.
const SEAL_CHARS: usize = 22;
/// Checked `id` values remembered per route; when full, they are forgotten all at once.
const VERIFIED_ENTRIES: usize = 4096;
/// Longer `id` values are checked every time (ASP.NET Core's tokens are 22 characters).
const VERIFIED_MAX_CHARS: usize = 128;

/// Seals and unseals connection tokens under one route's key.
pub(crate) struct Sealer {
    key: hmac::Key,
    /// `id` values as sent whose MAC verified, with the tag they carry.
    verified: DashMap<Box<str>, Tag>,
}

/// Where a request's `id=` says it belongs, and where its seal is in the query.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Located {
    /// No `id`: balance it.
    Free,
    /// Sealed for the endpoint with this tag; removing these bytes of the query (the
    /// seal and its `.`) leaves the query with the hub's own token.
    At(Tag, Range<usize>),
    /// An `id` we did not seal, one that was edited, or more than one `id`.
    Unknown,
}

/// [`Located`] with the hub's query written out.
#[cfg(test)]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pin {
    /// No `id`: a negotiate, or a client that skipped negotiation; balance it.
    Free,
    /// Sealed for the endpoint with this tag; the query with the hub's own token.
    To(Tag, String),
    /// An `id` we did not seal, one that was edited, or more than one `id`.
    Unknown,
}

impl Sealer {
    /// The key from a secret (`affinity_key_file`).
    pub(crate) fn new(secret: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            verified: DashMap::new(),
        }
    }

    /// The key when no file is given: derived from the route's path, which every replica
    /// with this config shares. Not from its endpoints: the tag already names the endpoint
    /// by its authority, and a key that followed the list would turn every open connection
    /// into a 404 on a replica (or after a reload) that lists the endpoints in another
    /// order, or one more or fewer. Anyone who knows the config could forge a seal, which
    /// lets them choose which endpoint of this route's own pool gets their `id`: the hub
    /// there refuses an id it did not issue (404), so steering buys nothing a balanced
    /// request could not already reach.
    pub(crate) fn derived(route_path: &str) -> Self {
        let mut material = b"gatehouse signalr affinity v2\0".to_vec();
        material.extend_from_slice(route_path.as_bytes());
        Self::new(&material)
    }

    pub(crate) fn tag(&self, authority: &Authority) -> Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(b"endpoint\0");
        ctx.update(authority.as_str().to_ascii_lowercase().as_bytes());
        let mut tag = [0; 6];
        tag.copy_from_slice(&ctx.sign().as_ref()[..6]);
        tag
    }

    fn mac(&self, tag: &Tag, token: &[u8]) -> [u8; MAC_BYTES] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(b"seal\0");
        ctx.update(tag);
        ctx.update(token);
        let mut mac = [0; MAC_BYTES];
        mac.copy_from_slice(&ctx.sign().as_ref()[..MAC_BYTES]);
        mac
    }

    /// The token the client gets for a connection `tag`'s endpoint issued.
    pub(crate) fn seal(&self, tag: &Tag, token: &str) -> String {
        let mut seal = [0u8; 16];
        seal[..6].copy_from_slice(tag);
        seal[6..].copy_from_slice(&self.mac(tag, token.as_bytes()));
        let mut out = URL_SAFE_NO_PAD.encode(seal);
        out.push('.');
        out.push_str(token);
        out
    }

    /// The tag and the hub's token from a sealed `id` value as it appears in the query
    /// (the token part possibly percent-encoded by the client); `None` for anything else.
    pub(crate) fn unseal<'a>(&self, raw: &'a str) -> Option<(Tag, &'a str)> {
        let seal = raw.get(..SEAL_CHARS)?;
        let token = raw.get(SEAL_CHARS..)?.strip_prefix('.')?;
        if let Some(known) = self.verified.get(raw) {
            return Some((*known, token));
        }
        let mut bytes = [0u8; 16];
        if URL_SAFE_NO_PAD.decode_slice(seal, &mut bytes).ok()? != bytes.len() {
            return None;
        }
        let (tag, mac) = bytes.split_at(6);
        let tag: Tag = tag.try_into().ok()?;
        let expected = if token.contains('%') {
            self.mac(&tag, &percent_decode(token)?)
        } else {
            self.mac(&tag, token.as_bytes())
        };
        // Constant time, so a client cannot find a valid MAC byte by byte.
        let diff = expected
            .iter()
            .zip(mac)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (mac.len() == MAC_BYTES && diff == 0).then_some(())?;
        self.remember(raw, tag);
        Some((tag, token))
    }

    fn remember(&self, raw: &str, tag: Tag) {
        if raw.len() > VERIFIED_MAX_CHARS {
            return;
        }
        if self.verified.len() >= VERIFIED_ENTRIES {
            self.verified.clear();
        }
        self.verified.insert(raw.into(), tag);
    }

    /// Reads the query's `id` (in any spelling a framework would read as `id`).
    pub(crate) fn locate(&self, query: Option<&str>) -> Located {
        let Some(query) = query else {
            return Located::Free;
        };
        let mut found = None;
        for (start, pair) in query_pairs(query) {
            let (name, value) = split_pair(pair);
            if !folds_to(name, "id") {
                continue;
            }
            if found.is_some() {
                return Located::Unknown;
            }
            found = Some((start + name.len() + 1, value));
        }
        let Some((value_at, value)) = found else {
            return Located::Free;
        };
        match self.unseal(value) {
            // The token is the value's tail, so the seal is everything before it.
            Some((tag, token)) => Located::At(tag, value_at..value_at + value.len() - token.len()),
            None => Located::Unknown,
        }
    }

    /// [`Sealer::locate`] with the query the hub gets.
    #[cfg(test)]
    pub(crate) fn pin(&self, query: Option<&str>) -> Pin {
        match (self.locate(query), query) {
            (Located::At(tag, cut), Some(q)) => {
                Pin::To(tag, format!("{}{}", &q[..cut.start], &q[cut.end..]))
            }
            (Located::Unknown, _) => Pin::Unknown,
            _ => Pin::Free,
        }
    }
}

/// `%XX` decoded; `None` for a malformed escape. `+` stays `+`: the SignalR clients encode
/// with `encodeURIComponent` / `Uri.EscapeDataString`, which never write a space as `+`.
fn percent_decode(raw: &str) -> Option<Vec<u8>> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        Sealer::derived("/hub")
    }

    #[test]
    fn a_sealed_token_unseals_to_its_endpoint_and_the_hub_token() {
        let s = sealer();
        let tag = s.tag(&"b:1".parse().unwrap());
        let sealed = s.seal(&tag, "abc-DEF_123");
        assert_eq!(s.unseal(&sealed), Some((tag, "abc-DEF_123")));
        let query = format!("id={sealed}&negotiateVersion=1");
        assert_eq!(
            s.pin(Some(&query)),
            Pin::To(tag, "id=abc-DEF_123&negotiateVersion=1".into())
        );
        let later = format!("_=1;x=2&Id={sealed}");
        assert_eq!(
            s.pin(Some(&later)),
            Pin::To(tag, "_=1;x=2&Id=abc-DEF_123".into())
        );
    }

    #[test]
    fn an_encoded_token_is_checked_decoded_and_forwarded_as_sent() {
        let s = sealer();
        let tag = s.tag(&"a:1".parse().unwrap());
        let sealed = s.seal(&tag, "a/b+c=");
        let encoded = sealed
            .replace('/', "%2F")
            .replace('+', "%2B")
            .replace('=', "%3D");
        assert_eq!(s.unseal(&encoded), Some((tag, "a%2Fb%2Bc%3D")));
    }

    #[test]
    fn edited_foreign_garbled_and_repeated_ids_are_unknown() {
        let s = sealer();
        let (a, b) = (
            s.tag(&"a:1".parse().unwrap()),
            s.tag(&"b:1".parse().unwrap()),
        );
        let sealed = s.seal(&a, "tok");
        // b's tag with the MAC a's seal carries: a client steering to another endpoint.
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed[..22]).unwrap();
        bytes[..6].copy_from_slice(&b);
        let steered = format!("{}{}", URL_SAFE_NO_PAD.encode(&bytes), &sealed[22..]);
        let other_key = Sealer::new(b"another key").seal(&a, "tok");
        let edited_token = format!("{}x", sealed);
        for id in [
            steered.as_str(),
            other_key.as_str(),
            edited_token.as_str(),
            "tok",
            "",
            "%",
            "ü",
            "AAAAAAAAAAAAAAAAAAAAAA.%zz",
            &sealed[..21],
        ] {
            assert_eq!(s.pin(Some(&format!("id={id}"))), Pin::Unknown, "{id:?}");
        }
        let twice = format!("id={sealed}&ID=other");
        assert_eq!(s.pin(Some(&twice)), Pin::Unknown);
        assert_eq!(s.pin(Some("negotiateVersion=1")), Pin::Free);
        assert_eq!(s.pin(None), Pin::Free);
    }

    #[test]
    fn only_checked_ids_are_remembered_and_the_memory_is_bounded() {
        let s = sealer();
        let tag = s.tag(&"a:1".parse().unwrap());
        let sealed = s.seal(&tag, "tok");
        let edited = format!("{sealed}x");
        assert_eq!(s.unseal(&edited), None);
        assert_eq!(s.verified.len(), 0);
        assert_eq!(s.unseal(&sealed), Some((tag, "tok")));
        assert_eq!(s.verified.len(), 1);
        // Remembered values are matched whole: an edit of one is checked, and refused.
        assert_eq!(s.unseal(&edited), None);
        assert_eq!(s.unseal(&sealed), Some((tag, "tok")));
        let long = "t".repeat(VERIFIED_MAX_CHARS);
        assert_eq!(s.unseal(&s.seal(&tag, &long)), Some((tag, long.as_str())));
        assert_eq!(s.verified.len(), 1);
        for i in 0..VERIFIED_ENTRIES {
            assert!(s.unseal(&s.seal(&tag, &i.to_string())).is_some());
            assert!(s.verified.len() <= VERIFIED_ENTRIES);
        }
    }

    #[test]
    fn tags_are_the_same_for_every_replica_and_differ_per_endpoint() {
        let (one, two) = (sealer(), sealer());
        let a: Authority = "a:1".parse().unwrap();
        assert_eq!(one.tag(&a), two.tag(&a));
        assert_ne!(one.tag(&a), one.tag(&"b:1".parse().unwrap()));
        assert_eq!(
            two.unseal(&one.seal(&one.tag(&a), "t")),
            Some((one.tag(&a), "t"))
        );
        assert_ne!(
            Sealer::derived("/other").tag(&a),
            one.tag(&a),
            "each route has its own key"
        );
    }
}
