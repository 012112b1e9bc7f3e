//! A running pod's containers one at a time (`/container/create|start|stop|kill|remove|
//! rename|info`), and the pod as a whole while it runs: `/pod/kill`, `/pod/pause` and
//! `/pod/unpause` (the VMM freezes the VM), `/pod/labels`, `/pod/stats` (Docker's stats shape).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use hyper_proto::rest::{ContainerInfoResponse, UserContainer};
use hyper_proto::types::{ContainerStats, ProcessRef};

use super::{Error, PodState, Pods, Result, container_info, spec, stop_signal};
use crate::container::{self, ContainerState, ProcessSpec, exec};
use crate::ids;
use crate::store::{self, ContainerRecord, PodRecord};
use crate::vm::Shim;

impl Pods {
    /// A running pod and its shim, locked by the caller.
    fn running_pod(&self, pod_id: &str) -> Result<(PodRecord, Shim)> {
        let pod = self.get(pod_id)?;
        if pod.state != PodState::Running {
            return Err(Error::WrongState {
                id: pod.id,
                state: pod.state,
            });
        }
        let vm_id = pod.vm_id.clone().ok_or_else(|| Error::WrongState {
            id: pod.id.clone(),
            state: pod.state,
        })?;
        let shim = self.vms.shim(&vm_id)?;
        Ok((pod, shim))
    }

    /// The shim of a running pod's VM (`/execvm`).
    pub fn vm_of(&self, pod_id: &str) -> Result<Shim> {
        Ok(self.running_pod(pod_id)?.1)
    }

    /// `/container/create`: adds a container (a UserContainer, validated by the pod spec's
    /// rules) to a running pod, created in its VM, not started. It shares the pod's hostname.
    /// No name: `<pod>-<image>-<10 letters>`. Returns the container id.
    pub async fn create_container(
        self: &Arc<Self>,
        pod_id: &str,
        c: UserContainer,
    ) -> Result<String> {
        let lock = self.lock_of(pod_id);
        let _guard = lock.lock().await;
        let (mut pod, shim) = self.running_pod(pod_id)?;
        let mut c = c;
        if c.name.is_empty() {
            let base = spec::image_base(&c.image);
            c.name = format!("{}-{}-{}", pod.id, base, ids::name_suffix());
        }
        let c = spec::normalize_container(&pod.spec, c)?;
        let image = self.images.resolve(&c.image)?;
        let config = self.images.config_of(&image)?;
        let idx = pod.spec.containers.len();
        let process = ProcessSpec::from_spec(idx, &c, &config.config)?;
        let ct = self.pending_record(&pod.id, idx, &c, image.id, process);
        pod.spec.containers.push(c);
        self.store.write(|tx| {
            if store::container_by_name(tx, &ct.name)?.is_some() {
                return Ok(Err(Error::NameInUse(ct.name.clone())));
            }
            store::insert_container(tx, &ct)?;
            store::update_pod_spec(tx, &pod)?;
            Ok(Ok(()))
        })??;
        // Its name resolves in the pod (/etc/hosts) before it runs.
        let added = match self.refresh_etc(&pod.id).await {
            Ok(()) => self.add_to_vm(&shim, &pod, &ct).await,
            Err(e) => Err(e),
        };
        if let Err(e) = added {
            // Nothing half-made is left: the record and the spec entry go again.
            pod.spec.containers.pop();
            let undo = self.store.write(|tx| {
                store::delete_container(tx, &ct.id)?;
                store::update_pod_spec(tx, &pod)
            });
            if let Err(u) = undo {
                tracing::error!(container_id = %ct.id, "undo create: {u}");
            }
            if let Err(u) = self.refresh_etc(&pod.id).await {
                tracing::warn!(pod_id, "undo create: /etc/hosts: {u}");
            }
            remove_dir(&ct);
            return Err(e);
        }
        self.refresh_peers(pod_id).await;
        tracing::info!(pod_id, container_id = %ct.id, "container created");
        Ok(ct.id)
    }

    /// `/container/start`: starts a created container of a running pod, or one that exited
    /// (created afresh in the VM over its kept rootfs). A running one is left alone.
    pub async fn start_container(self: &Arc<Self>, reference: &str) -> Result<()> {
        let ct = container::find(&self.store, reference)?;
        let lock = self.lock_of(&ct.pod_id);
        let _guard = lock.lock().await;
        let ct = self.reread(&ct)?;
        let (pod, shim) = self.running_pod(&ct.pod_id)?;
        if ct.state.is_running() {
            return Ok(());
        }
        if ct.state != ContainerState::Pending {
            exec::remove_from_vm(&shim, &ct.id).await?;
            self.add_to_vm(&shim, &pod, &ct).await?;
        }
        self.start_in_vm(&shim, &pod, ct).await
    }

    fn reread(&self, ct: &ContainerRecord) -> Result<ContainerRecord> {
        self.store
            .read(|c| store::get_container(c, &ct.id))?
            .ok_or_else(|| container::Error::NotFound(ct.name.clone()).into())
    }

    /// `/container/stop`: the stop signal, then SIGKILL after `grace`; the pod's other
    /// containers run on. A container that is not running is left alone.
    pub async fn stop_one(self: &Arc<Self>, reference: &str, grace: Duration) -> Result<()> {
        let ct = container::find(&self.store, reference)?;
        let lock = self.lock_of(&ct.pod_id);
        let _guard = lock.lock().await;
        let ct = self.reread(&ct)?;
        // Also cancels a restart that is due.
        self.stopped_by_user(&ct.id)?;
        if !ct.state.is_running() {
            return Ok(());
        }
        let (pod, shim) = self.running_pod(&ct.pod_id)?;
        self.stop_container(&shim, &ct, stop_signal(&pod, &ct), grace)
            .await;
        Ok(())
    }

    /// `/container/kill`: sends `signal` to a running container's main process.
    pub async fn kill_one(&self, reference: &str, signal: i32) -> Result<()> {
        let ct = container::find(&self.store, reference)?;
        if !ct.state.is_running() {
            return Err(container::Error::NotRunning(ct.name).into());
        }
        let (_, shim) = self.running_pod(&ct.pod_id)?;
        self.stopped_by_user(&ct.id)?;
        shim.signal(main_process(&ct), signal).await?;
        Ok(())
    }

    /// `/pod/kill`: `signal` to one container of the pod (`container`) or to all that run.
    pub async fn kill_pod(&self, pod_id: &str, container: Option<&str>, signal: i32) -> Result<()> {
        let (_, shim) = self.running_pod(pod_id)?;
        let targets: Vec<ContainerRecord> = match container {
            Some(reference) => {
                let ct = container::find(&self.store, reference)?;
                if ct.pod_id != pod_id {
                    return Err(
                        container::Error::NotFound(format!("{reference} in pod {pod_id}")).into(),
                    );
                }
                vec![ct]
            }
            None => self.containers(pod_id)?,
        };
        for ct in targets.iter().filter(|c| c.state.is_running()) {
            self.stopped_by_user(&ct.id)?;
            shim.signal(main_process(ct), signal).await?;
        }
        Ok(())
    }

    /// `/container/remove`: stops the container if it runs, takes it out of the VM, and
    /// deletes its dir (rootfs changes, log) and records.
    pub async fn remove_one(self: &Arc<Self>, reference: &str) -> Result<()> {
        let ct = container::find(&self.store, reference)?;
        let lock = self.lock_of(&ct.pod_id);
        let _guard = lock.lock().await;
        let ct = self.reread(&ct)?;
        let pod = self.get(&ct.pod_id)?;
        if pod.state == PodState::Paused {
            return Err(Error::WrongState {
                id: pod.id,
                state: pod.state,
            });
        }
        if pod.state == PodState::Running {
            let (_, shim) = self.running_pod(&pod.id)?;
            if ct.state.is_running() {
                self.stop_container(&shim, &ct, stop_signal(&pod, &ct), super::STOP_GRACE)
                    .await;
            }
            exec::remove_from_vm(&shim, &ct.id).await?;
        }
        self.stdio.forget(&ct.id);
        self.restarts.forget(&ct.id);
        remove_dir(&ct);
        self.store.write(|tx| store::delete_container(tx, &ct.id))?;
        self.bump();
        if let Err(e) = self.refresh_etc(&pod.id).await {
            tracing::warn!(pod_id = %pod.id, "/etc/hosts after removing {}: {e}", ct.id);
        }
        self.refresh_peers(&pod.id).await;
        tracing::info!(container_id = %ct.id, "container removed");
        Ok(())
    }

    /// `/container/rename`: a new unique name (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`).
    pub async fn rename(&self, reference: &str, new_name: &str) -> Result<()> {
        let new_name = new_name.trim_start_matches('/');
        if !spec::valid_name(new_name) {
            return Err(Error::Invalid(format!(
                "newName: {new_name:?}: must match [a-zA-Z0-9][a-zA-Z0-9_.-]+"
            )));
        }
        let ct = container::find(&self.store, reference)?;
        let lock = self.lock_of(&ct.pod_id);
        let _guard = lock.lock().await;
        self.store.write(|tx| {
            if let Some(other) = store::container_by_name(tx, new_name)? {
                if other.id == ct.id {
                    return Ok(Err(Error::SameName(new_name.into())));
                }
                return Ok(Err(Error::NameInUse(new_name.into())));
            }
            store::rename_container(tx, &ct.id, new_name)?;
            if let Some(mut pod) = store::get_pod(tx, &ct.pod_id)? {
                if let Some(c) = pod.spec.containers.get_mut(ct.idx as usize) {
                    c.name = new_name.into();
                }
                store::update_pod_spec(tx, &pod)?;
            }
            Ok(Ok(()))
        })??;
        if let Err(e) = self.refresh_etc(&ct.pod_id).await {
            tracing::warn!(pod_id = %ct.pod_id, "/etc/hosts after renaming {}: {e}", ct.id);
        }
        self.refresh_peers(&ct.pod_id).await;
        Ok(())
    }

    /// `/container/info`.
    pub fn container_info(&self, reference: &str) -> Result<ContainerInfoResponse> {
        let ct = container::find(&self.store, reference)?;
        let pod = self.get(&ct.pod_id)?;
        Ok(ContainerInfoResponse {
            container: container_info(&pod, &ct),
            created_at: pod.created,
            pod_id: pod.id.clone(),
            status: super::container_status(&ct),
        })
    }

    /// A container and its dir, for `/container/logs` and `/attach`.
    pub fn container(&self, reference: &str) -> Result<ContainerRecord> {
        Ok(container::find(&self.store, reference)?)
    }

    /// `/pod/pause`: freezes the pod's VM through the VMM; its state becomes `paused`.
    pub async fn pause(&self, pod_id: &str) -> Result<()> {
        let lock = self.lock_of(pod_id);
        let _guard = lock.lock().await;
        let (mut pod, shim) = self.running_pod(pod_id)?;
        shim.pause_vm().await?;
        pod.state = PodState::Paused;
        self.store.write(|tx| store::update_pod(tx, &pod))?;
        tracing::info!(pod_id, "pod paused");
        Ok(())
    }

    /// `/pod/unpause`: thaws a paused pod's VM.
    pub async fn unpause(&self, pod_id: &str) -> Result<()> {
        let lock = self.lock_of(pod_id);
        let _guard = lock.lock().await;
        let mut pod = self.get(pod_id)?;
        if pod.state != PodState::Paused {
            return Err(Error::WrongState {
                id: pod.id,
                state: pod.state,
            });
        }
        let vm_id = pod.vm_id.clone().unwrap_or_default();
        self.vms.shim(&vm_id)?.resume_vm().await?;
        pod.state = PodState::Running;
        self.store.write(|tx| store::update_pod(tx, &pod))?;
        tracing::info!(pod_id, "pod unpaused");
        Ok(())
    }

    /// `/pod/labels`: sets labels; without `replace` a label already set to another value is
    /// a conflict.
    pub async fn set_labels(
        &self,
        pod_id: &str,
        labels: BTreeMap<String, String>,
        replace: bool,
    ) -> Result<()> {
        let lock = self.lock_of(pod_id);
        let _guard = lock.lock().await;
        let mut pod = self.get(pod_id)?;
        for (k, v) in &labels {
            if k.is_empty() {
                return Err(Error::Invalid("labels: an empty label name".into()));
            }
            if let Some(old) = pod.spec.labels.get(k)
                && old != v
                && !replace
            {
                return Err(Error::LabelSet {
                    pod_id: pod.id,
                    key: k.clone(),
                    value: old.clone(),
                });
            }
        }
        pod.spec.labels.extend(labels);
        self.store.write(|tx| store::update_pod_spec(tx, &pod))?;
        Ok(())
    }

    /// The running containers of a running (or paused) pod and its shim, for `/pod/stats`.
    pub fn stats_targets(&self, pod_id: &str) -> Result<(Shim, Vec<ContainerRecord>)> {
        let pod = self.get(pod_id)?;
        if !pod.state.can_stop() {
            return Err(Error::WrongState {
                id: pod.id,
                state: pod.state,
            });
        }
        let shim = self.vms.shim(pod.vm_id.as_deref().unwrap_or_default())?;
        let cts = self
            .containers(pod_id)?
            .into_iter()
            .filter(|c| c.state.is_running())
            .collect();
        Ok((shim, cts))
    }
}

fn main_process(ct: &ContainerRecord) -> ProcessRef {
    ProcessRef {
        container_id: ct.id.clone(),
        exec_id: String::new(),
    }
}

fn remove_dir(ct: &ContainerRecord) {
    match std::fs::remove_dir_all(Path::new(&ct.dir)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(container_id = %ct.id, "remove {}: {e}", ct.dir),
    }
}

/// Docker's stats objects for a pod's containers, one sample after another: each sample
/// carries the previous one as `precpu_stats` (Docker's CPU percentage needs both).
#[derive(Default)]
pub struct StatsSampler {
    previous: BTreeMap<String, Value>,
}

impl StatsSampler {
    /// One object per running container, in Docker's `/containers/{id}/stats` shape.
    pub async fn sample(
        &mut self,
        shim: &Shim,
        containers: &[ContainerRecord],
    ) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for ct in containers {
            let s = shim.stats(&ct.id).await?;
            let now = crate::container::stdio::log::now();
            let cpu = cpu_stats(&s);
            let (preread, precpu) = match self.previous.get(&ct.id) {
                Some(prev) => (prev["read"].clone(), prev["cpu_stats"].clone()),
                None => (
                    json!("0001-01-01T00:00:00Z"),
                    json!({"cpu_usage": {"total_usage": 0}}),
                ),
            };
            let v = json!({
                "id": ct.id,
                "name": format!("/{}", ct.name),
                "read": now,
                "preread": preread,
                "cpu_stats": cpu,
                "precpu_stats": precpu,
                "memory_stats": {
                    "usage": s.memory_usage_bytes,
                    "limit": s.memory_limit_bytes,
                    "stats": {"cache": s.memory_cache_bytes},
                },
                "pids_stats": if s.pids_limit > 0 {
                    json!({"current": s.pids_current, "limit": s.pids_limit})
                } else {
                    json!({"current": s.pids_current})
                },
                "blkio_stats": {
                    "io_service_bytes_recursive": [
                        {"major": 0, "minor": 0, "op": "read", "value": s.blk_read_bytes},
                        {"major": 0, "minor": 0, "op": "write", "value": s.blk_write_bytes},
                    ],
                },
                "networks": s.networks.iter().map(|n| (n.interface.clone(), json!({
                    "rx_bytes": n.rx_bytes, "rx_packets": n.rx_packets,
                    "rx_errors": n.rx_errors, "rx_dropped": n.rx_dropped,
                    "tx_bytes": n.tx_bytes, "tx_packets": n.tx_packets,
                    "tx_errors": n.tx_errors, "tx_dropped": n.tx_dropped,
                }))).collect::<serde_json::Map<_, _>>(),
            });
            self.previous.insert(ct.id.clone(), v.clone());
            out.push(v);
        }
        Ok(out)
    }
}

fn cpu_stats(s: &ContainerStats) -> Value {
    json!({
        "cpu_usage": {
            "total_usage": s.cpu_usage_ns,
            "usage_in_usermode": s.cpu_user_ns,
            "usage_in_kernelmode": s.cpu_system_ns,
        },
        "system_cpu_usage": s.system_cpu_ns,
        "online_cpus": s.online_cpus,
    })
}
