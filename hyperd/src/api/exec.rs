//! `/exec/create`, `/exec/start` (hijacked), `/exitcode`, and `/attach` (hijacked, replays
//! and follows a container's recorded output).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use hyper_proto::rest::{STDCOPY_STDERR, STDCOPY_STDOUT, stdcopy_header};
use hyper_proto::types::{AttachInput, OutputStream, attach_input};

use super::error::ApiResult;
use super::{Params, hijack, param, required};
use crate::Daemon;
use crate::container::exec::ExecSession;
use crate::error::Error;

/// `command` is a JSON array string, e.g. `["ls","-l"]`. Answers 201 with the exec id as a
/// JSON string.
pub async fn create(
    State(d): State<Arc<Daemon>>,
    q: Params,
) -> ApiResult<(StatusCode, Json<String>)> {
    let container = required(&q, "container")?;
    let command: Vec<String> = serde_json::from_str(required(&q, "command")?).map_err(|e| {
        Error::InvalidInput(format!("command: expected a JSON array of strings: {e}"))
    })?;
    let id = d.execs.create(container, command)?;
    Ok((StatusCode::CREATED, Json(id)))
}

fn query(req: &Request) -> HashMap<String, String> {
    Query::<HashMap<String, String>>::try_from_uri(req.uri())
        .map(|q| q.0)
        .unwrap_or_default()
}

pub async fn start(State(d): State<Arc<Daemon>>, mut req: Request) -> ApiResult<Response> {
    let q = query(&req);
    let container = required(&q, "container")?.to_string();
    let exec_id = required(&q, "exec")?.to_string();
    let upgrade = hijack::take_upgrade(&mut req)?;
    // Started before the 101, so a bad command is still a proper 400.
    let session = d.execs.start(&container, &exec_id).await?;
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => relay_exec(&d, session, TokioIo::new(upgraded)).await,
            Err(e) => {
                tracing::warn!(exec_id, "upgrade: {e}");
                if let Err(e) = d.execs.record(&exec_id, 255) {
                    tracing::error!(exec_id, "{e}");
                }
            }
        }
    });
    Ok(hijack::upgraded())
}

async fn relay_exec<IO>(d: &Daemon, session: ExecSession, io: IO)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let exec_id = session.process.exec_id.clone();
    let (mut rd, mut wr) = tokio::io::split(io);
    let (tx, rx) = mpsc::channel::<AttachInput>(16);
    let open = AttachInput {
        input: Some(attach_input::Input::Open(session.process.clone())),
    };
    // The channel is fresh and has room: this send cannot wait or fail.
    if tx.try_send(open).is_err() {
        tracing::error!(exec_id, "attach input channel refused the first message");
    }
    let stdin = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let msg = match rd.read(&mut buf).await {
                Ok(0) | Err(_) => attach_input::Input::CloseStdin(true),
                Ok(n) => attach_input::Input::Stdin(buf[..n].to_vec()),
            };
            let last = matches!(msg, attach_input::Input::CloseStdin(_));
            if tx.send(AttachInput { input: Some(msg) }).await.is_err() || last {
                break;
            }
        }
    });
    match session
        .shim
        .client
        .clone()
        .attach(ReceiverStream::new(rx))
        .await
    {
        Ok(out) => {
            let mut out = out.into_inner();
            while let Some(Ok(chunk)) = out.next().await {
                let id = match OutputStream::try_from(chunk.stream) {
                    Ok(OutputStream::Stderr) => STDCOPY_STDERR,
                    _ => STDCOPY_STDOUT,
                };
                let header = stdcopy_header(id, chunk.data.len() as u32);
                if wr.write_all(&header).await.is_err() || wr.write_all(&chunk.data).await.is_err()
                {
                    tracing::debug!(exec_id, "client went away");
                    break;
                }
            }
        }
        Err(s) => tracing::warn!(exec_id, "attach: {}", s.message()),
    }
    if let Err(e) = wr.shutdown().await {
        tracing::debug!(exec_id, "close: {e}");
    }
    stdin.abort();
    match d.execs.finish(&session).await {
        Ok(code) => tracing::info!(exec_id, code, "exec exited"),
        Err(e) => {
            tracing::warn!(exec_id, "exec wait: {e}");
            if let Err(e) = d.execs.record(&exec_id, 255) {
                tracing::error!(exec_id, "{e}");
            }
        }
    }
}

/// A JSON integer; for a container once it is no longer running, for an exec once it ended
/// (at most 10 s).
pub async fn exit_code(State(d): State<Arc<Daemon>>, q: Params) -> ApiResult<Json<i32>> {
    let container = required(&q, "container")?;
    let exec = Some(param(&q, "exec")).filter(|e| !e.is_empty());
    Ok(Json(d.execs.exit_code(container, exec).await?))
}

/// Replays a container's output from its start and follows it to the end.
pub async fn attach(State(d): State<Arc<Daemon>>, mut req: Request) -> ApiResult<Response> {
    let q = query(&req);
    let container = required(&q, "container")?.to_string();
    let upgrade = hijack::take_upgrade(&mut req)?;
    let mut output = Box::pin(d.pods.output(&container)?);
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(container, "upgrade: {e}");
                return;
            }
        };
        let mut io = TokioIo::new(upgraded);
        while let Some(chunk) = output.next().await {
            match chunk {
                Ok(bytes) => {
                    if io.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(container, "read output log: {e}");
                    break;
                }
            }
        }
        if let Err(e) = io.shutdown().await {
            tracing::debug!(container, "close: {e}");
        }
    });
    Ok(hijack::upgraded())
}
