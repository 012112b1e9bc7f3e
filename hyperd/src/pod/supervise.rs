//! Watching a running container: its output goes to its log (through its
//! [`Recording`]), and its exit is recorded (which may stop the pod); after a hyperd restart,
//! also the exits of its execs that were running. A shim that dies mid-way is the VM
//! monitor's business, not this one's.

use std::sync::Arc;

use hyper_proto::types::ProcessRef;

use super::{Pods, Result};
use crate::container::exec::VM_DIED_EXIT;
use crate::container::stdio::Recording;
use crate::error::Kind;
use crate::store::{self, ContainerRecord};
use crate::vm::Shim;

impl Pods {
    pub(super) fn supervise(
        self: &Arc<Self>,
        shim: Shim,
        ct: ContainerRecord,
        recording: Recording,
    ) {
        let pods = Arc::clone(self);
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
}
