//! `hyperctl api-spec`: the OpenAPI document of the daemon's REST API (`GET /openapi.yaml`),
//! as that daemon serves it, to stdout or a file.

use std::path::PathBuf;

use anyhow::{Context, Result};
use hyper::Method;

use crate::client::Client;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write the document to this file instead of stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    let yaml = client
        .call(Method::GET, "/openapi.yaml", None, Default::default())
        .await?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, &yaml).with_context(|| format!("write {}", path.display()))?
        }
        None => {
            use std::io::Write as _;
            std::io::stdout().write_all(&yaml)?;
        }
    }
    Ok(0)
}
