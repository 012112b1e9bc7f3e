//! Noticing that a shim died, without polling: a pidfd (works for processes that are not our
//! children, i.e. shims adopted after a restart) becomes readable when the process exits.

use std::os::fd::{FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

/// Resolves when process `pid` has exited (at once if it is already gone).
pub async fn exited(pid: u32) {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        // ESRCH: already gone. Anything else (no pidfd support) leaves us unable to watch; the
        // next call on the shim then reports it gone.
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            tracing::warn!(
                pid,
                "pidfd_open: {err}; shim death is noticed on its next call"
            );
            std::future::pending::<()>().await;
        }
        return;
    }
    // SAFETY: fd is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: the OwnedFd is moved into the AsyncFd, which owns it (and so keeps it open and
    // unchanged) until it is dropped.
    match unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) } {
        Ok(async_fd) => {
            if let Err(e) = async_fd.readable().await {
                tracing::warn!(pid, "pidfd: {e}");
            }
        }
        Err(e) => {
            tracing::warn!(pid, "pidfd: {}", e.into_parts().1);
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_when_the_process_exits() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let pid = child.id();
        let waited = tokio::time::timeout(std::time::Duration::from_secs(5), exited(pid));
        // Reap concurrently so no zombie outlives the test.
        let reap = tokio::task::spawn_blocking(move || child.wait());
        waited.await.expect("pidfd became readable");
        reap.await.unwrap().unwrap();
    }
}
