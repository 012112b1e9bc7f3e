//! `hyperctl load [-i FILE]`: streams an image archive (a `docker save` or OCI layout tar,
//! compressed or not: the daemon detects it) from FILE or stdin to `POST /image/load`, and
//! shows the daemon's answer (`Loaded image: busybox:latest`).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use hyper::Method;

use crate::client::{self, Client};
use crate::progress::{self, Output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Read the archive from FILE instead of stdin.
    #[arg(short = 'i', long)]
    pub input: Option<PathBuf>,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    let body = match &args.input {
        Some(file) => client::streamed(
            tokio::fs::File::open(file)
                .await
                .with_context(|| format!("open {}", file.display()))?,
        ),
        None => {
            if std::io::stdin().is_terminal() {
                bail!(
                    "refusing to read an archive from a terminal: give -i FILE or redirect stdin"
                );
            }
            client::streamed(tokio::io::stdin())
        }
    };
    let answer = client
        .open(
            Method::POST,
            "/image/load",
            &[],
            Some("application/x-tar"),
            body,
        )
        .await?;
    progress::follow(
        client::reader(answer),
        progress::renderer(Output::Stdout).as_mut(),
    )
    .await?;
    Ok(0)
}
