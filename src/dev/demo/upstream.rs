//! The demo's built-in backend, which knows nothing about tokens (like the services
//! gatehouse protects):
//!
//! - `/chat`: a WebSocket chat hub; every message goes to everyone, signed with the
//!   `X-Auth-Subject` the proxy attached at upgrade;
//! - `/demo`: the demo page, and `/demo/token?ttl=SECONDS`, which mints a short-lived dev
//!   token (this exists only in the demo: a real app gets its token from its IdP);
//! - anything else: a JSON echo of the method, URI and headers it received.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;

use crate::body::{empty, full, Body};
use crate::config::Config;
use crate::dev::mint;

const PAGE: &str = include_str!("page.html");
/// Tokens the page asks for live between these bounds (seconds).
const TTL_RANGE: (u64, u64) = (5, 600);

pub(super) struct DemoUpstream {
    config: Config,
    chat: broadcast::Sender<String>,
}

impl DemoUpstream {
    pub(super) fn new(config: Config) -> Arc<Self> {
        Arc::new(Self {
            config,
            chat: broadcast::channel(256).0,
        })
    }

    pub(super) async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let upstream = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let upstream = upstream.clone();
                    async move { Ok::<_, Infallible>(upstream.answer(request)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    }

    fn answer(self: &Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        match request.uri().path() {
            "/chat" => self.join_chat(request),
            "/demo" | "/demo/" => page(),
            "/demo/token" => self.token(&request),
            _ => echo(&request),
        }
    }

    fn token(&self, request: &Request<Incoming>) -> Response<Body> {
        let ttl = request
            .uri()
            .query()
            .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "ttl"))
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .unwrap_or(120)
            .clamp(TTL_RANGE.0, TTL_RANGE.1);
        let n = rand::random::<u16>() % 1000;
        let subject = format!("guest-{n}");
        let claims = [super::SCOPES.to_string()];
        let request = mint::Request {
            subject: &subject,
            claims: &claims,
            ttl: Duration::from_secs(ttl),
            issuer: None,
        };
        match mint::mint(&self.config, &request) {
            Ok(token) => crate::body::json(
                StatusCode::OK,
                &serde_json::json!({ "token": token, "expires_in": ttl }),
            ),
            Err(e) => crate::proxy::error::json(
                StatusCode::INTERNAL_SERVER_ERROR,
                "mint_failed",
                &e.to_string(),
            ),
        }
    }

    fn join_chat(self: &Arc<Self>, mut request: Request<Incoming>) -> Response<Body> {
        let Some(key) = request.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return crate::proxy::error::json(
                StatusCode::BAD_REQUEST,
                "not_websocket",
                "connect with a WebSocket",
            );
        };
        let who = request
            .headers()
            .get("x-auth-subject")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("anonymous")
            .to_string();
        let upgrade = hyper::upgrade::on(&mut request);
        let upstream = self.clone();
        tokio::spawn(async move {
            let Ok(io) = upgrade.await else { return };
            let socket = crate::websocket::relay::socket(io, Role::Server, 64 * 1024).await;
            upstream.chat_session(socket, who).await;
        });
        let mut response = Response::new(empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = response.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        response
    }

    async fn chat_session(&self, mut socket: crate::websocket::relay::Socket, who: String) {
        let mut room = self.chat.subscribe();
        let _ = self.chat.send(
            serde_json::json!({ "from": "hub", "text": format!("{who} joined") }).to_string(),
        );
        loop {
            tokio::select! {
                incoming = socket.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        let line = serde_json::json!({ "from": who, "text": text.as_str() }).to_string();
                        let _ = self.chat.send(line);
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
                said = room.recv() => match said {
                    Ok(line) => {
                        if socket.send(Message::text(line)).await.is_err() {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
        let _ = self
            .chat
            .send(serde_json::json!({ "from": "hub", "text": format!("{who} left") }).to_string());
    }
}

fn page() -> Response<Body> {
    let mut response = Response::new(full(PAGE));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn echo(request: &Request<Incoming>) -> Response<Body> {
    let headers: BTreeMap<&str, String> = request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = serde_json::json!({
        "upstream": "gatehouse demo echo",
        "method": request.method().as_str(),
        "uri": request.uri().to_string(),
        "headers": headers,
    });
    crate::body::json(StatusCode::OK, &body)
}
