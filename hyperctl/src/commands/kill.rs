//! `hyperctl kill [-s SIGNAL] CONTAINER...`: `POST /container/kill`.

use anyhow::Result;

use crate::client::{Client, enc};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A signal name (KILL, SIGTERM) or number.
    #[arg(short = 's', long, default_value = "TERM")]
    pub signal: String,
    /// Container names, ids or id prefixes (or pod ids: their first container).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    for c in &args.containers {
        client
            .post::<serde_json::Value>(&format!(
                "/container/kill?container={}&signal={}",
                enc(c),
                enc(&args.signal)
            ))
            .await?;
        println!("{c}");
    }
    Ok(0)
}
