//! The one VM a shim owns: its lifecycle (create, boot, pause, resume, shutdown), its helpers,
//! and the container calls relayed to the guest agent.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Notify};

use hyper_proto::agent::{ContainerRequest, CreateContainerRequest};
use hyper_proto::shim::{AddContainerRequest, CreateVmRequest, VmInfo, VmState};
use hyper_proto::types::{
    ContainerStats, Empty, EtcFiles, ExecRequest, PodNetwork, ProcessRef, ResizeRequest,
    SignalRequest,
};

use crate::agent::AgentClient;
use crate::child::log_tail;
use crate::config::{ShimConfig, find_program};
use crate::disk;
use crate::error::{Error, Result};
use crate::share::{RootfsSource, SharedDir, guest_rootfs, open_volumes};
use crate::tap::{self, Tap};
use crate::virtiofsd::Virtiofsd;
use crate::vmm::{self, VmSpec, Vmm};
use crate::vsock::GuestPortListener;

pub const DEFAULT_CPUS: u32 = 1;
pub const DEFAULT_MEMORY_MIB: u32 = 256;
pub const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const MAX_CPUS: u32 = 64;
const MIN_MEMORY_MIB: u32 = 64;
const MAX_MEMORY_MIB: u32 = 1 << 20;
/// Helpers (virtiofsd) get this long to come up.
const HELPER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Agent calls that should answer promptly (all but Wait and Attach) get this long.
const AGENT_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a failed Wait looks for the VMM's exit before reporting the agent's own error.
const CRASH_NOTICE_TIMEOUT: Duration = Duration::from_secs(2);
/// The power-off request gets this long; the VM may vanish before it answers.
const POWER_OFF_TIMEOUT: Duration = Duration::from_secs(2);

struct Running {
    vmm: Box<dyn Vmm>,
    virtiofsd: Virtiofsd,
}

struct Lifecycle {
    state: VmState,
    running: Option<Running>,
    info: VmInfo,
}

pub struct Vm {
    config: ShimConfig,
    share: SharedDir,
    lifecycle: Mutex<Lifecycle>,
    agent: RwLock<Option<AgentClient>>,
    stopping: AtomicBool,
    /// The VMM froze the guest: agent calls would hang, so they fail at once.
    paused: AtomicBool,
    /// Notified when the shim's work is over: the VM was shut down, or its VMM died.
    ended: Notify,
    /// Why the VM ended on its own, if it did.
    crash: tokio::sync::watch::Sender<Option<String>>,
}

/// A validated CreateVm request.
#[derive(Debug, PartialEq)]
pub struct VmShape {
    pub cpus: u32,
    pub memory_mib: u32,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub boot_timeout: Duration,
}

pub fn vm_shape(req: &CreateVmRequest, guest_dir: &Path) -> Result<VmShape> {
    let cpus = if req.cpus == 0 {
        DEFAULT_CPUS
    } else {
        req.cpus
    };
    if cpus > MAX_CPUS {
        return Err(Error::InvalidArgument(format!(
            "cpus {cpus}: at most {MAX_CPUS}"
        )));
    }
    let memory_mib = if req.memory_mib == 0 {
        DEFAULT_MEMORY_MIB
    } else {
        req.memory_mib
    };
    if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&memory_mib) {
        return Err(Error::InvalidArgument(format!(
            "memory {memory_mib} MiB: must be between {MIN_MEMORY_MIB} and {MAX_MEMORY_MIB}"
        )));
    }
    let file = |given: &str, default: &str, what: &str| -> Result<PathBuf> {
        let path = if given.is_empty() {
            guest_dir.join(default)
        } else {
            PathBuf::from(given)
        };
        if path.is_file() {
            Ok(path)
        } else {
            Err(Error::NotFound(format!(
                "{what} {}: no such file",
                path.display()
            )))
        }
    };
    Ok(VmShape {
        cpus,
        memory_mib,
        kernel: file(&req.kernel, "vmlinux", "kernel")?,
        initrd: file(&req.initrd, "initramfs.img", "initrd")?,
        boot_timeout: if req.boot_timeout_ms == 0 {
            DEFAULT_BOOT_TIMEOUT
        } else {
            Duration::from_millis(req.boot_timeout_ms.into())
        },
    })
}

impl Vm {
    pub fn new(config: ShimConfig) -> Result<Arc<Self>> {
        let share = SharedDir::create(&config.run_dir.join("share"))?;
        Ok(Arc::new(Self {
            config,
            share,
            lifecycle: Mutex::new(Lifecycle {
                state: VmState::NotCreated,
                running: None,
                info: VmInfo::default(),
            }),
            agent: RwLock::new(None),
            stopping: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            ended: Notify::new(),
            crash: tokio::sync::watch::Sender::new(None),
        }))
    }

    fn console_tail(&self) -> String {
        log_tail(&self.config.run_dir.join("console.log"))
    }

    /// Starts virtiofsd and the VMM, boots, and waits for the agent.
    pub async fn create(self: &Arc<Self>, req: &CreateVmRequest) -> Result<VmInfo> {
        let mut lifecycle = self.lifecycle.lock().await;
        if lifecycle.state != VmState::NotCreated {
            return Err(Error::Conflict(format!(
                "vm {} is {}",
                self.config.id,
                lifecycle.state.as_str_name().to_lowercase()
            )));
        }
        let shape = vm_shape(req, &self.config.guest_dir)?;
        let nic = req.nic.as_ref().map(tap::nic_config).transpose()?;
        // Opened now, by descriptor: what the VMM gets is what was checked here.
        let disks = disk::open_all(&req.disks)?;
        let disk_specs: Vec<_> = disks.iter().map(|d| d.spec.clone()).collect();
        let virtiofsd_program = find_program(&self.config.virtiofsd)?;

        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let (choice, mut vmm) = vmm::select::select(
            &self.config,
            &req.vmm,
            &shape.kernel,
            &shape.initrd,
            &cpuinfo,
        )
        .await?;
        let accel = choice.accel;
        tracing::info!(vm_id = %self.config.id, vmm = %choice.kind, %accel, reason = %choice.reason, "vmm chosen");

        // Before any helper starts: a missing bridge is the quickest failure.
        let tap = match nic {
            Some(config) => Some(Tap::open(config).await?),
            None => None,
        };
        let started = Instant::now();
        lifecycle.state = VmState::Booting;
        let virtiofsd = match Virtiofsd::start(
            &virtiofsd_program,
            &self.config.run_dir,
            self.share.path(),
            Instant::now() + HELPER_START_TIMEOUT,
        )
        .await
        {
            Ok(v) => v,
            Err(e) => {
                lifecycle.state = VmState::NotCreated;
                return Err(e);
            }
        };
        let nic_info = tap.as_ref().map(|t| t.config().to_spec());
        let mut spec = VmSpec {
            cpus: shape.cpus,
            memory_mib: shape.memory_mib,
            kernel: shape.kernel,
            initrd: shape.initrd,
            cmdline: vmm::kernel_cmdline(accel, vmm::host_tsc_khz(&cpuinfo)),
            accel,
            virtiofs_socket: virtiofsd.socket.clone(),
            run_dir: self.config.run_dir.clone(),
            nic: tap.map(Tap::into_nic),
            disks,
        };
        let booted = self.boot(vmm.as_mut(), &spec, shape.boot_timeout).await;
        // The VMM holds its own fd on the tap now (or failed): closing the shim's makes the
        // device live exactly as long as the VMM.
        spec.nic = None;
        // The VMM opened the disks through the shim's descriptors; it keeps its own.
        spec.disks.clear();
        let pong = match booted {
            Ok(p) => p,
            Err(e) => {
                if let Err(stop) = vmm.shutdown(Duration::ZERO).await {
                    tracing::warn!("stopping the failed vm: {stop}");
                }
                virtiofsd.stop().await;
                lifecycle.state = VmState::NotCreated;
                return Err(e);
            }
        };
        let vmm_info = vmm.info();
        lifecycle.info = VmInfo {
            state: VmState::Running as i32,
            vmm: vmm_info.kind.to_string(),
            acceleration: vmm_info.accel.to_string(),
            shim_pid: std::process::id(),
            vmm_pid: vmm_info.pid,
            helper_pids: std::iter::once(virtiofsd.child.pid())
                .chain(vmm_info.helper_pids)
                .collect(),
            agent_version: pong.version,
            boot_ms: started.elapsed().as_millis() as u64,
            cpus: spec.cpus,
            memory_mib: spec.memory_mib,
            vmm_reason: choice.reason,
            nic: nic_info,
            disks: disk_specs,
        };
        tracing::info!(
            vm_id = %self.config.id,
            boot_ms = lifecycle.info.boot_ms,
            guest_agent_ready_ms = pong.agent_ready_ms,
            "vm running"
        );
        let vmm_exit = vmm.process().map(|c| c.exit_watch());
        lifecycle.running = Some(Running { vmm, virtiofsd });
        lifecycle.state = VmState::Running;
        if let Some(exit) = vmm_exit {
            self.watch_vmm(exit);
        }
        Ok(lifecycle.info.clone())
    }

    async fn boot(
        &self,
        vmm: &mut dyn Vmm,
        spec: &VmSpec,
        timeout: Duration,
    ) -> Result<hyper_proto::agent::PingResponse> {
        vmm.create(spec).await?;
        // Listen for the agent's announcement before the guest can make it.
        let ready = GuestPortListener::bind(&vmm.vsock_socket(), hyper_proto::AGENT_READY_PORT)?;
        vmm.boot().await?;
        let process = vmm
            .process()
            .ok_or_else(|| Error::Unavailable("the VMM has no process".into()))?;
        let deadline = Instant::now() + timeout;
        let (client, pong) =
            match crate::agent::connect(&vmm.vsock_socket(), &ready, deadline, process).await {
                Ok(c) => c,
                Err(Error::Timeout(msg)) => {
                    return Err(Error::Timeout(format!(
                        "{msg}; guest console: {}",
                        self.console_tail()
                    )));
                }
                Err(e) => return Err(e),
            };
        *self.agent.write().expect("agent lock") = Some(client);
        Ok(pong)
    }

    /// Marks the VM stopped the moment its VMM exits on its own (guest panic, VMM crash).
    fn watch_vmm(self: &Arc<Self>, mut exit: tokio::sync::watch::Receiver<Option<String>>) {
        let vm = Arc::downgrade(self);
        tokio::spawn(async move {
            let status = match exit.wait_for(Option::is_some).await {
                Ok(s) => s.clone().unwrap_or_default(),
                Err(_) => return,
            };
            let Some(vm) = vm.upgrade() else { return };
            if vm.stopping.load(Ordering::SeqCst) {
                return;
            }
            tracing::error!(
                vm_id = %vm.config.id,
                %status,
                console = %vm.console_tail(),
                "the VMM exited unexpectedly"
            );
            vm.agent.write().expect("agent lock").take();
            vm.paused.store(false, Ordering::SeqCst);
            {
                let mut lifecycle = vm.lifecycle.lock().await;
                lifecycle.state = VmState::Stopped;
                lifecycle.info.state = VmState::Stopped as i32;
            }
            // A shim without its VM has nothing left to do: exiting is how hyperd learns.
            vm.crash
                .send_replace(Some(format!("the VMM exited ({status})")));
            vm.end();
        });
    }

    /// Ends the shim's work; [`Vm::ended`] resolves (now or at its next call).
    pub fn end(&self) {
        self.ended.notify_one();
    }

    pub async fn ended(&self) {
        self.ended.notified().await;
    }

    /// Why the VM ended by itself, if it did.
    pub fn crash(&self) -> Option<String> {
        self.crash.borrow().clone()
    }

    /// The agent's client. Errors: [`Error::Conflict`] while the VM is paused (a frozen guest
    /// would leave the call hanging), [`Error::Unavailable`] when the VM is not running.
    pub fn agent(&self) -> Result<AgentClient> {
        if self.paused.load(Ordering::SeqCst) {
            return Err(Error::Conflict(format!("vm {} is paused", self.config.id)));
        }
        self.agent
            .read()
            .expect("agent lock")
            .clone()
            .ok_or_else(|| Error::Unavailable(format!("vm {} is not running", self.config.id)))
    }

    pub async fn info(&self) -> VmInfo {
        let lifecycle = self.lifecycle.lock().await;
        VmInfo {
            state: lifecycle.state as i32,
            shim_pid: std::process::id(),
            ..lifecycle.info.clone()
        }
    }

    /// Shares the container's rootfs and host volumes with the guest (see [`open_volumes`])
    /// and creates the container there; on error nothing stays mounted.
    pub async fn add_container(&self, req: AddContainerRequest) -> Result<()> {
        let mut agent = self.agent()?;
        if req.id.is_empty() || req.id.contains('/') || req.id.starts_with('.') {
            return Err(Error::InvalidArgument(format!(
                "container id {:?}: invalid",
                req.id
            )));
        }
        if req.process.as_ref().is_none_or(|p| p.args.is_empty()) {
            return Err(Error::InvalidArgument(format!(
                "container {}: no command given",
                req.id
            )));
        }
        let rootfs = if req.layers.is_empty() {
            RootfsSource::Dir(PathBuf::from(&req.rootfs))
        } else {
            RootfsSource::Overlay {
                layers: req.layers.iter().map(PathBuf::from).collect(),
                upper: PathBuf::from(&req.upper_dir),
                work: PathBuf::from(&req.work_dir),
            }
        };
        let disks: Vec<String> = {
            let lifecycle = self.lifecycle.lock().await;
            lifecycle
                .info
                .disks
                .iter()
                .map(|d| d.serial.clone())
                .collect()
        };
        // Every source is opened before anything is mounted.
        let (volumes, mounts) = open_volumes(&req.id, &req.mounts, &disks)?;
        self.share.attach(&req.id, &rootfs)?;
        if let Err(e) = self.share.attach_volumes(&req.id, &volumes) {
            if let Err(detach) = self.share.detach(&req.id) {
                tracing::warn!(container_id = %req.id, "{detach}");
            }
            return Err(e);
        }
        drop(volumes);
        let created = bounded(
            "create container",
            agent.create_container(CreateContainerRequest {
                id: req.id.clone(),
                rootfs: guest_rootfs(&req.id),
                process: req.process,
                hostname: req.hostname,
                resources: req.resources,
                mounts,
                options: req.options,
            }),
        )
        .await;
        if let Err(e) = created {
            if let Err(detach) = self.share.detach(&req.id) {
                tracing::warn!(container_id = %req.id, "{detach}");
            }
            return Err(e);
        }
        Ok(())
    }

    pub async fn start_container(&self, id: String) -> Result<()> {
        let mut agent = self.agent()?;
        bounded(
            "start container",
            agent.start_container(ContainerRequest { id }),
        )
        .await?;
        Ok(())
    }

    pub async fn exec(&self, req: ExecRequest) -> Result<()> {
        let mut agent = self.agent()?;
        bounded("exec", agent.exec(req)).await?;
        Ok(())
    }

    pub async fn signal(&self, req: SignalRequest) -> Result<()> {
        let mut agent = self.agent()?;
        bounded("signal", agent.signal(req)).await?;
        Ok(())
    }

    /// Waits for the process to end and returns its exit status. Errors: when the VMM dies
    /// meanwhile, [`Error::Unavailable`] saying so (the status died with the guest).
    pub async fn wait(&self, req: ProcessRef) -> Result<i32> {
        let mut agent = self.agent()?;
        let mut crash = self.crash.subscribe();
        let waited = tokio::select! {
            waited = agent.wait(req) => waited,
            _ = crash.wait_for(Option::is_some) => return Err(self.died_while_waiting()),
        };
        match waited {
            Ok(reply) => Ok(reply.into_inner().exit_code),
            Err(status) => {
                // The broken agent connection may be seen before the VMM's exit.
                let crashed =
                    tokio::time::timeout(CRASH_NOTICE_TIMEOUT, crash.wait_for(Option::is_some))
                        .await;
                match crashed {
                    Ok(Ok(_)) => Err(self.died_while_waiting()),
                    _ => Err(status.into()),
                }
            }
        }
    }

    fn died_while_waiting(&self) -> Error {
        Error::Unavailable(format!(
            "vm {}: {} while the process ran",
            self.config.id,
            self.crash().unwrap_or_else(|| "the VMM exited".into())
        ))
    }

    pub async fn remove_container(&self, id: String) -> Result<()> {
        let mut agent = self.agent()?;
        bounded(
            "remove container",
            agent.remove_container(ContainerRequest { id: id.clone() }),
        )
        .await?;
        self.share.detach(&id)
    }

    /// Sets the window size of a process started with a terminal.
    pub async fn resize(&self, req: ResizeRequest) -> Result<()> {
        let mut agent = self.agent()?;
        bounded("resize", agent.resize(req)).await?;
        Ok(())
    }

    /// The container's resource use as the guest's cgroup reports it.
    pub async fn stats(&self, id: String) -> Result<ContainerStats> {
        let mut agent = self.agent()?;
        bounded("stats", agent.stats(ContainerRequest { id })).await
    }

    /// The guest's addresses, routes and MTU (see [`PodNetwork`]), applied by the agent.
    pub async fn configure_network(&self, req: PodNetwork) -> Result<()> {
        let mut agent = self.agent()?;
        bounded("configure network", agent.configure_network(req)).await?;
        Ok(())
    }

    /// The pod's /etc/hostname, /etc/hosts and /etc/resolv.conf (see [`EtcFiles`]).
    pub async fn write_etc_files(&self, req: EtcFiles) -> Result<()> {
        let mut agent = self.agent()?;
        bounded("write etc files", agent.write_etc_files(req)).await?;
        Ok(())
    }

    /// Freezes the whole VM through the VMM. Pausing a paused VM is not an error. Errors:
    /// [`Error::Conflict`] unless the VM runs or is paused; the VMM's own.
    pub async fn pause(&self) -> Result<()> {
        self.set_paused(true).await
    }

    /// Thaws a paused VM. Resuming a running VM is not an error; errors as [`Vm::pause`].
    pub async fn resume(&self) -> Result<()> {
        self.set_paused(false).await
    }

    async fn set_paused(&self, pause: bool) -> Result<()> {
        let mut lifecycle = self.lifecycle.lock().await;
        let (from, to) = if pause {
            (VmState::Running, VmState::Paused)
        } else {
            (VmState::Paused, VmState::Running)
        };
        if lifecycle.state == to {
            return Ok(());
        }
        if lifecycle.state != from {
            return Err(Error::Conflict(format!(
                "vm {} is {}",
                self.config.id,
                lifecycle.state.as_str_name().to_lowercase()
            )));
        }
        let running = lifecycle
            .running
            .as_mut()
            .ok_or_else(|| Error::Unavailable(format!("vm {} is not running", self.config.id)))?;
        if pause {
            // Refuse new agent calls before the guest freezes, so none starts and hangs.
            self.paused.store(true, Ordering::SeqCst);
            if let Err(e) = running.vmm.pause().await {
                self.paused.store(false, Ordering::SeqCst);
                return Err(e);
            }
        } else {
            running.vmm.resume().await?;
            self.paused.store(false, Ordering::SeqCst);
        }
        lifecycle.state = to;
        lifecycle.info.state = to as i32;
        tracing::info!(vm_id = %self.config.id, state = to.as_str_name(), "vm state changed");
        Ok(())
    }

    /// Powers the guest off, then makes sure the VMM and helpers are gone. Idempotent. A
    /// paused VM is resumed first, so that its guest can power off.
    pub async fn shutdown(&self, grace: Duration) -> Result<()> {
        self.stopping.store(true, Ordering::SeqCst);
        let mut lifecycle = self.lifecycle.lock().await;
        if lifecycle.state == VmState::Paused
            && let Some(running) = lifecycle.running.as_mut()
            && let Err(e) = running.vmm.resume().await
        {
            // The grace period then ends in a forced stop.
            tracing::warn!("resuming the paused vm to power it off: {e}");
        }
        self.paused.store(false, Ordering::SeqCst);
        let agent = self.agent.write().expect("agent lock").take();
        if let Some(mut agent) = agent
            && let Err(e) = tokio::time::timeout(POWER_OFF_TIMEOUT, agent.power_off(Empty {})).await
        {
            tracing::debug!("power off: {e}");
        }
        if let Some(mut running) = lifecycle.running.take() {
            running.vmm.shutdown(grace).await?;
            running.virtiofsd.stop().await;
        }
        self.share.detach_all();
        if lifecycle.state != VmState::NotCreated {
            lifecycle.state = VmState::Stopped;
            lifecycle.info.state = VmState::Stopped as i32;
        }
        tracing::info!(vm_id = %self.config.id, "vm stopped");
        Ok(())
    }
}

/// An agent call that must answer within [`AGENT_CALL_TIMEOUT`]: a stuck guest is an error,
/// not a hang.
async fn bounded<T>(
    what: &str,
    call: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    match tokio::time::timeout(AGENT_CALL_TIMEOUT, call).await {
        Ok(reply) => Ok(reply?.into_inner()),
        Err(_) => Err(Error::Timeout(format!(
            "agent: {what}: no answer after {}s",
            AGENT_CALL_TIMEOUT.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("vmlinux"), b"k").unwrap();
        std::fs::write(d.path().join("initramfs.img"), b"i").unwrap();
        d
    }

    #[test]
    fn defaults_fill_an_empty_request() {
        let d = guest_dir();
        let s = vm_shape(&CreateVmRequest::default(), d.path()).unwrap();
        assert_eq!((s.cpus, s.memory_mib), (DEFAULT_CPUS, DEFAULT_MEMORY_MIB));
        assert_eq!(s.kernel, d.path().join("vmlinux"));
        assert_eq!(s.boot_timeout, DEFAULT_BOOT_TIMEOUT);
    }

    #[test]
    fn bad_shapes_name_the_field() {
        let d = guest_dir();
        let err = |req: CreateVmRequest| vm_shape(&req, d.path()).unwrap_err();
        let e = err(CreateVmRequest {
            cpus: 1000,
            ..Default::default()
        });
        assert!(matches!(e, Error::InvalidArgument(_)) && e.to_string().starts_with("cpus 1000"));
        let e = err(CreateVmRequest {
            memory_mib: 16,
            ..Default::default()
        });
        assert!(e.to_string().starts_with("memory 16 MiB"), "{e}");
        let e = err(CreateVmRequest {
            kernel: "/no/such/vmlinux".into(),
            ..Default::default()
        });
        assert!(matches!(e, Error::NotFound(_)));
        assert_eq!(e.to_string(), "kernel /no/such/vmlinux: no such file");
    }
}
