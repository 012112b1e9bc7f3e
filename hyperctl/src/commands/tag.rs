//! `hyperctl tag SOURCE TARGET`: `POST /image/tag?imageId=&repo=&tag=` gives the image SOURCE
//! names another name.

use anyhow::{Result, bail};
use hyper::Method;

use crate::client::{Client, enc};
use crate::reference::ImageRef;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image: NAME[:TAG], NAME@DIGEST or an id.
    pub source: String,
    /// The new name, NAME[:TAG]; the tag defaults to latest.
    pub target: String,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    let target = ImageRef::parse(&args.target)?;
    if target.digest.is_some() {
        bail!("tag {}: the new name cannot hold a digest", args.target);
    }
    let path = format!(
        "/image/tag?imageId={}&repo={}&tag={}",
        enc(&args.source),
        enc(&target.name),
        enc(target.tag_or_digest())
    );
    client
        .call(Method::POST, &path, None, bytes::Bytes::new())
        .await?;
    Ok(0)
}
