//! What a client connection remembers between its requests: header values worked out
//! from what nearly always stays the same on a keep-alive connection (its client, scheme
//! and host; its caller's token), each set again only for the very same inputs.

use super::{forwarded, identity};

#[derive(Debug, Default)]
pub struct Remembered {
    /// The forwarding headers of the last request's hop.
    pub forwarding: forwarded::Remembered,
    /// The identity headers of the last authenticated request's claims.
    pub identity: identity::Remembered,
}
