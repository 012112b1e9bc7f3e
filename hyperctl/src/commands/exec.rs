//! `hyperctl exec POD|CONTAINER COMMAND...`: exec create, hijacked exec start with our stdin
//! forwarded, then the exec's exit status becomes ours.

use anyhow::{Result, bail};
use tokio::io::AsyncWriteExt;

use crate::client::{Client, enc};
use crate::stdcopy;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Allocate a TTY (not wired through yet).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// A pod id (its first container) or a container name or id.
    pub target: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    if args.tty {
        bail!("exec -t: TTYs are not supported yet");
    }
    let command = serde_json::to_string(&args.command)?;
    let exec_id: String = client
        .post(&format!(
            "/exec/create?container={}&command={}",
            enc(&args.target),
            enc(&command)
        ))
        .await?;
    let stream = client
        .hijack(&format!(
            "/exec/start?container={}&exec={}",
            enc(&args.target),
            enc(&exec_id)
        ))
        .await?;
    let (rd, mut wr) = tokio::io::split(stream);
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        if tokio::io::copy(&mut stdin, &mut wr).await.is_ok() {
            // Half-close: the process sees the end of its stdin, we keep reading its output.
            let _closed = wr.shutdown().await;
        }
    });
    stdcopy::demux(rd, &mut tokio::io::stdout(), &mut tokio::io::stderr()).await?;
    let code: i32 = client
        .get(&format!(
            "/exitcode?container={}&exec={}",
            enc(&args.target),
            enc(&exec_id)
        ))
        .await?;
    Ok(code)
}
