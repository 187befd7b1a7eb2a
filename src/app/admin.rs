//! The admin listener, on its own address and never on the public one: `/metrics`
//! (Prometheus text), `/healthz` (the process is up), `/readyz` (every issuer has keys,
//! every shared store answers, and we are not draining), and `/revocations`. With
//! `on_store_error = "allow"` a store outage keeps `/readyz` at 200 and says so in its body
//! and in `gatehouse_store_up`.
//!
//! `/revocations` needs `Authorization: Bearer <secret>`, the secret named by
//! `admin.token_env`; without it configured, the endpoint refuses everyone. Listing is
//! guarded too: revoked ids and subjects are nobody else's business.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::body::{empty, full, Body};
use crate::generation::Current;
use crate::metrics::Metrics;
use crate::proxy::error::json;
use crate::shared::Stores;

const MAX_BODY_BYTES: usize = 4096;

pub(crate) struct Admin {
    pub metrics: Arc<Metrics>,
    /// Issuers and the admin token come from the current generation, so they reload.
    pub current: Current,
    pub stores: Arc<Stores>,
    pub draining: Arc<AtomicBool>,
}

/// `{"jti": "..."}` or `{"sub": "...", "before": <unix seconds>}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    jti: Option<String>,
    sub: Option<String>,
    before: Option<u64>,
}

impl Admin {
    /// `Ok` with a note when serving degraded, `Err` with the reason when not ready.
    fn ready(&self) -> Result<Option<String>, String> {
        if self.draining.load(Ordering::Acquire) {
            return Err("draining".into());
        }
        let generation = self.current.load();
        let waiting: Vec<&str> = generation
            .key_stores
            .iter()
            .filter(|s| !s.is_ready())
            .map(|s| s.issuer().name.as_str())
            .collect();
        if !waiting.is_empty() {
            return Err(format!("no keys yet for issuer {}", waiting.join(", ")));
        }
        let down = self.stores.unhealthy();
        if down.is_empty() {
            return Ok(None);
        }
        let why = format!("shared store unreachable: {}", down.join(", "));
        // "allow" exists to keep serving through an outage: taking every replica out of
        // its Service (they share the one Redis) would turn it into a full outage.
        if generation.config.revocation.deny_on_store_error {
            return Err(why);
        }
        Ok(Some(format!(
            "{why}; on_store_error = \"allow\": requests are served against the revocations \
             known before the outage; ticket issue and redemption answer 503"
        )))
    }

    async fn answer(&self, request: Request<Incoming>) -> Response<Body> {
        match (request.method(), request.uri().path()) {
            (&Method::GET, "/metrics") => self.metrics(),
            (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n".into()),
            (&Method::GET, "/readyz") => match self.ready() {
                Ok(None) => text(StatusCode::OK, "ready\n".into()),
                Ok(Some(note)) => text(StatusCode::OK, format!("ready, degraded: {note}\n")),
                Err(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {why}\n"),
                ),
            },
            (method, "/revocations") => {
                if !self.authorized(&request) {
                    let mut r = json(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "the admin bearer is required",
                    );
                    r.headers_mut().insert(
                        http::header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer realm=\"gatehouse-admin\""),
                    );
                    return r;
                }
                match *method {
                    Method::GET => self.list(),
                    Method::POST => self.revoke(request).await,
                    _ => json(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "method_not_allowed",
                        "use GET or POST",
                    ),
                }
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
        }
    }

    fn metrics(&self) -> Response<Body> {
        for store in &self.current.load().key_stores {
            self.metrics
                .set_key_age(&store.issuer().name, store.key_age());
        }
        for (store, up) in self.stores.health() {
            self.metrics.set_store_up(store, up);
        }
        let mut r = Response::new(full(self.metrics.render()));
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        r
    }

    /// Compares digests, so the comparison's timing says nothing about the secret.
    fn authorized(&self, request: &Request<Incoming>) -> bool {
        let generation = self.current.load();
        let Some(secret) = &generation.config.admin_token else {
            return false;
        };
        let Some(presented) = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        Sha256::digest(presented.trim().as_bytes()) == Sha256::digest(secret.expose().as_bytes())
    }

    fn list(&self) -> Response<Body> {
        let entries = self.stores.revocations.list();
        crate::body::json(
            StatusCode::OK,
            &serde_json::json!({ "revocations": entries }),
        )
    }

    async fn revoke(&self, request: Request<Incoming>) -> Response<Body> {
        // A body that trickles in would hold the connection for ever: the same clock as the
        // bodies the public listener reads itself.
        let within = self.current.load().config.pre_auth.body_read_timeout;
        let read = Limited::new(request.into_body(), MAX_BODY_BYTES).collect();
        let Ok(read) = tokio::time::timeout(within, read).await else {
            return json(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the body did not arrive within limits.body_read_timeout",
            );
        };
        let Ok(body) = read else {
            return json(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "body too large or unreadable",
            );
        };
        let parsed: Result<RevokeRequest, _> = serde_json::from_slice(&body.to_bytes());
        let entry = parsed.ok().and_then(|r| {
            if r.jti.is_some() && r.before.is_some() {
                return None;
            }
            self.stores.revocations.entry(r.jti, r.sub, r.before)
        });
        let Some(entry) = entry else {
            return json(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "send {\"jti\": \"...\"} or {\"sub\": \"...\", \"before\": <unix seconds>}",
            );
        };
        match self.stores.revocations.revoke(entry).await {
            Ok(()) => {
                let mut r = Response::new(empty());
                *r.status_mut() = StatusCode::NO_CONTENT;
                r
            }
            Err(_) => {
                self.metrics.store_error("revocation");
                json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the revocation store is unavailable",
                )
            }
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// Serves the admin endpoints until `stop` fires.
pub(crate) async fn serve(listener: TcpListener, admin: Arc<Admin>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let admin = admin.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.answer(request).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}
