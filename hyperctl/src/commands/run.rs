//! `hyperctl run`: create, start, then (unless `-d`) attach to the container (its output;
//! with `-i -t` also our terminal, raw) and exit with its status; `--rm` removes the pod at
//! the end (not after a detach).

use std::time::Instant;

use anyhow::Result;

use hyper_proto::rest::{IdResponse, PodInfo};

use super::create::{PodFlags, create_pod};
use crate::client::{Client, enc};
use crate::session::{self, Ended, Session};

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
    let started = Instant::now();
    let pod_id = create_pod(client, &args.pod).await?;
    let vm = args.vm.as_deref().unwrap_or("");
    let start = format!("/pod/start?podId={}&vmId={}", enc(&pod_id), enc(vm));
    if let Err(e) = client.post::<IdResponse>(&start).await {
        if args.rm {
            remove(client, &pod_id).await;
        }
        return Err(e);
    }
    if args.detach {
        println!("POD id is {pod_id}");
        println!("Time to run a POD is {} ms", started.elapsed().as_millis());
        return Ok(0);
    }
    let info: PodInfo = client
        .get(&format!("/pod/info?podName={}", enc(&pod_id)))
        .await?;
    let container = info
        .spec
        .containers
        .first()
        .map(|c| c.name.trim_start_matches('/').to_string())
        .unwrap_or_default();
    let code = if container.is_empty() {
        0
    } else {
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
            return Ok(0);
        }
        session::exit_code(client, &container, None).await?
    };
    if args.rm {
        remove(client, &pod_id).await;
    }
    Ok(code)
}

async fn remove(client: &Client, pod_id: &str) {
    let path = format!("/pod?podId={}", enc(pod_id));
    if let Err(e) = client
        .call(hyper::Method::DELETE, &path, None, bytes::Bytes::new())
        .await
    {
        eprintln!("hyperctl ERROR: remove pod {pod_id}: {e:#}");
    }
}
