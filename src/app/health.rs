//! `gatehouse health`: one `GET /healthz` to the admin listener, for a container
//! `HEALTHCHECK` in an image without a shell or curl. Healthy is a `200` within the timeout;
//! anything else (nothing listening, a timeout, another status, not HTTP) is unhealthy.
//!
//! Plain blocking `std::net` on purpose: one request, no runtime to start, and every step
//! bounded by the same deadline so a half-open admin socket cannot hang the check.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The most of an answer read; `/healthz` answers a status line and a few headers.
const MAX_ANSWER_BYTES: usize = 8192;

/// Why the probe found gatehouse unhealthy.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("nothing answers at {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{addr} did not answer /healthz within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("talking to {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{addr} answered /healthz with {status}, not 200")]
    Status { addr: SocketAddr, status: u16 },
    #[error("{addr} did not answer /healthz with HTTP: {why}")]
    NotHttp { addr: SocketAddr, why: String },
}

/// The `health` command: the admin address from `--addr`, else `admin.addr` of the config
/// file (with its `GATEHOUSE_` overrides, but without validating the rest: the probe needs
/// no secrets). Exit 0 when healthy, 1 otherwise (what a container `HEALTHCHECK` reads as
/// unhealthy, so a config it cannot read is unhealthy too), the reason on stderr.
pub fn run(addr: Option<SocketAddr>, config: &Path, timeout: Duration) -> ExitCode {
    let bound = match addr {
        Some(addr) => addr,
        None => match admin_addr(config) {
            Ok(addr) => addr,
            Err(why) => {
                eprintln!("gatehouse health: {why}");
                return ExitCode::FAILURE;
            }
        },
    };
    match check(probe_addr(bound), timeout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse health: unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn admin_addr(config: &Path) -> Result<SocketAddr, String> {
    let raw = crate::config::load_file(config)
        .map_err(|e| format!("{}: {e} (or pass --addr)", config.display()))?;
    raw.admin.addr.parse().map_err(|_| {
        format!(
            "{}: admin.addr {:?} is not an IP address and port",
            config.display(),
            raw.admin.addr
        )
    })
}

/// Where to probe for a listener bound to `bound`: an unspecified address (`0.0.0.0`, `[::]`)
/// is reached on the loopback of the same family.
pub fn probe_addr(bound: SocketAddr) -> SocketAddr {
    let ip = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bound.port())
}

/// `GET /healthz` on `addr`; `Ok` on a `200` within `timeout`.
pub fn check(addr: SocketAddr, timeout: Duration) -> Result<(), HealthError> {
    let deadline = Instant::now() + timeout;
    let io = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            HealthError::Timeout { addr, timeout }
        }
        _ => HealthError::Io { addr, source },
    };
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|source| match source.kind() {
            std::io::ErrorKind::TimedOut => HealthError::Timeout { addr, timeout },
            _ => HealthError::Connect { addr, source },
        })?;
    stream
        .set_write_timeout(Some(left(deadline, addr, timeout)?))
        .map_err(io)?;
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: gatehouse-health\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;

    let mut answer = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        stream
            .set_read_timeout(Some(left(deadline, addr, timeout)?))
            .map_err(io)?;
        let n = stream.read(&mut chunk).map_err(io)?;
        if n == 0 {
            return Err(not_http(addr, "the connection closed before a status line"));
        }
        answer.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&answer) {
            Ok(httparse::Status::Complete(_)) => {
                let status = response.code.unwrap_or_default();
                return if status == 200 {
                    Ok(())
                } else {
                    Err(HealthError::Status { addr, status })
                };
            }
            Ok(httparse::Status::Partial) if answer.len() < MAX_ANSWER_BYTES => {}
            Ok(httparse::Status::Partial) => return Err(not_http(addr, "the headers never ended")),
            Err(e) => return Err(not_http(addr, &e.to_string())),
        }
    }
}

/// Time left before `deadline`, or the timeout error once it has passed.
fn left(deadline: Instant, addr: SocketAddr, timeout: Duration) -> Result<Duration, HealthError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(HealthError::Timeout { addr, timeout })
    } else {
        Ok(left)
    }
}

fn not_http(addr: SocketAddr, why: &str) -> HealthError {
    HealthError::NotHttp {
        addr,
        why: why.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_probed_on_loopback() {
        let cases = [
            ("0.0.0.0:9090", "127.0.0.1:9090"),
            ("[::]:9090", "[::1]:9090"),
            ("10.1.2.3:9090", "10.1.2.3:9090"),
            ("127.0.0.1:19090", "127.0.0.1:19090"),
            ("[::1]:9090", "[::1]:9090"),
        ];
        for (bound, probed) in cases {
            let bound: SocketAddr = bound.parse().unwrap();
            assert_eq!(probe_addr(bound).to_string(), probed);
        }
    }
}
