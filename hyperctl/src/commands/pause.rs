//! `hyperctl pause POD...` and `hyperctl unpause POD...`: the pods' VMs frozen and thawed.

use anyhow::Result;
use hyper::Method;

use crate::client::{Client, enc};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(required = true)]
    pub pods: Vec<String>,
}

/// `pause` true pauses, false unpauses.
pub async fn run(client: &Client, args: Args, pause: bool) -> Result<i32> {
    let route = if pause { "/pod/pause" } else { "/pod/unpause" };
    for pod in &args.pods {
        client
            .call(
                Method::POST,
                &format!("{route}?podId={}", enc(pod)),
                None,
                bytes::Bytes::new(),
            )
            .await?;
        println!("{pod}");
    }
    Ok(0)
}
