//! hyper-floor LISTEN UPSTREAM [CERT KEY]
//!
//! Forwards every HTTP/1.1 request it receives on LISTEN (over TLS when CERT and KEY are
//! given) to UPSTREAM, unchanged, and streams the answer back. It checks nothing, adds no
//! header and logs nothing: it is what gatehouse's stack (hyper's HTTP/1.1 server and
//! client, tokio, rustls with aws-lc-rs) costs a proxy on its own.
//!
//! Every choice is the cheapest one hyper allows, so that the figure is a floor: one
//! current-thread runtime, and each client connection keeps one upstream connection of its
//! own (nginx's `keepalive` upstreams do the same), opened on its first request.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (listen, upstream, tls) = match args.as_slice() {
        [listen, upstream] => (listen, upstream, None),
        [listen, upstream, cert, key] => (listen, upstream, Some(acceptor(cert, key)?)),
        _ => return Err("usage: hyper-floor LISTEN UPSTREAM [CERT KEY]".into()),
    };
    let listen: SocketAddr = listen.parse()?;
    let upstream: SocketAddr = upstream.parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, serve(listen, upstream, tls))
}

fn acceptor(cert: &str, key: &str) -> Result<TlsAcceptor, Failure> {
    let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn serve(
    listen: SocketAddr,
    upstream: SocketAddr,
    tls: Option<TlsAcceptor>,
) -> Result<(), Failure> {
    let listener = TcpListener::bind(listen).await?;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        tokio::task::spawn_local(async move {
            match tls {
                Some(tls) => {
                    if let Ok(stream) = tls.accept(stream).await {
                        connection(stream, upstream).await;
                    }
                }
                None => connection(stream, upstream).await,
            }
        });
    }
}

/// Serves one client connection; its upstream connection lives as long as it does.
async fn connection<S>(stream: S, upstream: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let sender: Rc<RefCell<Option<SendRequest<Incoming>>>> = Rc::default();
    let service = service_fn(move |request: Request<Incoming>| {
        let sender = sender.clone();
        async move {
            let taken = sender.borrow_mut().take();
            let mut ready = match taken {
                Some(ready) => ready,
                None => open(upstream).await?,
            };
            // Waits for the previous answer's body to have been read to its end.
            ready.ready().await?;
            let response: Response<Incoming> = ready.send_request(request).await?;
            *sender.borrow_mut() = Some(ready);
            Ok::<_, Failure>(response)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn open(upstream: SocketAddr) -> Result<SendRequest<Incoming>, Failure> {
    let stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::task::spawn_local(connection);
    Ok(sender)
}
