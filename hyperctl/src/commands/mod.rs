//! One module per command; each turns its arguments into API calls and prints the result.
//! `run` returns the exit status hyperctl ends with.

mod api_spec;
mod attach;
mod build;
mod commit;
mod container;
pub mod create;
mod exec;
mod history;
mod images;
mod import;
mod info;
mod inspect;
mod kill;
mod list;
mod load;
mod login;
mod logout;
mod logs;
mod pause;
pub mod port;
mod pull;
mod push;
mod rename;
mod rm;
mod rmi;
mod run;
pub mod save;
mod service;
mod start;
mod stats;
mod stop;
mod tag;
mod version;
mod vm;
mod volume;

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
    /// Attach to a container: its output, and our terminal for a TTY container.
    Attach(attach::Args),
    /// Print a container's log.
    Logs(logs::Args),
    /// Send a signal to containers.
    Kill(kill::Args),
    /// Freeze pods' VMs.
    Pause(pause::Args),
    /// Thaw paused pods.
    Unpause(pause::Args),
    /// Rename a container.
    Rename(rename::Args),
    /// List a pod's published ports (`80/tcp -> 0.0.0.0:8080`), or the host side of one.
    Port(port::PortArgs),
    /// Publish more ports of a running pod, or stop publishing them.
    #[command(subcommand)]
    Portmap(port::PortmapCommand),
    /// List, add, replace or remove a pod's services (IPVS load balancing inside its VM).
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// Show a pod's containers' resource use.
    Stats(stats::Args),
    /// Manage single containers of running pods.
    #[command(subcommand)]
    Container(container::Command),
    /// List images.
    Images(images::Args),
    /// Import a rootfs tarball as an image.
    Import(import::Args),
    /// Build an image from a Dockerfile.
    Build(build::Args),
    /// Pull an image from a registry.
    Pull(pull::Args),
    /// Push an image to a registry.
    Push(push::Args),
    /// Log in to a registry (credentials kept in Docker's ~/.docker/config.json).
    Login(login::Args),
    /// Log out from a registry.
    Logout(logout::Args),
    /// Remove images.
    Rmi(rmi::Args),
    /// Save images to a tar archive.
    Save(save::Args),
    /// Load images from a tar archive.
    Load(load::Args),
    /// Give an image another name.
    Tag(tag::Args),
    /// Show images' details as JSON.
    Inspect(inspect::Args),
    /// Make an image of a container's changes.
    Commit(commit::Args),
    /// Show an image's history.
    History(history::Args),
    /// Print the daemon's REST API as an OpenAPI document (YAML).
    ApiSpec(api_spec::Args),
    /// Manage idle VMs that pods can start in.
    #[command(subcommand)]
    Vm(vm::Command),
    /// Manage named volumes (kept under the daemon's root; `-v NAME:/path` mounts one).
    #[command(subcommand)]
    Volume(volume::Command),
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
        Command::Attach(a) => attach::run(client, a).await,
        Command::Logs(a) => logs::run(client, a).await,
        Command::Kill(a) => kill::run(client, a).await,
        Command::Pause(a) => pause::run(client, a, true).await,
        Command::Unpause(a) => pause::run(client, a, false).await,
        Command::Rename(a) => rename::run(client, a).await,
        Command::Stats(a) => stats::run(client, a).await,
        Command::Port(a) => port::port(client, a).await,
        Command::Portmap(c) => port::portmap(client, c).await,
        Command::Service(c) => service::run(client, c).await,
        Command::Container(c) => container::run(client, c).await,
        Command::Images(a) => images::run(client, a).await,
        Command::Commit(a) => commit::run(client, a).await,
        Command::History(a) => history::run(client, a).await,
        Command::Import(a) => import::run(client, a).await,
        Command::Build(a) => build::run(client, a).await,
        Command::Pull(a) => pull::run(client, a).await,
        Command::Push(a) => push::run(client, a).await,
        Command::Login(a) => login::run(client, a).await,
        Command::Logout(a) => logout::run(a),
        Command::Rmi(a) => rmi::run(client, a).await,
        Command::Save(a) => save::run(client, a).await,
        Command::Load(a) => load::run(client, a).await,
        Command::Tag(a) => tag::run(client, a).await,
        Command::Inspect(a) => inspect::run(client, a).await,
        Command::Vm(c) => vm::run(client, c).await,
        Command::Volume(c) => volume::run(client, c).await,
        Command::ApiSpec(a) => api_spec::run(client, a).await,
    }
}
