//! One connection before it means HTTP: the accept loop ([`listener`]), the connection
//! caps ([`admission`]), TLS with certificate reload ([`tls`]), the header and idle clocks
//! ([`activity`], [`response_clock`]), the HTTP/1.1 framing guard ([`framing`]), and the
//! PROXY protocol header an L4 balancer sends first ([`proxy_protocol`], [`rewind`]).

pub mod activity;
pub mod admission;
pub mod framing;
pub mod listener;
pub mod proxy_protocol;
pub mod response_clock;
pub mod rewind;
pub mod tls;
