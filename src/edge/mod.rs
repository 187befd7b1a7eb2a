//! One connection before it means HTTP: the accept loop ([`listener`]) and what a
//! connection task does after each event ([`conn_events`]), the connection caps ([`admission`]), TLS with certificate reload ([`tls`]) and shared session tickets
//! ([`ticketer`]), the header and idle clocks ([`activity`], [`response_clock`]), the
//! HTTP/1.1 framing guard ([`framing`]), the PROXY protocol header an L4 balancer sends
//! first ([`proxy_protocol`], [`rewind`]) and the served certificate's expiry gauge
//! ([`cert_expiry`]).

pub(crate) mod activity;
pub(crate) mod admission;
pub(crate) mod cert_expiry;
pub(crate) mod conn_events;
pub mod framing;
pub(crate) mod listener;
pub mod proxy_protocol;
pub(crate) mod response_clock;
pub(crate) mod rewind;
pub(crate) mod session_cache;
pub(crate) mod ticketer;
pub mod tls;
