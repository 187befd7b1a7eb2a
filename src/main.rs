//! The `gatehouse` binary: parse the command line, then call one library function per
//! command. Exit codes: 0 ok, 1 runtime failure, 64 bad config or usage (EX_USAGE).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use gatehouse::app::logging;
use gatehouse::cli::{Cli, Command, ConfigArg, TokenArgs};
use gatehouse::config::{self, fields::process_env, Config, FileConfig, Refused};
use gatehouse::dev::mint;
use gatehouse::Gatehouse;

const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    // Before anything touches jsonwebtoken: it keeps the first provider it sees.
    gatehouse::auth::jwt_crypto::install();
    gatehouse::edge::tls::install_process_default();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Run(arg) => load(&arg).map_or_else(|code| code, |(_, config)| run(config, &arg)),
        Command::Check(arg) => match load(&arg) {
            Ok((raw, config)) => {
                print!("{}", raw.to_masked_toml());
                for warning in gatehouse::config::outbound::warnings(&config) {
                    eprintln!("WARNING: {warning}");
                }
                eprintln!("config OK");
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Token(args) => token(&args),
        Command::Demo(args) => gatehouse::dev::demo::run(&args),
        Command::Health(args) => {
            let config = config_path(&args.config);
            gatehouse::app::health::run(args.addr, &config, args.timeout)
        }
    }
}

fn config_path(arg: &ConfigArg) -> PathBuf {
    arg.config
        .clone()
        .or_else(|| std::env::var_os("GATEHOUSE_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH))
}

/// Loads and validates; on failure prints every error and returns exit code 64.
fn load(arg: &ConfigArg) -> Result<(FileConfig, Config), ExitCode> {
    let path = config_path(arg);
    config::load_validated(&path, &process_env).map_err(|refused| {
        match refused {
            Refused::Unreadable(why) => eprintln!("{}: {why}", path.display()),
            Refused::Invalid(errors) => {
                eprintln!("{}: invalid config", path.display());
                for e in errors {
                    eprintln!("  {e}");
                }
            }
        }
        ExitCode::from(EX_USAGE)
    })
}

fn run(config: Config, arg: &ConfigArg) -> ExitCode {
    let _logs = logging::init(config.log_format);
    for warning in gatehouse::config::outbound::warnings(&config) {
        tracing::warn!("{warning}");
    }
    let runtime = match gatehouse::app::runtime(config.worker_threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match Gatehouse::start(config).await {
            Ok(running) => {
                running.reload_from(config_path(arg));
                gatehouse::app::shutdown::signal().await;
                running.shutdown().await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %e, "gatehouse could not start");
                ExitCode::FAILURE
            }
        }
    })
}

fn token(args: &TokenArgs) -> ExitCode {
    let Ok((_, config)) = load(&args.config) else {
        return ExitCode::from(EX_USAGE);
    };
    let request = mint::Request {
        subject: &args.sub,
        claims: &args.claims,
        ttl: args.ttl,
        issuer: args.issuer.as_deref(),
    };
    match mint::mint(&config, &request) {
        Ok(jwt) => {
            println!("{jwt}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gatehouse token: {e}");
            ExitCode::from(EX_USAGE)
        }
    }
}
