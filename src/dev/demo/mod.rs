//! `gatehouse demo`: the proxy on 127.0.0.1:8080 in front of a built-in backend (an echo
//! upstream and a WebSocket chat hub, see [`upstream`]), with a dev HS256 key generated at
//! start, minted tokens, ready `curl` lines, and a page that connects a browser WebSocket
//! through the proxy with a single-use ticket.
//!
//! The backend shows what a service behind gatehouse sees: identity headers present,
//! tokens absent.

mod upstream;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use http::Uri;
use rand::RngCore;
use tokio::net::TcpListener;

use crate::app::logging;
use crate::config::{self, Config};
use crate::dev::mint;
use crate::Gatehouse;

const DEMO_TOML: &str = include_str!("../../../config/demo.toml");
const SECRET_VAR: &str = "GATEHOUSE_DEMO_SECRET";
/// Routes with this upstream host are sent to the built-in backend.
const DEMO_HOST: &str = "demo-hub";
const TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
/// Every demo token carries both scopes: `/api` requires `api`, `/chat` (and a ticket bound
/// to it) requires `chat`, and the walkthrough uses the printed tokens for both.
const SCOPES: &str = "scope=api chat";

#[derive(Debug, clap::Args)]
/// `gatehouse demo`'s options (the CLI flattens them in).
pub struct DemoArgs {
    /// Proxy address; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Admin address; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin: std::net::SocketAddr,
}

pub fn run(args: &DemoArgs) -> ExitCode {
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
    let mut config = match config::load_str(DEMO_TOML)
        .map_err(|e| e.to_string())
        .and_then(|raw| config::validate::validate(&raw, &lookup).map_err(|e| e.to_string()))
    {
        Ok(config) => config,
        Err(e) => {
            eprintln!("the built-in demo config is invalid: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = listen_on(&mut config, args) {
        eprintln!("gatehouse demo: {e}");
        return ExitCode::FAILURE;
    }
    let _logs = logging::init(config.log_format);
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
    tokio::spawn(upstream::DemoUpstream::new(config.clone()).serve(echo));
    point_demo_routes(&mut config, echo_addr);

    let user = mint::Request {
        subject: "alice",
        claims: &[SCOPES.into()],
        ttl: TOKEN_TTL,
        issuer: None,
    };
    let admin_claims = [SCOPES.to_string(), "role=admin".to_string()];
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
            eprintln!(
                "(is something else listening there? try --listen 127.0.0.1:0 --admin 127.0.0.1:0)"
            );
            return ExitCode::FAILURE;
        }
    };
    print_walkthrough(
        running.addr(),
        running.admin_addr(),
        &user_token,
        &admin_token,
    );
    crate::app::shutdown::signal().await;
    running.shutdown().await;
    ExitCode::SUCCESS
}

/// Applies `--listen`/`--admin`. A port of 0 is resolved to a free port now, because the
/// WebSocket route's `allowed_origins` must name the page's real origin.
fn listen_on(config: &mut Config, args: &DemoArgs) -> std::io::Result<()> {
    let resolve = |addr: SocketAddr| -> std::io::Result<SocketAddr> {
        if addr.port() != 0 {
            return Ok(addr);
        }
        std::net::TcpListener::bind(addr)?.local_addr()
    };
    config.listen_addr = resolve(args.listen)?;
    config.admin_addr = resolve(args.admin)?;
    let port = config.listen_addr.port();
    let origins = vec![
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ];
    for route in config
        .routes
        .iter_mut()
        .filter(|r| !r.allowed_origins.is_empty())
    {
        route.allowed_origins = origins.clone();
    }
    Ok(())
}

fn point_demo_routes(config: &mut Config, echo: SocketAddr) {
    for route in &mut config.routes {
        if route.upstream.host() == Some(DEMO_HOST) {
            if let Ok(uri) = format!("http://{echo}").parse::<Uri>() {
                route.endpoints.authorities = uri.authority().cloned().into_iter().collect();
                route.upstream = uri;
            }
        }
    }
}

fn print_walkthrough(addr: SocketAddr, admin: SocketAddr, user: &str, admin_token: &str) {
    let base = format!("http://{addr}");
    println!(
        r#"
gatehouse demo is running: proxy {base}, admin http://{admin}.
Behind it: an echo upstream (/api, /public) and a WebSocket chat hub (/chat), both unaware of tokens.
Demo tokens are signed with a key generated just now and last 15 minutes.

Open the demo page in a browser: {base}/demo
(it gets a 2-minute token, trades it for a single-use ticket, and chats over a WebSocket
through the proxy until the token expires; add ?ttl=20 for a quicker expiry)

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

5. The ticket flow by hand: trade the token for a single-use ticket bound to /chat (201)
   curl -i -X POST -H "Authorization: Bearer $TOKEN" -d '{{"route":"/chat"}}' {base}/.gatehouse/ticket
   then open ws://{addr}/chat?ticket=<ticket> with any WebSocket client (once: a ticket is single-use)

Metrics: curl -s http://{admin}/metrics | grep gatehouse_
Stop with Ctrl-C.
"#
    );
}
