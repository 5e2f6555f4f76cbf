//! `tl`: the test-looper command line tool. Each subcommand's code lives in
//! `test_looper_cli::<subcommand>`.

use clap::{Parser, Subcommand};
use test_looper_cli::info;

#[derive(Parser, Debug)]
#[command(name = "tl", about = "test-looper command line tool")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Resolve the definitions at HEAD of this checkout and print every item.
    Info(info::InfoArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let status = match &cli.command {
        Command::Info(args) => info::run(args)?,
    };
    std::process::exit(status);
}
