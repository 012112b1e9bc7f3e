//! `hyperctl start POD`.

use anyhow::Result;

use hyper_proto::rest::IdResponse;

use crate::client::{Client, enc};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Start in this idle VM (from `hyperctl vm create`) instead of booting one.
    #[arg(long = "vm")]
    pub vm: Option<String>,
    pub pod: String,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    let path = format!(
        "/pod/start?podId={}&vmId={}",
        enc(&args.pod),
        enc(args.vm.as_deref().unwrap_or(""))
    );
    client.post::<IdResponse>(&path).await?;
    println!("Successfully started the Pod({})", args.pod);
    Ok(0)
}
