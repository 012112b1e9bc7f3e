//! The build VM: one VM per build, booted at the first `RUN` that misses the cache (an
//! all-cached build boots none), used for every `RUN` of the build and destroyed at its end,
//! whether the build succeeded, failed or its client went away. It belongs to no pod: it is
//! booted through [`Vms`] directly. Each `RUN` is one container in it on an overlay of the
//! image's layers under a fresh upper dir (which becomes the step's layer), created, attached,
//! started, waited for and removed.

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt as _;
use hyper_proto::rest::JsonMessage;
use hyper_proto::shim::{AddContainerRequest, ContainerRef};
use hyper_proto::types::{AttachInput, Process, ProcessRef, attach_input};

use crate::image::Progress;
use crate::store::VmRecord;
use crate::vm::{self, Shim, VmSize, Vms};

/// A build VM's size: builds compile and unpack, so more memory than a default pod.
pub const BUILD_VM: VmSize = VmSize {
    cpus: 1,
    memory_mib: 512,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Vm(#[from] vm::Error),
    #[error("the client went away")]
    Cancelled,
}

/// One `RUN`: the process and its root filesystem.
#[derive(Debug, Clone)]
pub struct RunStep {
    /// The container id in the VM (unique within the build).
    pub id: String,
    pub process: Process,
    /// Read-only lower dirs, topmost first (at least one).
    pub layers: Vec<String>,
    /// Writable upper and work dirs, on one filesystem.
    pub upper: PathBuf,
    pub work: PathBuf,
}

/// The lazily booted VM of one build.
pub struct BuildVm {
    vms: Arc<Vms>,
    vm: Option<(VmRecord, Shim)>,
    booted: usize,
}

impl BuildVm {
    pub fn new(vms: Arc<Vms>) -> Self {
        Self {
            vms,
            vm: None,
            booted: 0,
        }
    }

    /// How many VMs this build booted (0 for an all-cached build, else 1).
    pub fn boots(&self) -> usize {
        self.booted
    }

    async fn shim(&mut self) -> Result<Shim, Error> {
        if let Some((_, shim)) = &self.vm {
            return Ok(shim.clone());
        }
        let record = self.vms.boot_build(BUILD_VM).await?;
        self.booted += 1;
        let shim = match self.vms.shim(&record.id) {
            Ok(s) => s,
            Err(e) => {
                self.vms.destroy(&record).await;
                return Err(e.into());
            }
        };
        tracing::info!(vm_id = %record.id, "build vm booted");
        self.vm = Some((record, shim.clone()));
        Ok(shim)
    }

    /// Runs `step` to its end, sending its output to `progress` as `{"stream": …}` messages as
    /// it comes (when `echo`). Returns the exit code (128 + signal for a signal). The container is removed
    /// from the VM in every case. [`Error::Cancelled`] when the client that reads `progress`
    /// goes away (the process is left to die with the VM).
    pub async fn run(
        &mut self,
        step: &RunStep,
        progress: &Progress,
        echo: bool,
    ) -> Result<i32, Error> {
        let shim = self.shim().await?;
        let mut client = shim.client.clone();
        client
            .add_container(AddContainerRequest {
                id: step.id.clone(),
                rootfs: String::new(),
                process: Some(step.process.clone()),
                hostname: "buildkit".into(),
                resources: None,
                layers: step.layers.clone(),
                upper_dir: step.upper.to_string_lossy().into_owned(),
                work_dir: step.work.to_string_lossy().into_owned(),
                ..Default::default()
            })
            .await
            .map_err(|s| shim.error(s))?;
        let result = tokio::select! {
            r = run_added(&shim, &step.id, progress, echo) => r,
            () = progress.closed() => Err(Error::Cancelled),
        };
        if !matches!(result, Err(Error::Cancelled)) {
            let removed = client
                .remove_container(ContainerRef {
                    id: step.id.clone(),
                })
                .await;
            if let Err(s) = removed {
                // The upper dir must not be used while the guest may still write to it.
                return Err(shim.error(s).into());
            }
        }
        result
    }

    /// Powers the VM off and removes every trace of it (nothing when none was booted).
    pub async fn destroy(&mut self) {
        if let Some((record, _)) = self.vm.take() {
            self.vms.destroy(&record).await;
            tracing::info!(vm_id = %record.id, "build vm destroyed");
        }
    }
}

async fn run_added(shim: &Shim, id: &str, progress: &Progress, echo: bool) -> Result<i32, Error> {
    let mut client = shim.client.clone();
    client
        .start_container(ContainerRef { id: id.to_string() })
        .await
        .map_err(|s| shim.error(s))?;
    let target = ProcessRef {
        container_id: id.to_string(),
        exec_id: String::new(),
    };
    let open = AttachInput {
        input: Some(attach_input::Input::Open(target.clone())),
    };
    let output = async {
        let mut stream = match shim
            .client
            .clone()
            .attach(tokio_stream::iter(vec![open]))
            .await
        {
            Ok(s) => s.into_inner(),
            Err(s) => {
                tracing::warn!(container_id = id, "attach: {}", s.message());
                return;
            }
        };
        while let Some(Ok(chunk)) = stream.next().await {
            if !echo {
                continue;
            }
            progress.send(JsonMessage {
                stream: String::from_utf8_lossy(&chunk.data).into_owned(),
                ..Default::default()
            });
        }
    };
    let mut waiter = shim.client.clone();
    let (_, waited) = tokio::join!(output, waiter.wait(target));
    Ok(waited.map_err(|s| shim.error(s))?.into_inner().exit_code)
}
