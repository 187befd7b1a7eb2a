//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` and
//! `tracestate` a request carries upstream, and the trace id in its access line.
//!
//! An incoming `traceparent` is a claim by whoever sent it. It becomes the parent only when
//! the operator says the hop before us is trusted (`[trace] trust_incoming`), and only when it
//! parses exactly per the spec; otherwise gatehouse starts a new trace. Either way the
//! upstream receives a `traceparent` gatehouse wrote itself, never the client's bytes, so a
//! malformed or hostile header is never forwarded. `tracestate` goes along only with a
//! trusted, valid parent, and only when it is valid itself; so does W3C `baggage`, which
//! instrumented backends read as application state and pass on to every service they call.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use rand::RngCore;

pub(crate) static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub(crate) static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
pub(crate) static BAGGAGE: HeaderName = HeaderName::from_static("baggage");

/// §3.3.1.3: at most 32 list members.
const MAX_TRACESTATE_MEMBERS: usize = 32;
/// What gatehouse passes on; the spec asks vendors to propagate at least 512 characters.
const MAX_TRACESTATE_BYTES: usize = 512;

/// This request's place in a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TraceContext {
    pub(crate) trace_id: [u8; 16],
    /// The caller's span, when a trusted caller named one.
    pub(crate) parent_id: Option<[u8; 8]>,
    /// gatehouse's span for this request: the parent the upstream sees.
    pub(crate) span_id: [u8; 8],
    pub(crate) sampled: bool,
    pub(crate) tracestate: Option<HeaderValue>,
    /// The hop is trusted with trace context (`trust_incoming`, and a trusted proxy when
    /// any are listed): other tracers' fields it sends may pass (`headers::strip_client`).
    pub(crate) trusted: bool,
}

/// Which of `tracestate` and `baggage` a request's map may hold when the trace context is
/// applied: the rewrite saw every field the client sent, and asking the map for an absent
/// name hashes it for nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    pub(crate) tracestate: bool,
    pub(crate) baggage: bool,
}

impl Held {
    /// Either may be there.
    #[cfg(test)]
    pub(crate) const ANY: Self = Self {
        tracestate: true,
        baggage: true,
    };
}

/// A parsed, valid `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parent {
    pub(crate) trace_id: [u8; 16],
    pub(crate) parent_id: [u8; 8],
    pub(crate) flags: u8,
}

impl TraceContext {
    /// The context for a request: the trusted caller's trace continued, or a new one.
    /// `sample_new` is the sampled flag of a trace started here (true when spans are exported).
    pub(crate) fn for_request(
        headers: &HeaderMap,
        trust_incoming: bool,
        sample_new: bool,
        drawn: &Drawn,
    ) -> Self {
        let parent = trust_incoming.then(|| parse_traceparent(headers)).flatten();
        match parent {
            Some(p) => Self {
                trace_id: p.trace_id,
                parent_id: Some(p.parent_id),
                span_id: drawn.span_id(),
                sampled: p.flags & 1 == 1,
                tracestate: parse_tracestate(headers),
                trusted: true,
            },
            None => Self {
                trace_id: drawn.trace_id(),
                parent_id: None,
                span_id: drawn.span_id(),
                sampled: sample_new,
                tracestate: None,
                trusted: trust_incoming,
            },
        }
    }

    pub(crate) fn trace_id_hex(&self) -> String {
        let mut text = [0u8; 32];
        hex_into(&self.trace_id, &mut text);
        String::from_utf8(text.to_vec()).unwrap_or_default()
    }

    /// `00-<trace-id>-<our span id>-<flags>`.
    pub(crate) fn traceparent(&self) -> HeaderValue {
        let mut text = *b"00-00000000000000000000000000000000-0000000000000000-00";
        hex_into(&self.trace_id, &mut text[3..35]);
        hex_into(&self.span_id, &mut text[36..52]);
        if self.sampled {
            text[54] = b'1';
        }
        HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Replaces whatever trace headers the client sent with ours; `held` says which of
    /// `tracestate` and `baggage` the map may have.
    pub(crate) fn apply(&self, headers: &mut HeaderMap, held: Held) {
        // `insert` replaces every value the client sent under the name.
        headers.insert(TRACEPARENT.clone(), self.traceparent());
        match &self.tracestate {
            Some(state) => {
                headers.insert(TRACESTATE.clone(), state.clone());
            }
            None if held.tracestate => {
                headers.remove(&TRACESTATE);
            }
            None => {}
        }
        if self.parent_id.is_none() && held.baggage {
            headers.remove(&BAGGAGE);
        }
    }
}

/// A request's random ids, drawn from the thread's generator at once: a new trace's id,
/// gatehouse's span id and a request id for a client that sent none. Each draw cost about
/// a hundred instructions besides its bytes, and a request made three.
pub(crate) struct Drawn([u8; 40]);

impl Drawn {
    pub(crate) fn new() -> Self {
        let mut bytes = [0u8; 40];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Never all zeros (invalid per §3.2.2.3): drawn again in that case.
    fn trace_id(&self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id.copy_from_slice(&self.0[..16]);
        while id == [0; 16] {
            rand::thread_rng().fill_bytes(&mut id);
        }
        id
    }

    /// Never all zeros, as [`Self::trace_id`].
    fn span_id(&self) -> [u8; 8] {
        let mut id = [0u8; 8];
        id.copy_from_slice(&self.0[16..24]);
        if id == [0; 8] {
            return new_span_id();
        }
        id
    }

    /// A version 4 UUID of the last 16 bytes.
    pub(crate) fn request_uuid(&self) -> uuid::Uuid {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&self.0[24..]);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

fn new_span_id() -> [u8; 8] {
    let mut id = [0u8; 8];
    while id == [0; 8] {
        rand::thread_rng().fill_bytes(&mut id);
    }
    id
}

/// Lowercase hex of `bytes` into `out` (twice as long): once per request, so no formatter.
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
}

/// The one `traceparent` of a request, if it is valid per §3.2. Two or more fields are
/// ambiguous (which did the previous hop mean?) and count as none.
pub(crate) fn parse_traceparent(headers: &HeaderMap) -> Option<Parent> {
    let mut all = headers.get_all(&TRACEPARENT).iter();
    let (value, None) = (all.next()?, all.next()) else {
        return None;
    };
    parse_traceparent_value(value.as_bytes())
}

/// `version "-" trace-id "-" parent-id "-" trace-flags`, lowercase hex only. Version `ff` is
/// invalid; version `00` is exactly 55 bytes; a later version may append `-`-led fields,
/// which we do not read (§3.2.4).
pub(crate) fn parse_traceparent_value(v: &[u8]) -> Option<Parent> {
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version = lower_hex::<1>(&v[0..2])?[0];
    if version == 0xff || (version == 0 && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    let trace_id = lower_hex::<16>(&v[3..35])?;
    let parent_id = lower_hex::<8>(&v[36..52])?;
    let flags = lower_hex::<1>(&v[53..55])?[0];
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    Some(Parent {
        trace_id,
        parent_id,
        flags,
    })
}

fn lower_hex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// Every `tracestate` field joined (§3.3.1.1 allows splitting), if the whole list is valid:
/// at most 32 members, each `key=value` per §3.3.1.3, keys unique, and at most 512 bytes
/// in all. Anything else is dropped whole, never repaired.
pub(crate) fn parse_tracestate(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut members: Vec<&str> = Vec::new();
    for field in headers.get_all(&TRACESTATE) {
        let text = field.to_str().ok()?;
        for member in text.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if !member.is_empty() {
                members.push(member);
            }
        }
    }
    if members.is_empty() || members.len() > MAX_TRACESTATE_MEMBERS {
        return None;
    }
    let mut keys = std::collections::HashSet::new();
    for member in &members {
        let (key, value) = member.split_once('=')?;
        if !valid_key(key) || !valid_value(value) || !keys.insert(key) {
            return None;
        }
    }
    let joined = members.join(",");
    if joined.len() > MAX_TRACESTATE_BYTES {
        return None;
    }
    HeaderValue::try_from(joined).ok()
}

/// `simple-key` or `tenant-id "@" system-id`.
fn valid_key(key: &str) -> bool {
    let rest = |s: &str, max: usize| {
        s.len() <= max
            && s.bytes()
                .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/'))
    };
    match key.split_once('@') {
        None => key.as_bytes().first().is_some_and(u8::is_ascii_lowercase) && rest(&key[1..], 255),
        Some((tenant, system)) => {
            tenant
                .as_bytes()
                .first()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && rest(&tenant[1..], 240)
                && system
                    .as_bytes()
                    .first()
                    .is_some_and(u8::is_ascii_lowercase)
                && rest(&system[1..], 13)
        }
    }
}

/// 1 to 256 printable ASCII characters other than `,` and `=`, not ending in a space.
fn valid_value(value: &str) -> bool {
    (1..=256).contains(&value.len())
        && !value.ends_with(' ')
        && value
            .bytes()
            .all(|c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
}

#[cfg(test)]
mod tests;
