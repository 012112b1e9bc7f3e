//! What runs in a container's init process between libcontainer's setup and the exec of the
//! user's command. The init is a clone of the agent, so it starts with the agent's state:
//!
//! - every pipe end the agent holds for other processes' stdio. A created container waits
//!   (unexec'd) for its start, and would meanwhile keep another container's stdin open, so
//!   `cat` there never sees end of file. [`validate`](Workload::validate), which libcontainer
//!   runs before that wait, closes them.
//! - Rust's SIGPIPE = ignored, which exec would pass on; containers get the default.

use std::collections::BTreeSet;
use std::os::fd::RawFd;
use std::sync::Mutex;

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};

/// The agent's own ends of container stdio pipes, open right now.
static AGENT_PIPE_ENDS: Mutex<BTreeSet<RawFd>> = Mutex::new(BTreeSet::new());

/// Marks `fd` as an agent-side pipe end until the guard drops. Declare the guard after the
/// object owning the fd, so it unregisters before the fd is closed and its number reused.
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

#[derive(Clone)]
pub struct Workload;

impl Executor for Workload {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        // SAFETY: restoring a default disposition in a single-threaded process about to exec.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        // The agent is single-threaded, so the clone copied a consistent set.
        let inherited = AGENT_PIPE_ENDS.lock().expect("pipe ends lock").clone();
        for fd in inherited {
            // SAFETY: these numbers are the agent's pipe ends, copied into this process by
            // clone; libcontainer's own descriptors have other numbers.
            unsafe { libc::close(fd) };
        }
        DefaultExecutor {}.validate(spec)
    }
}
