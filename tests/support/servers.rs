//! Servers: a recording [`Upstream`] (echo, SSE, slow) and an [`Idp`] (OIDC discovery, JWKS).

use super::tokens::Key;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<TestBody>> + Send>>
        + Send
        + Sync,
>;

/// A recorded request, as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
}

/// A backend on 127.0.0.1:0 that records every request that reaches it.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

/// Counts an upstream's event streams that were dropped (their client went away).
struct Dropped(Arc<AtomicUsize>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Upstream {
    /// Answers every request with an endless event stream (`text/event-stream`), an event
    /// each 100 ms; the counter says how many streams were dropped.
    pub async fn endless_events() -> (Upstream, Arc<AtomicUsize>) {
        let dropped = Arc::new(AtomicUsize::new(0));
        let seen = dropped.clone();
        let upstream = Upstream::start(move |_| {
            let guard = Dropped(seen.clone());
            async move {
                let events = futures_util::stream::unfold((0u64, guard), |(i, guard)| async move {
                    if i > 0 {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    let event = Frame::data(Bytes::from(format!("data: event {i}\n\n")));
                    Some((Ok::<_, Infallible>(event), (i + 1, guard)))
                });
                let mut response = Response::new(StreamBody::new(events).boxed());
                response
                    .headers_mut()
                    .insert("content-type", "text/event-stream".parse().unwrap());
                response
            }
        })
        .await;
        (upstream, dropped)
    }

    /// Answers 200 with a JSON echo of method, URI and headers.
    pub async fn echo() -> Upstream {
        Self::start(|req| async move {
            let headers: serde_json::Map<String, Value> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), json!(String::from_utf8_lossy(v.as_bytes()))))
                .collect();
            let body = json!({"method": req.method().as_str(), "uri": req.uri().to_string(), "headers": headers});
            Response::new(full(body.to_string()))
        })
        .await
    }

    pub async fn start<F, Fut>(handler: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |req| Box::pin(handler(req)));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (addr, task) = serve(handler, Some(seen.clone())).await;
        Upstream { addr, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.requests()
            .pop()
            .expect("the upstream received no request")
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    handler: Handler,
    seen: Option<Arc<Mutex<Vec<Seen>>>>,
) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            let seen = seen.clone();
            conns.spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    if let Some(seen) = &seen {
                        seen.lock().unwrap().push(Seen {
                            method: req.method().to_string(),
                            uri: req.uri().to_string(),
                            headers: req.headers().clone(),
                        });
                    }
                    let fut = handler(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr, task)
}

/// An OIDC provider: discovery document and a JWKS that can be replaced or taken down.
pub struct Idp {
    pub addr: SocketAddr,
    pub jwks: Arc<Mutex<Value>>,
    pub hits: Arc<Mutex<HashMap<String, usize>>>,
    task: JoinHandle<()>,
}

impl Idp {
    pub async fn start(keys: &[Key]) -> Idp {
        let jwks = Arc::new(Mutex::new(
            json!({"keys": keys.iter().map(Key::jwk).collect::<Vec<_>>()}),
        ));
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let (j, h) = (jwks.clone(), hits.clone());
        let handler: Handler = Arc::new(move |req| {
            let (jwks, hits) = (j.clone(), h.clone());
            Box::pin(async move {
                let path = req.uri().path().to_string();
                *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
                let base = format!("http://{addr}");
                match path.as_str() {
                    "/.well-known/openid-configuration" => Response::new(full(
                        json!({"issuer": base, "jwks_uri": format!("{base}/jwks")}).to_string(),
                    )),
                    "/jwks" => Response::new(full(jwks.lock().unwrap().to_string())),
                    _ => status(StatusCode::NOT_FOUND),
                }
            })
        });
        let task = serve_on(addr, handler).await;
        Idp {
            addr,
            jwks,
            hits,
            task,
        }
    }

    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_keys(&self, keys: &[Key]) {
        *self.jwks.lock().unwrap() = json!({"keys": keys.iter().map(Key::jwk).collect::<Vec<_>>()});
    }

    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Takes the IdP down: its port refuses connections from now on.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_on(addr: SocketAddr, handler: Handler) -> JoinHandle<()> {
    let listener = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        // Connections live in this JoinSet, so aborting the task closes them too.
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            conns.spawn(async move {
                let service = service_fn(move |req| {
                    let fut = handler(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

pub fn full(body: impl Into<Bytes>) -> TestBody {
    Full::new(body.into()).boxed()
}

pub fn status(code: StatusCode) -> Response<TestBody> {
    let mut r = Response::new(full(""));
    *r.status_mut() = code;
    r
}
