//! The one client of a shim's gRPC API (shim.proto). gRPC status codes are mapped back to
//! [`Error`] kinds here and nowhere else, so a guest "no such process" reaches the user as a
//! 404 and a bad command as a 400.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::Code;
use tonic::transport::{Channel, Endpoint, Uri};

use hyper_proto::shim::shim_client::ShimClient;

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
