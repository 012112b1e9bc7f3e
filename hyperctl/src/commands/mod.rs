//! One module per command; each turns its arguments into API calls and prints the result.
//! `run` returns the exit status hyperctl ends with.

mod create;
mod exec;
mod images;
mod import;
mod info;
mod list;
mod rm;
mod run;
mod start;
mod stop;
mod version;
mod vm;

use anyhow::Result;
use clap::Subcommand;

use crate::client::Client;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a pod and start it; prints its container's output and exits with its status.
    Run(run::Args),
    /// Create a pod without starting it.
    Create(create::Args),
    /// Start a created or stopped pod.
    Start(start::Args),
    /// Stop pods.
    Stop(stop::Args),
    /// Remove pods (stopping them first).
    Rm(rm::Args),
    /// List pods, containers or VMs.
    List(list::Args),
    /// Show daemon information.
    Info,
    /// Show the client's and the daemon's versions.
    Version,
    /// Run a command in a running container (or a pod's first container).
    Exec(exec::Args),
    /// List images.
    Images(images::Args),
    /// Import a rootfs tarball as an image.
    Import(import::Args),
    /// Manage idle VMs that pods can start in.
    #[command(subcommand)]
    Vm(vm::Command),
}

pub async fn run(client: &Client, command: Command) -> Result<i32> {
    match command {
        Command::Run(a) => run::run(client, a).await,
        Command::Create(a) => create::run(client, a).await,
        Command::Start(a) => start::run(client, a).await,
        Command::Stop(a) => stop::run(client, a).await,
        Command::Rm(a) => rm::run(client, a).await,
        Command::List(a) => list::run(client, a).await,
        Command::Info => info::run(client).await,
        Command::Version => version::run(client).await,
        Command::Exec(a) => exec::run(client, a).await,
        Command::Images(a) => images::run(client, a).await,
        Command::Import(a) => import::run(client, a).await,
        Command::Vm(c) => vm::run(client, c).await,
    }
}
