//! Token extraction: look in the places a route lists, in its order, and take the first
//! token found. Sizes are checked on the raw value before anything parses it.
//!
//! One file per source: [`bearer`] (`Authorization: Bearer`), [`query`] (a query
//! parameter, also how tickets arrive), [`cookie`] (a named cookie), [`subprotocol`]
//! (`bearer.<token>`, any case, in `Sec-WebSocket-Protocol`) and [`first_message`] (the parser of the
//! auth message a WebSocket sends first; that source is read after the handshake, not here).

mod bearer;
mod cookie;
pub mod first_message;
mod query;
mod subprotocol;

pub use subprotocol::is_token_protocol;

use http::request::Parts;

use crate::auth::error::AuthError;
use crate::config::TokenSource;
use crate::secret::BearerToken;

/// Where a token was found; `upstream_auth = "bearer"` moves non-header tokens into the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Header,
    Query,
    Cookie,
    Subprotocol,
    /// A single-use ticket: redeemed, not validated as a token.
    Ticket,
    FirstMessage,
}

#[derive(Debug)]
pub struct Found {
    pub token: BearerToken,
    pub origin: Origin,
}

/// The first token in `sources` order, `None` when there is none at all.
pub fn extract(
    parts: &Parts,
    sources: &[TokenSource],
    max_bytes: usize,
) -> Result<Option<Found>, AuthError> {
    extract_unless_known(parts, sources, max_bytes, |_, _| false)
}

/// As [`extract`], but a token for which `known` holds skips the character check: it is
/// byte for byte one that passed it before (a token the validation cache holds), so the
/// check would pass again. The size check still comes first, and any other token is
/// checked where [`extract`] checks it, so every request gets the error it would have.
pub fn extract_unless_known(
    parts: &Parts,
    sources: &[TokenSource],
    max_bytes: usize,
    mut known: impl FnMut(&str, Origin) -> bool,
) -> Result<Option<Found>, AuthError> {
    for source in sources {
        let raw = match source {
            TokenSource::Header => bearer::find(&parts.headers)?,
            TokenSource::Query(name) => query::find(parts.uri.query(), name, max_bytes)?,
            TokenSource::Cookie(name) => cookie::find(&parts.headers, name),
            TokenSource::Subprotocol => subprotocol::find(&parts.headers),
            TokenSource::Ticket(param) => query::find(parts.uri.query(), param, max_bytes)?,
            // Read after the WebSocket handshake; see `websocket::first_message`.
            TokenSource::FirstMessage => None,
        };
        if let Some(raw) = raw {
            let origin = origin(source);
            check_size(&raw, max_bytes)?;
            let token = match !raw.is_empty() && known(&raw, origin) {
                true => BearerToken::new(raw),
                false => accept(raw, max_bytes)?,
            };
            return Ok(Some(Found { token, origin }));
        }
    }
    Ok(None)
}

/// The [`Origin`] of a token that `source` finds.
pub fn origin(source: &TokenSource) -> Origin {
    match source {
        TokenSource::Header => Origin::Header,
        TokenSource::Query(_) => Origin::Query,
        TokenSource::Cookie(_) => Origin::Cookie,
        TokenSource::Subprotocol => Origin::Subprotocol,
        TokenSource::Ticket(_) => Origin::Ticket,
        TokenSource::FirstMessage => Origin::FirstMessage,
    }
}

/// Checks a token that arrived some other way (the first WebSocket message) like the rest.
pub fn accept(raw: String, max_bytes: usize) -> Result<BearerToken, AuthError> {
    check_size(&raw, max_bytes)?;
    if raw.is_empty() || !is_b64token(raw.as_bytes()) {
        return Err(AuthError::Malformed);
    }
    Ok(BearerToken::new(raw))
}

/// The size limit, which every token meets before anything else is asked of it.
fn check_size(raw: &str, max_bytes: usize) -> Result<(), AuthError> {
    match raw.len() > max_bytes {
        true => Err(AuthError::TooLarge),
        false => Ok(()),
    }
}

/// Whether every byte is an RFC 6750 b64token character, which covers JWTs and common
/// opaque token formats. Every byte of every token is checked on every request, so the
/// test is branch-free within 32-byte blocks of a length the compiler can see (exact
/// chunks: 400 fewer instructions on a 540-byte JWT than chunks of any length).
fn is_b64token(bytes: &[u8]) -> bool {
    let blocks = bytes.chunks_exact(32);
    let tail = blocks.remainder();
    let all = |block: &[u8]| block.iter().fold(true, |ok, &b| ok & is_b64token_byte(b));
    blocks.into_iter().all(all) && all(tail)
}

/// `A-Z a-z 0-9 - . _ ~ + / =` in as few vector operations as the set allows: letters
/// are one range once case is folded, `-./0-9` are one range (0x2d to 0x39), and four
/// lone characters are left. The obvious test (ten comparisons) cost twice as much.
fn is_b64token_byte(b: u8) -> bool {
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit_or_dash_dot_slash = b.wrapping_sub(b'-') < 13;
    let lone = (b == b'+') | (b == b'=') | (b == b'_') | (b == b'~');
    letter | digit_or_dash_dot_slash | lone
}

#[cfg(test)]
mod tests;
