//! The one canonical request target, decided once at the start of `Proxy::handle` and
//! used for everything after it: the ticket endpoint match, routing, token extraction,
//! the access log and the URI the upstream receives. What gatehouse judges is what the
//! upstream acts on, because both see the same bytes.
//!
//! [`path`] turns a request path into one spelling: unreserved characters percent-decoded,
//! other escapes in upper-case hex, dot segments resolved (RFC 3986 5.2.4), slashes merged.
//! What backends read differently and cannot be made unambiguous is refused: encoded `/`,
//! `\`, `;`, encoded dot segments, double encoding, `;` parameters, NUL and control bytes,
//! backslashes, malformed escapes, escapes that are not UTF-8, characters whose Unicode
//! case folds to ASCII (`ſ`, `ı`, the Kelvin sign) and segments that end in a dot or a
//! space or start with a space (Windows drops trailing dots and spaces from a path's
//! names, and Spring's older path matcher trims spaces: `/api/admin.` is `/api/admin` to
//! them). [`target`] (in `target.rs`) handles the request-target forms, `Host` and HTTP/2
//! pseudo-headers around it. The query is left untouched: token extraction and redaction
//! read it as sent.

mod target;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

pub(crate) use target::valid_host;
pub use target::{target, Canonical, Target};

/// `[paths]`: how the paths that some applications need differently are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRules {
    /// `true`: `//` becomes `/`. `false`: empty segments are kept (and forwarded).
    pub merge_slashes: bool,
    pub escaped_slashes: EscapedSlashes,
    pub path_params: PathParams,
}

impl Default for PathRules {
    fn default() -> Self {
        Self {
            merge_slashes: true,
            escaped_slashes: EscapedSlashes::Reject,
            path_params: PathParams::Reject,
        }
    }
}

/// `%2F` and `%5C` in a path (Envoy's `path_with_escaped_slashes_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscapedSlashes {
    /// 400: a backend that decodes them routes on other segments than gatehouse did.
    Reject,
    /// Forwarded encoded, as one segment (for apps like package registries that need it).
    Keep,
    /// Decoded to `/` before dot segments are resolved and routes matched.
    Decode,
}

/// `;` in a path segment (Java servlet containers drop `;params` before routing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathParams {
    /// 400 for any `;` in the path.
    Reject,
    /// `;` and what follows it in each segment are removed, as Java servers read it.
    Strip,
    /// Forwarded as sent (`;jsessionid=`); routes are matched on the path without them.
    Keep,
}

/// Why a request target was refused; every variant answers 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("an encoded / or \\ in the path")]
    EncodedSlash,
    #[error("an encoded ; in the path")]
    EncodedSemicolon,
    #[error("an encoded dot segment in the path")]
    EncodedDotSegment,
    #[error("a double-encoded escape (%25 and two hex digits) in the path")]
    DoubleEncoded,
    #[error("a malformed percent escape in the path")]
    BadEscape,
    #[error("escapes in the path that are not UTF-8")]
    NotUtf8,
    #[error("a character whose case folds to ASCII in the path")]
    CaseFoldsToAscii,
    #[error("a path segment that ends in a dot or a space, or starts with a space")]
    TrimmedSegment,
    #[error("a ; parameter in the path")]
    PathParameter,
    #[error("a backslash in the path")]
    Backslash,
    #[error("a NUL or control byte in the path")]
    ControlByte,
    #[error("the request target is not a path")]
    NotOriginForm,
    #[error("the absolute-form target does not match this listener and Host")]
    TargetMismatch,
    #[error("the Host header does not match :authority")]
    HostMismatch,
    #[error("no Host header on HTTP/1.1, more than one, or one that is not a host and port")]
    BadHost,
    #[error("CONNECT is not proxied")]
    Connect,
}

impl Refusal {
    /// The reason code of the access log and the error body.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::EncodedSlash
            | Refusal::EncodedSemicolon
            | Refusal::EncodedDotSegment
            | Refusal::DoubleEncoded
            | Refusal::BadEscape
            | Refusal::NotUtf8
            | Refusal::CaseFoldsToAscii
            | Refusal::TrimmedSegment
            | Refusal::PathParameter
            | Refusal::Backslash => "ambiguous_path",
            Refusal::ControlByte => "bad_path",
            Refusal::NotOriginForm
            | Refusal::TargetMismatch
            | Refusal::HostMismatch
            | Refusal::BadHost => "bad_target",
            Refusal::Connect => "connect_refused",
        }
    }
}

/// The canonical spelling of an origin-form path (no query); nearly every path already
/// is one, and is then returned as it is.
pub fn path<'a>(raw: &'a str, rules: &PathRules) -> Result<Cow<'a, str>, Refusal> {
    if is_canonical(raw, rules) {
        return Ok(Cow::Borrowed(raw));
    }
    respell(raw, rules).map(Cow::Owned)
}

/// Whether [`respell`] would return `raw` unchanged, decided without building anything: no
/// byte that it decodes, escapes, refuses or reads as a parameter (`%`, `;`, `\`, space,
/// control and non-ASCII bytes), no dot segment and no name ending in a dot, and no empty
/// segment that merging would remove.
fn is_canonical(raw: &str, rules: &PathRules) -> bool {
    let Some(rest) = raw.strip_prefix('/') else {
        return false;
    };
    let plain = |b: &u8| matches!(b, 0x21..=0x7e) && !matches!(b, b'%' | b';' | b'\\');
    if !rest.as_bytes().iter().all(plain) {
        return false;
    }
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        let fine = match segment {
            "" => last || !rules.merge_slashes,
            // `.`, `..` and a name Windows would trim all end in a dot.
            _ => !segment.ends_with('.'),
        };
        if !fine {
            return false;
        }
    }
    true
}

/// [`path`] the long way: every segment decoded and spelled again.
fn respell(raw: &str, rules: &PathRules) -> Result<String, Refusal> {
    let Some(rest) = raw.strip_prefix('/') else {
        return Err(Refusal::NotOriginForm);
    };
    let decoded_slashes;
    let rest = if rules.escaped_slashes == EscapedSlashes::Decode {
        decoded_slashes = decode_slashes(rest);
        decoded_slashes.as_str()
    } else {
        rest
    };
    let mut out: Vec<String> = Vec::new();
    let mut trailing = false;
    let mut segments = rest.split('/').peekable();
    while let Some(raw_segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment(raw_segment, rules)? {
            Segment::Dot => trailing = last,
            Segment::DotDot => {
                out.pop();
                trailing = last;
            }
            Segment::Empty if last => trailing = true,
            Segment::Empty if rules.merge_slashes => {}
            Segment::Empty => out.push(String::new()),
            Segment::Name(name) => {
                out.push(name);
                trailing = false;
            }
        }
    }
    let mut path = String::with_capacity(raw.len());
    for segment in &out {
        path.push('/');
        path.push_str(segment);
    }
    if trailing || out.is_empty() {
        path.push('/');
    }
    Ok(path)
}

/// The path routes are matched on: the canonical path without `;params` (only differs
/// under `path_params = "keep"`; the other modes leave no `;`).
pub fn routing_path<'a>(path: &'a str, rules: &PathRules) -> Cow<'a, str> {
    if rules.path_params != PathParams::Keep || !path.contains(';') {
        return Cow::Borrowed(path);
    }
    let stripped: Vec<&str> = path
        .split('/')
        .map(|s| s.split_once(';').map_or(s, |(name, _)| name))
        .collect();
    Cow::Owned(stripped.join("/"))
}

enum Segment {
    Empty,
    Dot,
    DotDot,
    Name(String),
}

/// One segment in canonical spelling, or what it is when it has no name.
fn segment(raw: &str, rules: &PathRules) -> Result<Segment, Refusal> {
    let (raw, params) = match raw.split_once(';') {
        Some(_) if rules.path_params == PathParams::Reject => return Err(Refusal::PathParameter),
        Some((name, params)) => (name, Some(params)),
        None => (raw, None),
    };
    let (name, escaped) = decode_segment(raw, rules)?;
    let kind = match name.as_str() {
        "." | ".." if params.is_some() => return Err(Refusal::PathParameter),
        "." | ".." if escaped => return Err(Refusal::EncodedDotSegment),
        "." => Segment::Dot,
        ".." => Segment::DotDot,
        "" if params.is_some() && rules.path_params == PathParams::Keep => {
            return Err(Refusal::PathParameter)
        }
        "" => Segment::Empty,
        _ if trimmed_elsewhere(&name) => return Err(Refusal::TrimmedSegment),
        _ => Segment::Name(name),
    };
    match (kind, params) {
        (Segment::Name(mut name), Some(params)) if rules.path_params == PathParams::Keep => {
            name.push(';');
            name.push_str(&canonical_params(params, rules)?);
            Ok(Segment::Name(name))
        }
        (kind, _) => Ok(kind),
    }
}

/// A name (canonical spelling, so a space is `%20`) that a backend may read without its
/// last dots or its outer spaces: Windows' path rules drop trailing dots and spaces, and
/// Spring's `AntPathMatcher` trimmed spaces before 4.3.1 (CVE-2016-5007). Routes would
/// then match one name while the backend served another.
fn trimmed_elsewhere(name: &str) -> bool {
    name.ends_with('.') || name.ends_with("%20") || name.starts_with("%20")
}

/// Parameters kept under `path_params = "keep"`: escaped like a segment, and a further
/// `;` is left as it is (`;a=1;b=2`).
fn canonical_params(raw: &str, rules: &PathRules) -> Result<String, Refusal> {
    let parts: Result<Vec<String>, Refusal> = raw
        .split(';')
        .map(|p| decode_segment(p, rules).map(|(s, _)| s))
        .collect();
    Ok(parts?.join(";"))
}

/// Percent-decodes unreserved characters and upper-cases the other escapes; returns the
/// canonical text and whether any escape was seen.
fn decode_segment(raw: &str, rules: &PathRules) -> Result<(String, bool), Refusal> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut decoded: Vec<u8> = Vec::new();
    let mut escaped = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let byte = hex_pair(bytes.get(i + 1..i + 3)).ok_or(Refusal::BadEscape)?;
            escaped = true;
            escape(byte, &mut out, rules)?;
            decoded.push(byte);
            i += 3;
            continue;
        }
        match b {
            b'\\' => return Err(Refusal::Backslash),
            0..=0x1f | 0x7f => return Err(Refusal::ControlByte),
            0x80..=0xff => push_escape(&mut out, b),
            _ => out.push(char::from(b)),
        }
        decoded.push(b);
        i += 1;
    }
    if out.contains("%25") && has_double_encoding(&out) {
        return Err(Refusal::DoubleEncoded);
    }
    if !decoded.is_ascii() {
        check_unicode(&decoded)?;
    }
    Ok((out, escaped))
}

/// Writes one escaped byte in canonical form, or refuses it.
fn escape(byte: u8, out: &mut String, rules: &PathRules) -> Result<(), Refusal> {
    match byte {
        b'/' | b'\\' if rules.escaped_slashes == EscapedSlashes::Reject => {
            Err(Refusal::EncodedSlash)
        }
        b';' => Err(Refusal::EncodedSemicolon),
        0..=0x1f | 0x7f => Err(Refusal::ControlByte),
        b if is_unreserved(b) => {
            out.push(char::from(b));
            Ok(())
        }
        b => {
            push_escape(out, b);
            Ok(())
        }
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0xf)]));
}

pub(crate) fn hex_pair(pair: Option<&[u8]>) -> Option<u8> {
    let pair = pair?;
    let digit = |b: u8| char::from(b).to_digit(16);
    let (hi, lo) = (digit(*pair.first()?)?, digit(*pair.get(1)?)?);
    u8::try_from(hi * 16 + lo).ok()
}

/// `%25` followed by two hex digits: a backend that decodes twice reads another byte.
pub(crate) fn has_double_encoding(s: &str) -> bool {
    s.match_indices("%25")
        .any(|(i, _)| hex_pair(s.as_bytes().get(i + 3..i + 5)).is_some())
}

/// Decoded bytes must be UTF-8 (an overlong `%C0%AE` is a dot to some decoders) and hold
/// no character whose case folds to ASCII (`ſ` upper-cases to `S`, `ı` to `I`, the Kelvin
/// sign lower-cases to `k`): frameworks that fold Unicode case would route it elsewhere.
fn check_unicode(decoded: &[u8]) -> Result<(), Refusal> {
    let text = std::str::from_utf8(decoded).map_err(|_| Refusal::NotUtf8)?;
    let folds_to_ascii = |c: char| {
        !c.is_ascii()
            && (c.to_uppercase().any(|u| u.is_ascii()) || c.to_lowercase().any(|l| l.is_ascii()))
    };
    if text.chars().any(folds_to_ascii) {
        return Err(Refusal::CaseFoldsToAscii);
    }
    Ok(())
}

/// `escaped_slashes = "decode"`: `%2F` and `%5C` become `/` before the path is split.
fn decode_slashes(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(b'/' | b'\\') = hex_pair(bytes.get(i + 1..i + 3)) {
                out.push('/');
                i += 3;
                continue;
            }
        }
        let end = i + raw[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&raw[i..end]);
        i = end;
    }
    out
}
