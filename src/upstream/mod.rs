//! The upstream leg: header rules ([`headers`], and the operator's own [`strip_rules`]), the
//! forwarding headers gatehouse vouches
//! for ([`forwarded`]) and the identity headers it sets ([`identity`]), both remembered
//! per connection ([`remembered`]), HTTP forwarding ([`http`]) over gatehouse's own connections
//! ([`exchange`], [`pool`], [`multiplex`], [`preface`], [`connect`]), the upload clock
//! ([`stall`]) and its progress ([`upload`]); a route's endpoints ([`endpoints`],
//! [`discovery`]), picking one ([`balance`], [`targets`]) and SignalR affinity
//! ([`affinity`], [`negotiate`]).

pub(crate) mod affinity;
pub(crate) mod balance;
pub(crate) mod conn_waker;
pub(crate) mod connect;
pub(crate) mod discovery;
pub(crate) mod endpoints;
pub(crate) mod error;
pub(crate) mod exchange;
pub mod forwarded;
pub mod headers;
pub mod http;
pub mod identity;
pub(crate) mod multiplex;
pub(crate) mod negotiate;
pub(crate) mod pool;
pub(crate) mod preface;
pub mod remembered;
pub(crate) mod stall;
pub mod strip_rules;
pub(crate) mod targets;
pub(crate) mod trailers;
pub(crate) mod upload;

pub use self::http::Upstream;
pub use self::remembered::Remembered;
