//! `hyperctl logs [-f] [--tail N] [--since WHEN] [-t] CONTAINER`: the container's log from
//! `GET /container/logs` (stdout to our stdout, stderr to our stderr).

use anyhow::Result;
use hyper::Method;
use tokio::io::AsyncWriteExt;

use crate::client::{Client, enc, full, reader};
use crate::stdcopy;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep printing new lines until the container ends.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines ("all", or a negative number: every line).
    #[arg(long, default_value = "all", allow_hyphen_values = true)]
    pub tail: String,
    /// Only lines since a time (RFC 3339: 2026-11-29T10:45:00Z), a unix time
    /// (1700000000[.5]) or a while ago (30s, 5m, 2h).
    #[arg(long)]
    pub since: Option<String>,
    /// Prefix each line with its time (RFC 3339).
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// A container name, id or id prefix (or a pod id: its first container).
    pub container: String,
}

/// `--tail` for the daemon: a negative count means every line, as Docker has it.
fn tail(v: &str) -> &str {
    if v.parse::<i64>().is_ok_and(|n| n < 0) {
        "all"
    } else {
        v
    }
}

/// Unix seconds for `--since`: an RFC 3339 time (a time without a zone is UTC), a unix time
/// as given, or now minus `<n>s|m|h`.
fn since(v: &str) -> Result<String> {
    let bad = || {
        anyhow::anyhow!(
            "--since {v:?}: an RFC 3339 time (2026-11-29T10:45:00Z), a unix time or a duration like 30s, 5m, 2h"
        )
    };
    let rfc3339 = chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.to_utc())
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%.f").map(|t| t.and_utc())
        });
    if let Ok(t) = rfc3339 {
        let secs = t.timestamp();
        if secs < 0 {
            return Err(bad());
        }
        return Ok(format!("{secs}.{:09}", t.timestamp_subsec_nanos()));
    }
    let unit = match v.chars().last() {
        Some('s') => 1.0,
        Some('m') => 60.0,
        Some('h') => 3600.0,
        _ => {
            if v.parse::<f64>().is_ok_and(|n| n >= 0.0) {
                return Ok(v.to_string());
            }
            return Err(bad());
        }
    };
    let Ok(n) = v[..v.len() - 1].parse::<f64>() else {
        return Err(bad());
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64();
    Ok(format!("{:.9}", (now - n * unit).max(0.0)))
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    let info = client.container_info(&args.container).await?;
    let tty = info.container.tty;
    let mut path = format!(
        "/container/logs?container={}&stdout=1&stderr=1&follow={}&timestamps={}&tail={}",
        enc(&args.container),
        args.follow,
        args.timestamps,
        enc(tail(&args.tail))
    );
    if let Some(s) = &args.since {
        path.push_str(&format!("&since={}", enc(&since(s)?)));
    }
    let body = client
        .open(Method::GET, &path, &[], None, full(bytes::Bytes::new()))
        .await?;
    let mut input = reader(body);
    if tty {
        let mut out = tokio::io::stdout();
        tokio::io::copy(&mut input, &mut out).await?;
        out.flush().await?;
    } else {
        stdcopy::demux(input, &mut tokio::io::stdout(), &mut tokio::io::stderr()).await?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_time_or_a_while_ago() {
        assert_eq!(since("1700000000.5").unwrap(), "1700000000.5");
        let ago: f64 = since("10s").unwrap().parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!((now - ago - 10.0).abs() < 2.0);
        assert!(since("yesterday").is_err() && since("xs").is_err());
    }

    #[test]
    fn since_takes_rfc3339_times() {
        assert_eq!(
            since("2026-11-29T10:45:00Z").unwrap(),
            "1795949100.000000000"
        );
        assert_eq!(
            since("2026-11-29T11:45:00.5+01:00").unwrap(),
            "1795949100.500000000"
        );
        assert_eq!(
            since("2026-11-29T10:45:00").unwrap(),
            "1795949100.000000000"
        );
        assert!(since("2026-13-29T10:45:00Z").is_err());
    }

    #[test]
    fn a_negative_tail_is_every_line() {
        assert_eq!(tail("-1"), "all");
        assert_eq!(tail("all"), "all");
        assert_eq!(tail("0"), "0");
        assert_eq!(tail("5"), "5");
    }
}
