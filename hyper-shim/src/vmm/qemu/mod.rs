//! The QEMU driver: `microvm` with KVM, or TCG where KVM cannot run the guest. QEMU starts
//! paused and is driven over QMP; its agent channel is hybrid vsock from vhost-device-vsock.

mod command;
mod qmp;

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Mutex;

use crate::child::Child;
use crate::error::{Error, Result};
use crate::vmm::{Accel, VmSpec, Vmm, VmmInfo, VmmKind};
use crate::vsock::VsockBackend;

pub use command::{QemuSockets, qemu_args};

/// How long QEMU and its vsock back-end get to come up (not the guest boot).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a QEMU whose control socket failed gets to show that it exited.
const EXIT_NOTICE_TIMEOUT: Duration = Duration::from_secs(1);
/// After the grace period, how long `quit` gets before SIGKILL.
const QUIT_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Qemu {
    program: PathBuf,
    vsock_program: PathBuf,
    running: Option<Running>,
}

struct Running {
    child: Child,
    vsock: VsockBackend,
    qmp: Mutex<qmp::Qmp>,
    accel: Accel,
}

impl Qemu {
    pub fn new(program: PathBuf, vsock_program: PathBuf) -> Self {
        Self {
            program,
            vsock_program,
            running: None,
        }
    }

    fn running(&self) -> Result<&Running> {
        self.running
            .as_ref()
            .ok_or_else(|| Error::Conflict("qemu: the VM has not been created".into()))
    }
}

#[async_trait]
impl Vmm for Qemu {
    async fn create(&mut self, spec: &VmSpec) -> Result<()> {
        if self.running.is_some() {
            return Err(Error::Conflict("qemu: the VM already exists".into()));
        }
        let deadline = Instant::now() + START_TIMEOUT;
        let vsock = VsockBackend::start(&self.vsock_program, &spec.run_dir, deadline).await?;
        let qmp_path = spec.run_dir.join("qmp.sock");
        let args = qemu_args(
            spec,
            &QemuSockets {
                qmp: &qmp_path,
                vhost_vsock: &vsock.vhost_socket,
                console_log: &spec.run_dir.join("console.log"),
            },
        );
        tracing::debug!(?args, "starting qemu");
        let inherit: Vec<_> = spec.nic.iter().map(|n| n.tap.as_raw_fd()).collect();
        let child = match Child::spawn_inheriting(
            "qemu",
            &self.program,
            &args,
            &spec.run_dir.join("qemu.log"),
            &inherit,
        ) {
            Ok(c) => c,
            Err(e) => {
                vsock.stop().await;
                return Err(e);
            }
        };
        let connected = async {
            crate::wait::socket_listening(&qmp_path, deadline, &child).await?;
            qmp::Qmp::connect(&qmp_path).await
        }
        .await;
        let qmp = match connected {
            Ok(q) => q,
            Err(e) => {
                // If QEMU died by itself, its own words say more than a closed socket (the
                // socket may close a moment before its exit is seen).
                let died = tokio::time::timeout(EXIT_NOTICE_TIMEOUT, child.exited())
                    .await
                    .is_ok();
                child.kill().await;
                vsock.stop().await;
                return Err(if died { child.exited_error() } else { e });
            }
        };
        self.running = Some(Running {
            child,
            vsock,
            qmp: Mutex::new(qmp),
            accel: spec.accel,
        });
        Ok(())
    }

    async fn boot(&mut self) -> Result<()> {
        let running = self.running()?;
        running.qmp.lock().await.execute("cont").await?;
        Ok(())
    }

    /// QMP `stop`.
    async fn pause(&mut self) -> Result<()> {
        self.running()?.qmp.lock().await.execute("stop").await?;
        Ok(())
    }

    /// QMP `cont`.
    async fn resume(&mut self) -> Result<()> {
        self.running()?.qmp.lock().await.execute("cont").await?;
        Ok(())
    }

    async fn shutdown(&mut self, grace: Duration) -> Result<()> {
        let Some(running) = self.running.take() else {
            return Ok(());
        };
        if tokio::time::timeout(grace, running.child.exited())
            .await
            .is_err()
        {
            tracing::warn!("guest did not power off within {grace:?}; asking qemu to quit");
            let quit = async {
                // QEMU may close the socket before it answers `quit`.
                let _ = running.qmp.lock().await.execute("quit").await;
                running.child.exited().await;
            };
            if tokio::time::timeout(QUIT_TIMEOUT, quit).await.is_err() {
                tracing::warn!("qemu ignored quit; killing it");
                running.child.kill().await;
            }
        }
        running.vsock.stop().await;
        Ok(())
    }

    fn info(&self) -> VmmInfo {
        VmmInfo {
            kind: VmmKind::Qemu,
            accel: self.running.as_ref().map_or(Accel::Tcg, |r| r.accel),
            pid: self.running.as_ref().map_or(0, |r| r.child.pid()),
            helper_pids: self
                .running
                .as_ref()
                .map(|r| vec![r.vsock.child.pid()])
                .unwrap_or_default(),
        }
    }

    fn vsock_socket(&self) -> PathBuf {
        self.running
            .as_ref()
            .map(|r| r.vsock.uds.clone())
            .unwrap_or_default()
    }

    fn process(&self) -> Option<&Child> {
        self.running.as_ref().map(|r| &r.child)
    }
}
