//! `/exec/create`, `/exec/start` (hijacked), `/execvm` (hijacked), `/exitcode`,
//! `/tty/resize`, and `/attach` (hijacked: a container's output replayed from its log and
//! followed, and its stdin). The stdio itself is `container::stdio`'s.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use hyper_util::rt::TokioIo;

use super::error::{ApiError, ApiResult};
use super::{Params, hijack, param, required, truthy};
use crate::Daemon;
use crate::container::stdio::{self, DetachKeys, Framing, Relayed};
use crate::error::Error;

fn command(q: &HashMap<String, String>) -> Result<Vec<String>, ApiError> {
    Ok(serde_json::from_str(required(q, "command")?).map_err(|e| {
        Error::InvalidInput(format!("command: expected a JSON array of strings: {e}"))
    })?)
}

/// `command` is a JSON array string, e.g. `["ls","-l"]`; `tty` runs it on a terminal.
/// Answers 201 with the exec id as a JSON string.
pub async fn create(
    State(d): State<Arc<Daemon>>,
    q: Params,
) -> ApiResult<(StatusCode, Json<String>)> {
    let container = required(&q, "container")?;
    let command = command(&q)?;
    let id = d
        .execs
        .create(container, command, truthy(param(&q, "tty")))?;
    Ok((StatusCode::CREATED, Json(id)))
}

fn query(req: &Request) -> HashMap<String, String> {
    Query::<HashMap<String, String>>::try_from_uri(req.uri())
        .map(|q| q.0)
        .unwrap_or_default()
}

fn detach_keys(q: &HashMap<String, String>) -> Result<DetachKeys, crate::container::Error> {
    Ok(DetachKeys::parse(param(q, "detachKeys"))?)
}

/// Hijacks: stdcopy frames without a TTY, raw with one; `detachKeys` (TTY only) detaches
/// and leaves the exec running.
pub async fn start(State(d): State<Arc<Daemon>>, mut req: Request) -> ApiResult<Response> {
    let q = query(&req);
    let container = required(&q, "container")?.to_string();
    let exec_id = required(&q, "exec")?.to_string();
    let detach = detach_keys(&q)?;
    let upgrade = hijack::take_upgrade(&mut req)?;
    // Started before the 101, so a bad command is still a proper 4xx.
    let session = d.execs.start(&container, &exec_id).await?;
    tokio::spawn(async move {
        let framing = Framing::of(session.tty);
        let relayed = match upgrade.await {
            Ok(upgraded) => stdio::relay_exec(
                &session.shim,
                session.process.clone(),
                TokioIo::new(upgraded),
                framing,
                Some(detach),
            )
            .await
            .map_err(|e| e.to_string()),
            Err(e) => Err(format!("upgrade: {e}")),
        };
        match relayed {
            Ok(Relayed::Detached) => {
                tracing::info!(exec_id, "client detached");
                // The exit is still recorded when the exec ends.
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(exec_id, "{e}"),
        }
        match d.execs.finish(&session).await {
            Ok(code) => tracing::info!(exec_id, code, "exec exited"),
            Err(e) => {
                tracing::warn!(exec_id, "exec wait: {e}");
                if let Err(e) = d.execs.record(&exec_id, 255) {
                    tracing::error!(exec_id, "{e}");
                }
            }
        }
    });
    Ok(hijack::upgraded())
}

/// `podId` (or hyperd 1.1's `pod`) and `command` (a JSON array string): runs the command in
/// the pod's VM outside every container; the connection is hijacked, raw both ways.
pub async fn execvm(State(d): State<Arc<Daemon>>, mut req: Request) -> ApiResult<Response> {
    let q = query(&req);
    let pod_id = match param(&q, "podId") {
        "" => required(&q, "pod")?,
        id => id,
    }
    .to_string();
    let command = command(&q)?;
    let upgrade = hijack::take_upgrade(&mut req)?;
    let shim = d.pods.vm_of(&pod_id)?;
    let session = d.execs.start_in_vm(shim, command).await?;
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let relayed = stdio::relay_exec(
                    &session.shim,
                    session.process.clone(),
                    TokioIo::new(upgraded),
                    Framing::Raw,
                    None,
                )
                .await;
                if let Err(e) = relayed {
                    tracing::warn!(pod_id, "execvm: {e}");
                }
            }
            Err(e) => tracing::warn!(pod_id, "upgrade: {e}"),
        }
        if let Err(e) = d.execs.finish(&session).await {
            tracing::debug!(pod_id, "execvm wait: {e}");
        }
    });
    Ok(hijack::upgraded())
}

/// A JSON integer; for a container once it is no longer running (137 if its VM died), for
/// an exec once it ended, however long that takes.
pub async fn exit_code(State(d): State<Arc<Daemon>>, q: Params) -> ApiResult<Json<i32>> {
    let container = required(&q, "container")?;
    let exec = Some(param(&q, "exec")).filter(|e| !e.is_empty());
    Ok(Json(d.execs.exit_code(container, exec).await?))
}

/// `h` rows and `w` columns for a container's main process or (`exec`) an exec; both must
/// run on a terminal.
pub async fn resize(State(d): State<Arc<Daemon>>, q: Params) -> ApiResult<StatusCode> {
    let container = required(&q, "container")?;
    let exec = Some(param(&q, "exec")).filter(|e| !e.is_empty());
    let size = |name: &str| -> Result<u32, ApiError> {
        Ok(required(&q, name)?
            .parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .map(u32::from)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "query parameter {name}: an integer from 1 to 65535"
                ))
            })?)
    };
    let (h, w) = (size("h")?, size("w")?);
    d.execs.resize(container, exec, h, w).await?;
    Ok(StatusCode::OK)
}

/// Replays a container's output from its log and follows it until the container closes
/// it; `stdout`/`stderr` (default yes) pick the streams; `stdin` (default: yes when the
/// container takes stdin: a TTY or `stdin` in its spec) relays the client's bytes until it half-closes or types
/// `detachKeys` (TTY only; default ctrl-p,ctrl-q), which leaves the container running.
pub async fn attach(State(d): State<Arc<Daemon>>, mut req: Request) -> ApiResult<Response> {
    let q = query(&req);
    let reference = required(&q, "container")?.to_string();
    let detach = detach_keys(&q)?;
    let flag = |name: &str, default: bool| q.get(name).map_or(default, |v| truthy(v));
    let ct = d.pods.container(&reference)?;
    let tty = ct.process.tty;
    let takes_stdin = tty || ct.process.stdin;
    let stdin = flag("stdin", takes_stdin);
    if stdin && !takes_stdin {
        return Err(crate::container::Error::from(stdio::Error::NoStdin(ct.name)).into());
    }
    let streams = (flag("stdout", true), flag("stderr", true));
    let upgrade = hijack::take_upgrade(&mut req)?;
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(container = %ct.id, "upgrade: {e}");
                return;
            }
        };
        let end = d
            .pods
            .stdio
            .attach(
                &ct.id,
                std::path::Path::new(&ct.dir),
                TokioIo::new(upgraded),
                Framing::of(tty),
                streams,
                stdin,
                detach,
            )
            .await;
        tracing::debug!(container = %ct.id, "attach ended: {end:?}");
    });
    Ok(hijack::upgraded())
}
