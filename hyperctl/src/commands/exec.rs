//! `hyperctl exec [-i] [-t] POD|CONTAINER COMMAND...`: exec create, hijacked exec start with
//! our stdin forwarded (`-i`) and our terminal raw (`-t`), then the exec's exit status becomes
//! ours.

use anyhow::Result;

use crate::client::{Client, enc};
use crate::session::{self, Ended, Session};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run the command on a TTY.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Keep stdin open: our stdin goes to the command.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// The keys that detach from a -t session and leave the command running.
    #[arg(long, default_value = "ctrl-p,ctrl-q")]
    pub detach_keys: String,
    /// A pod id (its first container) or a container name or id.
    pub target: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    session::check_tty(args.tty, args.interactive)?;
    let command = serde_json::to_string(&args.command)?;
    let exec_id: String = client
        .post(&format!(
            "/exec/create?container={}&command={}&tty={}",
            enc(&args.target),
            enc(&command),
            args.tty
        ))
        .await?;
    let stream = client
        .hijack(&format!(
            "/exec/start?container={}&exec={}&detachKeys={}",
            enc(&args.target),
            enc(&exec_id),
            enc(&args.detach_keys)
        ))
        .await?;
    let ended = Session {
        client,
        tty: args.tty,
        stdin: args.interactive,
        resize: args.tty.then(|| {
            format!(
                "/tty/resize?container={}&exec={}",
                enc(&args.target),
                enc(&exec_id)
            )
        }),
        detach_keys: session::detach_bytes(&args.detach_keys),
    }
    .run(stream)
    .await?;
    if ended == Ended::Detached {
        return Ok(0);
    }
    session::exit_code(client, &args.target, Some(&exec_id)).await
}
