//! Command-line types (clap). No logic: `main.rs` maps each command to one library call.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "gatehouse",
    version,
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
    /// Lifetime, like 30s, 5m or 1h.
    #[arg(long, default_value = "1h")]
    pub ttl: String,
    /// The issuer (by `name`) whose key signs; defaults to the first with a local signing key.
    #[arg(long)]
    pub issuer: Option<String>,
}
