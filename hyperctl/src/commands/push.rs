//! `hyperctl push NAME[:TAG]`: `POST /image/push?remote=&tag=` with the registry's
//! credentials, showing the daemon's progress stream.

use anyhow::{Result, bail};

use crate::client::Client;
use crate::progress::Output;
use crate::reference::{DEFAULT_TAG, ImageRef};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// NAME[:TAG] (a name with its registry, e.g. 127.0.0.1:5000/app:1); the tag defaults to
    /// latest.
    pub image: String,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    let reference = ImageRef::parse(&args.image)?;
    if reference.digest.is_some() {
        bail!("push {}: give NAME[:TAG], not a digest", args.image);
    }
    if reference.is_untagged() {
        println!("Using default tag: {DEFAULT_TAG}");
    }
    super::pull::registry_request(client, "/image/push", "remote", &reference, Output::Stdout)
        .await?;
    Ok(0)
}
