//! `hyperctl push NAME[:TAG]`: `POST /image/push?remote=&tag=` with the registry's
//! credentials, showing the daemon's progress stream.

use anyhow::{Result, bail};
use hyper::Method;

use crate::client::{self, Client, enc};
use crate::credentials;
use crate::progress::{self, Output};
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
    let auth = credentials::registry_auth(&reference)?;
    let path = format!(
        "/image/push?remote={}&tag={}",
        enc(&reference.name),
        enc(reference.tag_or_digest())
    );
    let body = client
        .open(
            Method::POST,
            &path,
            &[("x-registry-auth", auth)],
            None,
            client::full(bytes::Bytes::new()),
        )
        .await?;
    progress::follow(
        client::reader(body),
        progress::renderer(Output::Stdout).as_mut(),
    )
    .await?;
    Ok(0)
}
