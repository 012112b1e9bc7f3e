//! The shim's one client of the guest agent, over hybrid vsock.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use hyper_proto::agent::PingResponse;
use hyper_proto::agent::agent_client::AgentClient as Grpc;
use hyper_proto::types::Empty;

use crate::child::Child;
use crate::error::{Error, Result};
use crate::vsock::GuestPortListener;

/// One connection attempt: the guest may accept the vsock connection late or not at all.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

pub type AgentClient = Grpc<Channel>;

async fn channel(uds: PathBuf) -> std::result::Result<Channel, tonic::transport::Error> {
    let connector = tower::service_fn(move |_: Uri| {
        let uds = uds.clone();
        async move {
            crate::vsock::connect(&uds, hyper_proto::AGENT_VSOCK_PORT)
                .await
                .map(TokioIo::new)
        }
    });
    // The URI is never dialled: the connector above decides where the bytes go.
    Endpoint::from_static("http://guest.agent")
        .connect_timeout(ATTEMPT_TIMEOUT)
        .connect_with_connector(connector)
        .await
}

async fn attempt(uds: &Path) -> Option<(AgentClient, PingResponse)> {
    let channel = match channel(uds.to_path_buf()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::trace!("agent not reachable yet: {e}");
            return None;
        }
    };
    let mut client = Grpc::new(channel);
    match tokio::time::timeout(ATTEMPT_TIMEOUT, client.ping(Empty {})).await {
        Ok(Ok(pong)) => Some((client, pong.into_inner())),
        Ok(Err(e)) => {
            tracing::trace!("agent ping failed: {e}");
            None
        }
        Err(_) => None,
    }
}

/// Connects to the agent once it announced itself on `ready`, giving up at `deadline` or when
/// the VMM exits.
pub async fn connect(
    uds: &Path,
    ready: &GuestPortListener,
    deadline: Instant,
    vmm: &Child,
) -> Result<(AgentClient, PingResponse)> {
    let started = Instant::now();
    tokio::select! {
        announced = ready.accept() => {
            announced.map_err(|e| Error::io("accept the agent's ready connection", e))?;
        }
        () = vmm.exited() => return Err(vmm.exited_error()),
        () = tokio::time::sleep_until(deadline.into()) => {
            return Err(Error::Timeout(format!(
                "guest agent: no answer after {:.1}s",
                started.elapsed().as_secs_f64()
            )));
        }
    }
    crate::wait::wait_until("guest agent", deadline, &[vmm], || attempt(uds)).await
}
