//! The shim's gRPC service: proto in, [`Vm`] call, proto out.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use hyper_proto::shim::shim_server::Shim;
use hyper_proto::shim::{
    AddContainerRequest, ContainerRef, CreateVmRequest, ShutdownRequest, VmInfo,
};
use hyper_proto::types::{
    AttachInput, AttachOutput, ContainerStats, Empty, ExecRequest, ProcessRef, ResizeRequest,
    SignalRequest, WaitResponse,
};

use crate::vm::{DEFAULT_SHUTDOWN_GRACE, Vm};

/// How long the agent may take to apply a pod's services.
const SERVICES_TIMEOUT: Duration = Duration::from_secs(60);

pub struct ShimService {
    pub vm: Arc<Vm>,
}

type AttachStream = Pin<Box<dyn Stream<Item = Result<AttachOutput, Status>> + Send>>;

#[tonic::async_trait]
impl Shim for ShimService {
    async fn create_vm(&self, req: Request<CreateVmRequest>) -> Result<Response<VmInfo>, Status> {
        Ok(Response::new(self.vm.create(req.get_ref()).await?))
    }

    async fn info(&self, _: Request<Empty>) -> Result<Response<VmInfo>, Status> {
        Ok(Response::new(self.vm.info().await))
    }

    async fn add_container(
        &self,
        req: Request<AddContainerRequest>,
    ) -> Result<Response<Empty>, Status> {
        self.vm.add_container(req.into_inner()).await?;
        Ok(Response::new(Empty {}))
    }

    async fn start_container(&self, req: Request<ContainerRef>) -> Result<Response<Empty>, Status> {
        self.vm.start_container(req.into_inner().id).await?;
        Ok(Response::new(Empty {}))
    }

    async fn exec(&self, req: Request<ExecRequest>) -> Result<Response<Empty>, Status> {
        self.vm.exec(req.into_inner()).await?;
        Ok(Response::new(Empty {}))
    }

    type AttachStream = AttachStream;

    /// Relays the stream to the agent as it is: both ends speak the same messages.
    async fn attach(
        &self,
        req: Request<Streaming<AttachInput>>,
    ) -> Result<Response<AttachStream>, Status> {
        let mut agent = self.vm.agent()?;
        let input = req.into_inner().map_while(Result::ok);
        let output = agent.attach(input).await?.into_inner();
        Ok(Response::new(Box::pin(output)))
    }

    async fn signal(&self, req: Request<SignalRequest>) -> Result<Response<Empty>, Status> {
        self.vm.signal(req.into_inner()).await?;
        Ok(Response::new(Empty {}))
    }

    async fn wait(&self, req: Request<ProcessRef>) -> Result<Response<WaitResponse>, Status> {
        let exit_code = self.vm.wait(req.into_inner()).await?;
        Ok(Response::new(WaitResponse { exit_code }))
    }

    async fn remove_container(
        &self,
        req: Request<ContainerRef>,
    ) -> Result<Response<Empty>, Status> {
        self.vm.remove_container(req.into_inner().id).await?;
        Ok(Response::new(Empty {}))
    }

    async fn resize(&self, req: Request<ResizeRequest>) -> Result<Response<Empty>, Status> {
        self.vm.resize(req.into_inner()).await?;
        Ok(Response::new(Empty {}))
    }

    async fn stats(&self, req: Request<ContainerRef>) -> Result<Response<ContainerStats>, Status> {
        Ok(Response::new(self.vm.stats(req.into_inner().id).await?))
    }

    async fn configure_network(
        &self,
        req: Request<hyper_proto::types::PodNetwork>,
    ) -> Result<Response<Empty>, Status> {
        self.vm.configure_network(req.into_inner()).await?;
        Ok(Response::new(Empty {}))
    }

    /// Relays the pod's services to the agent, bounded like every agent call (loading the
    /// IPVS modules on first use is slow under TCG, hence the generous bound).
    async fn configure_services(
        &self,
        req: Request<hyper_proto::types::ServiceList>,
    ) -> Result<Response<Empty>, Status> {
        let mut agent = self.vm.agent()?;
        match tokio::time::timeout(SERVICES_TIMEOUT, agent.configure_services(req.into_inner()))
            .await
        {
            Ok(reply) => Ok(Response::new(reply?.into_inner())),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "agent: configure services: no answer after {}s",
                SERVICES_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn write_etc_files(
        &self,
        req: Request<hyper_proto::types::EtcFiles>,
    ) -> Result<Response<Empty>, Status> {
        self.vm.write_etc_files(req.into_inner()).await?;
        Ok(Response::new(Empty {}))
    }

    async fn pause_vm(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        self.vm.pause().await?;
        Ok(Response::new(Empty {}))
    }

    async fn resume_vm(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        self.vm.resume().await?;
        Ok(Response::new(Empty {}))
    }

    async fn shutdown(&self, req: Request<ShutdownRequest>) -> Result<Response<Empty>, Status> {
        let grace = match req.get_ref().grace_ms {
            0 => DEFAULT_SHUTDOWN_GRACE,
            ms => Duration::from_millis(ms.into()),
        };
        let result = self.vm.shutdown(grace).await;
        // The server drains this reply before it exits.
        self.vm.end();
        result?;
        Ok(Response::new(Empty {}))
    }
}
