//! The upstream leg: header rules ([`headers`]), the forwarding headers gatehouse vouches
//! for ([`forwarded`]) and HTTP forwarding ([`http`]).

pub mod forwarded;
pub mod headers;
pub mod http;

pub use self::http::Upstream;
