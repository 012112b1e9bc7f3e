//! `hyperctl rm POD...`: `DELETE /pod` for each.

use anyhow::Result;
use bytes::Bytes;
use hyper::Method;

use crate::client::{Client, enc};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(required = true)]
    pub pods: Vec<String>,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    for pod in &args.pods {
        client
            .call(
                Method::DELETE,
                &format!("/pod?podId={}", enc(pod)),
                None,
                Bytes::new(),
            )
            .await?;
        println!("Pod({pod}) is successfully deleted!");
    }
    Ok(0)
}
