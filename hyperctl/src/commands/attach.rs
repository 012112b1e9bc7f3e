//! `hyperctl attach CONTAINER`: the container's output (from its start) and, for a container
//! that takes stdin (`-i` or `-t`), our stdin as its own: half-closed at our end of input, or
//! on a TTY until we type the detach keys; exits with the container's status once it ends, 0
//! after a detach.

use anyhow::Result;

use crate::client::{Client, enc};
use crate::session::{self, Ended, Session};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Don't send our stdin.
    #[arg(long)]
    pub no_stdin: bool,
    /// The keys that detach and leave the container running.
    #[arg(long, default_value = "ctrl-p,ctrl-q")]
    pub detach_keys: String,
    /// A container name, id or id prefix (or a pod id: its first container).
    pub container: String,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    let info = client.container_info(&args.container).await?;
    let tty = info.container.tty;
    // A container created with -i takes stdin without a TTY too.
    let stdin = (tty || info.container.stdin) && !args.no_stdin;
    let stream = client
        .hijack(&format!(
            "/attach?container={}&stdin={stdin}&detachKeys={}",
            enc(&args.container),
            enc(&args.detach_keys)
        ))
        .await?;
    let ended = Session {
        client,
        tty,
        stdin,
        resize: tty.then(|| format!("/tty/resize?container={}", enc(&args.container))),
        detach_keys: session::detach_bytes(&args.detach_keys),
    }
    .run(stream)
    .await?;
    if ended == Ended::Detached {
        return Ok(0);
    }
    session::exit_code(client, &args.container, None).await
}
