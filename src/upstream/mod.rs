//! The upstream leg: header rules ([`headers`]), the forwarding headers gatehouse vouches
//! for ([`forwarded`]), HTTP forwarding ([`http`]) and the upload clock ([`stall`]).

pub(crate) mod error;
pub(crate) mod forwarded;
pub mod headers;
pub mod http;
pub mod identity;
pub(crate) mod stall;

pub use self::http::Upstream;
