//! Watching a running container: its output goes to its log (through its
//! [`Recording`]), and its exit is recorded (which may stop the pod). A shim that dies
//! mid-way is the VM monitor's business, not this one's.

use std::sync::Arc;

use hyper_proto::types::ProcessRef;

use super::Pods;
use crate::container::stdio::Recording;
use crate::store::ContainerRecord;
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
}
