//! Watching a running container: its output goes to its log, and its exit is recorded (which
//! may stop the pod). A shim that dies mid-way is the VM monitor's business, not this one's.

use std::sync::Arc;

use tokio_stream::StreamExt;

use hyper_proto::rest::{STDCOPY_STDERR, STDCOPY_STDOUT};
use hyper_proto::types::{AttachInput, OutputStream, ProcessRef, attach_input};

use super::Pods;
use crate::container::output::OutputWriter;
use crate::store::ContainerRecord;
use crate::vm::Shim;

impl Pods {
    pub(super) fn supervise(
        self: &Arc<Self>,
        shim: Shim,
        ct: ContainerRecord,
        writer: OutputWriter,
    ) {
        let pods = Arc::clone(self);
        tokio::spawn(async move {
            let target = ProcessRef {
                container_id: ct.id.clone(),
                exec_id: String::new(),
            };
            let tee = record_output(&shim, target.clone(), writer);
            let mut client = shim.client.clone();
            let wait = client.wait(target);
            let (_, waited) = tokio::join!(tee, wait);
            match waited {
                Ok(resp) => {
                    let code = resp.into_inner().exit_code;
                    tracing::info!(container_id = %ct.id, code, "container exited");
                    pods.container_exited(&ct.pod_id, &ct.id, code).await;
                }
                Err(status) => {
                    tracing::debug!(container_id = %ct.id, "wait ended: {}", status.message());
                }
            }
        });
    }
}

/// Appends everything the container prints to its log, until it closes its output.
async fn record_output(shim: &Shim, target: ProcessRef, mut writer: OutputWriter) {
    let open = AttachInput {
        input: Some(attach_input::Input::Open(target.clone())),
    };
    let stream = shim
        .client
        .clone()
        .attach(tokio_stream::iter(vec![open]))
        .await;
    let mut stream = match stream {
        Ok(s) => s.into_inner(),
        Err(s) => {
            tracing::warn!(container_id = %target.container_id, "attach: {}", s.message());
            return;
        }
    };
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(s) => {
                tracing::debug!(container_id = %target.container_id, "output stream: {}", s.message());
                break;
            }
        };
        let id = match OutputStream::try_from(chunk.stream) {
            Ok(OutputStream::Stderr) => STDCOPY_STDERR,
            _ => STDCOPY_STDOUT,
        };
        if let Err(e) = writer.frame(id, &chunk.data).await {
            tracing::error!(container_id = %target.container_id, "write output log: {e}");
            break;
        }
    }
    writer.finish();
}
