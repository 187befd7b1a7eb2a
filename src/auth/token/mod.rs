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
            return Ok(Some(Found {
                token: accept(raw, max_bytes)?,
                origin: origin(source),
            }));
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
    if raw.len() > max_bytes {
        return Err(AuthError::TooLarge);
    }
    if raw.is_empty() || !raw.bytes().all(|b| TOKEN_BYTES[usize::from(b)]) {
        return Err(AuthError::Malformed);
    }
    Ok(BearerToken::new(raw))
}

/// RFC 6750 b64token characters, which cover JWTs and common opaque token formats. A
/// table: every byte of every token is looked up, on every request.
static TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=');
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests;
