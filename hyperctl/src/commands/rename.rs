//! `hyperctl rename CONTAINER NEW_NAME`.

use anyhow::Result;

use hyper_proto::rest::IdResponse;

use crate::client::{Client, enc};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A container name, id or id prefix.
    pub container: String,
    pub new_name: String,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    client
        .post::<IdResponse>(&format!(
            "/container/rename?oldName={}&newName={}",
            enc(&args.container),
            enc(&args.new_name)
        ))
        .await?;
    Ok(0)
}
