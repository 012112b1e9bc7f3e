//! VMs: each one is a shim process (see [`launcher`]) that hyperd talks to over gRPC
//! ([`client`]). This module boots VMs, re-adopts them after a hyperd restart, notices when a
//! shim dies ([`monitor`]) and tears VMs down so that nothing of them is left.

pub mod client;
pub mod launcher;
pub mod monitor;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use hyper_proto::shim::{CreateVmRequest, ShutdownRequest, VmState as ShimVmState};
use hyper_proto::types::{DiskSpec, Empty};

use crate::config::Config;
use crate::error::Kind;
use crate::ids;
use crate::network::Network;
use crate::store::{self, Store, VmRecord};
pub use client::Shim;
use launcher::ShimPaths;

/// A boot under TCG on a busy 2-core host can take a while (typically 2-5 s here).
const BOOT_TIMEOUT: Duration = Duration::from_secs(45);
/// What a shim gets to power its VM off before hyperd kills it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);
/// A shim that has shut its VM down exits by itself within this.
const SHIM_EXIT_GRACE: Duration = Duration::from_secs(3);
/// How long a call to an adopted shim may take before it counts as gone.
const ADOPT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmState {
    /// The shim is starting or the guest is booting.
    Booting,
    /// The guest runs; a pod may be using it (pods.vm_id) or it is idle.
    Running,
    /// The shim died or the VM could not be re-adopted; only removal is left.
    Failed,
}

impl fmt::Display for VmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VmState::Booting => "booting",
            VmState::Running => "running",
            VmState::Failed => "failed",
        })
    }
}

impl FromStr for VmState {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "booting" => VmState::Booting,
            "running" => VmState::Running,
            "failed" => VmState::Failed,
            other => return Err(format!("unknown vm state {other:?}")),
        })
    }
}

/// What a VM is for, recorded with it (the `vms.role` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmRole {
    /// A pod's, or an idle one from `/vm/create` a pod may start in.
    Pool,
    /// One build's: never given to a pod nor reachable by `/vm/...`; destroyed when hyperd
    /// starts (the build it served died with the previous hyperd).
    Build,
}

impl fmt::Display for VmRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VmRole::Pool => "pool",
            VmRole::Build => "build",
        })
    }
}

impl FromStr for VmRole {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "pool" => VmRole::Pool,
            "build" => VmRole::Build,
            other => return Err(format!("unknown vm role {other:?}")),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such vm: {0}")]
    NotFound(String),
    /// A build's VM named where a pod's is wanted (`--vm`, `/vm/kill`).
    #[error("vm {0} is a build's vm: it cannot be used or killed by its id")]
    BuildVm(String),
    #[error("vm {vm_id} is used by pod {pod_id}")]
    InUse { vm_id: String, pod_id: String },
    #[error("vm {vm_id} is {state}")]
    NotRunning { vm_id: String, state: VmState },
    #[error("start the shim: {0}")]
    Launch(String),
    #[error("vm {vm_id}: shim is gone: {message}")]
    ShimGone { vm_id: String, message: String },
    #[error("vm {vm_id}: {message}")]
    Timeout { vm_id: String, message: String },
    #[error("vm {vm_id}: {message}")]
    Shim { vm_id: String, message: String },
    /// The guest refused the request as invalid (e.g. a command that does not exist).
    #[error("{0}")]
    Rejected(String),
    #[error("{0}")]
    GuestNotFound(String),
    #[error("{0}")]
    GuestConflict(String),
    /// The shim or guest is of a build without this call.
    #[error("not supported by this vm: {0}")]
    Unsupported(String),
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl Error {
    pub fn kind(&self) -> Kind {
        match self {
            Error::NotFound(_) | Error::GuestNotFound(_) => Kind::NotFound,
            Error::InUse { .. }
            | Error::NotRunning { .. }
            | Error::GuestConflict(_)
            | Error::BuildVm(_) => Kind::Conflict,
            Error::Rejected(_) => Kind::InvalidInput,
            Error::Unsupported(_) => Kind::Unavailable,
            // A shim that cannot start is a component down (503), like one that went away.
            Error::ShimGone { .. } | Error::Timeout { .. } | Error::Launch(_) => Kind::Unavailable,
            Error::Shim { .. } | Error::Store(_) => Kind::Internal,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The VM size a pod or `/vm/create` asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VmSize {
    pub cpus: u32,
    pub memory_mib: u32,
}

pub struct Vms {
    config: Arc<Config>,
    store: Arc<Store>,
    /// Gives every pool VM its network card at boot (build VMs get none).
    network: Arc<Network>,
    shims: Mutex<HashMap<String, Shim>>,
    /// VMs being torn down on purpose: their shim's exit is not a failure.
    stopping: Mutex<HashSet<String>>,
    died: mpsc::UnboundedSender<String>,
    /// What the shim of the most recent boot chose, for `/info`.
    last_choice: Mutex<Option<VmmReport>>,
}

/// The VMM and acceleration a shim chose for its VM, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmmReport {
    pub vmm: String,
    pub acceleration: String,
    pub reason: String,
}

impl Vms {
    /// `died` receives the id of every VM whose shim exits unexpectedly.
    pub fn new(
        config: Arc<Config>,
        store: Arc<Store>,
        network: Arc<Network>,
        died: mpsc::UnboundedSender<String>,
    ) -> Arc<Self> {
        Arc::new(Self {
            config,
            store,
            network,
            shims: Mutex::default(),
            stopping: Mutex::default(),
            died,
            last_choice: Mutex::default(),
        })
    }

    /// What the most recent boot's shim chose, if a VM booted since hyperd started.
    pub fn last_choice(&self) -> Option<VmmReport> {
        self.last_choice
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn shims(&self) -> std::sync::MutexGuard<'_, HashMap<String, Shim>> {
        self.shims.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopping(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.stopping.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a shim and boots a pool VM (a pod's, or `/vm/create`'s). The VM is recorded
    /// while it boots, so a crash of hyperd during the boot leaves a record the next start
    /// cleans up.
    /// It has a NIC on hyperd's bridge (unless networking is off), so any pod can use it.
    pub async fn boot(self: &Arc<Self>, size: VmSize) -> Result<VmRecord> {
        self.boot_as(size, VmRole::Pool, true, Vec::new()).await
    }

    /// As [`Vms::boot`], for one pod: with a NIC unless its network is `none`, and with the
    /// pod's block volumes as virtio-blk disks (QEMU's microvm has no hotplug).
    pub async fn boot_for_pod(
        self: &Arc<Self>,
        size: VmSize,
        with_nic: bool,
        disks: Vec<DiskSpec>,
    ) -> Result<VmRecord> {
        self.boot_as(size, VmRole::Pool, with_nic, disks).await
    }

    /// As [`Vms::boot`], a VM recorded as a build's (no NIC): see [`VmRole::Build`].
    pub async fn boot_build(self: &Arc<Self>, size: VmSize) -> Result<VmRecord> {
        self.boot_as(size, VmRole::Build, false, Vec::new()).await
    }

    async fn boot_as(
        self: &Arc<Self>,
        size: VmSize,
        role: VmRole,
        with_nic: bool,
        disks: Vec<DiskSpec>,
    ) -> Result<VmRecord> {
        let id = ids::vm_id();
        let paths = ShimPaths::new(&self.config.run_dir, &id);
        let mut record = VmRecord {
            id: id.clone(),
            state: VmState::Booting,
            socket: paths.socket.to_string_lossy().into_owned(),
            run_dir: paths.run_dir.to_string_lossy().into_owned(),
            log: paths.log.to_string_lossy().into_owned(),
            shim_pid: 0,
            cpus: size.cpus,
            memory_mib: size.memory_mib,
            created: ids::now(),
            role,
        };
        self.store.write(|tx| store::insert_vm(tx, &record))?;
        match self
            .boot_recorded(&mut record, &paths, with_nic, disks)
            .await
        {
            Ok(()) => Ok(record),
            Err(e) => {
                tracing::error!(
                    vm_id = %id,
                    shim_log = %log_tail(Path::new(&record.log)),
                    vsock_log = %log_tail(&paths.run_dir.join("vsock.log")),
                    "boot failed: {e}"
                );
                self.destroy(&record).await;
                Err(e)
            }
        }
    }

    async fn boot_recorded(
        self: &Arc<Self>,
        record: &mut VmRecord,
        paths: &ShimPaths,
        with_nic: bool,
        disks: Vec<DiskSpec>,
    ) -> Result<()> {
        let argv = launcher::shim_argv(
            &record.id,
            paths,
            self.config.vmm,
            self.config.guest_dir.as_deref(),
        );
        record.shim_pid = launcher::spawn(&self.config.shim, argv, paths).await?;
        self.store.write(|tx| store::update_vm(tx, record))?;
        let shim = Shim::connect(&record.id, &paths.socket).await?;
        let info = shim
            .client
            .clone()
            .create_vm(CreateVmRequest {
                cpus: record.cpus,
                memory_mib: record.memory_mib,
                boot_timeout_ms: BOOT_TIMEOUT.as_millis() as u32,
                // A pool VM boots with its NIC, so a VM from `/vm/create` can serve a pod with
                // a network; the agent configures it when the pod arrives.
                nic: if with_nic {
                    self.network.nic_for(&record.id)
                } else {
                    None
                },
                disks,
                ..Default::default()
            })
            .await
            .map_err(|s| shim.error(s))?
            .into_inner();
        tracing::info!(vm_id = %record.id, boot_ms = info.boot_ms, vmm = %info.vmm, accel = %info.acceleration, reason = %info.vmm_reason, "vm booted");
        *self.last_choice.lock().unwrap_or_else(|e| e.into_inner()) = Some(VmmReport {
            vmm: info.vmm,
            acceleration: info.acceleration,
            reason: info.vmm_reason,
        });
        record.state = VmState::Running;
        self.store.write(|tx| store::update_vm(tx, record))?;
        self.shims().insert(record.id.clone(), shim);
        self.watch(record.id.clone(), record.shim_pid);
        Ok(())
    }

    /// Reports the VM to `died` when its shim exits, unless it is being torn down.
    fn watch(self: &Arc<Self>, vm_id: String, pid: u32) {
        let vms = Arc::downgrade(self);
        tokio::spawn(async move {
            monitor::exited(pid).await;
            let Some(vms) = vms.upgrade() else { return };
            vms.shims().remove(&vm_id);
            if vms.stopping().contains(&vm_id) {
                return;
            }
            tracing::error!(%vm_id, pid, "shim died");
            if vms.died.send(vm_id).is_err() {
                tracing::warn!("nobody handles dead vms any more (shutting down)");
            }
        });
    }

    /// A pod's (or idle) VM by id. Errors: [`Error::NotFound`]; [`Error::BuildVm`] for a
    /// build's VM, which nothing outside its build may use.
    pub fn get(&self, vm_id: &str) -> Result<VmRecord> {
        let vm = self
            .store
            .read(|c| store::get_vm(c, vm_id))?
            .ok_or_else(|| Error::NotFound(vm_id.to_string()))?;
        if vm.role == VmRole::Build {
            return Err(Error::BuildVm(vm.id));
        }
        Ok(vm)
    }

    /// The connected client of a running VM.
    pub fn shim(&self, vm_id: &str) -> Result<Shim> {
        if let Some(shim) = self.shims().get(vm_id) {
            return Ok(shim.clone());
        }
        let vm = self.get(vm_id)?;
        Err(Error::NotRunning {
            vm_id: vm.id,
            state: VmState::Failed,
        })
    }

    /// Marks a VM failed (its shim died).
    pub fn mark_failed(&self, vm_id: &str) -> Result<()> {
        self.store.write(|tx| {
            if let Some(mut vm) = store::get_vm(tx, vm_id)? {
                vm.state = VmState::Failed;
                store::update_vm(tx, &vm)?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Destroys the VMs of builds recorded by a previous hyperd (their builds died with it):
    /// shim, VMM, socket, run dir, log and record, as [`Vms::destroy`] does. A shim still
    /// answering is asked to power its VM off first. Call at start, before build work dirs
    /// are cleared (the VM may still be writing to them). Returns how many went.
    pub async fn destroy_orphan_builds(self: &Arc<Self>) -> Result<usize> {
        let vms = self.store.read(store::list_build_vms)?;
        for vm in &vms {
            let socket = Path::new(&vm.socket);
            if socket.exists()
                && let Ok(Ok(shim)) =
                    tokio::time::timeout(ADOPT_TIMEOUT, Shim::connect(&vm.id, socket)).await
            {
                self.shims().insert(vm.id.clone(), shim);
            }
            self.destroy(vm).await;
            tracing::info!(vm_id = %vm.id, "build vm of a build that died with hyperd destroyed");
        }
        Ok(vms.len())
    }

    /// Re-adopts every recorded pod VM (builds' VMs are not: see
    /// [`Vms::destroy_orphan_builds`]) after a start: connects to its shim and starts watching
    /// it. Returns the ids of VMs that could not be adopted (now `failed`).
    pub async fn adopt_all(self: &Arc<Self>) -> Result<Vec<String>> {
        let mut lost = Vec::new();
        for vm in self.store.read(store::list_vms)? {
            if vm.state == VmState::Failed {
                lost.push(vm.id);
                continue;
            }
            match self.adopt(&vm).await {
                Ok(()) => tracing::info!(vm_id = %vm.id, "vm re-adopted"),
                Err(e) => {
                    tracing::error!(vm_id = %vm.id, "vm lost: {e}");
                    self.kill_shim(&vm).await;
                    self.mark_failed(&vm.id)?;
                    lost.push(vm.id);
                }
            }
        }
        Ok(lost)
    }

    async fn adopt(self: &Arc<Self>, vm: &VmRecord) -> Result<()> {
        let shim = Shim::connect(&vm.id, Path::new(&vm.socket)).await?;
        let info = tokio::time::timeout(ADOPT_TIMEOUT, shim.client.clone().info(Empty {}))
            .await
            .map_err(|_| Error::ShimGone {
                vm_id: vm.id.clone(),
                message: "no answer to Info".into(),
            })?
            .map_err(|s| shim.error(s))?
            .into_inner();
        if info.state != ShimVmState::Running as i32 || vm.state != VmState::Running {
            return Err(Error::ShimGone {
                vm_id: vm.id.clone(),
                message: format!(
                    "the vm is {} (hyperd last saw it {})",
                    ShimVmState::try_from(info.state)
                        .map(|s| s.as_str_name().to_lowercase())
                        .unwrap_or_default(),
                    vm.state
                ),
            });
        }
        self.shims().insert(vm.id.clone(), shim);
        self.watch(vm.id.clone(), info.shim_pid);
        Ok(())
    }

    /// Powers the VM off and removes every trace of it: shim, socket, run dir, log, record.
    /// Best effort at every step (each failure is logged); the record goes last.
    pub async fn destroy(&self, vm: &VmRecord) {
        self.stopping().insert(vm.id.clone());
        let shim = self.shims().remove(&vm.id);
        if let Some(shim) = shim {
            let req = ShutdownRequest {
                grace_ms: SHUTDOWN_GRACE.as_millis() as u32,
            };
            match tokio::time::timeout(SHUTDOWN_TIMEOUT, shim.client.clone().shutdown(req)).await {
                Ok(Ok(_)) => {}
                Ok(Err(s)) => tracing::warn!(vm_id = %vm.id, "shutdown: {}", s.message()),
                Err(_) => tracing::warn!(vm_id = %vm.id, "shutdown timed out"),
            }
        }
        self.kill_shim(vm).await;
        for path in [&vm.socket, &vm.log] {
            remove_path(Path::new(path));
        }
        remove_path(Path::new(&vm.run_dir));
        if let Err(e) = self.store.write(|tx| store::delete_vm(tx, &vm.id)) {
            tracing::warn!(vm_id = %vm.id, "forget vm: {e}");
        }
        // The id stays in `stopping`: the monitor may see the exit only after this returns,
        // and ids are never reused.
    }

    /// Makes sure the VM's shim process is gone: it gets a moment to exit by itself (after a
    /// Shutdown), then SIGKILL; waits for it.
    async fn kill_shim(&self, vm: &VmRecord) {
        let socket = Path::new(&vm.socket);
        if vm.shim_pid == 0 || !launcher::is_shim(vm.shim_pid, socket) {
            return;
        }
        if tokio::time::timeout(SHIM_EXIT_GRACE, monitor::exited(vm.shim_pid))
            .await
            .is_ok()
        {
            return;
        }
        // SAFETY: plain kill(2); the pid was just checked to be this VM's shim.
        if unsafe { libc::kill(vm.shim_pid as i32, libc::SIGKILL) } != 0 {
            tracing::warn!(vm_id = %vm.id, "kill shim: {}", std::io::Error::last_os_error());
        }
        if tokio::time::timeout(Duration::from_secs(10), monitor::exited(vm.shim_pid))
            .await
            .is_err()
        {
            tracing::warn!(vm_id = %vm.id, pid = vm.shim_pid, "shim still alive after SIGKILL");
        }
    }
}

/// The last lines of a log, for error reports.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join(" | ")
}

fn remove_path(path: &Path) {
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match removed {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("remove {}: {e}", path.display()),
    }
}
