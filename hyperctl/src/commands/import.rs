//! `hyperctl import FILE|- REPO[:TAG]`: a rootfs tarball becomes an image.

use anyhow::{Context, Result};
use hyper::Method;
use tokio::io::AsyncReadExt;

use hyper_proto::rest::JsonMessage;

use crate::client::{Client, enc};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The tarball, or - for stdin.
    pub file: String,
    /// REPO[:TAG]; the tag defaults to latest.
    pub reference: String,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    let data = if args.file == "-" {
        let mut buf = Vec::new();
        tokio::io::stdin().read_to_end(&mut buf).await?;
        buf
    } else {
        std::fs::read(&args.file).with_context(|| format!("read {}", args.file))?
    };
    let (repo, tag) = match args.reference.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (args.reference.as_str(), "latest"),
    };
    let path = format!(
        "/image/create?fromSrc=-&repo={}&tag={}",
        enc(repo),
        enc(tag)
    );
    let body = client
        .call(Method::POST, &path, Some("application/x-tar"), data.into())
        .await?;
    for line in String::from_utf8_lossy(&body).lines() {
        let msg: JsonMessage =
            serde_json::from_str(line).with_context(|| format!("unexpected answer: {line}"))?;
        if !msg.error.is_empty() {
            anyhow::bail!("{}", msg.error);
        }
        println!("{}", msg.status);
    }
    Ok(0)
}
