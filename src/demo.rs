//! `gatehouse demo`: the proxy on 127.0.0.1:8080 in front of a built-in echo upstream, with
//! a dev HS256 key generated at start, a minted token, and ready `curl` lines to try.
//!
//! The echo upstream answers every request with the method, URI and headers it received,
//! so a newcomer sees what a backend behind gatehouse sees: identity headers present,
//! tokens absent.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rand::RngCore;
use tokio::net::TcpListener;

use crate::body::{full, Body};
use crate::config::{self, Config};
use crate::{logging, mint, Gatehouse};

const DEMO_TOML: &str = include_str!("../config/demo.toml");
const SECRET_VAR: &str = "GATEHOUSE_DEMO_SECRET";
/// Routes with this upstream host are sent to the built-in echo upstream.
const DEMO_HOST: &str = "demo-hub";
const TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

pub fn run() -> ExitCode {
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let lookup = |name: &str| {
        if name == SECRET_VAR {
            Some(secret.clone())
        } else {
            None
        }
    };
    let config = match config::load_str(DEMO_TOML)
        .map_err(|e| e.to_string())
        .and_then(|raw| config::validate::validate(&raw, &lookup).map_err(|e| e.to_string()))
    {
        Ok(config) => config,
        Err(e) => {
            eprintln!("the built-in demo config is invalid: {e}");
            return ExitCode::FAILURE;
        }
    };
    logging::init(config.log_format);
    let runtime = match crate::app::runtime(0) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(config))
}

async fn serve(mut config: Config) -> ExitCode {
    let echo = match TcpListener::bind("127.0.0.1:0").await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("binding the demo upstream: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(echo_addr) = echo.local_addr() else {
        return ExitCode::FAILURE;
    };
    tokio::spawn(echo_upstream(echo));
    point_demo_routes(&mut config, echo_addr);

    let user = mint::Request {
        subject: "alice",
        claims: &["scope=api".into()],
        ttl: TOKEN_TTL,
        issuer: None,
    };
    let admin_claims = ["scope=api".to_string(), "role=admin".to_string()];
    let admin = mint::Request {
        subject: "root",
        claims: &admin_claims,
        ttl: TOKEN_TTL,
        issuer: None,
    };
    let (user_token, admin_token) = match (mint::mint(&config, &user), mint::mint(&config, &admin))
    {
        (Ok(u), Ok(a)) => (u, a),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("minting the demo tokens: {e}");
            return ExitCode::FAILURE;
        }
    };
    let running = match Gatehouse::start(config).await {
        Ok(running) => running,
        Err(e) => {
            eprintln!("gatehouse demo could not start: {e}");
            eprintln!("(is something else listening on 127.0.0.1:8080 or :9090?)");
            return ExitCode::FAILURE;
        }
    };
    print_walkthrough(
        running.addr(),
        running.admin_addr(),
        &user_token,
        &admin_token,
    );
    crate::shutdown::signal().await;
    running.shutdown().await;
    ExitCode::SUCCESS
}

fn point_demo_routes(config: &mut Config, echo: SocketAddr) {
    for route in &mut config.routes {
        if route.upstream.host() == Some(DEMO_HOST) {
            if let Ok(uri) = format!("http://{echo}").parse::<Uri>() {
                route.upstream = uri;
            }
        }
    }
}

fn print_walkthrough(addr: SocketAddr, admin: SocketAddr, user: &str, admin_token: &str) {
    let base = format!("http://{addr}");
    println!(
        r#"
gatehouse demo is running: proxy {base}, admin http://{admin}, echo upstream behind /api and /public.
Demo tokens are signed with a key generated just now and last 15 minutes.

  TOKEN={user}
  ADMIN_TOKEN={admin_token}

1. No token: 401 with WWW-Authenticate
   curl -i {base}/api/hello

2. Token in the header: 200; the upstream echoes X-Auth-Subject and sees no Authorization
   curl -s -H "Authorization: Bearer $TOKEN" {base}/api/hello

3. Token in the query string (what SignalR does): 200; the echoed URI has no access_token
   and the access log line says access_token=REDACTED
   curl -s "{base}/api/hello?room=1&access_token=$TOKEN"

4. Valid token, missing role: 403 insufficient_scope; the admin token passes
   curl -i -H "Authorization: Bearer $TOKEN" {base}/api/admin
   curl -s -H "Authorization: Bearer $ADMIN_TOKEN" {base}/api/admin

Metrics: curl -s http://{admin}/metrics | grep gatehouse_
Stop with Ctrl-C.
"#
    );
}

/// Answers every request with what it received, as JSON.
async fn echo_upstream(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = service_fn(|request: Request<Incoming>| async move {
                Ok::<_, Infallible>(echo(&request))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
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
    let mut response = Response::new(full(format!("{body:#}\n")));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
