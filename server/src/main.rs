//! `test-looper-server`: validates a configuration file or runs the server.

use anyhow::Context;
use clap::Parser;
use std::io::IsTerminal;
use std::path::PathBuf;
use test_looper_server::config::Config;

/// The test-looper server.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Validate this configuration file and exit.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    /// The configuration file to run with.
    #[arg(required_unless_present = "check_config")]
    config: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    // Colour only on a terminal: redirected to a log file, the log stays plain text.
    tracing_subscriber::fmt()
        .with_ansi(std::io::stdout().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,actix_server=warn".into()),
        )
        .init();
    let args = Args::parse();
    if let Some(path) = args.check_config {
        Config::load(&path).with_context(|| format!("{} is invalid", path.display()))?;
        println!("{}: ok", path.display());
        return Ok(());
    }
    let path = args.config.expect("clap requires a config");
    let config = Config::load(&path).with_context(|| format!("{} is invalid", path.display()))?;
    actix_web::rt::System::new().block_on(test_looper_server::run_server(config))
}
