//! hyperctl: the command line client of hyperd's REST API. Parses flags and runs one command
//! from [`commands`]; errors go to stderr as `hyperctl ERROR: …` with exit status 255, and a
//! container's exit status becomes hyperctl's.

mod client;
mod commands;
mod credentials;
mod progress;
mod reference;
mod stdcopy;
mod table;

use clap::Parser;

use crate::client::{Client, Host};

/// The daemon's default socket.
const DEFAULT_HOST: &str = "unix:///var/run/hyper.sock";

#[derive(Debug, Parser)]
#[command(
    name = "hyperctl",
    version,
    about = "Run pods in lightweight VMs through hyperd"
)]
struct Cli {
    /// The daemon: unix:///path or tcp://HOST:PORT.
    #[arg(short = 'H', long = "host", env = "HYPER_HOST", default_value = DEFAULT_HOST, global = true)]
    host: String,
    #[command(subcommand)]
    command: commands::Command,
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fail(e.into()),
    };
    let code = runtime.block_on(async {
        let client = Client::new(Host::parse(&cli.host)?);
        commands::run(&client, cli.command).await
    });
    // exit() rather than returning: a blocked stdin reader must not hold the process.
    match code {
        Ok(code) => std::process::exit(code),
        Err(e) => fail(e),
    }
}

fn fail(e: anyhow::Error) -> ! {
    eprintln!("hyperctl ERROR: {e:#}");
    std::process::exit(255)
}
