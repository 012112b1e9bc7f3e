//! Watching a running container: its output goes to its log (through its
//! [`Recording`]), and its exit is recorded; then, by its restart policy ([`restart`]), it is
//! started again in the same VM after Docker's back-off, or, when nothing is left to run or
//! to restart, the pod stops. After a hyperd restart, also the exits of its execs that were
//! running, and the restarts that were due. A shim that dies mid-way is the VM monitor's
//! business, not this one's.
//!
//! A container stopped or killed through the API (`stopped_by_user` in its record) is never
//! restarted, nor is one whose pod is no longer running; `/container/start` and `/pod/start`
//! start it afresh (restart count and back-off reset, as Docker's `docker start`).
//!
//! [`restart`]: super::restart

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper_proto::types::ProcessRef;

use super::restart::{Backoff, Policy};
use super::{PodState, Pods, Result};
use crate::container::ContainerState;
use crate::container::exec::{self, VM_DIED_EXIT};
use crate::container::stdio::Recording;
use crate::error::Kind;
use crate::store::{self, ContainerRecord, PodRecord};
use crate::vm::Shim;

/// How long a restart due in a paused pod waits before it looks again.
const PAUSED_RETRY: Duration = Duration::from_secs(1);

/// The restart bookkeeping of the containers hyperd watches (in memory: after a hyperd restart
/// the back-off starts again at its first delay; the count is in the store).
#[derive(Default)]
pub(super) struct Restarts {
    runs: Mutex<HashMap<String, Runs>>,
    tokens: AtomicU64,
}

#[derive(Default)]
struct Runs {
    backoff: Backoff,
    /// When its current (or last) run began.
    started: Option<Instant>,
    /// The restart due, if any: only the task holding this token may carry it out.
    pending: Option<u64>,
}

impl Restarts {
    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Runs>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A run of `container_id` began now; `fresh`: started through the API, so the back-off
    /// starts over.
    fn started(&self, container_id: &str, fresh: bool) {
        let mut runs = self.runs();
        let r = runs.entry(container_id.to_string()).or_default();
        if fresh {
            r.backoff = Backoff::default();
        }
        r.started = Some(Instant::now());
        r.pending = None;
    }

    /// Makes a restart due: its token and the back-off delay to wait first.
    fn schedule(&self, container_id: &str) -> (u64, Duration) {
        let token = self.tokens.fetch_add(1, Ordering::Relaxed) + 1;
        let mut runs = self.runs();
        let r = runs.entry(container_id.to_string()).or_default();
        let ran = r.started.map(|t| t.elapsed()).unwrap_or_default();
        let (delay, next) = r.backoff.after_run(ran);
        r.backoff = next;
        r.pending = Some(token);
        (token, delay)
    }

    fn is_pending(&self, container_id: &str) -> bool {
        self.runs()
            .get(container_id)
            .is_some_and(|r| r.pending.is_some())
    }

    /// Whether the restart with `token` is still the one due.
    fn holds(&self, container_id: &str, token: u64) -> bool {
        self.runs()
            .get(container_id)
            .is_some_and(|r| r.pending == Some(token))
    }

    /// Drops the restart with `token` if it is still due.
    fn drop_pending(&self, container_id: &str, token: u64) {
        if let Some(r) = self.runs().get_mut(container_id)
            && r.pending == Some(token)
        {
            r.pending = None;
        }
    }

    pub(super) fn forget(&self, container_id: &str) {
        self.runs().remove(container_id);
    }
}

impl Pods {
    pub(super) fn supervise(
        self: &Arc<Self>,
        shim: Shim,
        ct: ContainerRecord,
        recording: Recording,
    ) {
        let pods = Arc::clone(self);
        self.restarts.started(&ct.id, ct.restart_count == 0);
        tokio::spawn(async move {
            let target = ProcessRef {
                container_id: ct.id.clone(),
                exec_id: String::new(),
            };
            let (_, waited) = tokio::join!(recording.run(), shim.wait(target));
            match waited {
                Ok(code) => {
                    tracing::info!(container_id = %ct.id, code, "container exited");
                    pods.container_exited(&ct.pod_id, &ct.id, code).await;
                }
                Err(e) => tracing::debug!(container_id = %ct.id, "wait ended: {e}"),
            }
        });
    }

    /// After a hyperd restart: waits again for the execs of `ct` that had not ended, so
    /// `/exitcode` gets their codes. One the guest does not know (never started) stays open.
    pub(super) fn rewait_execs(self: &Arc<Self>, shim: &Shim, ct: &ContainerRecord) -> Result<()> {
        for exec_id in self.store.read(|c| store::unfinished_execs(c, &ct.id))? {
            let pods = Arc::clone(self);
            let shim = shim.clone();
            let process = ProcessRef {
                container_id: ct.id.clone(),
                exec_id: exec_id.clone(),
            };
            tokio::spawn(async move {
                let code = match shim.wait(process).await {
                    Ok(code) => code,
                    Err(e) if e.kind() == Kind::NotFound => return,
                    Err(e) => {
                        tracing::warn!(exec_id, "wait: {e}");
                        VM_DIED_EXIT
                    }
                };
                match pods
                    .store
                    .write(|tx| store::set_exec_exit(tx, &exec_id, code))
                {
                    Ok(()) => pods.bump(),
                    Err(e) => tracing::error!(exec_id, "record exit: {e}"),
                }
            });
        }
        Ok(())
    }

    /// Whether container `ct` of `pod`, which exited, is restarted by its policy.
    pub(super) fn restart_wanted(&self, pod: &PodRecord, ct: &ContainerRecord) -> bool {
        if pod.state != PodState::Running
            || ct.state.is_running()
            || ct.state == ContainerState::Pending
        {
            return false;
        }
        let policy = Policy::of(&pod.spec, pod.spec.containers.get(ct.idx as usize));
        // No code recorded: it did not exit by itself (its run was cut short).
        let code = ct.exit_code.unwrap_or(VM_DIED_EXIT);
        policy.restarts(code, ct.restart_count, ct.stopped_by_user)
    }

    /// Restarts container `ct` of pod `pod_id` after its back-off, unless by then it was
    /// started, stopped or removed through the API, or its pod stopped. The caller holds
    /// the pod's lock (or, in [`Pods::recover`], nothing else runs yet).
    pub(super) fn schedule_restart(self: &Arc<Self>, ct: &ContainerRecord) {
        let (token, delay) = self.restarts.schedule(&ct.id);
        tracing::info!(
            container_id = %ct.id,
            delay_ms = delay.as_millis() as u64,
            restarts = ct.restart_count,
            "container restart due"
        );
        let pods = Arc::clone(self);
        let pod_id = ct.pod_id.clone();
        let container_id = ct.id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            pods.restart(&pod_id, &container_id, token).await;
        });
    }

    /// Carries out a due restart: the container is created afresh in the VM over its kept
    /// rootfs (as `/container/start` of an exited one) and its output goes on into its log.
    async fn restart(self: &Arc<Self>, pod_id: &str, container_id: &str, token: u64) {
        let lock = self.lock_of(pod_id);
        loop {
            let guard = lock.lock().await;
            if !self.restarts.holds(container_id, token) {
                return;
            }
            let pod = match self.get(pod_id) {
                Ok(pod) => pod,
                Err(_) => return self.restarts.forget(container_id),
            };
            if pod.state == PodState::Paused {
                // Its VM is frozen: the guest cannot take the container now.
                drop(guard);
                tokio::time::sleep(PAUSED_RETRY).await;
                continue;
            }
            let ct = match self.store.read(|c| store::get_container(c, container_id)) {
                Ok(Some(ct)) if self.restart_wanted(&pod, &ct) => ct,
                _ => {
                    self.restarts.drop_pending(container_id, token);
                    self.stop_if_done(pod_id).await;
                    return;
                }
            };
            let restarts = ct.restart_count + 1;
            if let Err(e) = self.restart_in_vm(&pod, ct, restarts).await {
                tracing::error!(pod_id, container_id, "restart: {e}");
                self.restarts.drop_pending(container_id, token);
                self.stop_if_done(pod_id).await;
                return;
            }
            tracing::info!(pod_id, container_id, restarts, "container restarted");
            return;
        }
    }

    async fn restart_in_vm(
        self: &Arc<Self>,
        pod: &PodRecord,
        ct: ContainerRecord,
        restarts: u32,
    ) -> Result<()> {
        let shim = self.vms.shim(pod.vm_id.as_deref().unwrap_or_default())?;
        exec::remove_from_vm(&shim, &ct.id).await?;
        self.add_to_vm(&shim, pod, &ct).await?;
        self.run_in_vm(&shim, pod, ct, restarts).await
    }

    /// Stops a running pod (and its VM) once none of its containers runs or has a restart
    /// due. The caller holds the pod's lock.
    pub(super) async fn stop_if_done(&self, pod_id: &str) {
        let Ok(pod) = self.get(pod_id) else { return };
        let done = self
            .containers(pod_id)
            .map(|cs| {
                cs.iter()
                    .all(|c| !c.state.is_running() && !self.restarts.is_pending(&c.id))
            })
            .unwrap_or(false);
        if pod.state == PodState::Running
            && done
            && let Err(e) = self.stop_locked(pod_id, true).await
        {
            tracing::error!(pod_id, "stop after the last container exited: {e}");
        }
    }

    /// Marks a container as stopped or killed through the API before the signal goes out, so
    /// its exit is not restarted (Docker's "manually stopped").
    pub(super) fn stopped_by_user(&self, container_id: &str) -> Result<()> {
        self.store
            .write(|tx| store::set_stopped_by_user(tx, container_id, true))?;
        Ok(())
    }
}
