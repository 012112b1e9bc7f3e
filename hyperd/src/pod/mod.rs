//! Pods: create (records only), start (a VM, booted now or taken from `/vm/create`, then the
//! containers), stop, remove, info and the `/list` views; plus what happens when a container
//! exits ([`supervise`], restarted by its [`restart`] policy) or a VM's shim dies; containers added to, started, stopped and
//! removed in a running pod, pausing, labels and stats ([`live`]). Each pod's operations are
//! serialised by a per-pod lock; every record change is one transaction.

mod live;
mod net;
mod options;
pub mod restart;
mod services;
pub mod spec;
pub mod state;
mod supervise;
pub mod volumes;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::Ipv4Net;
use tokio::sync::watch;

use hyper_proto::rest::{
    ContainerInfo, ContainerStatus, EnvironmentVar, ListResponse, PodInfo, PodInfoSpec,
    PodInfoStatus, Terminated, UserPod,
};
use hyper_proto::shim::{AddContainerRequest, ContainerRef};
use hyper_proto::types::{ProcessRef, SignalRequest};

use crate::container::stdio::{LogConfig, Stdio};
use crate::container::{self, ContainerState, ProcessSpec, exec, rootfs};
use crate::error::Kind;
use crate::ids;
use crate::image::{self, Images};
use crate::network::{self, Network};
use crate::store::{self, ContainerRecord, PodRecord, Store, VmRecord};
use crate::vm::{self, Shim, VmSize, VmState, Vms};
pub use live::StatsSampler;
pub use net::PortMappingAction;
pub use services::{ServiceAction, check_services};
pub use state::PodState;

/// A stopping container gets SIGTERM, then SIGKILL after this long.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such pod: {0}")]
    NotFound(String),
    #[error("pod {0} already exists")]
    Exists(String),
    #[error("container name {0} is already in use")]
    NameInUse(String),
    #[error("renaming container {0} with the same name as its current name")]
    SameName(String),
    #[error("pod {id} is {state}")]
    WrongState { id: String, state: PodState },
    #[error("invalid pod spec: {0}")]
    Spec(#[from] spec::SpecError),
    #[error("{0}")]
    Invalid(String),
    #[error("pod {pod_id}: label {key} is already set to {value:?} (use override)")]
    LabelSet {
        pod_id: String,
        key: String,
        value: String,
    },
    #[error(transparent)]
    Image(#[from] image::Error),
    #[error(transparent)]
    Container(#[from] container::Error),
    #[error(transparent)]
    Vm(#[from] vm::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Network(network::Error),
    #[error(transparent)]
    Volume(#[from] crate::volume::Error),
}

impl Error {
    pub fn kind(&self) -> Kind {
        match self {
            Error::NotFound(_) => Kind::NotFound,
            Error::Exists(_)
            | Error::NameInUse(_)
            | Error::SameName(_)
            | Error::WrongState { .. }
            | Error::LabelSet { .. } => Kind::Conflict,
            Error::Spec(_) | Error::Invalid(_) => Kind::InvalidInput,
            Error::Image(e) => e.kind(),
            Error::Container(e) => e.kind(),
            Error::Vm(e) => e.kind(),
            Error::Store(e) => e.kind(),
            Error::Network(e) => e.kind(),
            Error::Volume(e) => e.kind(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// `/list`'s `label` filter, Docker's meaning: every entry must hold, `k=v` a label `k` set
/// to `v`, `k` alone a label `k` set to anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelFilter(Vec<(String, Option<String>)>);

impl LabelFilter {
    /// `k=v` or `k` entries, separated by commas: `app=web,tier`. Empty keys are refused.
    pub fn parse(s: &str) -> Result<Self> {
        let mut entries = Vec::new();
        for entry in s.split(',').filter(|e| !e.is_empty()) {
            let (k, v) = match entry.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (entry, None),
            };
            if k.is_empty() {
                return Err(Error::Invalid(format!(
                    "label {entry:?}: expected KEY or KEY=VALUE"
                )));
            }
            entries.push((k.to_string(), v));
        }
        Ok(Self(entries))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `labels` has every label of the filter.
    pub fn matches(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        self.0.iter().all(|(k, v)| match (labels.get(k), v) {
            (Some(have), Some(want)) => have == want,
            (Some(_), None) => true,
            (None, _) => false,
        })
    }
}

/// What `/list` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListItem {
    Pod,
    Container,
    Vm,
}

impl std::str::FromStr for ListItem {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "pod" => Ok(ListItem::Pod),
            "container" => Ok(ListItem::Container),
            "vm" => Ok(ListItem::Vm),
            other => Err(Error::Invalid(format!(
                "item {other:?}: must be pod, container or vm"
            ))),
        }
    }
}

pub struct Pods {
    store: Arc<Store>,
    vms: Arc<Vms>,
    images: Arc<Images>,
    network: Arc<Network>,
    /// Containers' stdio and logs.
    pub stdio: Stdio,
    /// Log rotation for pods whose spec sets none.
    log_default: LogConfig,
    containers_dir: PathBuf,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Bumped whenever a container exit is recorded (`/exitcode` waits on it).
    changes: watch::Sender<u64>,
    /// Restarts due and back-offs, by container id.
    restarts: supervise::Restarts,
}

impl Pods {
    pub fn new(
        root: &Path,
        store: Arc<Store>,
        vms: Arc<Vms>,
        images: Arc<Images>,
        network: Arc<Network>,
        changes: watch::Sender<u64>,
        log_default: LogConfig,
    ) -> std::io::Result<Arc<Self>> {
        let containers_dir = root.join("containers");
        std::fs::create_dir_all(&containers_dir)?;
        Ok(Arc::new(Self {
            store,
            vms,
            images,
            network,
            stdio: Stdio::default(),
            log_default,
            containers_dir,
            locks: Mutex::default(),
            changes,
            restarts: supervise::Restarts::default(),
        }))
    }

    fn lock_of(&self, pod_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(pod_id.to_string())
            .or_default()
            .clone()
    }

    fn get(&self, pod_id: &str) -> Result<PodRecord> {
        self.store
            .read(|c| store::get_pod(c, pod_id))?
            .ok_or_else(|| Error::NotFound(pod_id.to_string()))
    }

    fn containers(&self, pod_id: &str) -> Result<Vec<ContainerRecord>> {
        Ok(self.store.read(|c| store::containers_of_pod(c, pod_id))?)
    }

    fn bump(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// The record of container `idx` of pod `pod_id`, not started yet, with a new id and its
    /// directory under the containers dir.
    fn pending_record(
        &self,
        pod_id: &str,
        idx: usize,
        c: &hyper_proto::rest::UserContainer,
        image_id: String,
        process: ProcessSpec,
    ) -> ContainerRecord {
        let id = ids::container_id();
        ContainerRecord {
            dir: self.containers_dir.join(&id).to_string_lossy().into_owned(),
            id,
            pod_id: pod_id.into(),
            idx: idx as i64,
            name: c.name.clone(),
            image: c.image.clone(),
            image_id,
            process,
            state: ContainerState::Pending,
            exit_code: None,
            restart_count: 0,
            stopped_by_user: false,
        }
    }

    /// Records a validated spec: the pod and its containers, `pending`. Images must exist.
    pub fn create(&self, mut pod: UserPod) -> Result<String> {
        self.log_config(&pod)?;
        pod.portmappings = network::normalize_ports("portmappings", &pod.portmappings)?;
        self.network.check_spec(&pod)?;
        self.check_pod_services(&mut pod)?;
        self.network.probe_host_ports(&pod.portmappings)?;
        let mut containers = Vec::new();
        for (i, c) in pod.containers.iter().enumerate() {
            let image = self.images.resolve(&c.image)?;
            let config = self.images.config_of(&image)?;
            let process = ProcessSpec::from_spec(i, c, &config.config)?;
            containers.push(self.pending_record(&pod.id, i, c, image.id, process));
        }
        let record = PodRecord {
            id: pod.id.clone(),
            spec: pod,
            state: PodState::Pending,
            vm_id: None,
            created: ids::now(),
        };
        self.store.write(|tx| {
            if store::get_pod(tx, &record.id)?.is_some() {
                return Ok(Err(Error::Exists(record.id.clone())));
            }
            for c in &containers {
                if store::container_by_name(tx, &c.name)?.is_some() {
                    return Ok(Err(Error::NameInUse(c.name.clone())));
                }
            }
            if let Err(e) = Network::reserve_ports(tx, &record.id, &record.spec.portmappings)? {
                return Ok(Err(Error::from(e)));
            }
            store::insert_pod(tx, &record)?;
            for c in &containers {
                store::insert_container(tx, c)?;
            }
            Ok(Ok(()))
        })??;
        tracing::info!(pod_id = %record.id, "pod created");
        Ok(record.id)
    }

    /// Starts a pod: in the idle VM `vm_id` (from `/vm/create`), or in a VM booted now.
    pub async fn start(self: &Arc<Self>, pod_id: &str, vm_id: Option<&str>) -> Result<()> {
        let lock = self.lock_of(pod_id);
        let _guard = lock.lock().await;
        let mut pod = self.get(pod_id)?;
        if !pod.state.can_start() {
            return Err(Error::WrongState {
                id: pod.id,
                state: pod.state,
            });
        }
        // The address and host ports first: a conflict costs no VM boot.
        let lease = self.take_address(&pod)?;
        let vm = match self.vm_for(&pod, vm_id).await {
            Ok(vm) => vm,
            Err(e) => {
                if lease.is_some() {
                    self.disconnect_network(&pod.id, None).await;
                }
                return Err(e);
            }
        };
        pod.vm_id = Some(vm.id.clone());
        self.store.write(|tx| store::update_pod(tx, &pod))?;
        match self.start_containers(&pod, &vm, lease).await {
            Ok(()) => {
                pod.state = PodState::Running;
                self.store.write(|tx| store::update_pod(tx, &pod))?;
                tracing::info!(pod_id, vm_id = %vm.id, "pod running");
                // The other pods' /etc/hosts name it now.
                self.refresh_peers(pod_id).await;
                Ok(())
            }
            Err(e) => {
                tracing::error!(pod_id, vm_id = %vm.id, "pod start failed: {e}");
                // Containers may be half set up in the guest: the VM goes with them.
                self.vms.destroy(&vm).await;
                self.disconnect_network(&pod.id, None).await;
                self.release_containers(&pod.id, ContainerState::Pending);
                pod.vm_id = None;
                self.store.write(|tx| store::update_pod(tx, &pod))?;
                Err(e)
            }
        }
    }

    /// The pod's log rotation: its spec's `log` over the daemon's default.
    fn log_config(&self, pod: &UserPod) -> Result<LogConfig> {
        LogConfig::from_spec(&pod.log, self.log_default).map_err(Error::Invalid)
    }

    fn idle_vm(&self, vm_id: &str) -> Result<VmRecord> {
        let vm = self.vms.get(vm_id)?;
        if vm.state != VmState::Running {
            return Err(vm::Error::NotRunning {
                vm_id: vm.id,
                state: vm.state,
            }
            .into());
        }
        if let Some(other) = self.store.read(|c| store::pod_of_vm(c, vm_id))? {
            return Err(vm::Error::InUse {
                vm_id: vm.id,
                pod_id: other.id,
            }
            .into());
        }
        Ok(vm)
    }

    /// The idle VM `vm_id` (from `/vm/create`), or one booted now for the pod: with a NIC
    /// unless the pod's network is `none`.
    async fn vm_for(self: &Arc<Self>, pod: &PodRecord, vm_id: Option<&str>) -> Result<VmRecord> {
        if let Some(id) = vm_id {
            self.refuse_disks_in_idle_vm(&pod.spec, id)?;
            return self.idle_vm(id);
        }
        let size = VmSize {
            cpus: pod.spec.resource.vcpu as u32,
            memory_mib: pod.spec.resource.memory as u32,
        };
        let disks = self.pod_disks(&pod.spec)?;
        Ok(self
            .vms
            .boot_for_pod(size, self.network.wants_address(&pod.spec), disks)
            .await?)
    }

    async fn start_containers(
        self: &Arc<Self>,
        pod: &PodRecord,
        vm: &VmRecord,
        lease: Option<Ipv4Net>,
    ) -> Result<()> {
        let shim = self.vms.shim(&vm.id)?;
        self.connect_network(pod, &shim, lease).await?;
        self.apply_services(pod, &shim).await?;
        for ct in self.containers(&pod.id)? {
            self.add_to_vm(&shim, pod, &ct).await?;
            self.start_in_vm(&shim, pod, ct).await?;
        }
        Ok(())
    }

    /// Shares a container's rootfs with the VM and creates it there, stopped. A TTY
    /// container's main process gets a terminal; with a TTY or `stdin` it takes stdin
    /// (`/attach?stdin=1`).
    async fn add_to_vm(&self, shim: &Shim, pod: &PodRecord, ct: &ContainerRecord) -> Result<()> {
        let image = self.images.resolve(&ct.image_id)?;
        let dir = Path::new(&ct.dir);
        std::fs::create_dir_all(dir).map_err(|e| container::Error::Io {
            context: format!("mkdir {}", dir.display()),
            source: e,
        })?;
        let overlay = rootfs::overlay(self.images.lower_dirs(&image), dir);
        shim.client
            .clone()
            .add_container(AddContainerRequest {
                id: ct.id.clone(),
                rootfs: String::new(),
                process: Some(
                    ct.process
                        .to_process(ct.process.tty, ct.process.stdin || ct.process.tty),
                ),
                hostname: pod.spec.hostname.clone(),
                resources: None,
                layers: overlay.layers,
                upper_dir: overlay.upper.to_string_lossy().into_owned(),
                work_dir: overlay.work.to_string_lossy().into_owned(),
                mounts: self.volume_mounts(pod, ct).await?,
                options: Some(self.container_options(pod, ct)?),
            })
            .await
            .map_err(|s| shim.error(s))?;
        Ok(())
    }

    /// Starts a container added to the VM, recording its output from the very start (the
    /// recorder attaches before the process runs). A start through the API: its restart
    /// count and back-off start over.
    async fn start_in_vm(
        self: &Arc<Self>,
        shim: &Shim,
        pod: &PodRecord,
        ct: ContainerRecord,
    ) -> Result<()> {
        self.run_in_vm(shim, pod, ct, 0).await
    }

    /// [`Self::start_in_vm`], as the `restarts`-th restart by its restart policy (0: a start
    /// through the API).
    async fn run_in_vm(
        self: &Arc<Self>,
        shim: &Shim,
        pod: &PodRecord,
        mut ct: ContainerRecord,
        restarts: u32,
    ) -> Result<()> {
        let recording = self
            .stdio
            .record(
                shim,
                &ct.id,
                Path::new(&ct.dir),
                self.log_config(&pod.spec)?,
                false,
                ct.process.stdin || ct.process.tty,
            )
            .await?;
        shim.client
            .clone()
            .start_container(ContainerRef { id: ct.id.clone() })
            .await
            .map_err(|s| shim.error(s))?;
        ct.state = ContainerState::Running;
        ct.exit_code = None;
        ct.restart_count = restarts;
        ct.stopped_by_user = false;
        self.store.write(|tx| {
            store::update_container(tx, &ct)?;
            store::set_restart_count(tx, &ct.id, restarts)?;
            store::set_stopped_by_user(tx, &ct.id, false)
        })?;
        self.supervise(shim.clone(), ct, recording);
        Ok(())
    }

    /// Stops a running pod: TERM (then KILL) to its containers, then the VM is shut down or,
    /// with `stop_vm` false, kept idle for another pod.
    pub async fn stop(self: &Arc<Self>, pod_id: &str, stop_vm: bool) -> Result<()> {
        let lock = self.lock_of(pod_id);
        let _guard = lock.lock().await;
        self.stop_locked(pod_id, stop_vm).await
    }

    async fn stop_locked(&self, pod_id: &str, stop_vm: bool) -> Result<()> {
        let mut pod = self.get(pod_id)?;
        if !pod.state.can_stop() {
            return Err(Error::WrongState {
                id: pod.id,
                state: pod.state,
            });
        }
        let vm = match &pod.vm_id {
            Some(id) => Some(self.vms.get(id)?),
            None => None,
        };
        if let Some(vm) = &vm {
            match self.vms.shim(&vm.id) {
                Ok(shim) => {
                    if pod.state == PodState::Paused
                        && let Err(e) = shim.resume_vm().await
                    {
                        tracing::warn!(pod_id, "resume before stop: {e}");
                    }
                    for ct in self.containers(pod_id)? {
                        if ct.state.is_running() {
                            let signal = stop_signal(&pod, &ct);
                            self.stop_container(&shim, &ct, signal, STOP_GRACE).await;
                        }
                        if let Err(e) = exec::remove_from_vm(&shim, &ct.id).await {
                            tracing::warn!(container_id = %ct.id, "remove from vm: {e}");
                        }
                    }
                }
                Err(e) => tracing::warn!(pod_id, "stop: {e}"),
            }
            if stop_vm || self.vms.shim(&vm.id).is_err() {
                self.vms.destroy(vm).await;
                self.disconnect_network(pod_id, None).await;
            } else {
                let kept = self.vms.shim(&vm.id).ok();
                self.disconnect_network(pod_id, kept.as_ref()).await;
            }
        } else {
            self.disconnect_network(pod_id, None).await;
        }
        self.release_containers(pod_id, ContainerState::Failed);
        pod.state = PodState::Stopped;
        pod.vm_id = None;
        self.store.write(|tx| store::update_pod(tx, &pod))?;
        tracing::info!(pod_id, stop_vm, "pod stopped");
        Ok(())
    }

    /// `signal` (the stop signal), then SIGKILL after `grace`; records the exit code.
    async fn stop_container(
        &self,
        shim: &Shim,
        ct: &ContainerRecord,
        signal: i32,
        grace: Duration,
    ) {
        if let Err(e) = self.stopped_by_user(&ct.id) {
            tracing::error!(container_id = %ct.id, "mark stopped: {e}");
        }
        let target = ProcessRef {
            container_id: ct.id.clone(),
            exec_id: String::new(),
        };
        let mut client = shim.client.clone();
        let mut code = None;
        for signal in [signal, libc::SIGKILL] {
            let sent = client
                .signal(SignalRequest {
                    process: Some(target.clone()),
                    signal,
                })
                .await;
            if let Err(s) = sent {
                tracing::debug!(container_id = %ct.id, "signal {signal}: {}", s.message());
            }
            if let Ok(Ok(resp)) = tokio::time::timeout(grace, client.wait(target.clone())).await {
                code = Some(resp.into_inner().exit_code);
                break;
            }
        }
        let code = code.unwrap_or(128 + libc::SIGKILL);
        self.record_exit(&ct.id, code);
    }

    /// Records a container's exit (once: a later report of the same exit changes nothing).
    fn record_exit(&self, container_id: &str, code: i32) {
        let written = self.store.write(|tx| {
            if let Some(mut ct) = store::get_container(tx, container_id)?
                && ct.state.is_running()
            {
                ct.state = ContainerState::exited(code);
                ct.exit_code = Some(code);
                store::update_container(tx, &ct)?;
            }
            Ok(())
        });
        if let Err(e) = written {
            tracing::error!(container_id, "record exit: {e}");
        }
        self.bump();
    }

    /// After a stop or failure: every still-running container gets `state`. Their dirs (upper
    /// layer, output log) stay until the pod is removed.
    fn release_containers(&self, pod_id: &str, state: ContainerState) {
        let containers = match self.containers(pod_id) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(pod_id, "release containers: {e}");
                return;
            }
        };
        for mut ct in containers {
            if ct.state.is_running() {
                ct.state = state;
                if let Err(e) = self.store.write(|tx| store::update_container(tx, &ct)) {
                    tracing::error!(container_id = %ct.id, "{e}");
                }
            }
        }
        self.bump();
    }

    /// Removes a pod in any state: stops it if it runs, tears down a failed pod's VM
    /// remains, deletes its container dirs and records.
    pub async fn remove(self: &Arc<Self>, pod_id: &str) -> Result<()> {
        let lock = self.lock_of(pod_id);
        let _guard = lock.lock().await;
        let pod = self.get(pod_id)?;
        if pod.state.can_stop() {
            self.stop_locked(pod_id, true).await?;
        }
        if let Some(vm_id) = &pod.vm_id
            && let Ok(vm) = self.vms.get(vm_id)
        {
            self.vms.destroy(&vm).await;
        }
        let containers = self.containers(pod_id)?;
        for ct in &containers {
            self.stdio.forget(&ct.id);
            self.restarts.forget(&ct.id);
            match std::fs::remove_dir_all(&ct.dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(container_id = %ct.id, "remove {}: {e}", ct.dir),
            }
        }
        self.store.write(|tx| {
            Network::forget_pod(tx, pod_id)?;
            store::delete_pod(tx, pod_id)
        })?;
        self.remove_files(pod_id);
        // A failed pod may still hold its address; its mappings' rules go with it.
        self.disconnect_network(pod_id, None).await;
        self.volumes().remove_of_pod(pod_id);
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(pod_id);
        tracing::info!(pod_id, "pod removed");
        Ok(())
    }

    /// A VM's shim died: its pod (if any) and the VM become `failed`.
    pub async fn vm_died(self: &Arc<Self>, vm_id: &str) {
        if let Err(e) = self.vms.mark_failed(vm_id) {
            tracing::error!(vm_id, "{e}");
        }
        let pod = match self.store.read(|c| store::pod_of_vm(c, vm_id)) {
            Ok(Some(pod)) => pod,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(vm_id, "{e}");
                return;
            }
        };
        let lock = self.lock_of(&pod.id);
        let _guard = lock.lock().await;
        // The pod may have moved on (stopped, removed) while we waited for its lock.
        match self.get(&pod.id) {
            Ok(now) if now.vm_id.as_deref() == Some(vm_id) => {
                self.fail_pod(&pod.id);
                self.disconnect_network(&pod.id, None).await;
            }
            _ => {}
        }
    }

    fn fail_pod(&self, pod_id: &str) {
        let failed = self.store.write(|tx| {
            if let Some(mut pod) = store::get_pod(tx, pod_id)? {
                pod.state = PodState::Failed;
                store::update_pod(tx, &pod)?;
                for mut ct in store::containers_of_pod(tx, pod_id)? {
                    // Its processes died with the VM: killed, as far as anyone can tell.
                    for exec_id in store::unfinished_execs(tx, &ct.id)? {
                        store::set_exec_exit(tx, &exec_id, exec::VM_DIED_EXIT)?;
                    }
                    if ct.state.is_running() {
                        ct.state = ContainerState::Failed;
                        ct.exit_code = Some(exec::VM_DIED_EXIT);
                        store::update_container(tx, &ct)?;
                    }
                }
            }
            Ok(())
        });
        match failed {
            Ok(()) => tracing::error!(pod_id, "pod failed: its vm is gone"),
            Err(e) => tracing::error!(pod_id, "mark failed: {e}"),
        }
        self.bump();
    }

    /// After a (re)start of hyperd: re-adopt every VM, resume watching the containers of
    /// pods whose VM is alive, and fail the pods whose VM is gone.
    pub async fn recover(self: &Arc<Self>) -> Result<()> {
        let lost = self.vms.adopt_all().await?;
        for pod in self.store.read(store::list_pods)? {
            let Some(vm_id) = pod.vm_id.clone() else {
                // Killed between taking its address and booting its VM: give it back.
                if matches!(self.network.address_of(&pod.id), Ok(Some(_))) {
                    self.disconnect_network(&pod.id, None).await;
                }
                continue;
            };
            let alive = !lost.contains(&vm_id) && pod.state.can_stop();
            if !alive {
                if pod.state != PodState::Failed {
                    self.fail_pod(&pod.id);
                }
                self.disconnect_network(&pod.id, None).await;
                continue;
            }
            let shim = self.vms.shim(&vm_id)?;
            for ct in self.containers(&pod.id)? {
                if !ct.state.is_running() {
                    // Its restart was due when hyperd went down.
                    if self.restart_wanted(&pod, &ct) {
                        self.schedule_restart(&ct);
                    }
                    continue;
                }
                let config = self.log_config(&pod.spec).unwrap_or(self.log_default);
                let recording = self
                    .stdio
                    .record(
                        &shim,
                        &ct.id,
                        Path::new(&ct.dir),
                        config,
                        true,
                        ct.process.stdin || ct.process.tty,
                    )
                    .await?;
                self.rewait_execs(&shim, &ct)?;
                self.supervise(shim.clone(), ct, recording);
            }
            tracing::info!(pod_id = %pod.id, %vm_id, "pod re-adopted");
        }
        Ok(())
    }

    /// Called when a container exited: it is restarted if its restart policy says so;
    /// otherwise, once no container of a running pod runs or has a restart due, the pod
    /// stops and its VM goes (nothing is left to run in it).
    async fn container_exited(self: &Arc<Self>, pod_id: &str, container_id: &str, code: i32) {
        let lock = self.lock_of(pod_id);
        let _guard = lock.lock().await;
        // Recorded under the pod's lock: another container's exit must not see this one
        // exited before its restart (if any) is scheduled, or it would stop the pod.
        self.record_exit(container_id, code);
        let Ok(pod) = self.get(pod_id) else { return };
        if let Ok(Some(ct)) = self.store.read(|c| store::get_container(c, container_id))
            && self.restart_wanted(&pod, &ct)
        {
            self.schedule_restart(&ct);
            return;
        }
        self.stop_if_done(pod_id).await;
    }

    pub fn info(&self, pod_id: &str) -> Result<PodInfo> {
        let pod = self.get(pod_id)?;
        let containers = self.containers(pod_id)?;
        let addresses = self.pod_addresses(pod_id);
        Ok(PodInfo {
            pod_id: pod.id.clone(),
            pod_name: pod.id.clone(),
            kind: "Pod".into(),
            api_version: "1.17".into(),
            vm: pod.vm_id.clone().unwrap_or_default(),
            created_at: pod.created,
            spec: PodInfoSpec {
                containers: containers.iter().map(|c| container_info(&pod, c)).collect(),
                labels: pod.spec.labels.clone(),
                vcpu: pod.spec.resource.vcpu,
                memory: pod.spec.resource.memory,
            },
            status: PodInfoStatus {
                phase: if pod.state == PodState::Stopped
                    && containers.iter().any(|c| c.state == ContainerState::Failed)
                {
                    "Failed".into()
                } else {
                    pod.state.phase().into()
                },
                container_status: containers.iter().map(container_status).collect(),
                host_ip: match self.network.gateway() {
                    Some(gw) if !addresses.is_empty() => gw.to_string(),
                    _ => String::new(),
                },
                pod_ip: addresses,
            },
        })
    }

    /// `/list`: colon-joined rows, optionally only for one pod or one VM.
    pub fn list(
        &self,
        item: ListItem,
        pod: Option<&str>,
        vm: Option<&str>,
        labels: &LabelFilter,
    ) -> Result<ListResponse> {
        let pods = self.store.read(store::list_pods)?;
        let keep = |p: &PodRecord| {
            pod.is_none_or(|id| p.id == id)
                && vm.is_none_or(|v| p.vm_id.as_deref() == Some(v))
                && (item != ListItem::Pod || labels.matches(&p.spec.labels))
        };
        let mut resp = ListResponse {
            item: match item {
                ListItem::Pod => "pod",
                ListItem::Container => "container",
                ListItem::Vm => "vm",
            }
            .into(),
            ..Default::default()
        };
        match item {
            ListItem::Pod => {
                resp.pod_data = Some(
                    pods.iter()
                        .filter(|p| keep(p))
                        .map(|p| {
                            format!(
                                "{}:{}:{}:{}",
                                p.id,
                                p.id,
                                p.vm_id.as_deref().unwrap_or(""),
                                p.state
                            )
                        })
                        .collect(),
                );
            }
            ListItem::Container => {
                let mut rows = Vec::new();
                for p in pods.iter().filter(|p| keep(p)) {
                    for c in self.containers(&p.id)? {
                        let spec_labels = p.spec.containers.get(c.idx as usize).map(|s| &s.labels);
                        if !labels.is_empty() && !spec_labels.is_some_and(|l| labels.matches(l)) {
                            continue;
                        }
                        rows.push(format!("{}:{}:{}:{}", c.id, c.name, p.id, c.state));
                    }
                }
                resp.c_data = Some(rows);
            }
            ListItem::Vm => {
                let vms = self.store.read(store::list_vms)?;
                resp.vm_data = Some(
                    vms.iter()
                        .filter_map(|v| {
                            let owner = pods.iter().find(|p| p.vm_id.as_deref() == Some(&v.id));
                            if pod.is_some_and(|id| owner.is_none_or(|p| p.id != id))
                                || vm.is_some_and(|id| id != v.id)
                            {
                                return None;
                            }
                            let status = match (v.state, owner) {
                                (VmState::Running, Some(_)) => "associated".to_string(),
                                (VmState::Running, None) => "idle".to_string(),
                                (state, _) => state.to_string(),
                            };
                            Some(format!(
                                "{}:{}:{}",
                                v.id,
                                owner.map(|p| p.id.as_str()).unwrap_or(""),
                                status
                            ))
                        })
                        .collect(),
                );
            }
        }
        Ok(resp)
    }

    pub fn counts(&self) -> Result<(u64, u64)> {
        let pods = self.store.read(store::list_pods)?.len() as u64;
        let containers = self.store.read(store::list_containers)?.len() as u64;
        Ok((pods, containers))
    }

    /// Kills an idle (or failed) VM made by `/vm/create`.
    pub async fn kill_vm(&self, vm_id: &str) -> Result<()> {
        let vm = self.vms.get(vm_id)?;
        if let Some(pod) = self.store.read(|c| store::pod_of_vm(c, vm_id))? {
            return Err(vm::Error::InUse {
                vm_id: vm.id,
                pod_id: pod.id,
            }
            .into());
        }
        self.vms.destroy(&vm).await;
        Ok(())
    }
}

/// A container's stop signal: its spec's `StopSignal`, else its image's, else SIGTERM
/// (resolved at create, [`ProcessSpec::from_spec`]; a record from before that reads the spec).
fn stop_signal(pod: &PodRecord, ct: &ContainerRecord) -> i32 {
    if ct.process.stop_signal != 0 {
        return ct.process.stop_signal;
    }
    pod.spec
        .containers
        .get(ct.idx as usize)
        .map(|c| c.stop_signal.as_str())
        .filter(|s| !s.is_empty())
        .and_then(|s| container::parse_signal("StopSignal", s).ok())
        .unwrap_or(libc::SIGTERM)
}

fn container_status(c: &ContainerRecord) -> ContainerStatus {
    ContainerStatus {
        name: c.name.clone(),
        container_id: c.id.clone(),
        phase: c.state.to_string(),
        terminated: c.exit_code.map(|code| Terminated {
            exit_code: code,
            reason: if code == 0 { "Succeeded" } else { "Failed" }.into(),
        }),
        restart_count: c.restart_count,
    }
}

fn container_info(pod: &PodRecord, c: &ContainerRecord) -> ContainerInfo {
    let spec = pod.spec.containers.get(c.idx as usize);
    ContainerInfo {
        name: format!("/{}", c.name),
        container_id: c.id.clone(),
        image: c.image.clone(),
        image_id: c.image_id.clone(),
        working_dir: c.process.cwd.clone(),
        tty: c.process.tty,
        stdin: c.process.stdin || c.process.tty,
        commands: spec.map(|s| s.command.clone()).unwrap_or_default(),
        args: c.process.args.clone(),
        env: c
            .process
            .env
            .iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                EnvironmentVar {
                    env: k.into(),
                    value: v.into(),
                }
            })
            .collect(),
        labels: spec.map(|s| s.labels.clone()).unwrap_or_default(),
    }
}
