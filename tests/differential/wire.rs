//! Sending the corpus to gatehouse exactly as written: HTTP/1.1 over a raw socket (no client
//! library normalises the target or the header names) and HTTP/2 with prior knowledge (h2c)
//! through the `h2` crate, which sends `:path` as given.

#![allow(unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What came back: the status and the body, or why nothing did.
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// One request as bytes on the wire.
pub struct Wire<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub headers: &'a [(String, String)],
}

/// HTTP/1.1: the request line and header fields byte for byte, `Connection: close` added
/// (merged into the case's own `Connection` field when it has one), read to end of stream.
pub async fn http1(proxy: SocketAddr, req: &Wire<'_>) -> Result<Reply, String> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {proxy}\r\n",
        req.method, req.target
    );
    let mut connection = String::from("close");
    for (name, value) in req.headers {
        if name.eq_ignore_ascii_case("connection") {
            connection = format!("close, {value}");
        } else {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str(&format!("Connection: {connection}\r\n\r\n"));
    let exchange = async {
        let mut socket = TcpStream::connect(proxy).await?;
        socket.write_all(head.as_bytes()).await?;
        let mut raw = Vec::new();
        socket.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .map_err(|_| "no answer within 20 s".to_string())?
        .map_err(|e| format!("socket: {e}"))?;
    parse_http1(&raw)
}

fn parse_http1(raw: &[u8]) -> Result<Reply, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => {
            return Err(format!(
                "no HTTP response: {:?}",
                String::from_utf8_lossy(raw)
            ))
        }
    };
    let chunked = response.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value).contains("chunked")
    });
    let status = response.code.unwrap_or(0);
    let body = &raw[head_len..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(Reply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size = std::str::from_utf8(&rest[..line_end]).map_err(|e| e.to_string())?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("chunk size {size:?}: {e}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).ok_or("truncated chunk")?;
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("truncated chunk end")?;
    }
}

/// h2c with prior knowledge: one connection per request, `:path` exactly the target.
pub async fn http2(proxy: SocketAddr, req: &Wire<'_>) -> Result<Reply, String> {
    let mut builder = http::Request::builder()
        .method(req.method)
        .uri(format!("http://{proxy}{}", req.target));
    for (name, value) in req.headers {
        builder = builder.header(name.to_ascii_lowercase(), value);
    }
    let request = builder
        .body(())
        .map_err(|e| format!("not expressible in HTTP/2: {e}"))?;
    let exchange = async {
        let tcp = TcpStream::connect(proxy).await.map_err(|e| e.to_string())?;
        let (client, connection) = h2::client::handshake(tcp)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let mut client = client.ready().await.map_err(|e| e.to_string())?;
        let (response, _) = client
            .send_request(request, true)
            .map_err(|e| e.to_string())?;
        let response = response.await.map_err(|e| format!("stream: {e}"))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            let _ = body.flow_control().release_capacity(chunk.len());
            bytes.extend_from_slice(&chunk);
        }
        Ok::<_, String>(Reply {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    };
    tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .map_err(|_| "no answer within 20 s".to_string())?
}
