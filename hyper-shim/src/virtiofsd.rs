//! virtiofsd: serves the VM's shared directory (container rootfs) over vhost-user-fs.
//! One per VM; it exits by itself when the VMM disconnects.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::child::Child;
use crate::error::Result;

pub struct Virtiofsd {
    pub child: Child,
    pub socket: PathBuf,
}

/// virtiofsd's arguments. `chroot` sandboxing: containers are bind-mounted into the shared
/// directory after virtiofsd starts, and a chroot (unlike its mount-namespace sandbox) sees
/// those mounts.
pub fn args(socket: &Path, shared_dir: &Path) -> Vec<String> {
    vec![
        format!("--socket-path={}", socket.display()),
        format!("--shared-dir={}", shared_dir.display()),
        "--sandbox=chroot".into(),
        "--cache=auto".into(),
        "--log-level=warn".into(),
    ]
}

impl Virtiofsd {
    pub async fn start(
        program: &Path,
        run_dir: &Path,
        shared_dir: &Path,
        deadline: Instant,
    ) -> Result<Self> {
        let socket = run_dir.join("virtiofs.sock");
        let child = Child::spawn(
            "virtiofsd",
            program,
            &args(&socket, shared_dir),
            &run_dir.join("virtiofsd.log"),
        )?;
        crate::wait::socket_appears(&socket, deadline, &child).await?;
        Ok(Self { child, socket })
    }

    /// Stops virtiofsd and removes the socket and pid file it leaves behind when killed.
    pub async fn stop(&self) {
        self.child.stop(Duration::from_secs(2)).await;
        let mut pid_file = self.socket.clone().into_os_string();
        pid_file.push(".pid");
        for path in [self.socket.as_path(), Path::new(&pid_file)] {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("remove {}: {e}", path.display()),
            }
        }
    }
}
