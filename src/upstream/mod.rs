//! The upstream leg: header rules ([`headers`]), the forwarding headers gatehouse vouches
//! for ([`forwarded`]), HTTP forwarding ([`http`]) and the upload clock ([`stall`]); a
//! route's endpoints ([`endpoints`], [`discovery`]), picking one ([`balance`], [`targets`])
//! and SignalR affinity ([`affinity`], [`negotiate`]).

pub mod affinity;
pub mod balance;
pub mod discovery;
pub mod endpoints;
pub mod error;
pub mod forwarded;
pub mod headers;
pub mod http;
pub mod identity;
pub mod negotiate;
pub mod stall;
pub mod targets;

pub use self::http::Upstream;
