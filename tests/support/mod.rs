//! Test support: real servers on 127.0.0.1:0 and nothing mocked.
//!
//! - [`TestProxy::start`] runs gatehouse in-process from TOML text;
//! - [`Upstream`] is a backend that records what reached it (echo, SSE, slow);
//! - [`Idp`] serves OIDC discovery and a JWKS that a test can rotate or stop;
//! - [`Key`] and [`mint`] make tokens from the throwaway keys in `tests/fixtures/`;
//! - [`ISS`], [`SECRET`], [`HS_ISSUER`] and [`mint_hs`] are the HMAC issuer most files share;
//! - [`client`] and [`send`] speak plain HTTP/1.1 to the proxy;
//! - [`WsHub`] is a WebSocket backend that records what reached it; [`NodeHub`] the Node
//!   SignalR hub of `tests/signalr`;
//! - [`Ca`] issues TLS certificates for `localhost` and the client that trusts them;
//! - [`Proc`] runs the real binary, [`RedisServer`] a real `redis-server`, [`Blackhole`] a
//!   relay in front of it whose connections can go silently dead;
//! - [`browser`] runs Debian's Chromium through playwright-core; [`Demo`] runs
//!   `gatehouse demo` and reads its printed walkthrough.
//!
//! One file per helper kind; this file only declares and re-exports them.
#![allow(dead_code, unreachable_pub)]

mod binary;
mod blackhole;
pub mod browser;
mod client;
mod components;
mod demo;
pub mod haproxy;
mod hub;
mod node_hub;
mod proxy;
mod redis;
mod servers;
mod sts;
mod tls_ca;
mod tokens;

// Each test binary uses some of these; the rest must not count as its unused imports.
#[allow(unused_imports)]
pub use self::binary::*;
#[allow(unused_imports)]
pub use self::blackhole::*;
#[allow(unused_imports)]
pub use self::client::*;
#[allow(unused_imports)]
pub use self::components::*;
#[allow(unused_imports)]
pub use self::demo::*;
#[allow(unused_imports)]
pub use self::hub::*;
#[allow(unused_imports)]
pub use self::node_hub::*;
#[allow(unused_imports)]
pub use self::proxy::*;
#[allow(unused_imports)]
pub use self::redis::*;
#[allow(unused_imports)]
pub use self::servers::*;
#[allow(unused_imports)]
pub use self::sts::*;
#[allow(unused_imports)]
pub use self::tls_ca::*;
#[allow(unused_imports)]
pub use self::tokens::*;
