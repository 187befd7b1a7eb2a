//! For trying gatehouse out: `gatehouse demo` ([`demo`]) and `gatehouse token` ([`mint`]).

pub mod demo;
pub mod mint;
