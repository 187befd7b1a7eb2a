//! The upstream leg: header rules ([`headers`]) and HTTP forwarding ([`http`]).

pub mod headers;
pub mod http;

pub use self::http::Upstream;
