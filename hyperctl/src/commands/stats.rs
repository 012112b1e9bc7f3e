//! `hyperctl stats [--no-stream] POD`: the pod's containers' resource use as `docker stats`
//! shows it, once or every second.

use anyhow::Result;
use hyper::Method;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use crate::client::{Client, enc, full, reader};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one sample and return.
    #[arg(long)]
    pub no_stream: bool,
    pub pod: String,
}

fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2}{}", UNITS[u])
}

/// One row per container, Docker's columns and CPU percentage.
fn table(sample: &[Value]) -> String {
    let mut out = format!(
        "{:<20} {:<8} {:<24} {:<8} {:<22} {:<22} {}\n",
        "CONTAINER", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"
    );
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    for s in sample {
        let cpu_delta = f(&s["cpu_stats"]["cpu_usage"]["total_usage"])
            - f(&s["precpu_stats"]["cpu_usage"]["total_usage"]);
        let sys_delta =
            f(&s["cpu_stats"]["system_cpu_usage"]) - f(&s["precpu_stats"]["system_cpu_usage"]);
        let cpus = f(&s["cpu_stats"]["online_cpus"]).max(1.0);
        let cpu = if sys_delta > 0.0 && cpu_delta > 0.0 {
            cpu_delta / sys_delta * cpus * 100.0
        } else {
            0.0
        };
        let (usage, limit) = (
            f(&s["memory_stats"]["usage"]),
            f(&s["memory_stats"]["limit"]),
        );
        let mem_pct = if limit > 0.0 {
            usage / limit * 100.0
        } else {
            0.0
        };
        let (mut rx, mut tx) = (0.0, 0.0);
        if let Some(nets) = s["networks"].as_object() {
            for n in nets.values() {
                rx += f(&n["rx_bytes"]);
                tx += f(&n["tx_bytes"]);
            }
        }
        let io = &s["blkio_stats"]["io_service_bytes_recursive"];
        let blk = |op: &str| {
            io.as_array()
                .map(|a| {
                    a.iter()
                        .filter(|e| e["op"] == op)
                        .map(|e| f(&e["value"]))
                        .sum()
                })
                .unwrap_or(0.0)
        };
        let name = s["name"].as_str().unwrap_or("").trim_start_matches('/');
        out.push_str(&format!(
            "{:<20} {:<8} {:<24} {:<8} {:<22} {:<22} {}\n",
            name,
            format!("{cpu:.2}%"),
            format!("{} / {}", bytes(usage), bytes(limit)),
            format!("{mem_pct:.2}%"),
            format!("{} / {}", bytes(rx), bytes(tx)),
            format!("{} / {}", bytes(blk("read")), bytes(blk("write"))),
            s["pids_stats"]["current"].as_u64().unwrap_or(0)
        ));
    }
    out
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    let path = format!(
        "/pod/stats?podId={}&stream={}",
        enc(&args.pod),
        !args.no_stream
    );
    let body = client
        .open(Method::GET, &path, &[], None, full(bytes::Bytes::new()))
        .await?;
    let mut lines = reader(body).lines();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let sample: Vec<Value> = serde_json::from_str(&line)?;
        print!("{}", table(&sample));
        if args.no_stream {
            break;
        }
    }
    Ok(0)
}
