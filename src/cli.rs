//! Command-line types (clap). No logic: `main.rs` maps each command to one library call.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::fields::{parse_duration, LONGEST, SHORTEST_POLL};

#[derive(Debug, Parser)]
#[command(
    name = "gatehouse",
    version = crate::build_info::VERSION,
    long_version = crate::build_info::LONG_VERSION,
    about = "Authenticating edge proxy for HTTP and WebSocket backends"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve with a config file.
    Run(ConfigArg),
    /// Validate a config and print the effective config with secrets masked.
    Check(ConfigArg),
    /// Start a local demo: the proxy, a built-in upstream, a dev key, and a walkthrough.
    Demo(crate::dev::demo::DemoArgs),
    /// Mint a token with a configured local signing key (dev and tests only).
    Token(TokenArgs),
    /// Probe the admin listener's /healthz: exit 0 when healthy, 1 when not (for HEALTHCHECK).
    Health(HealthArgs),
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Config file; defaults to $GATEHOUSE_CONFIG, then config/gatehouse.toml.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The token's subject (`sub`).
    #[arg(long)]
    pub sub: String,
    /// Extra claim as NAME=VALUE; VALUE is read as JSON when it parses, else as a string.
    #[arg(long = "claim", value_name = "NAME=VALUE")]
    pub claims: Vec<String>,
    /// Lifetime, like 30s, 5m or 1h; at least 1s.
    #[arg(long, default_value = "1h", value_parser = token_ttl)]
    pub ttl: Duration,
    /// The issuer (by `name`) whose key signs; defaults to the first with a local signing key.
    #[arg(long)]
    pub issuer: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// Config file whose admin.addr is probed (0.0.0.0 and [::] are probed on loopback);
    /// defaults to $GATEHOUSE_CONFIG, then config/gatehouse.toml.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Probe this admin address instead of reading the config file.
    #[arg(long, value_name = "IP:PORT")]
    pub addr: Option<std::net::SocketAddr>,
    /// How long the whole probe may take, like 2s or 500ms.
    #[arg(long, default_value = "2s", value_parser = probe_timeout)]
    pub timeout: Duration,
}

/// `--ttl`: `exp` counts whole seconds, so under a second would mint a token that is
/// expired as it is printed.
fn token_ttl(raw: &str) -> Result<Duration, String> {
    parse_duration(raw, &(Duration::from_secs(1)..=LONGEST))
}

/// `--timeout`: a probe given no time fails whatever the listener does, which would read
/// as "unhealthy" rather than as the bad argument it is.
fn probe_timeout(raw: &str) -> Result<Duration, String> {
    parse_duration(raw, &(SHORTEST_POLL..=LONGEST))
}
