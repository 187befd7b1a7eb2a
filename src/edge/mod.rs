//! One connection before it means HTTP: the accept loop ([`listener`]), the connection
//! caps ([`admission`]), TLS with certificate reload ([`tls`]), the header and idle clocks
//! ([`activity`], [`response_clock`]), the HTTP/1.1 framing guard ([`framing`]) and the
//! served certificate's expiry gauge ([`cert_expiry`]).

pub mod activity;
pub mod admission;
pub mod cert_expiry;
pub mod framing;
pub mod listener;
pub mod response_clock;
pub mod tls;
