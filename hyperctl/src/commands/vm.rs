//! `hyperctl vm create` (boot an idle VM) and `hyperctl vm rm VM...` (`/vm/kill`).

use anyhow::Result;

use hyper_proto::rest::IdResponse;

use crate::client::{Client, enc};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Boot an idle VM; `run --vm ID` or `start --vm ID` starts a pod in it.
    Create {
        #[arg(long, default_value_t = 1)]
        cpu: u32,
        /// MiB.
        #[arg(long, default_value_t = 128)]
        memory: u32,
    },
    /// Kill idle VMs.
    Rm {
        #[arg(required = true)]
        vms: Vec<String>,
    },
}

pub async fn run(client: &Client, command: Command) -> Result<i32> {
    match command {
        Command::Create { cpu, memory } => {
            let vm: IdResponse = client
                .post(&format!("/vm/create?cpu={cpu}&mem={memory}"))
                .await?;
            println!("{}", vm.id);
        }
        Command::Rm { vms } => {
            for vm in vms {
                client
                    .post::<IdResponse>(&format!("/vm/kill?vm={}", enc(&vm)))
                    .await?;
                println!("VM({vm}) is successfully killed!");
            }
        }
    }
    Ok(0)
}
