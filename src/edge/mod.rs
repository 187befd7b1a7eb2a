//! One connection before it means HTTP: the accept loop ([`listener`]), the connection
//! caps ([`admission`]), TLS with certificate reload ([`tls`]), the header and idle clocks
//! ([`activity`], [`response_clock`]), the HTTP/1.1 framing guard ([`framing`]) and the
//! served certificate's expiry gauge ([`cert_expiry`]).

pub(crate) mod activity;
pub(crate) mod admission;
pub(crate) mod cert_expiry;
pub mod framing;
pub(crate) mod listener;
pub(crate) mod response_clock;
pub mod tls;
