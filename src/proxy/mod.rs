//! One request: [`service`] (`handle`, around the [`pipeline`]), who it is from
//! ([`client`]: the one client address, trusted proxies' `X-Forwarded-*`), the request-target
//! invariants ([`invariants`]), the route table ([`route`]), the ticket desk
//! ([`ticket_desk`]), the caller's sign-out ([`logout`]), what both read first
//! ([`desk_call`]), CORS for both ([`endpoint_cors`]),
//! rate limits ([`rate_limit`]), the pre-authentication budget ([`pre_auth`]), WebSocket
//! upgrades ([`upgrade`]), CORS for routes ([`cors`], [`preflight`]), the access log
//! ([`access_log`]) and the only error -> response map ([`error`]); W3C trace context
//! ([`trace_context`]) and the request's span ([`request_span`]).

pub(crate) mod access_log;
pub(crate) mod authenticate;
pub mod client;
pub(crate) mod cors;
pub(crate) mod desk_call;
pub(crate) mod endpoint_cors;
pub(crate) mod error;
pub mod invariants;
pub(crate) mod logout;
pub(crate) mod pipeline;
pub(crate) mod pre_auth;
pub(crate) mod preflight;
pub(crate) mod rate_limit;
pub(crate) mod request_span;
pub mod route;
pub(crate) mod service;
pub(crate) mod ticket_desk;
pub(crate) mod token_bound;
pub(crate) mod trace_context;
pub(crate) mod upgrade;
