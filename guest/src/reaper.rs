//! PID 1 reaps every child. Exit statuses go to whoever registered the pid; statuses of pids
//! nobody registered yet are kept briefly, for a process that exits before it is registered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Exit statuses of unregistered pids kept at most.
const KEEP_UNCLAIMED: usize = 1024;

#[derive(Default)]
struct Table {
    waiting: HashMap<i32, watch::Sender<Option<i32>>>,
    unclaimed: HashMap<i32, i32>,
}

#[derive(Clone, Default)]
pub struct Reaper {
    table: Arc<Mutex<Table>>,
}

/// The status a shell would report: the exit code, or 128 + the signal number.
pub fn exit_code(status: WaitStatus) -> Option<(i32, i32)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), code)),
        WaitStatus::Signaled(pid, sig, _) => Some((pid.as_raw(), 128 + sig as i32)),
        _ => None,
    }
}

impl Reaper {
    /// Starts reaping on SIGCHLD. Call before the first child is created.
    pub fn start(&self) -> std::io::Result<()> {
        let mut sigchld = signal(SignalKind::child())?;
        let reaper = self.clone();
        tokio::spawn(async move {
            loop {
                reaper.reap();
                if sigchld.recv().await.is_none() {
                    return;
                }
            }
        });
        Ok(())
    }

    /// Registers a pid; the receiver gets its exit code once it exits.
    pub fn register(&self, pid: i32) -> watch::Receiver<Option<i32>> {
        let mut table = self.table.lock().expect("reaper lock");
        if let Some(code) = table.unclaimed.remove(&pid) {
            return watch::channel(Some(code)).1;
        }
        let (tx, rx) = watch::channel(None);
        table.waiting.insert(pid, tx);
        rx
    }

    /// Collects every exited child without blocking.
    pub fn reap(&self) {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => status,
            };
            let Some((pid, code)) = exit_code(status) else {
                continue;
            };
            let mut table = self.table.lock().expect("reaper lock");
            match table.waiting.remove(&pid) {
                Some(tx) => {
                    tracing::debug!(pid, code, "process exited");
                    tx.send_replace(Some(code));
                }
                None => {
                    if table.unclaimed.len() >= KEEP_UNCLAIMED {
                        table.unclaimed.clear();
                    }
                    table.unclaimed.insert(pid, code);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn signals_map_to_128_plus_number() {
        let p = Pid::from_raw(7);
        assert_eq!(exit_code(WaitStatus::Exited(p, 3)), Some((7, 3)));
        assert_eq!(
            exit_code(WaitStatus::Signaled(p, Signal::SIGKILL, false)),
            Some((7, 137))
        );
    }
}
