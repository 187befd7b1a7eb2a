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
        let (raw, origin) = match source {
            TokenSource::Header => (bearer::find(&parts.headers)?, Origin::Header),
            TokenSource::Query(name) => (
                query::find(parts.uri.query(), name, max_bytes)?,
                Origin::Query,
            ),
            TokenSource::Cookie(name) => (cookie::find(&parts.headers, name), Origin::Cookie),
            TokenSource::Subprotocol => (subprotocol::find(&parts.headers), Origin::Subprotocol),
            TokenSource::Ticket(param) => (
                query::find(parts.uri.query(), param, max_bytes)?,
                Origin::Ticket,
            ),
            // Read after the WebSocket handshake; see `websocket::first_message`.
            TokenSource::FirstMessage => (None, Origin::FirstMessage),
        };
        if let Some(raw) = raw {
            return Ok(Some(Found {
                token: accept(raw, max_bytes)?,
                origin,
            }));
        }
    }
    Ok(None)
}

/// Checks a token that arrived some other way (the first WebSocket message) like the rest.
pub fn accept(raw: String, max_bytes: usize) -> Result<BearerToken, AuthError> {
    if raw.len() > max_bytes {
        return Err(AuthError::TooLarge);
    }
    if raw.is_empty() || !raw.bytes().all(is_token_byte) {
        return Err(AuthError::Malformed);
    }
    Ok(BearerToken::new(raw))
}

/// RFC 6750 b64token characters, which cover JWTs and common opaque token formats.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

#[cfg(test)]
mod tests;
