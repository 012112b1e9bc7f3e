//! `hyperctl stop POD...`.

use anyhow::Result;

use hyper_proto::rest::IdResponse;

use crate::client::{Client, enc};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the VM running, idle, for another pod (stopVM=no).
    #[arg(long)]
    pub keep_vm: bool,
    #[arg(required = true)]
    pub pods: Vec<String>,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    let stop_vm = if args.keep_vm { "no" } else { "yes" };
    for pod in &args.pods {
        client
            .post::<IdResponse>(&format!("/pod/stop?podId={}&stopVM={stop_vm}", enc(pod)))
            .await?;
        println!("Successfully shutdown the POD: {pod}!");
    }
    Ok(0)
}
