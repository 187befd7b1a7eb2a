//! ws-load: the WebSocket load generator and echo upstream of `bench/ws.sh`.
//!
//! ```text
//! ws-load serve   --port P                      echo server on 127.0.0.1:P; prints "READY addr"
//! ws-load probe   --url U [auth]                one upgrade + one echo; prints the status codes
//! ws-load connect --url U [auth] -c C -d D      new connections: connect, upgrade, one echo, close
//! ws-load echo    --url U [auth] -c C -d D      round trips over C open connections
//! ws-load hold    --url U [auth] -n N           open N connections, print READY, keep them open
//!                                               until SIGTERM/SIGINT, then close them cleanly;
//!                 [--message-every S]           ... and meanwhile send one message and wait for
//!                                               its echo every S seconds on each (bench/soak.sh)
//! auth: --auth none | query (--token, ?access_token=) | ticket (--ticket-url: POST, then ?ticket=)
//! ```
//!
//! Everything runs on one current-thread tokio runtime: `bench/ws.sh` pins the tool to one
//! core. `--cpu-pid PID` (repeatable) makes the tool read `utime + stime` of that process
//! from `/proc/PID/stat` exactly at the start and the end of the measured window, so the
//! window's CPU time excludes warm-up, connection set-up and teardown. The tool prints one
//! `result key=value ...` line on stdout; problems go to stderr.
//!
//! Clients close as RFC 6455 §7.1.1 asks: close frame, wait for the peer's close frame, then
//! wait (bounded) for the server to close TCP first, so TIME_WAIT lands on the server side
//! and long runs do not use up the client's ephemeral ports.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;

/// Bound on one unit of work (connect mode) or one round trip (echo mode).
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client waits for the server to close TCP after the close handshake.
const EOF_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Parser)]
#[command(
    name = "ws-load",
    about = "WebSocket load generator and echo server for bench/ws.sh"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Echo server: every text or binary message is sent back as it came.
    Serve(ServeArgs),
    /// One upgrade and one echo; prints `ticket_status=… status=… echo=… reuse_status=…`.
    Probe(ProbeArgs),
    /// New connections per second: connect, upgrade, one message and its echo, close.
    Connect(ConnectArgs),
    /// Round trips over open connections, one message in flight per connection.
    Echo(EchoArgs),
    /// Open N connections, print READY, hold them until SIGTERM/SIGINT, then close them
    /// (with --message-every: talking on each meanwhile).
    Hold(HoldArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Auth {
    /// No credential at all.
    None,
    /// The token in the query string: `?<token-param>=<token>`.
    Query,
    /// `POST --ticket-url` with `Authorization: Bearer <token>`, then `?<ticket-param>=<ticket>`.
    Ticket,
}

#[derive(Args, Clone)]
struct Target {
    /// WebSocket URL without a query, like ws://127.0.0.1:8080/ws (IP addresses only).
    #[arg(long)]
    url: String,
    #[arg(long, value_enum, default_value = "none")]
    auth: Auth,
    /// The bearer token (or use --token-file).
    #[arg(long, default_value = "")]
    token: String,
    /// A file whose first line is the bearer token.
    #[arg(long)]
    token_file: Option<PathBuf>,
    #[arg(long, default_value = "access_token")]
    token_param: String,
    /// The ticket endpoint, like http://127.0.0.1:8080/.gatehouse/ticket (auth=ticket).
    #[arg(long)]
    ticket_url: Option<String>,
    #[arg(long, default_value = "ticket")]
    ticket_param: String,
    /// Size of each text message, in bytes.
    #[arg(long, default_value_t = 64)]
    msg_bytes: usize,
}

#[derive(Args)]
struct ServeArgs {
    /// Port on 127.0.0.1 (0: any free port; the READY line names it).
    #[arg(long, default_value_t = 0)]
    port: u16,
}

#[derive(Args)]
struct ProbeArgs {
    #[command(flatten)]
    target: Target,
    /// auth=ticket: after the first upgrade, try the same ticket once more.
    #[arg(long)]
    reuse_ticket: bool,
}

#[derive(Args)]
struct ConnectArgs {
    #[command(flatten)]
    target: Target,
    /// Units in flight at once.
    #[arg(short, long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds of measured load.
    #[arg(short, long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of unmeasured load first (always with the repeated token).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Stop after this many measured units (0: no limit).
    #[arg(short, long, default_value_t = 0)]
    n: u64,
    /// auth=query or ticket: one token per line, each measured unit uses the next one
    /// exactly once; the run ends early when they run out.
    #[arg(long)]
    fresh_tokens: Option<PathBuf>,
    /// Read this process's CPU time at the edges of the measured window (repeatable).
    #[arg(long)]
    cpu_pid: Vec<u32>,
}

#[derive(Args)]
struct EchoArgs {
    #[command(flatten)]
    target: Target,
    /// Open connections, each with one message in flight.
    #[arg(short, long, default_value_t = 100)]
    connections: usize,
    #[arg(short, long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    #[arg(long)]
    cpu_pid: Vec<u32>,
}

#[derive(Args)]
struct HoldArgs {
    #[command(flatten)]
    target: Target,
    #[arg(short, long, default_value_t = 10_000)]
    n: usize,
    /// Connections being opened at once.
    #[arg(short, long, default_value_t = 100)]
    concurrency: usize,
    /// Give up opening after this many seconds.
    #[arg(long, default_value_t = 120)]
    open_timeout: u64,
    /// Above 0: every connection sends one text message and waits for its echo every this
    /// many seconds (first sends spread over one interval). A connection whose echo fails,
    /// or that the server closes, is counted, reported as a `FAIL` line and not reopened.
    #[arg(long, default_value_t = 0.0)]
    message_every: f64,
    /// Above 0 (with --message-every): a `PROGRESS` line every this many seconds.
    #[arg(long, default_value_t = 0.0)]
    report_every: f64,
}

// ------------------------------------------------------------------ shared pieces

/// What every client needs to open a connection to the target.
struct Ctx {
    addr: SocketAddr,
    url: String,
    auth: Auth,
    token: String,
    token_param: String,
    ticket: Option<HttpTarget>,
    ticket_param: String,
    payload: String,
    config: WebSocketConfig,
}

struct HttpTarget {
    addr: SocketAddr,
    host: String,
    path: String,
}

/// tungstenite's default read buffer is 128 KiB and it zero-fills the free part before
/// every read; 4 KiB keeps the load generator's own cost per message small.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096)
}

/// `scheme://IP:PORT/path` -> (address, "IP:PORT", "/path").
fn split_url(url: &str, scheme: &str) -> Result<(SocketAddr, String, String), String> {
    let rest = url
        .strip_prefix(scheme)
        .ok_or_else(|| format!("{url}: expected a {scheme} URL"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = host
        .parse()
        .map_err(|_| format!("{url}: the host must be IP:PORT"))?;
    Ok((addr, host.to_string(), path.to_string()))
}

impl Ctx {
    fn new(t: &Target) -> Result<Self, String> {
        let (addr, _, path) = split_url(&t.url, "ws://")?;
        if path.contains('?') {
            return Err("--url must not carry a query".into());
        }
        let mut token = t.token.clone();
        if let Some(file) = &t.token_file {
            let text =
                std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
            token = text.lines().next().unwrap_or("").trim().to_string();
        }
        if t.auth != Auth::None && token.is_empty() {
            return Err("auth=query/ticket needs --token or --token-file".into());
        }
        let ticket = match (&t.ticket_url, t.auth) {
            (Some(u), _) => {
                let (addr, host, path) = split_url(u, "http://")?;
                Some(HttpTarget { addr, host, path })
            }
            (None, Auth::Ticket) => return Err("auth=ticket needs --ticket-url".into()),
            (None, _) => None,
        };
        let payload: String = "0123456789abcdef"
            .chars()
            .cycle()
            .take(t.msg_bytes)
            .collect();
        Ok(Self {
            addr,
            url: t.url.clone(),
            auth: t.auth,
            token,
            token_param: t.token_param.clone(),
            ticket,
            ticket_param: t.ticket_param.clone(),
            payload,
            config: ws_config(),
        })
    }
}

/// Why one unit failed; counted by kind, the first message of each kind is printed.
#[derive(Debug)]
struct Fail {
    kind: String,
    detail: String,
}

fn fail(kind: impl Into<String>, detail: impl ToString) -> Fail {
    Fail {
        kind: kind.into(),
        detail: detail.to_string(),
    }
}

#[derive(Default)]
struct Errors(BTreeMap<String, (u64, String)>);

impl Errors {
    fn add(&mut self, f: Fail) {
        let e = self.0.entry(f.kind).or_insert((0, f.detail));
        e.0 += 1;
    }
    fn merge(&mut self, other: Errors) {
        for (k, (n, d)) in other.0 {
            self.0.entry(k).or_insert((0, d)).0 += n;
        }
    }
    fn total(&self) -> u64 {
        self.0.values().map(|(n, _)| n).sum()
    }
    fn report(&self) {
        for (kind, (n, detail)) in &self.0 {
            eprintln!("ws-load: {n} × {kind} (first: {detail})");
        }
    }
}

/// A keep-alive HTTP/1.1 connection for `POST {ticket endpoint}`.
struct TicketClient {
    conn: Option<BufReader<TcpStream>>,
}

impl TicketClient {
    fn new() -> Self {
        Self { conn: None }
    }

    /// `Ok(ticket)` on 201; `Err` names the status or the I/O problem.
    async fn ticket(&mut self, target: &HttpTarget, token: &str) -> Result<String, Fail> {
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\n\r\n",
            target.path, target.host, token
        );
        // A kept-alive connection may have been closed by the server: retry once on a new one.
        for attempt in 0..2 {
            let reused = self.conn.is_some();
            if self.conn.is_none() {
                let s = TcpStream::connect(target.addr)
                    .await
                    .map_err(|e| fail("ticket_connect", e))?;
                let _ = s.set_nodelay(true);
                self.conn = Some(BufReader::new(s));
            }
            match self.exchange(request.as_bytes()).await {
                Ok((status, body, keep)) => {
                    if !keep {
                        self.conn = None;
                    }
                    if status != 201 {
                        return Err(fail(
                            format!("ticket_{status}"),
                            String::from_utf8_lossy(&body),
                        ));
                    }
                    let json: serde_json::Value =
                        serde_json::from_slice(&body).map_err(|e| fail("ticket_body", e))?;
                    return json["ticket"]
                        .as_str()
                        .map(String::from)
                        .ok_or_else(|| fail("ticket_body", "no \"ticket\" in the answer"));
                }
                Err(e) => {
                    self.conn = None;
                    if !(reused && attempt == 0) {
                        return Err(fail("ticket_io", e));
                    }
                }
            }
        }
        Err(fail("ticket_io", "gave up"))
    }

    async fn exchange(&mut self, request: &[u8]) -> std::io::Result<(u16, Vec<u8>, bool)> {
        let conn = self.conn.as_mut().expect("connected above");
        conn.get_mut().write_all(request).await?;
        let mut line = String::new();
        if conn.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let (mut length, mut keep, mut chunked) = (0usize, true, false);
        loop {
            line.clear();
            if conn.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("connection")
                    && value.eq_ignore_ascii_case("close")
                {
                    keep = false;
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                }
            }
        }
        if !chunked {
            let mut body = vec![0; length];
            conn.read_exact(&mut body).await?;
            return Ok((status, body, keep));
        }
        // Chunked: hex size line, data, CRLF; a zero size ends it, then trailers and CRLF.
        let mut body = Vec::new();
        loop {
            line.clear();
            conn.read_line(&mut line).await?;
            let hex = line.trim_end().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(hex, 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                loop {
                    line.clear();
                    if conn.read_line(&mut line).await? == 0 || line.trim_end().is_empty() {
                        return Ok((status, body, keep));
                    }
                }
            }
            let start = body.len();
            body.resize(start + size + 2, 0);
            conn.read_exact(&mut body[start..]).await?;
            body.truncate(start + size);
        }
    }
}

/// TCP connect and the upgrade, with the credential the target asks for.
async fn open(ctx: &Ctx, token: &str, tickets: &mut TicketClient) -> Result<Ws, Fail> {
    let url = match ctx.auth {
        Auth::None => ctx.url.clone(),
        Auth::Query => format!("{}?{}={}", ctx.url, ctx.token_param, token),
        Auth::Ticket => {
            let target = ctx.ticket.as_ref().expect("checked in Ctx::new");
            let ticket = tickets.ticket(target, token).await?;
            format!("{}?{}={}", ctx.url, ctx.ticket_param, ticket)
        }
    };
    let stream = TcpStream::connect(ctx.addr)
        .await
        .map_err(|e| fail("connect", e))?;
    let _ = stream.set_nodelay(true);
    match tokio_tungstenite::client_async_with_config(url, stream, Some(ctx.config)).await {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(r)) => Err(fail(format!("upgrade_{}", r.status().as_u16()), r.status())),
        Err(e) => Err(fail("upgrade", e)),
    }
}

/// One text message and its echo.
async fn echo_once(ws: &mut Ws, payload: &str) -> Result<(), Fail> {
    ws.send(Message::text(payload))
        .await
        .map_err(|e| fail("send", e))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str() == payload => return Ok(()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => return Err(fail("echo_mismatch", format!("{other:?}"))),
            Some(Err(e)) => return Err(fail("recv", e)),
            None => return Err(fail("recv", "connection closed")),
        }
    }
}

/// Close frame, the peer's close frame, then the server's TCP close (bounded).
async fn close(mut ws: Ws) -> Result<(), Fail> {
    match ws.close(None).await {
        Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {}
        Err(e) => return Err(fail("close", e)),
    }
    let mut got_close = false;
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(_))) => got_close = true,
            Some(Ok(_)) => {}
            Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) | None => break,
            Some(Err(e)) => return Err(fail("close", e)),
        }
    }
    if !got_close {
        return Err(fail("close", "no close frame from the server"));
    }
    let mut tcp = ws.into_inner();
    let mut buf = [0u8; 512];
    let eof = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(EOF_TIMEOUT, eof)
        .await
        .map_err(|_| fail("close_eof", "the server did not close TCP"))
}

/// utime + stime of PID, in clock ticks (fields 14 and 15 of /proc/PID/stat).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The --cpu-pid processes, then this process, then every other CPU user on the machine:
/// busy ticks (user + nice + system + irq + softirq + steal) summed over all CPUs of the
/// "cpu" line of /proc/stat. The script subtracts the known processes from the last one to
/// see how much else ran during the window (other builds, tests, a noisy neighbour).
fn all_ticks(pids: &[u32]) -> Vec<Option<u64>> {
    let mut v: Vec<Option<u64>> = pids.iter().map(|p| cpu_ticks(*p)).collect();
    v.push(cpu_ticks(std::process::id()));
    v.push(system_busy_ticks());
    v
}

fn system_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    Some(f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)? + f.get(7)?)
}

/// "a,b,self,system": ticks used between two readings ("-" if a process vanished).
fn tick_deltas(before: &[Option<u64>], after: &[Option<u64>]) -> String {
    let parts: Vec<String> = before
        .iter()
        .zip(after)
        .map(|(b, a)| match (b, a) {
            (Some(b), Some(a)) => (a - b).to_string(),
            _ => "-".into(),
        })
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(",")
    }
}

/// Latency percentiles in ms over microsecond samples.
fn percentiles(mut v: Vec<u32>) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)] as f64 / 1000.0;
    (at(0.50), at(0.99))
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

fn read_tokens(file: &PathBuf) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

// ------------------------------------------------------------------ modes

async fn serve(args: ServeArgs) -> Result<(), String> {
    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(|e| format!("bind 127.0.0.1:{}: {e}", args.port))?;
    println!(
        "READY {}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                eprintln!("ws-load serve: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let Ok(mut ws) =
                tokio_tungstenite::accept_async_with_config(stream, Some(ws_config())).await
            else {
                return;
            };
            while let Some(Ok(message)) = ws.next().await {
                if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
                    break;
                }
            }
            // Dropping the stream closes TCP: the server closes first.
        });
    }
}

async fn probe(args: ProbeArgs) -> Result<(), String> {
    let ctx = Ctx::new(&args.target)?;
    let mut out = Vec::new();
    // Fetch the ticket here rather than in open(), to report its status and reuse it.
    let url = match ctx.auth {
        Auth::Ticket => {
            let mut tickets = TicketClient::new();
            match tickets
                .ticket(ctx.ticket.as_ref().expect("checked"), &ctx.token)
                .await
            {
                Ok(t) => {
                    out.push("ticket_status=201".to_string());
                    Some(format!("{}?{}={}", ctx.url, ctx.ticket_param, t))
                }
                Err(f) => {
                    eprintln!("ws-load probe: ticket: {}: {}", f.kind, f.detail);
                    let code = f.kind.strip_prefix("ticket_").unwrap_or("000");
                    out.push(format!("ticket_status={code}"));
                    None
                }
            }
        }
        Auth::Query => Some(format!("{}?{}={}", ctx.url, ctx.token_param, ctx.token)),
        Auth::None => Some(ctx.url.clone()),
    };
    if let Some(url) = url {
        let upgrade = |url: String| async {
            let stream = TcpStream::connect(ctx.addr)
                .await
                .map_err(|e| e.to_string())?;
            let r = tokio::time::timeout(
                STEP_TIMEOUT,
                tokio_tungstenite::client_async_with_config(url, stream, Some(ctx.config)),
            )
            .await
            .map_err(|_| "timeout".to_string())?;
            Ok::<_, String>(match r {
                Ok((ws, _)) => (101u16, Some(ws)),
                Err(WsError::Http(r)) => (r.status().as_u16(), None),
                Err(e) => return Err(e.to_string()),
            })
        };
        match upgrade(url.clone()).await {
            Ok((status, ws)) => {
                out.push(format!("status={status}"));
                if let Some(mut ws) = ws {
                    let ok =
                        tokio::time::timeout(STEP_TIMEOUT, echo_once(&mut ws, &ctx.payload)).await;
                    out.push(format!("echo={}", verdict(&ok)));
                    let closed = tokio::time::timeout(STEP_TIMEOUT, close(ws)).await;
                    out.push(format!("close={}", verdict(&closed)));
                }
            }
            Err(e) => out.push(format!("status=000 error={e:?}")),
        }
        if args.reuse_ticket && ctx.auth == Auth::Ticket {
            match upgrade(url).await {
                Ok((status, _)) => out.push(format!("reuse_status={status}")),
                Err(_) => out.push("reuse_status=000".into()),
            }
        }
    }
    println!("{}", out.join(" "));
    Ok(())
}

struct PhaseResult {
    units: u64,
    errors: Errors,
    latencies: Vec<u32>,
    elapsed: Duration,
    exhausted: bool,
}

/// `concurrency` workers doing units until `until`, at most `max` units in all.
async fn connect_phase(
    ctx: &Arc<Ctx>,
    concurrency: usize,
    until: Instant,
    max: u64,
    tokens: Option<Arc<Vec<String>>>,
) -> PhaseResult {
    let next = Arc::new(AtomicU64::new(0));
    let exhausted = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (ctx, next, tokens, exhausted) =
            (ctx.clone(), next.clone(), tokens.clone(), exhausted.clone());
        workers.push(tokio::spawn(async move {
            let mut tickets = TicketClient::new();
            let (mut units, mut errors, mut latencies) = (0u64, Errors::default(), Vec::new());
            while Instant::now() < until {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if max > 0 && i >= max {
                    break;
                }
                let token = match &tokens {
                    Some(t) => match t.get(i as usize) {
                        Some(t) => t.as_str(),
                        None => {
                            exhausted.store(true, Ordering::Relaxed);
                            break;
                        }
                    },
                    None => ctx.token.as_str(),
                };
                let t0 = Instant::now();
                let unit = async {
                    let mut ws = open(&ctx, token, &mut tickets).await?;
                    echo_once(&mut ws, &ctx.payload).await?;
                    close(ws).await
                };
                match tokio::time::timeout(STEP_TIMEOUT, unit).await {
                    Ok(Ok(())) => {
                        units += 1;
                        latencies.push(micros(t0.elapsed()));
                    }
                    Ok(Err(f)) => errors.add(f),
                    Err(_) => errors.add(fail("timeout", "a unit took longer than 10 s")),
                }
            }
            (units, errors, latencies)
        }));
    }
    let mut result = PhaseResult {
        units: 0,
        errors: Errors::default(),
        latencies: Vec::new(),
        elapsed: Duration::ZERO,
        exhausted: false,
    };
    for w in workers {
        if let Ok((u, e, l)) = w.await {
            result.units += u;
            result.errors.merge(e);
            result.latencies.extend(l);
        }
    }
    result.elapsed = started.elapsed();
    result.exhausted = exhausted.load(Ordering::Relaxed);
    result
}

async fn connect(args: ConnectArgs) -> Result<(), String> {
    let ctx = Arc::new(Ctx::new(&args.target)?);
    let tokens = match &args.fresh_tokens {
        Some(f) if ctx.auth != Auth::None => Some(Arc::new(read_tokens(f)?)),
        Some(_) => return Err("--fresh-tokens needs auth=query or ticket".into()),
        None => None,
    };
    let c = args.concurrency.max(1);
    if args.warmup > 0.0 {
        let w = connect_phase(
            &ctx,
            c,
            Instant::now() + Duration::from_secs_f64(args.warmup),
            0,
            None,
        )
        .await;
        if w.errors.total() > 0 {
            eprintln!("ws-load: warm-up errors:");
            w.errors.report();
        }
    }
    let before = all_ticks(&args.cpu_pid);
    let until = Instant::now() + Duration::from_secs_f64(args.duration);
    let r = connect_phase(&ctx, c, until, args.n, tokens).await;
    let after = all_ticks(&args.cpu_pid);
    r.errors.report();
    let secs = r.elapsed.as_secs_f64();
    let (p50, p99) = percentiles(r.latencies);
    println!(
        "result mode=connect units={} errors={} elapsed_s={:.3} rate={:.1} p50_ms={:.3} p99_ms={:.3} cpu_ticks={} exhausted={}",
        r.units,
        r.errors.total(),
        secs,
        r.units as f64 / secs,
        p50,
        p99,
        tick_deltas(&before, &after),
        u8::from(r.exhausted)
    );
    Ok(())
}

/// Opens `n` connections, `concurrency` at a time; returns them and the failures.
async fn open_many(
    ctx: &Arc<Ctx>,
    n: usize,
    concurrency: usize,
    deadline: Instant,
) -> (Vec<Ws>, Errors) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let (ctx, next) = (ctx.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut tickets = TicketClient::new();
            let (mut open_ws, mut errors) = (Vec::new(), Errors::default());
            while next.fetch_add(1, Ordering::Relaxed) < n {
                if Instant::now() >= deadline {
                    errors.add(fail("open_timeout", "opening took too long"));
                    continue;
                }
                match tokio::time::timeout(STEP_TIMEOUT, open(&ctx, &ctx.token, &mut tickets)).await
                {
                    Ok(Ok(ws)) => open_ws.push(ws),
                    Ok(Err(f)) => errors.add(f),
                    Err(_) => errors.add(fail("timeout", "an upgrade took longer than 10 s")),
                }
            }
            (open_ws, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::with_capacity(n), Errors::default());
    for w in workers {
        if let Ok((o, e)) = w.await {
            all.extend(o);
            errors.merge(e);
        }
    }
    (all, errors)
}

/// Closes every connection, `concurrency` at a time, each bounded.
async fn close_many(conns: Vec<Ws>, concurrency: usize) -> u64 {
    let queue = Arc::new(std::sync::Mutex::new(conns));
    let ok = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (queue, ok) = (queue.clone(), ok.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let ws = queue.lock().expect("not poisoned").pop();
                let Some(ws) = ws else { break };
                if let Ok(Ok(())) = tokio::time::timeout(STEP_TIMEOUT, close(ws)).await {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    ok.load(Ordering::Relaxed)
}

async fn echo(args: EchoArgs) -> Result<(), String> {
    let ctx = Arc::new(Ctx::new(&args.target)?);
    let c = args.connections.max(1);
    let (conns, open_errors) =
        open_many(&ctx, c, c.min(64), Instant::now() + Duration::from_secs(60)).await;
    if open_errors.total() > 0 {
        eprintln!(
            "ws-load: {} of {c} connections did not open:",
            open_errors.total()
        );
        open_errors.report();
    }
    let round_trips = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let opened = conns.len();
    for mut ws in conns {
        let (ctx, round_trips, measuring, mut stop, done) = (
            ctx.clone(),
            round_trips.clone(),
            measuring.clone(),
            stop_rx.clone(),
            done_tx.clone(),
        );
        tokio::spawn(async move {
            let (mut errors, mut latencies) = (Errors::default(), Vec::new());
            let mut alive = true;
            while !*stop.borrow_and_update() {
                let t0 = Instant::now();
                match tokio::time::timeout(STEP_TIMEOUT, echo_once(&mut ws, &ctx.payload)).await {
                    Ok(Ok(())) => {
                        round_trips.fetch_add(1, Ordering::Relaxed);
                        if measuring.load(Ordering::Relaxed) {
                            latencies.push(micros(t0.elapsed()));
                        }
                    }
                    Ok(Err(f)) => {
                        errors.add(f);
                        alive = false;
                        break;
                    }
                    Err(_) => {
                        errors.add(fail("timeout", "no echo within 10 s"));
                        alive = false;
                        break;
                    }
                }
            }
            if alive {
                // Unmeasured: wait for the stop, then close cleanly.
                let _ = stop.wait_for(|s| *s).await;
                if let Ok(Err(f)) = tokio::time::timeout(STEP_TIMEOUT, close(ws)).await {
                    errors.add(f);
                }
            }
            let _ = done.send((errors, latencies));
        });
    }
    drop(done_tx);
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let before = all_ticks(&args.cpu_pid);
    let n0 = round_trips.load(Ordering::Relaxed);
    let t0 = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    let n1 = round_trips.load(Ordering::Relaxed);
    let elapsed = t0.elapsed();
    let after = all_ticks(&args.cpu_pid);
    measuring.store(false, Ordering::Relaxed);
    let _ = stop_tx.send(true);
    let (mut errors, mut latencies) = (open_errors, Vec::new());
    let collect = async {
        while let Some((e, l)) = done_rx.recv().await {
            errors.merge(e);
            latencies.extend(l);
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), collect)
        .await
        .is_err()
    {
        errors.add(fail(
            "teardown_timeout",
            "connections did not close within 30 s",
        ));
    }
    errors.report();
    let n = n1 - n0;
    let secs = elapsed.as_secs_f64();
    let (p50, p99) = percentiles(latencies);
    println!(
        "result mode=echo connections={opened} round_trips={n} relayed_messages={} errors={} elapsed_s={secs:.3} rate={:.1} p50_ms={p50:.3} p99_ms={p99:.3} cpu_ticks={}",
        2 * n,
        errors.total(),
        n as f64 / secs,
        tick_deltas(&before, &after)
    );
    Ok(())
}

async fn hold(args: HoldArgs) -> Result<(), String> {
    let ctx = Arc::new(Ctx::new(&args.target)?);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(args.open_timeout);
    let (conns, errors) = open_many(&ctx, args.n, args.concurrency, deadline).await;
    errors.report();
    println!(
        "READY opened={} failed={} elapsed_s={:.3}",
        conns.len(),
        errors.total(),
        t0.elapsed().as_secs_f64()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    if args.message_every > 0.0 {
        return hold_talking(ctx, conns, errors.total(), &args, &mut term).await;
    }
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let n = conns.len();
    let t1 = Instant::now();
    let closed = close_many(conns, args.concurrency).await;
    println!(
        "CLOSED closed={closed} of={n} elapsed_s={:.3}",
        t1.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `ok` or `fail` for a step run under a timeout.
fn verdict<E1, E2>(step: &Result<Result<(), E1>, E2>) -> &'static str {
    if matches!(step, Ok(Ok(()))) {
        "ok"
    } else {
        "fail"
    }
}

/// Seconds since the Unix epoch, for `FAIL` lines the script matches with its own events.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What one connection of `hold --message-every` did.
#[derive(Default)]
struct Talk {
    echoes: u64,
    failed: bool,
    closed: bool,
}

/// `hold --message-every`: each connection is its own task that sends a message every
/// interval and reads whatever the server sends in between (a close frame is reported
/// with its code at once, not at the next send). Until SIGTERM/SIGINT; then every
/// connection still open is closed cleanly.
async fn hold_talking(
    ctx: Arc<Ctx>,
    conns: Vec<Ws>,
    open_failures: u64,
    args: &HoldArgs,
    term: &mut tokio::signal::unix::Signal,
) -> Result<(), String> {
    let every = Duration::from_secs_f64(args.message_every);
    let n = conns.len();
    let echoes = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Talk>();
    let start = Instant::now();
    for (i, mut ws) in conns.into_iter().enumerate() {
        let (ctx, echoes, failures, mut stop, done) = (
            ctx.clone(),
            echoes.clone(),
            failures.clone(),
            stop_rx.clone(),
            done_tx.clone(),
        );
        let first = start + every.mul_f64(i as f64 / n.max(1) as f64);
        tokio::spawn(async move {
            let mut talk = Talk::default();
            let mut next = first;
            let failure = loop {
                enum Step {
                    Stop,
                    Send,
                    Got(Option<Result<Message, WsError>>),
                }
                let step = tokio::select! {
                    _ = stop.wait_for(|s| *s) => Step::Stop,
                    _ = tokio::time::sleep_until(next.into()) => Step::Send,
                    m = ws.next() => Step::Got(m),
                };
                match step {
                    Step::Stop => break None,
                    Step::Send => {
                        next += every;
                        match tokio::time::timeout(STEP_TIMEOUT, echo_once(&mut ws, &ctx.payload))
                            .await
                        {
                            Ok(Ok(())) => {
                                talk.echoes += 1;
                                echoes.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(Err(f)) => break Some(f),
                            Err(_) => break Some(fail("timeout", "no echo within 10 s")),
                        }
                    }
                    Step::Got(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                    Step::Got(Some(Ok(Message::Close(frame)))) => {
                        break Some(match frame {
                            Some(f) => {
                                fail(format!("server_close_{}", u16::from(f.code)), f.reason)
                            }
                            None => fail("server_close", "no code"),
                        })
                    }
                    Step::Got(Some(Ok(other))) => {
                        break Some(fail("unexpected_message", format!("{other:?}")))
                    }
                    Step::Got(Some(Err(e))) => break Some(fail("recv", e)),
                    Step::Got(None) => break Some(fail("recv", "connection closed")),
                }
            };
            if let Some(f) = failure {
                talk.failed = true;
                failures.fetch_add(1, Ordering::Relaxed);
                // One line per failed connection, at most N in all.
                println!(
                    "FAIL unix={:.3} conn={i} kind={} detail={:?}",
                    unix_now(),
                    f.kind,
                    f.detail
                );
            } else {
                talk.closed = matches!(
                    tokio::time::timeout(STEP_TIMEOUT, close(ws)).await,
                    Ok(Ok(()))
                );
            }
            let _ = done.send(talk);
        });
    }
    drop(done_tx);
    let report = if args.report_every > 0.0 {
        args.report_every
    } else {
        1e9
    };
    let mut tick = tokio::time::interval_at(
        (Instant::now() + Duration::from_secs_f64(report)).into(),
        Duration::from_secs_f64(report),
    );
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => {
                let f = failures.load(Ordering::Relaxed);
                println!(
                    "PROGRESS unix={:.3} open={} echoes={} failures={f}",
                    unix_now(),
                    n as u64 - f,
                    echoes.load(Ordering::Relaxed)
                );
            }
        }
    }
    let t1 = Instant::now();
    let _ = stop_tx.send(true);
    let (mut closed, mut failed, mut total_echoes, mut reported) = (0u64, 0u64, 0u64, 0usize);
    let collect = async {
        while let Some(t) = done_rx.recv().await {
            reported += 1;
            closed += u64::from(t.closed);
            failed += u64::from(t.failed);
            total_echoes += t.echoes;
        }
    };
    if tokio::time::timeout(Duration::from_secs(60), collect)
        .await
        .is_err()
    {
        eprintln!("ws-load: connections did not close within 60 s");
    }
    println!(
        "CLOSED closed={closed} of={n} elapsed_s={:.3}",
        t1.elapsed().as_secs_f64()
    );
    println!(
        "result mode=hold opened={n} open_failures={open_failures} echoes={total_echoes} failed_connections={failed} closed={closed} unaccounted={} elapsed_s={:.3}",
        n - reported,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.cmd {
            Cmd::Serve(a) => serve(a).await,
            Cmd::Probe(a) => probe(a).await,
            Cmd::Connect(a) => connect(a).await,
            Cmd::Echo(a) => echo(a).await,
            Cmd::Hold(a) => hold(a).await,
        }
    });
    if let Err(e) = result {
        eprintln!("ws-load: {e}");
        std::process::exit(1);
    }
}
