//! A process running in a container (its init or an exec): stdio pipes, output relay, exit.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use nix::fcntl::OFlag;
use nix::unistd::pipe2;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{Mutex, watch};

use hyper_proto::types::OutputStream;

use crate::error::{Error, Result};
use crate::output::OutputBuffer;
use crate::workload::PipeEndGuard;

/// The ends of the stdio pipes that go into the container process.
pub struct ChildStdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// The ends the agent keeps.
pub struct AgentStdio {
    stdin: Option<OwnedFd>,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

/// Creates the stdio pipes of a new process. Without `open_stdin` the process reads /dev/null.
pub fn stdio_pipes(open_stdin: bool) -> Result<(ChildStdio, AgentStdio)> {
    let pipe = || pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::io("pipe", e.into()));
    let (stdout_r, stdout_w) = pipe()?;
    let (stderr_r, stderr_w) = pipe()?;
    let (child_stdin, agent_stdin) = if open_stdin {
        let (r, w) = pipe()?;
        (r, Some(w))
    } else {
        let null = std::fs::File::open("/dev/null").map_err(|e| Error::io("open /dev/null", e))?;
        (OwnedFd::from(null), None)
    };
    Ok((
        ChildStdio {
            stdin: child_stdin,
            stdout: stdout_w,
            stderr: stderr_w,
        },
        AgentStdio {
            stdin: agent_stdin,
            stdout: stdout_r,
            stderr: stderr_r,
        },
    ))
}

/// The agent's write end of a process's stdin.
struct StdinWriter {
    // Fields drop in order: unregister, then close.
    _guard: PipeEndGuard,
    pipe: pipe::Sender,
}

pub struct ProcessHandle {
    pub pid: i32,
    exit: watch::Receiver<Option<i32>>,
    pub output: Arc<OutputBuffer>,
    stdin: Mutex<Option<StdinWriter>>,
}

impl ProcessHandle {
    /// Tracks a started process and relays its output into its [`OutputBuffer`].
    pub fn new(pid: i32, exit: watch::Receiver<Option<i32>>, io: AgentStdio) -> Result<Arc<Self>> {
        let output = Arc::new(OutputBuffer::new(2));
        for (fd, stream) in [
            (io.stdout, OutputStream::Stdout),
            (io.stderr, OutputStream::Stderr),
        ] {
            let guard = PipeEndGuard::new(fd.as_raw_fd());
            let reader =
                pipe::Receiver::from_owned_fd(fd).map_err(|e| Error::io("stdio pipe", e))?;
            tokio::spawn(relay(reader, guard, stream, output.clone()));
        }
        let stdin = match io.stdin {
            Some(fd) => {
                let guard = PipeEndGuard::new(fd.as_raw_fd());
                let pipe =
                    pipe::Sender::from_owned_fd(fd).map_err(|e| Error::io("stdin pipe", e))?;
                Some(StdinWriter {
                    _guard: guard,
                    pipe,
                })
            }
            None => None,
        };
        Ok(Arc::new(Self {
            pid,
            exit,
            output,
            stdin: Mutex::new(stdin),
        }))
    }

    pub fn exit_code(&self) -> Option<i32> {
        *self.exit.borrow()
    }

    pub async fn wait(&self) -> i32 {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(code) => code.expect("waited for Some"),
            // The reaper never drops a registered sender before sending.
            Err(_) => unreachable!("reaper dropped an exit channel"),
        }
    }

    pub async fn write_stdin(&self, data: &[u8]) -> Result<()> {
        let mut stdin = self.stdin.lock().await;
        let Some(writer) = stdin.as_mut() else {
            return Err(Error::Conflict(format!(
                "process {}: stdin is not open",
                self.pid
            )));
        };
        writer
            .pipe
            .write_all(data)
            .await
            .map_err(|e| Error::io(format!("write stdin of process {}", self.pid), e))
    }

    pub async fn close_stdin(&self) {
        self.stdin.lock().await.take();
    }
}

async fn relay(
    mut reader: pipe::Receiver,
    guard: PipeEndGuard,
    stream: OutputStream,
    output: Arc<OutputBuffer>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => output.push(stream, buf[..n].to_vec()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("reading {stream:?} of a container process: {e}");
                break;
            }
        }
    }
    // Unregister before the fd closes and its number can be reused.
    drop(guard);
    drop(reader);
    output.close_stream();
}
