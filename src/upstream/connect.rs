//! Opening one connection to an upstream endpoint: the name resolved (unless it is an
//! address), TCP with `TCP_NODELAY`, and TLS for an `https` route, all within the route's
//! `connect_timeout`. ALPN offers `http/1.1`, or `h2` when the route speaks HTTP/2 upstream.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// An upstream socket: plain TCP or TLS over it.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Why no connection could be opened; the endpoint is then ejected.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("resolving the upstream: {0}")]
    Resolve(#[source] io::Error),
    #[error("connecting to the upstream: {0}")]
    Tcp(#[source] io::Error),
    #[error("TLS handshake with the upstream: {0}")]
    Tls(#[source] io::Error),
    #[error("the upstream's name is not a valid TLS server name")]
    ServerName,
    #[error("no connection within connect_timeout")]
    Timeout,
}

/// How a route connects: its timeout and, for `https`, its TLS settings.
pub(crate) struct Connector {
    tls: Option<TlsConnector>,
    timeout: Duration,
}

impl Connector {
    pub(crate) fn new(
        scheme: &Scheme,
        timeout: Duration,
        extra_ca: Option<&Path>,
        http2: bool,
    ) -> Result<Self, String> {
        let tls = if *scheme == Scheme::HTTPS {
            let mut config = crate::http_client::tls_config(extra_ca)?;
            config.alpn_protocols = vec![if http2 {
                b"h2".to_vec()
            } else {
                b"http/1.1".to_vec()
            }];
            Some(TlsConnector::from(Arc::new(config)))
        } else {
            None
        };
        Ok(Self { tls, timeout })
    }

    /// `connect_timeout`.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(crate) async fn connect(&self, authority: &Authority) -> Result<Stream, ConnectError> {
        tokio::time::timeout(self.timeout, self.open(authority))
            .await
            .unwrap_or(Err(ConnectError::Timeout))
    }

    async fn open(&self, authority: &Authority) -> Result<Stream, ConnectError> {
        let default_port = if self.tls.is_some() { 443 } else { 80 };
        let port = authority.port_u16().unwrap_or(default_port);
        let host = authority.host();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = match bare.parse() {
            Ok(ip) => TcpStream::connect(SocketAddr::new(ip, port)).await,
            Err(_) => first_that_answers(bare, port).await?,
        }
        .map_err(ConnectError::Tcp)?;
        // Requests are small writes that must not wait for an ACK (Nagle).
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(Stream::Plain(tcp));
        };
        let name = ServerName::try_from(bare.to_string()).map_err(|_| ConnectError::ServerName)?;
        let stream = tls.connect(name, tcp).await.map_err(ConnectError::Tls)?;
        Ok(Stream::Tls(Box::new(stream)))
    }
}

/// Every address of `host` in the resolver's order, until one accepts.
async fn first_that_answers(host: &str, port: u16) -> Result<io::Result<TcpStream>, ConnectError> {
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(ConnectError::Resolve)?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => return Ok(Ok(tcp)),
            Err(e) => last = e,
        }
    }
    Ok(Err(last))
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
