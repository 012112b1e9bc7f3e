//! hyper-shim: one process per VM. It starts the VMM ([`vmm`]) with virtiofsd and the vsock
//! back-end, waits for the guest agent ([`agent`]), and relays hyperd's calls ([`server`]) to
//! it. Everything it starts dies with it; its sockets and run dir go when it exits.

pub mod agent;
pub mod child;
pub mod config;
pub mod disk;
pub mod error;
pub mod hostpath;
pub mod server;
pub mod share;
pub mod tap;
pub mod virtiofsd;
pub mod vm;
pub mod vmm;
pub mod vsock;
pub mod wait;

use std::os::unix::fs::PermissionsExt;

use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_stream::wrappers::UnixListenerStream;

use hyper_proto::shim::shim_server::ShimServer;

use crate::config::ShimConfig;
use crate::error::{Error, Result};
use crate::server::ShimService;
use crate::vm::{DEFAULT_SHUTDOWN_GRACE, Vm};

/// Serves until the VM is shut down (Shutdown RPC, SIGTERM or SIGINT), then cleans up.
pub async fn run(config: ShimConfig) -> Result<()> {
    std::fs::create_dir_all(&config.run_dir)
        .map_err(|e| Error::io(format!("mkdir {}", config.run_dir.display()), e))?;
    std::fs::set_permissions(&config.run_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io("chmod run dir", e))?;
    // A stale socket from a killed shim would make bind fail.
    match std::fs::remove_file(&config.socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("remove {}", config.socket.display()), e)),
    }
    let listener = UnixListener::bind(&config.socket)
        .map_err(|e| Error::io(format!("bind {}", config.socket.display()), e))?;
    std::fs::set_permissions(&config.socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("chmod socket", e))?;

    let vm = Vm::new(config.clone())?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| Error::io("sigterm", e))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| Error::io("sigint", e))?;
    let stop = {
        let vm = vm.clone();
        async move {
            tokio::select! {
                _ = vm.ended() => {}
                _ = sigterm.recv() => tracing::info!("SIGTERM: shutting the vm down"),
                _ = sigint.recv() => tracing::info!("SIGINT: shutting the vm down"),
            }
        }
    };
    tracing::info!(vm_id = %config.id, socket = %config.socket.display(), "shim serving");
    let served = tonic::transport::Server::builder()
        .add_service(ShimServer::new(ShimService { vm: vm.clone() }))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), stop)
        .await;

    // Whatever ended the server, leave nothing running or mounted behind.
    let stopped = vm.shutdown(DEFAULT_SHUTDOWN_GRACE).await;
    for path in [&config.socket, &config.run_dir] {
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        };
        if let Err(e) = removed {
            tracing::warn!("remove {}: {e}", path.display());
        }
    }
    served.map_err(|e| Error::Unavailable(format!("grpc server: {e}")))?;
    stopped?;
    match vm.crash() {
        Some(why) => Err(Error::Unavailable(why)),
        None => Ok(()),
    }
}
