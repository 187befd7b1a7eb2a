//! Test support: real servers on 127.0.0.1:0 and nothing mocked.
//!
//! - [`TestProxy::start`] runs gatehouse in-process from TOML text;
//! - [`Upstream`] is a backend that records what reached it (echo, SSE, slow);
//! - [`Idp`] serves OIDC discovery and a JWKS that a test can rotate or stop;
//! - [`Key`] and [`mint`] make tokens from the throwaway keys in `tests/fixtures/`;
//! - [`client`] and [`send`] speak plain HTTP/1.1 to the proxy.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use gatehouse::config;
use gatehouse::{Gatehouse, Running};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// === Keys and tokens ===

#[derive(Clone)]
pub struct Key {
    pub name: &'static str,
    pub alg: Algorithm,
    pub kid: Option<String>,
}

impl Key {
    pub fn rsa(name: &'static str, kid: &str) -> Self {
        Key {
            name,
            alg: Algorithm::RS256,
            kid: Some(kid.into()),
        }
    }

    pub fn ec(name: &'static str, kid: &str) -> Self {
        Key {
            name,
            alg: Algorithm::ES256,
            kid: Some(kid.into()),
        }
    }

    pub fn ed(name: &'static str, kid: &str) -> Self {
        Key {
            name,
            alg: Algorithm::EdDSA,
            kid: Some(kid.into()),
        }
    }

    pub fn private_pem(&self) -> Vec<u8> {
        std::fs::read(fixture(&format!("{}.pem", self.name))).unwrap()
    }

    pub fn public_pem_path(&self) -> PathBuf {
        fixture(&format!("{}.pub.pem", self.name))
    }

    pub fn encoding_key(&self) -> EncodingKey {
        match self.alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(&self.private_pem()).unwrap(),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&self.private_pem()).unwrap(),
            _ => EncodingKey::from_rsa_pem(&self.private_pem()).unwrap(),
        }
    }

    /// The public key as a JWK, as an IdP publishes it.
    pub fn jwk(&self) -> Value {
        let pem = std::fs::read_to_string(self.public_pem_path()).unwrap();
        let mut jwk = match self.alg {
            Algorithm::EdDSA => {
                // An Ed25519 SubjectPublicKeyInfo is a 12-byte prefix and the 32-byte key.
                let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
                let der = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap();
                json!({
                    "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                    "x": URL_SAFE_NO_PAD.encode(&der[12..]),
                })
            }
            Algorithm::ES256 => {
                use p256::elliptic_curve::sec1::ToEncodedPoint;
                use p256::pkcs8::DecodePublicKey;
                let key = p256::PublicKey::from_public_key_pem(&pem).unwrap();
                let point = key.to_encoded_point(false);
                json!({
                    "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
                    "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
                    "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
                })
            }
            _ => {
                use rsa::pkcs8::DecodePublicKey;
                use rsa::traits::PublicKeyParts;
                let key = rsa::RsaPublicKey::from_public_key_pem(&pem).unwrap();
                json!({
                    "kty": "RSA", "alg": "RS256", "use": "sig",
                    "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
                    "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
                })
            }
        };
        if let Some(kid) = &self.kid {
            jwk["kid"] = json!(kid);
        }
        jwk
    }
}

/// Standard claims for `iss`/`aud`, valid for an hour, merged with `extra`.
pub fn claims(iss: &str, aud: &str, extra: Value) -> Value {
    let mut c = json!({
        "iss": iss, "aud": aud, "sub": "alice", "iat": now(), "exp": now() + 3600,
        "jti": uuid_like(),
    });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            if v.is_null() {
                c.remove(k);
            } else {
                c.insert(k.clone(), v.clone());
            }
        }
    }
    c
}

fn uuid_like() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

pub fn mint(key: &Key, claims: &Value) -> String {
    // Before any jsonwebtoken use, so the proxies under test verify with ring as in production.
    gatehouse::auth::jwt_crypto::install();
    let mut header = Header::new(key.alg);
    header.kid = key.kid.clone();
    jsonwebtoken::encode(&header, claims, &key.encoding_key()).unwrap()
}

pub fn mint_with(header: &Header, key: &EncodingKey, claims: &Value) -> String {
    gatehouse::auth::jwt_crypto::install();
    jsonwebtoken::encode(header, claims, key).unwrap()
}

/// A token assembled by hand from raw JSON header and claims and raw signature bytes.
pub fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

// === The proxy ===

pub struct TestProxy {
    pub running: Option<Running>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
}

impl TestProxy {
    /// Starts gatehouse from TOML. `[listen]` and `[admin]` on port 0 are added when absent.
    pub async fn start(toml: &str) -> TestProxy {
        Self::start_with_secrets(toml, &[]).await
    }

    pub async fn start_with_secrets(toml: &str, secrets: &[(&str, &str)]) -> TestProxy {
        let config =
            load(toml, secrets).unwrap_or_else(|e| panic!("invalid test config: {e}\n{toml}"));
        let running = Gatehouse::start(config).await.unwrap();
        let (addr, admin) = (running.addr(), running.admin_addr());
        TestProxy {
            running: Some(running),
            addr,
            admin,
        }
    }

    /// Starts gatehouse from a config file, reloading it as `gatehouse run` does.
    pub async fn start_file(path: &std::path::Path) -> TestProxy {
        let raw = config::load_file(path).unwrap();
        let config = config::validate::validate(&raw, &|_| None).unwrap();
        let running = Gatehouse::start(config).await.unwrap();
        running.reload_from(path.to_path_buf());
        let (addr, admin) = (running.addr(), running.admin_addr());
        TestProxy {
            running: Some(running),
            addr,
            admin,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// Waits until `/readyz` says 200 (every issuer has keys).
    pub async fn wait_ready(&self) {
        let url = self.admin_url("/readyz");
        let ready = eventually(Duration::from_secs(10), || {
            let url = url.clone();
            async move { get(&url, &[]).await.status == StatusCode::OK }
        })
        .await;
        assert!(ready, "gatehouse never became ready");
    }

    /// The value of one metric line (`name{labels}`), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = get(&self.admin_url("/metrics"), &[]).await.body;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }

    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

pub fn load(toml: &str, secrets: &[(&str, &str)]) -> Result<gatehouse::Config, String> {
    let mut text = String::new();
    if !toml.contains("[listen]") {
        text.push_str("[listen]\naddr = \"127.0.0.1:0\"\n");
    }
    if !toml.contains("[admin]") {
        text.push_str("[admin]\naddr = \"127.0.0.1:0\"\n");
    }
    text.push_str(toml);
    let raw = config::load_str(&text).map_err(|e| e.to_string())?;
    let secrets: HashMap<String, String> = secrets
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    config::validate::validate(&raw, &|name| secrets.get(name).cloned()).map_err(|e| e.to_string())
}

// === Servers ===

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

impl Upstream {
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

// === Client ===

pub fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// GET `url` with `headers`; the whole body is read.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req.body(Full::new(Bytes::new())).unwrap()).await
}

pub async fn bearer(url: &str, token: &str) -> Answer {
    get(url, &[("authorization", &format!("Bearer {token}"))]).await
}

pub async fn send(req: Request<Full<Bytes>>) -> Answer {
    let response = tokio::time::timeout(Duration::from_secs(20), client().request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// Polls `check` until it holds or `within` passes; replaces sleeps in tests.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// === WebSocket hub ===

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::handshake::server::{
    Request as WsRequest, Response as WsResponse,
};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// What the hub saw of one connection.
#[derive(Debug, Clone, Default)]
pub struct HubConn {
    pub uri: String,
    pub headers: HeaderMap,
    /// The close code the hub received, if the connection ended with a close frame.
    pub close_code: Option<u16>,
    pub ended: bool,
}

/// A WebSocket echo hub behind the proxy. It echoes every message; the text `close:NNNN`
/// makes it close with code NNNN. It picks the first subprotocol offered.
pub struct WsHub {
    pub addr: SocketAddr,
    pub conns: Arc<Mutex<Vec<HubConn>>>,
    task: JoinHandle<()>,
}

impl WsHub {
    pub async fn start() -> WsHub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<HubConn>>> = Arc::default();
        let record = conns.clone();
        let task = tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let record = record.clone();
                tasks.spawn(async move { hub_session(stream, record).await });
            }
        });
        WsHub { addr, conns, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn conns(&self) -> Vec<HubConn> {
        self.conns.lock().unwrap().clone()
    }
}

impl Drop for WsHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hub_session(stream: tokio::net::TcpStream, record: Arc<Mutex<Vec<HubConn>>>) {
    let index = Arc::new(Mutex::new(None));
    let seen = index.clone();
    let rec = record.clone();
    let callback = move |req: &WsRequest, mut resp: WsResponse| {
        let mut list = rec.lock().unwrap();
        list.push(HubConn {
            uri: req.uri().to_string(),
            headers: req.headers().clone(),
            ..HubConn::default()
        });
        *seen.lock().unwrap() = Some(list.len() - 1);
        if let Some(first) = req
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
        {
            resp.headers_mut()
                .insert("sec-websocket-protocol", first.trim().parse().unwrap());
        }
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let i = index.lock().unwrap().unwrap();
    while let Some(Ok(message)) = ws.next().await {
        match message {
            Message::Text(t) if t.starts_with("close:") => {
                let code: u16 = t[6..].parse().unwrap();
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: "hub says bye".into(),
                };
                let _ = ws.close(Some(frame)).await;
            }
            Message::Close(frame) => {
                record.lock().unwrap()[i].close_code = frame.map(|f| u16::from(f.code));
                break;
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            other => {
                if ws.send(other).await.is_err() {
                    break;
                }
            }
        }
    }
    record.lock().unwrap()[i].ended = true;
}

pub type WsClient =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket through the proxy; `Err` carries the HTTP status of a refused upgrade.
pub async fn ws_connect(
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(WsClient, http::Response<Option<Vec<u8>>>), u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().unwrap();
    for (k, v) in headers {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(pair) => Ok(pair),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("WebSocket connect failed: {e}"),
    }
}

/// Opens all `urls` at once (the same ticket raced); returns the upgrades that succeeded.
/// Every other attempt must have been refused with 401.
pub async fn race_upgrades(urls: impl IntoIterator<Item = String>) -> Vec<WsClient> {
    let attempts: Vec<_> = urls
        .into_iter()
        .map(|url| tokio::spawn(async move { ws_connect(&url, &[]).await.map(|(c, _)| c) }))
        .collect();
    let mut opened = Vec::new();
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(client) => opened.push(client),
            Err(status) => assert_eq!(status, 401),
        }
    }
    opened
}

/// The next data message or close frame, skipping pings, within 5 s.
pub async fn next_message(client: &mut WsClient) -> Option<Message> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .expect("no message within 5s")
        {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(m)) => return Some(m),
            _ => return None,
        }
    }
}

/// Reads until a close frame arrives and returns its code and reason.
pub async fn close_of(client: &mut WsClient, within: Duration) -> Option<(u16, String)> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, client.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => {
                return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

// === The binary ===

/// The real `gatehouse run` binary, its stdout and stderr collected line by line.
pub struct Proc {
    child: std::process::Child,
    /// The admin listener's address.
    pub admin: String,
    output: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts `gatehouse run --config <config>` at debug level; returns it and its public address.
    pub fn start(config: &std::path::Path) -> (Proc, String) {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "debug")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            let addr_tx = addr_tx.clone();
            std::thread::spawn(move || {
                for line in
                    std::io::BufRead::lines(std::io::BufReader::new(stream)).map_while(Result::ok)
                {
                    if line.contains("gatehouse listening") {
                        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                        let addrs = (v["addr"].as_str(), v["admin_addr"].as_str());
                        let _ = addr_tx
                            .send((addrs.0.unwrap().to_string(), addrs.1.unwrap().to_string()));
                    }
                    output.lock().unwrap().push(line);
                }
            });
        }
        let (addr, admin) = addr_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("gatehouse did not start");
        (
            Proc {
                child,
                output,
                admin,
            },
            addr,
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (like "HUP") to the process.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Everything printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// SIGTERM, then waits: the exit code and everything printed.
    pub fn terminate(self) -> (i32, String) {
        self.signal("TERM");
        self.wait()
    }

    /// Waits for the process to exit: the exit code and everything printed.
    pub fn wait(mut self) -> (i32, String) {
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        (
            status.code().unwrap_or(-1),
            self.output.lock().unwrap().join("\n"),
        )
    }
}

// === Redis ===

/// A real `redis-server` on a free loopback port, stopped on drop. A missing server fails
/// the test under `CI=true`; elsewhere [`RedisServer::start`] returns `None` after printing
/// why, and the caller skips.
pub struct RedisServer {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl RedisServer {
    pub fn start() -> Option<RedisServer> {
        if !ensure_installed("redis-server", "redis-server") {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = RedisServer { port, child: None };
        server.resume();
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops the server (the port then refuses connections).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn resume(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server did not start");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// True when `binary` is on PATH. Tests never install anything (`.ci/setup` does, once,
/// before the suite): outside CI a missing component is a skip with the reason on stderr;
/// under `CI=true` it is a failure.
pub fn ensure_installed(binary: &str, package: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {binary}")])
        .output()
        .is_ok_and(|o| o.status.success());
    require_component(found, &format!("{binary} (Debian package {package})"))
}

/// The one rule for a missing test component: under `CI=true` a failure naming it; elsewhere
/// a skip, printed past the test harness's capture so it shows in a plain `cargo test`.
pub fn require_component(present: bool, what: &str) -> bool {
    if present {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    assert!(
        !ci,
        "CI=true and {what} is missing: `bash .ci/setup` installs it before the tests"
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {what} is missing; `bash .ci/setup` installs it"
    );
    false
}
