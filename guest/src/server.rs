//! The agent's gRPC service: proto in, [`Containers`] call, proto out.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_vsock::{VMADDR_CID_ANY, VMADDR_CID_HOST, VsockAddr, VsockListener, VsockStream};
use tonic::{Request, Response, Status, Streaming};

use hyper_proto::agent::agent_server::{Agent, AgentServer};
use hyper_proto::agent::{
    ContainerRequest, CreateContainerRequest, PingResponse, StartContainerResponse,
};
use hyper_proto::types::{
    AttachInput, AttachOutput, ContainerStats, Empty, ExecRequest, ProcessRef, ResizeRequest,
    SignalRequest, WaitResponse, attach_input,
};

use crate::container::Containers;
use crate::error::Error;
use crate::reaper::Reaper;

pub struct AgentService {
    containers: Arc<Containers>,
    services: crate::services::Services,
    ready_ms: u64,
}

/// Binds the vsock port and serves until the listener fails.
pub async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let reaper = Reaper::default();
    reaper.start()?;
    let containers = Containers::new(
        Path::new(crate::SHARE_DIR),
        Path::new(crate::STATE_DIR),
        Path::new(crate::BUNDLE_DIR),
        reaper,
    );
    let listener = VsockListener::bind(VsockAddr::new(
        VMADDR_CID_ANY,
        hyper_proto::AGENT_VSOCK_PORT,
    ))?;
    let ready_ms = crate::boot::uptime_ms();
    eprintln!(
        "hyper-agent: serving on vsock port {} uptime_ms={ready_ms}",
        hyper_proto::AGENT_VSOCK_PORT
    );
    // The listener queues connections from here on, before the server takes them.
    tokio::spawn(announce_ready());
    let service = AgentService {
        containers: Arc::new(containers),
        services: Default::default(),
        ready_ms,
    };
    tonic::transport::Server::builder()
        .add_service(AgentServer::new(service))
        .serve_with_incoming(listener.incoming())
        .await?;
    Ok(())
}

/// Tells the host the agent listens: a connection to the host's ready port, one line, closed.
async fn announce_ready() {
    let host = VsockAddr::new(VMADDR_CID_HOST, hyper_proto::AGENT_READY_PORT);
    let announced = async {
        let mut stream = VsockStream::connect(host).await?;
        stream.write_all(b"READY\n").await?;
        stream.shutdown(std::net::Shutdown::Write)
    }
    .await;
    if let Err(e) = announced {
        tracing::warn!("announcing readiness to the host: {e}");
    }
}

type AttachStream = Pin<Box<dyn Stream<Item = Result<AttachOutput, Status>> + Send>>;

#[tonic::async_trait]
impl Agent for AgentService {
    async fn ping(&self, _: Request<Empty>) -> Result<Response<PingResponse>, Status> {
        Ok(Response::new(PingResponse {
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_ms: crate::boot::uptime_ms(),
            agent_ready_ms: self.ready_ms,
        }))
    }

    async fn create_container(
        &self,
        req: Request<CreateContainerRequest>,
    ) -> Result<Response<Empty>, Status> {
        self.containers.create(req.get_ref())?;
        Ok(Response::new(Empty {}))
    }

    async fn start_container(
        &self,
        req: Request<ContainerRequest>,
    ) -> Result<Response<StartContainerResponse>, Status> {
        let pid = self.containers.start(&req.get_ref().id)?;
        Ok(Response::new(StartContainerResponse { pid }))
    }

    async fn exec(
        &self,
        req: Request<ExecRequest>,
    ) -> Result<Response<StartContainerResponse>, Status> {
        let pid = self.containers.exec(req.get_ref())?;
        Ok(Response::new(StartContainerResponse { pid }))
    }

    type AttachStream = AttachStream;

    async fn attach(
        &self,
        req: Request<Streaming<AttachInput>>,
    ) -> Result<Response<AttachStream>, Status> {
        let mut input = req.into_inner();
        let first = input.message().await?;
        let (target, from_seq) = match first.and_then(|m| m.input) {
            Some(attach_input::Input::Open(target)) => (target, 0),
            Some(attach_input::Input::Resume(from)) => (
                from.process.ok_or_else(|| {
                    Status::invalid_argument("attach: resume must name the process")
                })?,
                from.from_seq,
            ),
            _ => {
                return Err(Status::invalid_argument(
                    "attach: the first message must name the process",
                ));
            }
        };
        let process = self.containers.process(&target)?;

        // stdin: forwarded until the caller closes it or hangs up.
        let stdin_process = process.clone();
        tokio::spawn(async move {
            while let Ok(Some(msg)) = input.message().await {
                match msg.input {
                    Some(attach_input::Input::Stdin(data)) => {
                        if let Err(e) = stdin_process.write_stdin(&data).await {
                            tracing::debug!("attach stdin: {e}");
                            break;
                        }
                    }
                    Some(attach_input::Input::CloseStdin(true)) => break,
                    _ => {}
                }
            }
            stdin_process.close_stdin().await;
        });

        let output = process.output.clone();
        let stream = futures::stream::unfold(from_seq, move |cursor| {
            let output = output.clone();
            async move {
                let (chunks, next) = output.next(cursor).await?;
                // The chunks are the ones numbered up to `next`, contiguously.
                let first = next - chunks.len() as u64;
                let numbered = chunks.into_iter().zip(first..);
                Some((futures::stream::iter(numbered), next))
            }
        })
        .flatten()
        .map(|(c, seq)| {
            Ok(AttachOutput {
                stream: c.stream as i32,
                data: c.data,
                seq,
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn signal(&self, req: Request<SignalRequest>) -> Result<Response<Empty>, Status> {
        let req = req.get_ref();
        let target = req
            .process
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("process: missing".into()))?;
        self.containers.signal(target, req.signal)?;
        Ok(Response::new(Empty {}))
    }

    async fn wait(&self, req: Request<ProcessRef>) -> Result<Response<WaitResponse>, Status> {
        let process = self.containers.process(req.get_ref())?;
        let exit_code = process.wait().await;
        Ok(Response::new(WaitResponse { exit_code }))
    }

    async fn remove_container(
        &self,
        req: Request<ContainerRequest>,
    ) -> Result<Response<Empty>, Status> {
        self.containers.remove(&req.get_ref().id).await?;
        Ok(Response::new(Empty {}))
    }

    async fn resize(&self, req: Request<ResizeRequest>) -> Result<Response<Empty>, Status> {
        let req = req.get_ref();
        let target = req
            .process
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("process: missing".into()))?;
        self.containers.resize(target, req.rows, req.cols)?;
        Ok(Response::new(Empty {}))
    }

    async fn stats(
        &self,
        req: Request<ContainerRequest>,
    ) -> Result<Response<ContainerStats>, Status> {
        Ok(Response::new(self.containers.stats(&req.get_ref().id)?))
    }

    async fn configure_network(
        &self,
        req: Request<hyper_proto::types::PodNetwork>,
    ) -> Result<Response<Empty>, Status> {
        crate::network::configure(req.get_ref()).await?;
        Ok(Response::new(Empty {}))
    }

    async fn write_etc_files(
        &self,
        req: Request<hyper_proto::types::EtcFiles>,
    ) -> Result<Response<Empty>, Status> {
        crate::etc_files::write(Path::new(crate::ETC_DIR), req.get_ref())?;
        Ok(Response::new(Empty {}))
    }

    async fn configure_services(
        &self,
        req: Request<hyper_proto::types::ServiceList>,
    ) -> Result<Response<Empty>, Status> {
        self.services.configure(req.get_ref())?;
        Ok(Response::new(Empty {}))
    }

    async fn power_off(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        tracing::info!("power off requested");
        tokio::spawn(async {
            // Let the reply leave before the VM disappears.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            crate::boot::power_off();
        });
        Ok(Response::new(Empty {}))
    }
}
