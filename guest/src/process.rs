//! A process running in a container or in the VM (a container's init, an exec, an execvm):
//! its stdio (pipes, or a pseudo-terminal), output relay, window size and exit.
//!
//! A container process's terminal is made inside the container, as runc's and Docker's are:
//! libcontainer opens the container's own `/dev/ptmx`, sends the master back over a
//! [`ConsoleSocket`] (the OCI runtime's `--console-socket`), and gives the process the slave,
//! so `tty` names a `/dev/pts/N` that exists in the container.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::OFlag;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::unistd::pipe2;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{Mutex, watch};

use hyper_proto::types::OutputStream;

use crate::error::{Error, Result};
use crate::output::OutputBuffer;
use crate::workload::PipeEndGuard;

/// Where the guest's own devpts instance keeps its multiplexer (mounted `newinstance`, so the
/// devtmpfs `/dev/ptmx` would open another instance).
const PTMX: &str = "/dev/pts/ptmx";

/// The ends of the stdio that go into the new process.
pub struct ChildStdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// The ends the agent keeps.
pub enum AgentStdio {
    Pipes {
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// The pty master: output of both streams, input, window size.
    Pty(OwnedFd),
}

/// Creates the stdio of a new process: a pty when `terminal`, else pipes (stdin from
/// /dev/null unless `open_stdin`).
pub fn stdio(terminal: bool, open_stdin: bool) -> Result<(ChildStdio, AgentStdio)> {
    if terminal {
        stdio_pty()
    } else {
        stdio_pipes(open_stdin)
    }
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
        AgentStdio::Pipes {
            stdin: agent_stdin,
            stdout: stdout_r,
            stderr: stderr_r,
        },
    ))
}

/// A new pseudo-terminal: the slave (three times) for the process, the master for the agent.
pub fn stdio_pty() -> Result<(ChildStdio, AgentStdio)> {
    let master = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(PTMX)
        .map_err(|e| Error::io(format!("open {PTMX}"), e))?;
    let master = OwnedFd::from(master);
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int; TIOCGPTPEER returns a new descriptor we then own.
    let slave = unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) != 0 {
            return Err(Error::io("unlock pty", std::io::Error::last_os_error()));
        }
        let fd = libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return Err(Error::io("open pty slave", std::io::Error::last_os_error()));
        }
        OwnedFd::from_raw_fd(fd)
    };
    let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| Error::io("dup pty slave", e));
    Ok((
        ChildStdio {
            stdin: dup(&slave)?,
            stdout: dup(&slave)?,
            stderr: slave,
        },
        AgentStdio::Pty(master),
    ))
}

use std::os::unix::fs::OpenOptionsExt;

/// A unix socket on which a container process's runtime sends the master of the terminal it
/// made in the container (one `SCM_RIGHTS` message, as for runc's `--console-socket`). The
/// socket file goes when this drops.
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// Listens on a new socket in `dir`, under a short name of its own (a socket path has at
    /// most 107 bytes, so ids do not go in it). Errors: the socket cannot be bound.
    pub fn bind(dir: &Path) -> Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = dir.join(format!(
            ".console-{}.sock",
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        // A stale file from an agent that died cannot be in use.
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .map_err(|e| Error::io(format!("bind console socket {}", path.display()), e))?;
        Ok(Self { listener, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The terminal master sent by the runtime. The runtime sends it before the container's
    /// creation returns, so this does not wait. Errors: no connection or no descriptor sent.
    pub fn receive_master(&self) -> Result<OwnedFd> {
        let context = || format!("console socket {}", self.path.display());
        self.listener
            .set_nonblocking(true)
            .map_err(|e| Error::io(context(), e))?;
        let (stream, _) = self
            .listener
            .accept()
            .map_err(|e| Error::io(format!("{}: no runtime connected", context()), e))?;
        stream
            .set_nonblocking(true)
            .map_err(|e| Error::io(context(), e))?;
        let mut name = [0u8; 64];
        let mut iov = [IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| Error::io(context(), e.into()))?;
        let mut fds = Vec::new();
        for cmsg in msg.cmsgs().map_err(|e| Error::io(context(), e.into()))? {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                // SAFETY: SCM_RIGHTS installed these descriptors in this process for us.
                fds.extend(
                    received
                        .into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        let mut fds = fds.into_iter();
        fds.next().ok_or_else(|| {
            Error::io(
                context(),
                std::io::Error::other("the runtime sent no terminal"),
            )
        })
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A pty master, non-blocking, registered as an agent-side end.
struct PtyMaster {
    // Fields drop in order: unregister, then close.
    _guard: PipeEndGuard,
    fd: AsyncFd<OwnedFd>,
}

impl PtyMaster {
    fn new(fd: OwnedFd) -> Result<Self> {
        let raw = fd.as_raw_fd();
        nix::fcntl::fcntl(raw, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
            .map_err(|e| Error::io("pty master", e.into()))?;
        Ok(Self {
            _guard: PipeEndGuard::new(raw),
            // SAFETY: the OwnedFd moves into the AsyncFd, which owns it until it drops.
            fd: unsafe { AsyncFd::register(fd) }
                .map_err(|e| Error::io("pty master", std::io::Error::other(e.to_string())))?,
        })
    }

    async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut ready = self.fd.readable().await?;
            // SAFETY: reads into a buffer we own from a descriptor we own.
            match ready.try_io(|fd| {
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let mut ready = self.fd.writable().await?;
            // SAFETY: writes from a buffer we own to a descriptor we own.
            match ready.try_io(|fd| {
                let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    fn resize(&self, rows: u16, cols: u16) -> std::io::Result<()> {
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize we own.
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::TIOCSWINSZ, &size) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The agent's write end of a process's stdin.
enum StdinWriter {
    Pipe {
        // Fields drop in order: unregister, then close.
        _guard: PipeEndGuard,
        pipe: pipe::Sender,
    },
    Pty(Arc<PtyMaster>),
}

pub struct ProcessHandle {
    pub pid: i32,
    exit: watch::Receiver<Option<i32>>,
    pub output: Arc<OutputBuffer>,
    stdin: Mutex<Option<StdinWriter>>,
    pty: Option<Arc<PtyMaster>>,
}

impl ProcessHandle {
    /// Tracks a started process and relays its output into its [`OutputBuffer`].
    pub fn new(pid: i32, exit: watch::Receiver<Option<i32>>, io: AgentStdio) -> Result<Arc<Self>> {
        match io {
            AgentStdio::Pipes {
                stdin,
                stdout,
                stderr,
            } => {
                let output = Arc::new(OutputBuffer::new(2));
                for (fd, stream) in [
                    (stdout, OutputStream::Stdout),
                    (stderr, OutputStream::Stderr),
                ] {
                    let guard = PipeEndGuard::new(fd.as_raw_fd());
                    let reader = pipe::Receiver::from_owned_fd(fd)
                        .map_err(|e| Error::io("stdio pipe", e))?;
                    tokio::spawn(relay(reader, guard, stream, output.clone()));
                }
                let stdin = match stdin {
                    Some(fd) => {
                        let guard = PipeEndGuard::new(fd.as_raw_fd());
                        let pipe = pipe::Sender::from_owned_fd(fd)
                            .map_err(|e| Error::io("stdin pipe", e))?;
                        Some(StdinWriter::Pipe {
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
                    pty: None,
                }))
            }
            AgentStdio::Pty(master) => {
                // A terminal merges stdout and stderr, as Docker's do with a TTY.
                let output = Arc::new(OutputBuffer::new(1));
                let master = Arc::new(PtyMaster::new(master)?);
                tokio::spawn(relay_pty(master.clone(), output.clone()));
                Ok(Arc::new(Self {
                    pid,
                    exit,
                    output,
                    stdin: Mutex::new(Some(StdinWriter::Pty(master.clone()))),
                    pty: Some(master),
                }))
            }
        }
    }

    /// A process that could not be started: it already ended with `code`, and `message` is
    /// its stderr. Its pid is 0.
    pub fn failed(code: i32, message: String) -> Arc<Self> {
        let output = Arc::new(OutputBuffer::new(1));
        output.push(OutputStream::Stderr, format!("{message}\n").into_bytes());
        output.close_stream();
        Arc::new(Self {
            pid: 0,
            exit: watch::channel(Some(code)).1,
            output,
            stdin: Mutex::new(None),
            pty: None,
        })
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
        let context = || format!("write stdin of process {}", self.pid);
        match stdin.as_mut() {
            None => Err(Error::Conflict(format!(
                "process {}: stdin is not open",
                self.pid
            ))),
            Some(StdinWriter::Pipe { pipe, .. }) => pipe
                .write_all(data)
                .await
                .map_err(|e| Error::io(context(), e)),
            Some(StdinWriter::Pty(master)) => master
                .write_all(data)
                .await
                .map_err(|e| Error::io(context(), e)),
        }
    }

    /// Closes a pipe stdin (the process reads end of file). A terminal stays open: closing
    /// its master would hang it up, and another attach may still type.
    pub async fn close_stdin(&self) {
        let mut stdin = self.stdin.lock().await;
        if matches!(*stdin, Some(StdinWriter::Pipe { .. })) {
            stdin.take();
        }
    }

    /// Sets the window size of the process's terminal in character cells (TIOCSWINSZ; the
    /// kernel sends the foreground process group SIGWINCH). Errors: [`Error::Conflict`] for a
    /// process without a terminal, [`Error::InvalidArgument`] for a size outside 1-65535.
    pub fn resize(&self, rows: u32, cols: u32) -> Result<()> {
        let Some(pty) = &self.pty else {
            return Err(Error::Conflict(format!(
                "process {}: has no terminal to resize",
                self.pid
            )));
        };
        let dim = |what: &str, v: u32| {
            u16::try_from(v)
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| Error::InvalidArgument(format!("{what} {v}: must be 1-65535")))
        };
        pty.resize(dim("rows", rows)?, dim("cols", cols)?)
            .map_err(|e| Error::io(format!("resize terminal of process {}", self.pid), e))
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

/// Relays a terminal's output until every slave descriptor is closed (the master then reads
/// EIO).
async fn relay_pty(master: Arc<PtyMaster>, output: Arc<OutputBuffer>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match master.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => output.push(OutputStream::Stdout, buf[..n].to_vec()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) => {
                tracing::warn!("reading the terminal of a process: {e}");
                break;
            }
        }
    }
    output.close_stream();
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;
    use std::os::unix::net::UnixStream;

    use nix::sys::socket::{ControlMessage, sendmsg};

    use super::*;

    #[test]
    fn a_console_socket_receives_the_terminal_master_a_runtime_sends() {
        let dir = tempfile::tempdir().unwrap();
        let console = ConsoleSocket::bind(dir.path()).unwrap();
        assert!(console.path().starts_with(dir.path()));
        // What libcontainer does in the container: open a pty, send the master.
        let pty = nix::pty::openpty(None, None).unwrap();
        let runtime = UnixStream::connect(console.path()).unwrap();
        let fds = [pty.master.as_raw_fd()];
        sendmsg::<()>(
            runtime.as_raw_fd(),
            &[IoSlice::new(b"/dev/ptmx")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        let master = console.receive_master().unwrap();
        // It is the same terminal: what goes into the master comes out of the slave.
        nix::unistd::write(&master, b"hi\n").unwrap();
        let mut buf = [0u8; 8];
        let n = nix::unistd::read(pty.slave.as_raw_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hi\n");
        let path = console.path().to_path_buf();
        drop(console);
        assert!(!path.exists(), "the socket file is removed");
    }

    #[test]
    fn a_console_socket_nobody_wrote_to_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let console = ConsoleSocket::bind(dir.path()).unwrap();
        let e = console.receive_master().unwrap_err().to_string();
        assert!(e.contains("no runtime connected"), "{e}");
        let _runtime = UnixStream::connect(console.path()).unwrap();
        drop(_runtime);
        let e = console.receive_master().unwrap_err().to_string();
        assert!(e.contains("console socket"), "{e}");
    }
}
