//! `hyperctl container create|start|stop|rm|inspect`: one container of a running pod.

use anyhow::Result;
use hyper::Method;

use hyper_proto::rest::{IdResponse, UserContainer};

use crate::client::{Client, enc};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add a container to a running pod (created, not started); prints its id.
    Create(CreateArgs),
    /// Start containers.
    Start(Targets),
    /// Stop containers (stop signal, then SIGKILL after -t seconds).
    Stop(StopArgs),
    /// Remove containers (stopped first).
    Rm(Targets),
    /// Show containers' details as JSON.
    Inspect(Targets),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The container's name [default: <pod>-<image>-<10 letters>].
    #[arg(long)]
    pub name: Option<String>,
    /// Allocate a TTY (its stdin is then open for attach).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// The working directory.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// The running pod.
    pub pod: String,
    /// IMAGE [COMMAND [ARG...]].
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub args: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct Targets {
    /// Container names, ids or id prefixes.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Seconds between the stop signal and SIGKILL.
    #[arg(short = 't', long = "time", default_value_t = 5)]
    pub time: u32,
    #[command(flatten)]
    pub targets: Targets,
}

pub async fn run(client: &Client, command: Command) -> Result<i32> {
    match command {
        Command::Create(a) => {
            let (image, cmd) = a.args.split_first().expect("clap requires IMAGE");
            let envs = super::create::parse_envs(&a.env)?;
            let spec = UserContainer {
                name: a.name.unwrap_or_default(),
                image: image.clone(),
                command: cmd.to_vec(),
                workdir: a.workdir.unwrap_or_default(),
                envs,
                tty: a.tty,
                ..Default::default()
            };
            let resp: IdResponse = client
                .post_json(
                    &format!("/container/create?podId={}", enc(&a.pod)),
                    serde_json::to_vec(&spec)?,
                )
                .await?;
            println!("{}", resp.id);
        }
        Command::Start(t) => {
            for c in &t.containers {
                client
                    .post::<serde_json::Value>(&format!("/container/start?container={}", enc(c)))
                    .await?;
                println!("{c}");
            }
        }
        Command::Stop(a) => {
            for c in &a.targets.containers {
                client
                    .post::<serde_json::Value>(&format!(
                        "/container/stop?container={}&t={}",
                        enc(c),
                        a.time
                    ))
                    .await?;
                println!("{c}");
            }
        }
        Command::Rm(t) => {
            for c in &t.containers {
                client
                    .call(
                        Method::POST,
                        &format!("/container/remove?container={}", enc(c)),
                        None,
                        bytes::Bytes::new(),
                    )
                    .await?;
                println!("{c}");
            }
        }
        Command::Inspect(t) => {
            let mut all = Vec::new();
            for c in &t.containers {
                all.push(client.container_info(c).await?);
            }
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
    }
    Ok(0)
}
