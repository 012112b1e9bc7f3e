//! `hyperctl pull IMAGE`: `POST /image/create?imageName=&tag=` with the registry's
//! credentials, showing the daemon's progress stream. Also what `run` and `create` call for an
//! image the daemon does not have.

use anyhow::Result;
use hyper::Method;

use crate::client::{self, Client, enc};
use crate::credentials;
use crate::progress::{self, Output};
use crate::reference::ImageRef;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// NAME[:TAG] or NAME@DIGEST; the tag defaults to latest.
    pub image: String,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    pull(client, &args.image, Output::Stdout).await?;
    Ok(0)
}

/// Pulls `image`, showing progress on `output`; fails with the stream's error if the pull
/// fails after it started.
pub async fn pull(client: &Client, image: &str, output: Output) -> Result<()> {
    let reference = ImageRef::parse(image)?;
    if reference.is_untagged() {
        output.line("Using default tag: latest")?;
    }
    registry_request(client, "/image/create", "imageName", &reference, output).await
}

/// `POST <endpoint>?<name_param>=<name>&tag=<tag or digest>` for `reference`, with its
/// registry's credentials as `X-Registry-Auth`, showing the daemon's progress stream on
/// `output`: what pull and push share. Fails with the stream's error.
pub(super) async fn registry_request(
    client: &Client,
    endpoint: &str,
    name_param: &str,
    reference: &ImageRef,
    output: Output,
) -> Result<()> {
    let auth = credentials::registry_auth(reference)?;
    let path = format!(
        "{endpoint}?{name_param}={}&tag={}",
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
    progress::follow(client::reader(body), progress::renderer(output).as_mut()).await?;
    Ok(())
}
