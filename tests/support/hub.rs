//! WebSocket hub: a recording WebSocket backend and the client side of upgrades.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderMap;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

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
