//! What runs in a container process between libcontainer's setup and the exec of the user's
//! command. The process is a clone of the agent, so it starts with the agent's state:
//!
//! - every pipe end the agent holds for other processes' stdio. A created container waits
//!   (unexec'd) for its start, and would meanwhile keep another container's stdin open, so
//!   `cat` there never sees end of file. [`validate`](Workload::validate), which libcontainer
//!   runs before that wait, closes them.
//! - Rust's SIGPIPE = ignored, which exec would pass on; containers get the default.
//!
//! A container's init stays as the pid namespace's PID 1 (as `docker run --init` does) and
//! runs the command as its child: the kernel ignores signals a namespace's PID 1 sends itself,
//! so without it `sh -c 'kill -9 $$'` would survive and report 0. The init forwards every
//! signal to the command, reaps orphans, and exits with the command's status (128 + N when
//! killed by signal N). A command that cannot be executed ends with 127 (not found) or 126
//! (not executable) and a message on its stderr, as a shell reports it.
//!
//! With a terminal, the command becomes a session leader with the pty as its controlling
//! terminal, so job control and Ctrl-C work. libcontainer made that pty in the container's
//! devpts and made it the controlling terminal of its own session leader, the init here; the
//! init gives it up so that the command can take it.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io::Write;
use std::os::fd::RawFd;
use std::sync::Mutex;

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, setsid};

/// Exit status of a command that was not found (POSIX shells, Docker).
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit status of a command found but not executable.
pub const EXIT_NOT_EXECUTABLE: i32 = 126;

/// The agent's own ends of container stdio pipes and ptys, open right now.
static AGENT_PIPE_ENDS: Mutex<BTreeSet<RawFd>> = Mutex::new(BTreeSet::new());

/// Marks `fd` as an agent-side pipe end until the guard drops. Declare the guard first in a
/// struct that owns the fd (fields drop in declaration order), so it unregisters before the fd
/// is closed and its number reused.
pub struct PipeEndGuard(RawFd);

impl PipeEndGuard {
    pub fn new(fd: RawFd) -> Self {
        AGENT_PIPE_ENDS.lock().expect("pipe ends lock").insert(fd);
        Self(fd)
    }
}

impl Drop for PipeEndGuard {
    fn drop(&mut self) {
        AGENT_PIPE_ENDS
            .lock()
            .expect("pipe ends lock")
            .remove(&self.0);
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Workload {
    /// The container's init (PID 1 of its namespace), not an exec.
    pub init: bool,
    /// Stdio is a pty slave that must become the controlling terminal.
    pub terminal: bool,
}

impl Executor for Workload {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        // SAFETY: restoring a default disposition in a single-threaded process about to exec.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        let args: Vec<String> = spec
            .process()
            .as_ref()
            .and_then(|p| p.args().clone())
            .unwrap_or_default();
        if !self.init {
            // libcontainer made the exec a session leader with the pty as its terminal
            // already; this only says so if it did not.
            if self.terminal {
                take_terminal();
            }
            exec_command(&args);
        }
        if self.terminal {
            release_terminal();
        }
        let all = SigSet::all();
        let mut before = SigSet::empty();
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(&all), Some(&mut before))
            .map_err(|e| ExecutorError::Other(format!("block signals: {e}")))?;
        // SAFETY: the process is single-threaded (a clone of the agent's one thread).
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
                if self.terminal {
                    let _ = setsid();
                    take_terminal();
                }
                exec_command(&args)
            }
            Ok(ForkResult::Parent { child }) => supervise(child, &all),
            Err(e) => Err(ExecutorError::Other(format!("fork the command: {e}"))),
        }
    }

    fn validate(&self, _spec: &Spec) -> Result<(), ExecutorValidationError> {
        // The agent is single-threaded, so the clone copied a consistent set.
        let inherited = AGENT_PIPE_ENDS.lock().expect("pipe ends lock").clone();
        for fd in inherited {
            // SAFETY: these numbers are the agent's pipe ends, copied into this process by
            // clone; libcontainer's own descriptors have other numbers.
            unsafe { libc::close(fd) };
        }
        // No executable check here: a missing command must start and end with 127, not fail
        // the container's creation.
        Ok(())
    }
}

/// Detaches this session leader from its controlling terminal, which a terminal may belong to
/// only one session at a time. The kernel then sends SIGHUP and SIGCONT to the terminal's
/// foreground group, this process's own: SIGHUP is ignored meanwhile.
fn release_terminal() {
    // SAFETY: signal dispositions and a plain ioctl in a single-threaded process.
    unsafe {
        let previous = libc::signal(libc::SIGHUP, libc::SIG_IGN);
        if libc::ioctl(0, libc::TIOCNOTTY) != 0 {
            let _ = writeln!(
                std::io::stderr(),
                "hyper-agent: cannot release the controlling terminal: {}",
                std::io::Error::last_os_error()
            );
        }
        libc::signal(libc::SIGHUP, previous);
    }
}

/// Makes stdin (a pty slave) the controlling terminal of this session.
fn take_terminal() {
    // SAFETY: plain ioctl on fd 0.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
        let _ = writeln!(
            std::io::stderr(),
            "hyper-agent: cannot set the controlling terminal: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The exit status and stderr message for a failed exec of `command`.
pub fn exec_failure(command: &str, errno: Errno) -> (i32, String) {
    match errno {
        Errno::ENOENT | Errno::ENOTDIR if command.contains('/') => (
            EXIT_NOT_FOUND,
            format!("{command}: no such file or directory"),
        ),
        Errno::ENOENT | Errno::ENOTDIR => (
            EXIT_NOT_FOUND,
            format!("{command}: executable file not found in $PATH"),
        ),
        Errno::EACCES | Errno::EISDIR | Errno::ENOEXEC => (
            EXIT_NOT_EXECUTABLE,
            format!("{command}: permission denied: not an executable file"),
        ),
        other => (
            EXIT_NOT_EXECUTABLE,
            format!("{command}: cannot execute: {}", other.desc().to_lowercase()),
        ),
    }
}

/// Replaces this process with the command (looked up in $PATH, as execvp does); on failure
/// prints why on stderr and exits 127 or 126.
fn exec_command(args: &[String]) -> ! {
    let command = args.first().map(String::as_str).unwrap_or("");
    let errno = match args
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(argv) if !argv.is_empty() => match nix::unistd::execvp(&argv[0], &argv) {
            Err(e) => e,
        },
        _ => Errno::ENOENT,
    };
    let (code, message) = exec_failure(command, errno);
    let _ = writeln!(std::io::stderr(), "{message}");
    // SAFETY: ends this process without running the agent's atexit handlers.
    unsafe { libc::_exit(code) }
}

/// PID 1 of the container: forwards signals to the command and reaps every child until the
/// command exits, then exits with its status.
fn supervise(command: Pid, signals: &SigSet) -> ! {
    // This process never execs, so close-on-exec never closes what it inherited from the
    // agent: the stdio the command owns now, and the agent's own descriptors (among them
    // this container's stdin pipe, whose end of file the command would never see).
    // SAFETY: closes every descriptor of this process; it uses none from here on.
    unsafe { libc::close_range(0, libc::c_uint::MAX, 0) };
    loop {
        let signal = match signals.wait() {
            Ok(s) => s,
            Err(_) => continue,
        };
        if signal != Signal::SIGCHLD {
            let _ = kill(command, signal);
            continue;
        }
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == command => {
                    // SAFETY: ends this process with the command's status.
                    unsafe { libc::_exit(code) }
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == command => {
                    // SAFETY: as above.
                    unsafe { libc::_exit(128 + sig as i32) }
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_failures_map_to_shell_statuses() {
        assert_eq!(
            exec_failure("nosuch", Errno::ENOENT),
            (127, "nosuch: executable file not found in $PATH".into())
        );
        assert_eq!(
            exec_failure("/no/such", Errno::ENOENT),
            (127, "/no/such: no such file or directory".into())
        );
        assert_eq!(exec_failure("/etc/passwd", Errno::EACCES).0, 126);
    }
}
