//! Starting a shim so that it outlives hyperd: its own session (setsid), stdio to a log file,
//! no tie to hyperd's lifetime. While hyperd runs it reaps the shim when it exits; after a
//! hyperd restart the shim is init's child.
//!
//! [`ShimPaths`] and [`shim_argv`] are the plan (pure); [`spawn`] executes it.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::sync::oneshot;

use super::Error;
use crate::config::VmmChoice;

/// A shim gets this long to create its socket.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(20);

/// Where one VM's shim keeps its socket, run dir and log (all under hyperd's run dir).
#[derive(Debug, Clone, PartialEq)]
pub struct ShimPaths {
    pub socket: PathBuf,
    pub run_dir: PathBuf,
    pub log: PathBuf,
}

impl ShimPaths {
    pub fn new(run_root: &Path, vm_id: &str) -> Self {
        let vms = run_root.join("vms");
        Self {
            socket: vms.join(format!("{vm_id}.sock")),
            run_dir: vms.join(vm_id),
            log: vms.join(format!("{vm_id}.log")),
        }
    }
}

pub fn shim_argv(
    vm_id: &str,
    paths: &ShimPaths,
    vmm: VmmChoice,
    guest_dir: Option<&Path>,
) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec![
        format!("--socket={}", paths.socket.display()).into(),
        format!("--run-dir={}", paths.run_dir.display()).into(),
        format!("--id={vm_id}").into(),
        format!("--vmm={}", vmm.as_arg()).into(),
    ];
    if let Some(dir) = guest_dir {
        argv.push(format!("--guest-dir={}", dir.display()).into());
    }
    argv
}

/// Starts the shim detached and waits for its socket. Returns the shim's pid.
pub async fn spawn(program: &Path, argv: Vec<OsString>, paths: &ShimPaths) -> Result<u32, Error> {
    let io = |what: &str, e: std::io::Error| Error::Launch(format!("{what}: {e}"));
    if let Some(parent) = paths.socket.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io("create the vm dir", e))?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&paths.log)
        .map_err(|e| io(&format!("open {}", paths.log.display()), e))?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(argv)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| io("log", e))?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe and touches only the child being set up.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = tokio::process::Command::from(cmd)
        .spawn()
        .map_err(|e| io(&format!("start {}", program.display()), e))?;
    let pid = child
        .id()
        .ok_or_else(|| Error::Launch("the shim exited at once".into()))?;
    let (exited_tx, mut exited) = oneshot::channel();
    tokio::spawn(async move {
        let status = child.wait().await;
        tracing::debug!(pid, ?status, "shim exited");
        if exited_tx.send(status).is_err() {
            // Nobody waits for the socket any more: the normal case.
        }
    });
    let deadline = tokio::time::Instant::now() + SOCKET_TIMEOUT;
    while !paths.socket.exists() {
        if tokio::time::Instant::now() > deadline {
            return Err(Error::Launch(format!(
                "shim did not create {} in {SOCKET_TIMEOUT:?}",
                paths.socket.display()
            )));
        }
        tokio::select! {
            status = &mut exited => {
                let tail = std::fs::read_to_string(&paths.log).unwrap_or_default();
                let tail: String = tail.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("; ");
                return Err(Error::Launch(format!("shim exited ({status:?}): {tail}")));
            }
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
    Ok(pid)
}

/// Whether `pid` is alive and is the shim serving `socket` (not a recycled pid).
pub fn is_shim(pid: u32, socket: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let needle = format!("--socket={}", socket.display());
    cmdline
        .split(|b| *b == 0)
        .any(|arg| arg == needle.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_argv_for_a_vm() {
        let p = ShimPaths::new(Path::new("/run/hyper"), "vm-abc");
        assert_eq!(p.socket, PathBuf::from("/run/hyper/vms/vm-abc.sock"));
        assert_eq!(p.run_dir, PathBuf::from("/run/hyper/vms/vm-abc"));
        let argv = shim_argv("vm-abc", &p, VmmChoice::Qemu, Some(Path::new("/g")));
        assert_eq!(
            argv,
            vec![
                OsString::from("--socket=/run/hyper/vms/vm-abc.sock"),
                "--run-dir=/run/hyper/vms/vm-abc".into(),
                "--id=vm-abc".into(),
                "--vmm=qemu".into(),
                "--guest-dir=/g".into(),
            ]
        );
    }

    #[test]
    fn a_recycled_pid_is_not_our_shim() {
        assert!(!is_shim(std::process::id(), Path::new("/no/such.sock")));
    }
}
