//! The one client of a shim's gRPC API (shim.proto): typed methods for what hyperd asks of a
//! VM (processes, their stdio, sizes, stats, pausing). gRPC status codes are mapped back to
//! [`Error`] kinds here and nowhere else, so a guest "no such process" reaches the user as a
//! 404 and a bad command as a 400.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::Code;
use tonic::transport::{Channel, Endpoint, Uri};

use futures::Stream;
use hyper_proto::shim::ContainerRef;
use hyper_proto::shim::shim_client::ShimClient;
use hyper_proto::types::{
    AttachFrom, AttachInput, AttachOutput, ContainerStats, Empty, EtcFiles, ExecRequest, NicSpec,
    PodNetwork, ProcessRef, ResizeRequest, SignalRequest, attach_input,
};
use tonic::Streaming;

use super::Error;

/// How long connecting to a shim's socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The socket file appears at bind(), a moment before the shim listens: refused connections
/// are retried this long.
const REFUSED_RETRY: Duration = Duration::from_secs(10);

/// A connection to one shim.
#[derive(Clone)]
pub struct Shim {
    pub vm_id: String,
    pub client: ShimClient<Channel>,
}

impl Shim {
    pub async fn connect(vm_id: &str, socket: &Path) -> Result<Self, Error> {
        let deadline = tokio::time::Instant::now() + REFUSED_RETRY;
        loop {
            match Self::connect_once(vm_id, socket).await {
                Err(e) if socket.exists() && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(vm_id, "{e}; retrying");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                result => return result,
            }
        }
    }

    async fn connect_once(vm_id: &str, socket: &Path) -> Result<Self, Error> {
        let socket: PathBuf = socket.to_path_buf();
        let path = socket.clone();
        let channel = Endpoint::from_static("http://shim.local")
            .connect_timeout(CONNECT_TIMEOUT)
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    tokio::net::UnixStream::connect(path)
                        .await
                        .map(TokioIo::new)
                }
            }))
            .await
            .map_err(|e| Error::ShimGone {
                vm_id: vm_id.to_string(),
                message: format!("connect {}: {e}", socket.display()),
            })?;
        Ok(Self {
            vm_id: vm_id.to_string(),
            client: ShimClient::new(channel),
        })
    }

    /// Attaches to a process's stdio: its output from chunk `from_seq` on (0: all the guest
    /// still keeps), and `stdin` (stdin bytes or a close) relayed to it. Dropping the stream
    /// detaches.
    pub async fn attach(
        &self,
        process: ProcessRef,
        from_seq: u64,
        stdin: impl Stream<Item = AttachInput> + Send + 'static,
    ) -> Result<Streaming<AttachOutput>, Error> {
        let first = AttachInput {
            input: Some(if from_seq == 0 {
                attach_input::Input::Open(process)
            } else {
                attach_input::Input::Resume(AttachFrom {
                    process: Some(process),
                    from_seq,
                })
            }),
        };
        let input = futures::StreamExt::chain(futures::stream::iter([first]), stdin);
        Ok(self
            .client
            .clone()
            .attach(input)
            .await
            .map_err(|s| self.error(s))?
            .into_inner())
    }

    /// Runs a process in a container (or, with an empty `container_id`, in the VM itself).
    pub async fn exec(&self, req: ExecRequest) -> Result<(), Error> {
        self.client
            .clone()
            .exec(req)
            .await
            .map_err(|s| self.error(s))?;
        Ok(())
    }

    /// Sends signal number `signal` to a process.
    pub async fn signal(&self, process: ProcessRef, signal: i32) -> Result<(), Error> {
        self.client
            .clone()
            .signal(SignalRequest {
                process: Some(process),
                signal,
            })
            .await
            .map_err(|s| self.error(s))?;
        Ok(())
    }

    /// Waits for a process to end; its exit status as a shell reports it (128 + N for
    /// signal N).
    pub async fn wait(&self, process: ProcessRef) -> Result<i32, Error> {
        Ok(self
            .client
            .clone()
            .wait(process)
            .await
            .map_err(|s| self.error(s))?
            .into_inner()
            .exit_code)
    }

    /// A new window size (rows × columns) for a process started with a terminal.
    pub async fn resize(&self, process: ProcessRef, rows: u32, cols: u32) -> Result<(), Error> {
        self.client
            .clone()
            .resize(ResizeRequest {
                process: Some(process),
                rows,
                cols,
            })
            .await
            .map_err(|s| self.error(s))?;
        Ok(())
    }

    /// A container's resource use, read from its cgroup in the guest.
    pub async fn stats(&self, container_id: &str) -> Result<ContainerStats, Error> {
        Ok(self
            .client
            .clone()
            .stats(ContainerRef {
                id: container_id.into(),
            })
            .await
            .map_err(|s| self.error(s))?
            .into_inner())
    }

    /// Freezes the whole VM (QMP `stop`, CH `vm.pause`); pausing a paused VM is no error.
    pub async fn pause_vm(&self) -> Result<(), Error> {
        self.client
            .clone()
            .pause_vm(Empty {})
            .await
            .map_err(|s| self.error(s))?;
        Ok(())
    }

    /// Thaws a paused VM; resuming a running one is no error.
    pub async fn resume_vm(&self) -> Result<(), Error> {
        self.client
            .clone()
            .resume_vm(Empty {})
            .await
            .map_err(|s| self.error(s))?;
        Ok(())
    }

    /// The VM's network card (None: the VM has none), from the shim's `Info`.
    pub async fn nic(&self) -> Result<Option<NicSpec>, Error> {
        Ok(self
            .client
            .clone()
            .info(Empty {})
            .await
            .map_err(|s| self.error(s))?
            .into_inner()
            .nic)
    }

    /// Applies the guest's addresses and routes (no interfaces: the NIC goes down).
    pub async fn configure_network(&self, network: PodNetwork) -> Result<(), Error> {
        self.client
            .clone()
            .configure_network(network)
            .await
            .map_err(|s| self.error(s))?;
        Ok(())
    }

    /// Replaces the pod's services in the guest (IPVS; an empty list clears them).
    pub async fn configure_services(
        &self,
        services: hyper_proto::types::ServiceList,
    ) -> Result<(), Error> {
        self.client
            .clone()
            .configure_services(services)
            .await
            .map_err(|s| self.error(s))?;
        Ok(())
    }

    /// Rewrites the pod's /etc/hostname, /etc/hosts and /etc/resolv.conf in the guest, which
    /// every container sees through bind mounts.
    pub async fn write_etc_files(&self, files: EtcFiles) -> Result<(), Error> {
        self.client
            .clone()
            .write_etc_files(files)
            .await
            .map_err(|s| self.error(s))?;
        Ok(())
    }

    /// Maps a failed call on this shim to an [`Error`].
    pub fn error(&self, status: tonic::Status) -> Error {
        status_error(&self.vm_id, status)
    }
}

pub fn status_error(vm_id: &str, status: tonic::Status) -> Error {
    let message = status.message().to_string();
    match status.code() {
        Code::InvalidArgument => Error::Rejected(message),
        Code::NotFound => Error::GuestNotFound(message),
        Code::FailedPrecondition | Code::AlreadyExists => Error::GuestConflict(message),
        Code::Unavailable | Code::Cancelled | Code::Unknown => Error::ShimGone {
            vm_id: vm_id.to_string(),
            message,
        },
        Code::Unimplemented => Error::Unsupported(message),
        Code::DeadlineExceeded => Error::Timeout {
            vm_id: vm_id.to_string(),
            message,
        },
        _ => Error::Shim {
            vm_id: vm_id.to_string(),
            message,
        },
    }
}
