//! Supervised child processes: the VMM and its helpers. Each dies with the shim
//! (PR_SET_PDEATHSIG), logs to its own file in the run dir, and reports its exit once.

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::sync::watch;

use crate::error::{Error, Result};

/// How much of a child's log goes into an error message.
const LOG_TAIL_BYTES: usize = 2048;

pub struct Child {
    name: String,
    pid: u32,
    log: PathBuf,
    exit: watch::Receiver<Option<String>>,
}

impl Child {
    /// Starts `program` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> Result<Self> {
        Self::spawn_inheriting(name, program, args, log, &[])
    }

    /// As [`Child::spawn`], and the child inherits the fds `inherit` under the same numbers
    /// (all others are close-on-exec): a VMM given a tap fd on its command line.
    pub fn spawn_inheriting(
        name: &str,
        program: &Path,
        args: &[String],
        log: &Path,
        inherit: &[RawFd],
    ) -> Result<Self> {
        let inherit = inherit.to_vec();
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::io(format!("open {}", log.display()), e))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| Error::io("dup log file", e))?;
        let shim_pid = std::process::id() as i32;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .kill_on_drop(true);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The shim may have died before prctl took effect.
                if libc::getppid() != shim_pid {
                    libc::_exit(1);
                }
                // Only the child's fd table changes: clear close-on-exec on what it inherits.
                for fd in &inherit {
                    if libc::fcntl(*fd, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("start {name} ({})", program.display()), e))?;
        let pid = child.id().expect("a just-spawned child has a pid");
        let (tx, rx) = watch::channel(None);
        let task_name = name.to_string();
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(s) => s.to_string(),
                Err(e) => format!("wait failed: {e}"),
            };
            tracing::debug!(child = %task_name, pid, %status, "child exited");
            tx.send_replace(Some(status));
        });
        tracing::debug!(child = name, pid, "child started");
        Ok(Self {
            name: name.to_string(),
            pid,
            log: log.to_path_buf(),
            exit: rx,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The exit status once the child has exited.
    pub fn exit_status(&self) -> Option<String> {
        self.exit.borrow().clone()
    }

    pub fn exit_watch(&self) -> watch::Receiver<Option<String>> {
        self.exit.clone()
    }

    /// The error describing this child's exit, with the end of its log.
    pub fn exited_error(&self) -> Error {
        Error::ChildExited {
            what: self.name.clone(),
            status: self.exit_status().unwrap_or_else(|| "still running".into()),
            output: log_tail(&self.log),
        }
    }

    /// Resolves once the child has exited.
    pub async fn exited(&self) {
        let mut exit = self.exit.clone();
        // The sender lives until it has sent the status.
        let _ = exit.wait_for(Option::is_some).await;
    }

    /// Sends `signal` unless the child already exited.
    pub fn signal(&self, signal: Signal) {
        if self.exit_status().is_some() {
            return;
        }
        if let Err(e) = kill(Pid::from_raw(self.pid as i32), signal) {
            tracing::warn!(child = %self.name, pid = self.pid, "{signal}: {e}");
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; resolves when the child is gone.
    pub async fn stop(&self, grace: Duration) {
        self.signal(Signal::SIGTERM);
        if tokio::time::timeout(grace, self.exited()).await.is_err() {
            tracing::warn!(child = %self.name, pid = self.pid, "no exit after SIGTERM; killing");
            self.kill().await;
        }
    }

    pub async fn kill(&self) {
        self.signal(Signal::SIGKILL);
        self.exited().await;
    }
}

/// The last bytes of a log file, on whole lines.
pub fn log_tail(path: &Path) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let start = bytes.len().saturating_sub(LOG_TAIL_BYTES);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let text = if start > 0 {
        text.split_once('\n').map(|(_, rest)| rest).unwrap_or(&text)
    } else {
        &text
    };
    text.trim().replace('\n', " | ")
}
