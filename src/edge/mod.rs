//! One connection before it means HTTP: the accept loop ([`listener`]), the connection
//! caps ([`admission`]), TLS with certificate reload ([`tls`]), the header and idle clocks
//! ([`activity`], [`response_clock`]) and the HTTP/1.1 framing guard ([`framing`]).

pub mod activity;
pub mod admission;
pub mod framing;
pub mod listener;
pub mod response_clock;
pub mod tls;
