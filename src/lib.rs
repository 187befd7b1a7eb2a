//! gatehouse: an authenticating edge proxy. It terminates TLS, finds the caller's token,
//! validates it, redacts it from logs and from the URL it forwards, checks per-route
//! policy, and forwards authenticated requests with the caller's identity as headers.
//!
//! # Layout, in request order
//!
//! Folders are layers; a module imports only from its own layer or the ones below it
//! (`python3 tools/import-graph.py` checks it).
//!
//! - [`app`]: the process. `Gatehouse::start(Config) -> Running` builds the shared state
//!   once and binds both listeners; [`app::reload`] (SIGHUP, file watch), [`app::admin`]
//!   (`/metrics`, `/healthz`, `/readyz`, revocations), [`app::shutdown`] (SIGTERM / SIGINT),
//!   [`app::logging`], [`app::health`] (`gatehouse health`: one `/healthz` probe),
//!   [`app::otlp`] (span export over OTLP/HTTP)
//! - [`edge`]: one connection before it means HTTP: [`edge::listener`] (accept loop, TLS
//!   handshake in the connection task), [`edge::admission`] (connection caps), [`edge::tls`]
//!   (certificate reloaded when its files change, resumption, key-exchange groups),
//!   [`edge::ticketer`] (session tickets sealed with the replicas' shared keys), [`edge::activity`] and
//!   [`edge::response_clock`] (header, idle and response clocks), [`edge::framing`]
//!   (ambiguous HTTP/1.1 framing), [`edge::proxy_protocol`] (the PROXY v1/v2 header an L4
//!   balancer sends first), [`edge::rewind`] (the bytes read past it) and
//!   [`edge::cert_expiry`] (the served certificate's expiry gauge); [`edge::conn_events`]
//!   (what a connection task does after a drain, a grace running out, trouble or expiry)
//! - [`generation`]: what a reload swaps atomically (routes, issuers, key stores, policies,
//!   limits, the HTTP server settings)
//! - [`shared`]: what outlives a reload (metrics, ticket and revocation stores, rate-limit
//!   counts, WebSocket sessions, the drain)
//! - [`proxy`]: one request. [`proxy::service`] (`handle`: errors -> responses, metrics,
//!   access log) around [`proxy::pipeline`]; [`proxy::client`] (the one client address:
//!   the `X-Forwarded-For` walk from trusted proxies); [`proxy::route`] (longest whole-segment prefix);
//!   [`proxy::invariants`] (canonical target and route agree); [`proxy::ticket_desk`]
//!   (issuing tickets); [`proxy::logout`] (the caller's own sign-out);
//!   [`proxy::endpoint_cors`] (CORS for both); [`proxy::rate_limit`]; [`proxy::pre_auth`] (the byte budget of
//!   callers not yet authenticated); [`proxy::upgrade`] (first-message auth, relay spawn);
//!   [`proxy::cors`] (CORS preflights, passed upstream without credentials or answered);
//!   [`proxy::access_log`]; [`proxy::error`] (`ProxyError` and the only error -> response map);
//!   [`proxy::trace_context`] (W3C `traceparent`/`tracestate`); [`proxy::request_span`]
//! - [`upstream`]: the upstream leg: [`upstream::headers`] (hop-by-hop and spoofed-header
//!   rules), [`upstream::forwarded`] (`Forwarded`, `X-Forwarded-*`), [`upstream::identity`]
//!   (verified identity headers), [`upstream::http`] (redacted URI, pooled forwarding),
//!   [`upstream::stall`] (upload clock), [`upstream::error`] (`UpstreamError`); a route's
//!   endpoints: [`upstream::endpoints`] (outstanding counts, ejection), [`upstream::discovery`]
//!   (DNS re-resolution), [`upstream::balance`] (power of two choices), [`upstream::targets`]
//!   (which endpoint a request goes to), SignalR affinity in [`upstream::affinity`] (the
//!   seal) and [`upstream::negotiate`] (the sealed negotiate answer)
//! - [`websocket`]: upgrade checks and the frame relay with expiry, revocation and drain closes:
//!   [`websocket::frame`] (headers read and written), [`websocket::scan`] (the copy-without-
//!   decoding scanner), [`websocket::scan_check`] (it against a decoding relay, for tests and fuzz)
//! - [`tickets`]: single-use tickets: memory and Redis stores, sweeping
//! - [`auth`]: who the caller is and what they may do: [`auth::token`] (header, query,
//!   cookie, subprotocol, ticket, first message), [`auth::claims`], [`auth::validate`] (JWT
//!   verification), [`auth::token_cache`] (the validated-token cache), [`auth::numeric_date`], [`auth::jwt_crypto`],
//!   [`auth::prepared_key`] (public keys parsed once, at load),
//!   [`auth::jwks`] (key sets: files, JWKS URL, OIDC discovery, refresh),
//!   [`auth::introspect`] (RFC 7662), [`auth::revocation`] (local view, Redis-shared),
//!   [`auth::policy`] (scopes, roles, claims -> the `Access` permit), [`auth::ed25519`]
//!   (EdDSA keys), [`auth::error`]
//! - [`config`]: TOML + `GATEHOUSE_` env -> raw `FileConfig` -> validated [`config::Config`]
//!   (every error at once); the redaction names and plain-http warnings it implies
//! - leaves, which import no layer: [`canonical`] (the one canonical request target),
//!   [`cidr`] (address ranges, the per-client key: IPv6 per /64),
//!   [`redact`] (query strings and URLs), [`causes`] (an error's cause chain for logs), [`outbound`] (where gatehouse may fetch keys and
//!   introspect from), [`redis`] (the Redis handle, `StoreError`), [`secret`] (`Secret`,
//!   `BearerToken`), [`ticket_keys`] (the TLS ticket key file; sealing and opening tickets), [`metrics`] (Prometheus registry), [`http_client`] (the outbound
//!   client), [`body`] (the response body type), [`files`] (capped, non-blocking reads),
//!   [`build_info`] (version, git commit and build date stamped in by `build.rs`),
//!   [`log_sink`] (where the access log writes its own JSON lines),
//!   [`claim_path`] (`realm_access.roles`, `["https://example.com/roles"]`: where a claim
//!   lives, parsed by config, walked by policy and identity headers)
//! - [`dev`]: `gatehouse demo` and `gatehouse token`; [`cli`]: the command line

pub mod app;
pub mod auth;
pub(crate) mod body;
pub mod build_info;
pub mod canonical;
pub(crate) mod causes;
pub mod cidr;
pub mod claim_path;
pub mod cli;
pub mod config;
pub mod dev;
pub mod edge;
pub(crate) mod files;
pub(crate) mod generation;
pub mod http_client;
pub mod log_sink;
pub mod metrics;
pub(crate) mod outbound;
pub mod proxy;
pub mod redact;
pub(crate) mod redis;
pub mod secret;
pub(crate) mod shared;
pub(crate) mod ticket_keys;
pub(crate) mod tickets;
pub mod upstream;
pub mod websocket;

pub use app::{Gatehouse, Running, StartError};
pub use config::Config;
