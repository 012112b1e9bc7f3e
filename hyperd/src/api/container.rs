//! `/container/*`: create (into a running pod), start, stop, kill, remove, rename, info and
//! logs (Docker's json-file log, streamed: stdcopy frames without a TTY, raw with one).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};

use hyper_proto::rest::{ContainerInfoResponse, IdResponse, UserContainer};

use super::error::ApiResult;
use super::{Params, param, required, truthy};
use crate::Daemon;
use crate::container::{self, stdio};
use crate::error::Error;

/// `podId`; the body is a UserContainer (JSON). 201 `{"ID": <container id>}`.
pub async fn create(
    State(d): State<Arc<Daemon>>,
    q: Params,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<IdResponse>)> {
    let pod_id = required(&q, "podId")?;
    let mut de = serde_json::Deserializer::from_slice(&body);
    let c: UserContainer = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| Error::InvalidInput(format!("container spec: {}: {}", e.path(), e.inner())))?;
    let id = d.pods.create_container(pod_id, c).await?;
    Ok((StatusCode::CREATED, Json(IdResponse::ok(id))))
}

pub async fn start(State(d): State<Arc<Daemon>>, q: Params) -> ApiResult<Json<Value>> {
    d.pods.start_container(required(&q, "container")?).await?;
    Ok(Json(json!({})))
}

/// `t`: seconds between the stop signal and SIGKILL (default 5).
pub async fn stop(State(d): State<Arc<Daemon>>, q: Params) -> ApiResult<Json<Value>> {
    let container = required(&q, "container")?;
    let grace = match param(&q, "t") {
        "" => crate::pod::STOP_GRACE,
        t => Duration::from_secs(
            t.parse::<u32>()
                .map_err(|_| {
                    Error::InvalidInput(format!(
                        "query parameter t: {t:?}: seconds, an integer ≥ 0"
                    ))
                })?
                .into(),
        ),
    };
    d.pods.stop_one(container, grace).await?;
    Ok(Json(json!({})))
}

/// `signal`: a number or a name (default TERM). 201, as hyperd 1.1 answers.
pub async fn kill(State(d): State<Arc<Daemon>>, q: Params) -> ApiResult<(StatusCode, Json<Value>)> {
    let container = required(&q, "container")?;
    let signal = match param(&q, "signal") {
        "" => libc::SIGTERM,
        s => container::parse_signal("signal", s)?,
    };
    d.pods.kill_one(container, signal).await?;
    Ok((StatusCode::CREATED, Json(json!({}))))
}

pub async fn remove(State(d): State<Arc<Daemon>>, q: Params) -> ApiResult<StatusCode> {
    d.pods.remove_one(required(&q, "container")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `oldName` (a name, id or id prefix) and `newName`.
pub async fn rename(State(d): State<Arc<Daemon>>, q: Params) -> ApiResult<Json<IdResponse>> {
    let old = required(&q, "oldName")?;
    let new = required(&q, "newName")?;
    d.pods.rename(old, new).await?;
    Ok(Json(IdResponse::ok(new.trim_start_matches('/'))))
}

pub async fn info(
    State(d): State<Arc<Daemon>>,
    q: Params,
) -> ApiResult<Json<ContainerInfoResponse>> {
    Ok(Json(d.pods.container_info(required(&q, "container")?)?))
}

/// `tail`'s value for the whole log.
const TAIL_ALL: &str = "all";

/// `since`: unix seconds with optional fraction (`1700000000.5`).
fn since(v: &str) -> Result<Option<SystemTime>, Error> {
    if v.is_empty() || v == "0" {
        return Ok(None);
    }
    let bad = || {
        Error::InvalidInput(format!(
            "query parameter since: {v:?}: unix seconds[.fraction]"
        ))
    };
    let secs: f64 = v.parse().map_err(|_| bad())?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(bad());
    }
    Ok(Some(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs)))
}

/// `stdout`, `stderr` (neither given: both), `follow` (until the container closes its
/// output), `timestamps` (each line prefixed with its RFC 3339 time and a space), `since`
/// (unix seconds), `tail` (a count or `all`).
pub async fn logs(State(d): State<Arc<Daemon>>, q: Params) -> ApiResult<Response> {
    let ct = d.pods.container(required(&q, "container")?)?;
    let (out, err) = match (q.get("stdout"), q.get("stderr")) {
        (None, None) => (true, true),
        (o, e) => (o.is_some_and(|v| truthy(v)), e.is_some_and(|v| truthy(v))),
    };
    if !out && !err {
        return Err(Error::InvalidInput("stdout, stderr: ask for at least one".into()).into());
    }
    let tail = match param(&q, "tail") {
        "" => None,
        all if all == TAIL_ALL => None,
        n => Some(n.parse::<usize>().map_err(|_| {
            Error::InvalidInput(format!("query parameter tail: {n:?}: a count or all"))
        })?),
    };
    let opts = stdio::ReadOptions {
        follow: truthy(param(&q, "follow")),
        since: since(param(&q, "since"))?,
        tail,
    };
    let timestamps = truthy(param(&q, "timestamps"));
    let framing = stdio::Framing::of(ct.process.tty);
    let entries = d
        .pods
        .stdio
        .read_log(&ct.id, std::path::Path::new(&ct.dir), opts);
    let body = entries.filter_map(move |e| async move {
        match e {
            Err(e) => Some(Ok(Bytes::from(format!("Error running logs job: {e}\n")))),
            Ok(e) => {
                let wanted = match e.stream {
                    stdio::Stream::Stdout => out,
                    stdio::Stream::Stderr => err,
                };
                if !wanted {
                    return None;
                }
                let line = if timestamps {
                    format!("{} {}", e.time, e.log)
                } else {
                    e.log
                };
                Some(Ok::<_, std::io::Error>(Bytes::from(
                    framing.frame(e.stream, line.as_bytes()),
                )))
            }
        }
    });
    let content_type = match framing {
        stdio::Framing::Raw => "application/vnd.docker.raw-stream",
        stdio::Framing::StdCopy => "application/vnd.docker.multiplexed-stream",
    };
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_unix_seconds() {
        assert_eq!(since("").unwrap(), None);
        assert_eq!(
            since("10.5").unwrap(),
            Some(SystemTime::UNIX_EPOCH + Duration::from_millis(10500))
        );
        assert!(since("yesterday").is_err() && since("-1").is_err() && since("NaN").is_err());
    }
}
