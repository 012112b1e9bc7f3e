//! The Cloud Hypervisor driver: `cloud-hypervisor --api-socket <run dir>/api.sock`, driven only
//! through its REST API ([`api`]); the VM is defined by one `vm.create` body ([`command`]).
//! CH's built-in hybrid vsock is the agent channel, its event monitor ([`events`]) turns a
//! guest reboot or panic into a dead VMM at once, and teardown goes `vm.shutdown`,
//! `vm.delete`, `vmm.shutdown`, then SIGKILL, leaving no process or socket behind.

pub mod api;
pub mod command;
pub mod events;
#[cfg(test)]
mod openapi_check;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::child::{Child, log_tail};
use crate::error::{Error, Result};
use crate::vmm::{Accel, VmSpec, Vmm, VmmInfo, VmmKind};

pub use api::{ApiClient, VmmPingResponse};
pub use command::{ChPaths, ch_args, probe_config, vm_config};

/// How long CH gets to bring its API socket up (not the guest boot).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Each teardown call gets this long; then the next step, then SIGKILL.
const TEARDOWN_STEP_TIMEOUT: Duration = Duration::from_secs(3);
/// The oldest release whose API we drive (payload-style `vm.create`, `vmm.ping` with a
/// version, the event monitor all predate it); older ones are refused.
pub const MIN_MAJOR_VERSION: u32 = 40;
/// The release the driver was written and tested against (API crate version).
pub const TESTED_MAJOR_VERSION: u32 = 54;
/// What our guest agent prints first as PID 1 (`guest/src/lib.rs`): the boot probe's proof
/// that the guest reached userspace.
pub const GUEST_USERSPACE_MARKER: &str = "hyper-agent: /init started";

/// The major version CH reports (`54.0.0`, or `v40.0` from older builds).
pub fn major_version(version: &str) -> Option<u32> {
    version
        .trim()
        .trim_start_matches('v')
        .split(['.', '-'])
        .next()?
        .parse()
        .ok()
}

/// Refuses CH releases whose API we do not drive, with a message that says what to install.
pub fn check_version(pong: &VmmPingResponse) -> Result<()> {
    let shown = if pong.build_version.is_empty() {
        pong.version.clone()
    } else {
        format!("{} (API {})", pong.build_version, pong.version)
    };
    match major_version(&pong.version) {
        Some(major) if major >= MIN_MAJOR_VERSION => {
            if major > TESTED_MAJOR_VERSION {
                tracing::warn!(
                    "cloud-hypervisor {shown} is newer than the v{TESTED_MAJOR_VERSION} hyper-shim was tested with"
                );
            }
            Ok(())
        }
        Some(_) => Err(Error::Unavailable(format!(
            "cloud-hypervisor {shown} is not supported: hyper-shim needs v{MIN_MAJOR_VERSION}.0 or \
             newer (tested with v{TESTED_MAJOR_VERSION})"
        ))),
        None => Err(Error::Unavailable(format!(
            "cloud-hypervisor reports an unreadable version {:?}: hyper-shim needs \
             v{MIN_MAJOR_VERSION}.0 or newer",
            pong.version
        ))),
    }
}

/// A running CH process with its API up, its version accepted and its events watched.
struct Instance {
    child: Arc<Child>,
    api: ApiClient,
    paths: ChPaths,
    monitor: tokio::task::JoinHandle<()>,
}

fn remove_stale(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("remove {}", path.display()), e)),
    }
}

impl Instance {
    async fn start(program: &Path, dir: &Path) -> Result<Self> {
        let deadline = Instant::now() + START_TIMEOUT;
        let paths = ChPaths::in_dir(dir);
        // CH refuses to bind over existing sockets.
        remove_stale(&paths.api_socket)?;
        remove_stale(&paths.vsock)?;
        events::make_fifo(&paths.events)?;
        // Open our end first so CH's open for writing does not block.
        let events = events::EventStream::open(&paths.events)?;
        let child = match Child::spawn("cloud-hypervisor", program, &ch_args(&paths), &paths.log) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                drop(events);
                remove_stale(&paths.events)?;
                return Err(e);
            }
        };
        let monitor = events.watch(child.clone(), paths.log.clone());
        let instance = Self {
            api: ApiClient::new(paths.api_socket.clone()),
            child,
            paths,
            monitor,
        };
        match instance.handshake(deadline).await {
            Ok(()) => Ok(instance),
            Err(e) => {
                let e = instance.error_or_exit(e);
                instance.stop(Duration::ZERO).await;
                Err(e)
            }
        }
    }

    async fn handshake(&self, deadline: Instant) -> Result<()> {
        crate::wait::socket_listening(&self.paths.api_socket, deadline, &self.child).await?;
        // The socket file exists from bind(); connections are refused until listen().
        let pong =
            crate::wait::wait_until("cloud-hypervisor api", deadline, &[&self.child], || async {
                match self.api.ping().await {
                    Err(Error::Unavailable(e)) => {
                        tracing::trace!("cloud-hypervisor api not up yet: {e}");
                        None
                    }
                    answer => Some(answer),
                }
            })
            .await??;
        check_version(&pong)?;
        tracing::info!(
            pid = self.child.pid(),
            version = %pong.version,
            build = %pong.build_version,
            "cloud-hypervisor started"
        );
        Ok(())
    }

    /// CH's own words (its exit status and log) say more than a failed call to a dead CH.
    fn error_or_exit(&self, e: Error) -> Error {
        if self.child.exit_status().is_some() {
            self.child.exited_error()
        } else {
            e
        }
    }

    /// One teardown call, bounded; failures are expected in some states and only logged.
    async fn step(&self, what: &str, call: impl std::future::Future<Output = Result<()>>) {
        match tokio::time::timeout(TEARDOWN_STEP_TIMEOUT, call).await {
            Ok(Ok(())) => tracing::info!(pid = self.child.pid(), "cloud-hypervisor {what}"),
            Ok(Err(e)) => tracing::debug!("cloud-hypervisor {what}: {e}"),
            Err(_) => tracing::warn!("cloud-hypervisor {what}: no answer"),
        }
    }

    /// Waits `grace` for CH to exit by itself (the guest powered off), then shuts the VM down
    /// and deletes it, asks CH to exit, and kills it if it does not. Removes its files.
    async fn stop(&self, grace: Duration) {
        if tokio::time::timeout(grace, self.child.exited())
            .await
            .is_err()
        {
            if !grace.is_zero() {
                tracing::warn!("guest did not power off within {grace:?}; shutting it down");
            }
            self.step("vm shut down", self.api.shutdown_vm()).await;
            self.step("vm deleted", self.api.delete_vm()).await;
            self.step("vmm shut down", self.api.shutdown_vmm()).await;
            if tokio::time::timeout(TEARDOWN_STEP_TIMEOUT, self.child.exited())
                .await
                .is_err()
            {
                tracing::warn!(
                    pid = self.child.pid(),
                    "cloud-hypervisor did not exit; killing it"
                );
                self.child.kill().await;
            }
        }
        self.monitor.abort();
        for path in [
            &self.paths.api_socket,
            &self.paths.api_lock,
            &self.paths.vsock,
            &self.paths.events,
        ] {
            if let Err(e) = remove_stale(path) {
                tracing::warn!("{e}");
            }
        }
    }
}

pub struct CloudHypervisor {
    program: PathBuf,
    running: Option<Instance>,
}

impl CloudHypervisor {
    pub fn new(program: PathBuf) -> Self {
        Self {
            program,
            running: None,
        }
    }

    fn running(&self) -> Result<&Instance> {
        self.running
            .as_ref()
            .ok_or_else(|| Error::Conflict("cloud-hypervisor: the VM has not been created".into()))
    }

    /// The typed API of the running VMM, for what the trait does not cover (pause, resume,
    /// counters, hot-plug).
    pub fn api(&self) -> Result<&ApiClient> {
        Ok(&self.running()?.api)
    }
}

#[async_trait]
impl Vmm for CloudHypervisor {
    async fn create(&mut self, spec: &VmSpec) -> Result<()> {
        if self.running.is_some() {
            return Err(Error::Conflict(
                "cloud-hypervisor: the VM already exists".into(),
            ));
        }
        if spec.accel != Accel::Kvm {
            return Err(Error::InvalidArgument(format!(
                "cloud-hypervisor runs guests with kvm only, not {}",
                spec.accel
            )));
        }
        let instance = Instance::start(&self.program, &spec.run_dir).await?;
        let config = vm_config(spec, &instance.paths);
        tracing::debug!(?config, "vm.create");
        let created = async {
            instance.api.create(&config).await?;
            if let Some(nic) = &spec.nic {
                // Cold-added before boot, so the guest finds it at boot like any other device.
                let net = api::NetConfig::for_tap_fd(&nic.mac, nic.mtu);
                instance.api.add_net_with_fd(&net, nic.tap.as_fd()).await?;
            }
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = created {
            let e = instance.error_or_exit(e);
            instance.stop(Duration::ZERO).await;
            return Err(e);
        }
        tracing::info!(pid = instance.child.pid(), "cloud-hypervisor vm created");
        self.running = Some(instance);
        Ok(())
    }

    async fn boot(&mut self) -> Result<()> {
        let instance = self.running()?;
        let booted = async {
            instance.api.boot().await?;
            let info = instance.api.info().await?;
            if info.state != api::VmState::Running {
                return Err(Error::Vmm {
                    vmm: api::VMM,
                    message: format!("vm.boot: the vm is {:?}, not running", info.state),
                });
            }
            Ok(())
        }
        .await;
        booted.map_err(|e| instance.error_or_exit(e))?;
        tracing::info!(
            pid = instance.child.pid(),
            "cloud-hypervisor vm booted (vm.info: Running)"
        );
        Ok(())
    }

    /// `vm.pause`.
    async fn pause(&mut self) -> Result<()> {
        let instance = self.running()?;
        instance
            .api
            .pause()
            .await
            .map_err(|e| instance.error_or_exit(e))
    }

    /// `vm.resume`.
    async fn resume(&mut self) -> Result<()> {
        let instance = self.running()?;
        instance
            .api
            .resume()
            .await
            .map_err(|e| instance.error_or_exit(e))
    }

    async fn shutdown(&mut self, grace: Duration) -> Result<()> {
        if let Some(instance) = self.running.take() {
            instance.stop(grace).await;
        }
        Ok(())
    }

    fn info(&self) -> VmmInfo {
        VmmInfo {
            kind: VmmKind::CloudHypervisor,
            accel: Accel::Kvm,
            pid: self.running.as_ref().map_or(0, |r| r.child.pid()),
            helper_pids: vec![],
        }
    }

    fn vsock_socket(&self) -> PathBuf {
        self.running
            .as_ref()
            .map(|r| r.paths.vsock.clone())
            .unwrap_or_default()
    }

    fn process(&self) -> Option<&Child> {
        self.running.as_ref().map(|r| &*r.child)
    }
}

/// What a boot probe found.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeOutcome {
    pub booted: bool,
    pub detail: String,
}

/// Boots our guest under CH with nothing attached and waits up to `timeout` for the agent's
/// first words on the serial console. `dir` is scratch space, removed afterwards; the CH
/// process is gone when this returns.
pub async fn probe(
    program: &Path,
    kernel: &Path,
    initrd: &Path,
    dir: &Path,
    timeout: Duration,
) -> ProbeOutcome {
    if let Err(e) = std::fs::create_dir_all(dir) {
        return ProbeOutcome {
            booted: false,
            detail: format!("mkdir {}: {e}", dir.display()),
        };
    }
    let outcome = probe_in(program, kernel, initrd, dir, timeout).await;
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!("remove {}: {e}", dir.display());
    }
    match outcome {
        Ok(()) => ProbeOutcome {
            booted: true,
            detail: "the guest reached userspace".into(),
        },
        Err(e) => ProbeOutcome {
            booted: false,
            detail: e.to_string(),
        },
    }
}

async fn probe_in(
    program: &Path,
    kernel: &Path,
    initrd: &Path,
    dir: &Path,
    timeout: Duration,
) -> Result<()> {
    let instance = Instance::start(program, dir).await?;
    let ran = async {
        let config = probe_config(
            kernel,
            initrd,
            "console=ttyS0 panic=-1 reboot=t",
            &instance.paths,
        );
        instance.api.create(&config).await?;
        instance.api.boot().await?;
        let console = instance.paths.console_log.clone();
        let reached = crate::wait::wait_until(
            "guest userspace",
            Instant::now() + timeout,
            &[&instance.child],
            || async {
                std::fs::read_to_string(&console)
                    .is_ok_and(|s| s.contains(GUEST_USERSPACE_MARKER))
                    .then_some(())
            },
        )
        .await;
        reached.map_err(|e| match e {
            Error::Timeout(msg) => Error::Timeout(format!(
                "{msg}; last console output: {}",
                last_line(&log_tail(&console))
            )),
            e => e,
        })
    }
    .await
    .map_err(|e| instance.error_or_exit(e));
    instance.stop(Duration::ZERO).await;
    ran
}

fn last_line(tail: &str) -> String {
    let line = tail.rsplit(" | ").next().unwrap_or("").trim();
    if line.is_empty() {
        "(none)".into()
    } else {
        line.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pong(version: &str, build: &str) -> VmmPingResponse {
        VmmPingResponse {
            version: version.into(),
            build_version: build.into(),
            pid: None,
            features: vec![],
        }
    }

    #[test]
    fn versions_are_read_from_both_spellings() {
        assert_eq!(major_version("54.0.0"), Some(54));
        assert_eq!(major_version("v40.0"), Some(40));
        assert_eq!(major_version("v53.0-246-gae44c2971-dirty"), Some(53));
        assert_eq!(major_version("unknown"), None);
    }

    #[test]
    fn old_and_unreadable_versions_are_refused_clearly() {
        assert!(check_version(&pong("54.0.0", "v53.0-246-gae44c2971-dirty")).is_ok());
        assert!(check_version(&pong("v40.0", "")).is_ok());
        let e = check_version(&pong("v39.0", "v39.0")).unwrap_err();
        assert!(matches!(e, Error::Unavailable(_)));
        assert_eq!(
            e.to_string(),
            "cloud-hypervisor v39.0 (API v39.0) is not supported: hyper-shim needs v40.0 or newer \
             (tested with v54)"
        );
        let e = check_version(&pong("", "")).unwrap_err();
        assert!(e.to_string().contains("unreadable version"), "{e}");
    }

    /// The probe waits for what the agent really prints first.
    #[test]
    fn the_probe_marker_is_what_the_agent_prints() {
        let agent =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../guest/src/lib.rs"))
                .unwrap();
        let printed = GUEST_USERSPACE_MARKER.trim_start_matches("hyper-agent: ");
        assert!(
            agent.contains(&format!("\"hyper-agent: {printed}")),
            "guest/src/lib.rs no longer prints {GUEST_USERSPACE_MARKER:?}"
        );
    }

    #[test]
    fn the_last_console_line_is_named() {
        assert_eq!(
            last_line("a | b | NX protection: active"),
            "NX protection: active"
        );
        assert_eq!(last_line(""), "(none)");
    }

    #[tokio::test]
    async fn a_missing_binary_fails_the_probe_and_leaves_no_scratch() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join("probe");
        let out = probe(
            Path::new("/no/such/cloud-hypervisor"),
            Path::new("/k"),
            Path::new("/i"),
            &scratch,
            Duration::from_secs(1),
        )
        .await;
        assert!(!out.booted);
        assert!(
            out.detail.contains("/no/such/cloud-hypervisor"),
            "{}",
            out.detail
        );
        assert!(!scratch.exists());
    }

    #[tokio::test]
    async fn tcg_is_refused_before_anything_starts() {
        let dir = tempfile::tempdir().unwrap();
        let mut ch = CloudHypervisor::new("/no/such/cloud-hypervisor".into());
        let spec = VmSpec {
            cpus: 1,
            memory_mib: 256,
            kernel: "/k".into(),
            initrd: "/i".into(),
            cmdline: String::new(),
            accel: Accel::Tcg,
            virtiofs_socket: "/v".into(),
            run_dir: dir.path().into(),
            nic: None,
            disks: Vec::new(),
        };
        let e = ch.create(&spec).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "cloud-hypervisor runs guests with kvm only, not tcg"
        );
        assert!(ch.process().is_none());
    }
}
