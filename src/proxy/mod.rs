//! One request: [`service`] (`handle`, around the [`pipeline`]), the request-target
//! invariants ([`invariants`]), the route table ([`route`]), the ticket desk
//! ([`ticket_desk`]), the caller's sign-out ([`logout`]), CORS for both ([`cors`]), rate limits ([`rate_limit`]), the pre-authentication budget
//! ([`pre_auth`]), WebSocket upgrades ([`upgrade`]), the access log ([`access_log`]) and
//! the only error -> response map ([`error`]).

pub mod access_log;
pub mod cors;
pub mod error;
pub mod invariants;
pub mod logout;
pub mod pipeline;
pub mod pre_auth;
pub mod rate_limit;
pub mod route;
pub mod service;
pub mod ticket_desk;
pub mod upgrade;
