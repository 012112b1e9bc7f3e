//! `hyperctl run`: create, start, then (unless `-d`) attach to the container (its output;
//! with `-i -t` also our terminal, raw; refused when stdin is not a terminal) and exit with
//! its status; `--rm` removes the pod at the end, also after an error or a signal (not after
//! a detach).

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use tokio::signal::unix::{SignalKind, signal};

use hyper_proto::rest::{IdResponse, PodInfo};

use super::create::{PodFlags, create_pod};
use crate::client::{Client, enc};
use crate::session::{self, Ended, Session};

/// How long `--rm` waits for the daemon to remove the pod (it stops the VM first).
const REMOVE_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Don't attach: print the pod id and return once it runs.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Remove the pod when its container has exited.
    #[arg(long)]
    pub rm: bool,
    /// The keys that detach from a -i -t session and leave the container running.
    #[arg(long, default_value = "ctrl-p,ctrl-q")]
    pub detach_keys: String,
    /// Start the pod in this idle VM (from `hyperctl vm create`) instead of booting one.
    #[arg(long = "vm")]
    pub vm: Option<String>,
    #[command(flatten)]
    pub pod: PodFlags,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    session::check_tty(args.pod.tty, args.pod.interactive)?;
    let started = Instant::now();
    let pod_id = create_pod(client, &args.pod).await?;
    // From here an error or a signal must not leave a --rm pod behind.
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let outcome = tokio::select! {
        r = start_and_attach(client, &args, &pod_id, started) => r,
        _ = int.recv() => Err(anyhow!("interrupted")),
        _ = term.recv() => Err(anyhow!("terminated")),
        _ = hup.recv() => Err(anyhow!("hung up")),
    };
    if args.rm && !matches!(outcome, Ok(Outcome::Detached)) {
        remove(client, &pod_id).await;
    }
    outcome.map(|o| match o {
        Outcome::Exited(code) => code,
        Outcome::Detached => 0,
    })
}

/// How `run` ended when nothing failed.
enum Outcome {
    /// The container exited with this status (0 for `-d` or a pod without containers).
    Exited(i32),
    /// We detached (`-d`, or the detach keys): a `--rm` pod stays.
    Detached,
}

async fn start_and_attach(
    client: &Client,
    args: &Args,
    pod_id: &str,
    started: Instant,
) -> Result<Outcome> {
    let vm = args.vm.as_deref().unwrap_or("");
    let start = format!("/pod/start?podId={}&vmId={}", enc(pod_id), enc(vm));
    client.post::<IdResponse>(&start).await?;
    if args.detach {
        println!("POD id is {pod_id}");
        println!("Time to run a POD is {} ms", started.elapsed().as_millis());
        return Ok(Outcome::Detached);
    }
    let info: PodInfo = client
        .get(&format!("/pod/info?podName={}", enc(pod_id)))
        .await?;
    let container = info
        .spec
        .containers
        .first()
        .map(|c| c.name.trim_start_matches('/').to_string())
        .unwrap_or_default();
    if container.is_empty() {
        return Ok(Outcome::Exited(0));
    }
    let tty = args.pod.tty;
    let stream = client
        .hijack(&format!(
            "/attach?container={}&stdin={}&detachKeys={}",
            enc(&container),
            args.pod.interactive,
            enc(&args.detach_keys)
        ))
        .await?;
    let ended = Session {
        client,
        tty,
        stdin: args.pod.interactive,
        resize: tty.then(|| format!("/tty/resize?container={}", enc(&container))),
        detach_keys: session::detach_bytes(&args.detach_keys),
    }
    .run(stream)
    .await?;
    if ended == Ended::Detached {
        return Ok(Outcome::Detached);
    }
    Ok(Outcome::Exited(
        session::exit_code(client, &container, None).await?,
    ))
}

/// Best effort and bounded: a daemon that does not answer must not keep us.
async fn remove(client: &Client, pod_id: &str) {
    let path = format!("/pod?podId={}", enc(pod_id));
    let call = client.call(hyper::Method::DELETE, &path, None, bytes::Bytes::new());
    match tokio::time::timeout(REMOVE_WAIT, call).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => eprintln!("hyperctl ERROR: remove pod {pod_id}: {e:#}"),
        Err(_) => eprintln!(
            "hyperctl ERROR: remove pod {pod_id}: no answer in {} s",
            REMOVE_WAIT.as_secs()
        ),
    }
}
