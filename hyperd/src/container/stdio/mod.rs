//! Process stdio, the one place that touches it: recording a container's output to its log
//! ([`log`], Docker's json-file) from the shim's Attach stream, relaying a hijacked client
//! connection (`/attach`, `/exec/start`, `/execvm`) to and from a process (stdcopy frames
//! without a TTY, raw bytes with one), stdin with half-close, and the detach keys
//! ([`detach`]).
//!
//! A container's main process has one Attach stream, opened by its recorder: its output goes
//! to the log (which every attached client follows, so several clients see the same output)
//! and its stdin is shared by the attached clients. An exec has its own stream, relayed to its
//! one client.

pub mod detach;
pub mod log;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use hyper_proto::rest::{STDCOPY_STDERR, STDCOPY_STDOUT, stdcopy_header};
use hyper_proto::types::{AttachInput, OutputStream, ProcessRef, attach_input};

pub use detach::DetachKeys;
pub use log::{Entry, LogConfig, LogWriter, Progress, ReadOptions, Stream};

use crate::vm::Shim;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("container {0} does not take stdin (create it with stdin or tty)")]
    NoStdin(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            Error::Invalid(_) => Kind::InvalidInput,
            Error::NoStdin(_) => Kind::Conflict,
            Error::Io { .. } => Kind::Internal,
        }
    }
}

/// How output goes to a client: raw bytes from a TTY, stdcopy frames otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Raw,
    StdCopy,
}

impl Framing {
    pub fn of(tty: bool) -> Self {
        if tty { Framing::Raw } else { Framing::StdCopy }
    }

    /// The bytes a client gets for `data` of `stream`.
    pub fn frame(self, stream: Stream, data: &[u8]) -> Vec<u8> {
        match self {
            Framing::Raw => data.to_vec(),
            Framing::StdCopy => {
                let id = match stream {
                    Stream::Stdout => STDCOPY_STDOUT,
                    Stream::Stderr => STDCOPY_STDERR,
                };
                let mut out = stdcopy_header(id, data.len() as u32).to_vec();
                out.extend_from_slice(data);
                out
            }
        }
    }
}

fn stream_of(chunk_stream: i32) -> Stream {
    match OutputStream::try_from(chunk_stream) {
        Ok(OutputStream::Stderr) => Stream::Stderr,
        _ => Stream::Stdout,
    }
}

/// A container main process being recorded: its log's progress, and the stdin its attached
/// clients share.
struct Live {
    progress: watch::Sender<Progress>,
    stdin: Option<mpsc::Sender<AttachInput>>,
}

/// The live logs and stdins of the containers, by container id.
#[derive(Default)]
pub struct Stdio {
    live: Mutex<HashMap<String, Live>>,
}

/// How a relayed session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relayed {
    /// The process closed its output.
    Ended,
    /// The client typed the detach keys; the process runs on.
    Detached,
    /// The client went away.
    ClientGone,
}

impl Stdio {
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a container's main process from now until it closes its output: attaches to
    /// the shim (from the log's next sequence number when `resume`, after a hyperd restart)
    /// and appends every chunk to the log in `dir`. With `stdin`, attached clients can write
    /// to the process. Returns once attached, so the caller may start the process.
    pub async fn record(
        &self,
        shim: &Shim,
        container_id: &str,
        dir: &Path,
        config: LogConfig,
        resume: bool,
        stdin: bool,
    ) -> Result<Recording, crate::container::Error> {
        let (progress, _) = watch::channel(Progress::default());
        let writer =
            LogWriter::open(dir, config, resume, progress.clone()).map_err(|e| Error::Io {
                context: format!("open the log of container {container_id}"),
                source: e,
            })?;
        let (tx, rx) = mpsc::channel::<AttachInput>(16);
        let process = ProcessRef {
            container_id: container_id.into(),
            exec_id: String::new(),
        };
        // The recorder's stdin stays open as long as it runs: the guest closes a process's
        // stdin when its attach hangs up.
        let output = shim
            .attach(process, writer.next_seq(), ReceiverStream::new(rx))
            .await?;
        self.live().insert(
            container_id.to_string(),
            Live {
                progress,
                stdin: stdin.then(|| tx.clone()),
            },
        );
        Ok(Recording {
            container_id: container_id.into(),
            output,
            writer,
            _stdin: tx,
        })
    }

    /// Reads a container's log; following a live one until its process closes its output.
    pub fn read_log(
        &self,
        container_id: &str,
        dir: &Path,
        opts: ReadOptions,
    ) -> impl futures::Stream<Item = std::io::Result<Entry>> + use<> {
        let progress = self
            .live()
            .get(container_id)
            .map(|l| l.progress.subscribe());
        ReceiverStream::new(log::read(dir, opts, progress))
    }

    pub fn forget(&self, container_id: &str) {
        self.live().remove(container_id);
    }

    /// `/attach`: the container's output from its log (replayed from the start, then
    /// followed; only the streams asked for) and, with `stdin`, the client's bytes to the
    /// process until the client half-closes or types the detach keys.
    #[allow(clippy::too_many_arguments)]
    pub async fn attach<IO>(
        &self,
        container_id: &str,
        dir: &Path,
        io: IO,
        framing: Framing,
        streams: (bool, bool),
        stdin: bool,
        detach: DetachKeys,
    ) -> Relayed
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, mut wr) = tokio::io::split(io);
        let input = self
            .live()
            .get(container_id)
            .and_then(|l| l.stdin.clone())
            .filter(|_| stdin);
        let (detached_tx, detached) = tokio::sync::oneshot::channel();
        let mut detached = std::pin::pin!(detached_keys_typed(detached));
        let pump = input.map(|tx| {
            let scanner = (framing == Framing::Raw).then(|| detach::Scanner::new(detach));
            tokio::spawn(async move {
                let end = pump_stdin(rd, &tx, scanner, false).await;
                if end == Relayed::Detached {
                    let _gone = detached_tx.send(());
                }
            })
        });
        let mut entries = Box::pin(self.read_log(
            container_id,
            dir,
            ReadOptions {
                follow: true,
                ..Default::default()
            },
        ));
        let end = loop {
            tokio::select! {
                () = &mut detached => break Relayed::Detached,
                next = entries.next() => match next {
                    None => break Relayed::Ended,
                    Some(Err(e)) => {
                        tracing::warn!(container_id, "read log: {e}");
                        break Relayed::Ended;
                    }
                    Some(Ok(e)) => {
                        let wanted = match e.stream {
                            Stream::Stdout => streams.0,
                            Stream::Stderr => streams.1,
                        };
                        if wanted && wr.write_all(&framing.frame(e.stream, e.log.as_bytes())).await.is_err() {
                            break Relayed::ClientGone;
                        }
                    }
                }
            }
        };
        if let Err(e) = wr.shutdown().await {
            tracing::debug!(container_id, "close: {e}");
        }
        if let Some(p) = pump {
            p.abort();
        }
        end
    }
}

/// A container's output being recorded: run [`Recording::run`] to the end.
pub struct Recording {
    container_id: String,
    output: tonic::Streaming<hyper_proto::types::AttachOutput>,
    writer: LogWriter,
    _stdin: mpsc::Sender<AttachInput>,
}

impl Recording {
    /// Appends every chunk until the process closes its output (or the shim goes away).
    pub async fn run(mut self) {
        let id = self.container_id.clone();
        while let Some(chunk) = self.output.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(s) => {
                    tracing::debug!(container_id = %id, "output stream: {}", s.message());
                    break;
                }
            };
            if let Err(e) = self
                .writer
                .append(chunk.seq, stream_of(chunk.stream), &chunk.data)
            {
                tracing::error!(container_id = %id, "write the log: {e}");
                break;
            }
        }
        self.writer.finish();
    }
}

/// Resolves once the stdin pump reports the detach keys; a pump that ended otherwise (its
/// sender dropped) never detaches.
async fn detached_keys_typed(rx: tokio::sync::oneshot::Receiver<()>) {
    if rx.await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Copies a client's bytes to a process's stdin until the client half-closes (then the
/// process's stdin is closed), types the detach keys, or goes away.
async fn pump_stdin<R: AsyncRead + Unpin>(
    mut rd: R,
    tx: &mpsc::Sender<AttachInput>,
    mut scanner: Option<detach::Scanner>,
    close_on_eof: bool,
) -> Relayed {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) => {
                if close_on_eof || scanner.is_none() {
                    let close = attach_input::Input::CloseStdin(true);
                    let _gone = tx.send(AttachInput { input: Some(close) }).await;
                }
                return Relayed::Ended;
            }
            Ok(n) => n,
            Err(_) => return Relayed::ClientGone,
        };
        let (data, detached) = match scanner.as_mut() {
            Some(s) => {
                let scanned = s.feed(&buf[..n]);
                (scanned.forward, scanned.detach)
            }
            None => (buf[..n].to_vec(), false),
        };
        if !data.is_empty() {
            let msg = attach_input::Input::Stdin(data);
            if tx.send(AttachInput { input: Some(msg) }).await.is_err() {
                return Relayed::ClientGone;
            }
        }
        if detached {
            return Relayed::Detached;
        }
    }
}

/// An exec (or `/execvm`) session: relays the client to the process's own Attach stream
/// until the process closes its output or the client detaches.
pub async fn relay_exec<IO>(
    shim: &Shim,
    process: ProcessRef,
    io: IO,
    framing: Framing,
    detach: Option<DetachKeys>,
) -> Result<Relayed, crate::vm::Error>
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, mut wr) = tokio::io::split(io);
    let (tx, rx) = mpsc::channel::<AttachInput>(16);
    let mut output = shim.attach(process, 0, ReceiverStream::new(rx)).await?;
    let scanner = detach
        .filter(|_| framing == Framing::Raw)
        .map(detach::Scanner::new);
    let (detached_tx, detached) = tokio::sync::oneshot::channel();
    let mut detached = std::pin::pin!(detached_keys_typed(detached));
    let pump = tokio::spawn(async move {
        let end = pump_stdin(rd, &tx, scanner, true).await;
        if end == Relayed::Detached {
            let _gone = detached_tx.send(());
        } else {
            // Hold the stream open (stdin closed or not) until the output ends.
            std::future::pending::<()>().await;
        }
    });
    let end = loop {
        tokio::select! {
            () = &mut detached => break Relayed::Detached,
            chunk = output.next() => match chunk {
                None => break Relayed::Ended,
                Some(Err(s)) => {
                    tracing::debug!("exec output: {}", s.message());
                    break Relayed::Ended;
                }
                Some(Ok(c)) => {
                    let bytes = framing.frame(stream_of(c.stream), &c.data);
                    if wr.write_all(&bytes).await.is_err() {
                        break Relayed::ClientGone;
                    }
                }
            }
        }
    };
    if let Err(e) = wr.shutdown().await {
        tracing::debug!("close: {e}");
    }
    pump.abort();
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing() {
        assert_eq!(Framing::of(true).frame(Stream::Stderr, b"x"), b"x");
        assert_eq!(
            Framing::of(false).frame(Stream::Stderr, b"x"),
            [2, 0, 0, 0, 0, 0, 0, 1, b'x']
        );
    }

    #[tokio::test]
    async fn stdin_half_close_closes_and_detach_stops() {
        let (tx, mut rx) = mpsc::channel(8);
        let end = pump_stdin(&b"hi"[..], &tx, None, true).await;
        assert_eq!(end, Relayed::Ended);
        let got: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|m| m.input)
            .collect();
        assert_eq!(
            got,
            [
                Some(attach_input::Input::Stdin(b"hi".to_vec())),
                Some(attach_input::Input::CloseStdin(true))
            ]
        );
        let scanner = detach::Scanner::new(DetachKeys::parse("").unwrap());
        let end = pump_stdin(&b"ls\x10\x11more"[..], &tx, Some(scanner), true).await;
        assert_eq!(end, Relayed::Detached);
        let got: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|m| m.input)
            .collect();
        assert_eq!(got, [Some(attach_input::Input::Stdin(b"ls".to_vec()))]);
    }
}
