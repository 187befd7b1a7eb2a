//! The upstream leg: header rules ([`headers`]), the forwarding headers gatehouse vouches
//! for ([`forwarded`]), HTTP forwarding ([`http`]) and the upload clock ([`stall`]).

pub mod error;
pub mod forwarded;
pub mod headers;
pub mod http;
pub mod identity;
pub mod stall;

pub use self::http::Upstream;
