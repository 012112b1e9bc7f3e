//! hyperd: runs pods, each in its own lightweight VM, behind a Docker-style REST API.
//!
//! Module map: [`config`] (flags and file), [`api`] (routes, hijack, error → status),
//! [`pod`] (pod lifecycle and spec), [`container`] (processes, rootfs, output, exec),
//! [`image`] (import and store), [`vm`] (shim launcher, client, monitor), [`network`] (bridge,
//! addresses, NAT, port mappings, /etc files), [`store`] (SQLite records), [`volume`] (named volumes), [`ids`]. [`run`] wires them together and serves until SIGTERM/SIGINT; pods keep
//! running when hyperd stops.

pub mod api;
pub mod config;
pub mod container;
pub mod error;
pub mod ids;
pub mod image;
pub mod network;
pub mod pod;
pub mod store;
pub mod vm;
pub mod volume;

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::ServiceExt as _;
use axum::extract::Request;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tower::Layer as _;

use hyper_proto::rest::InfoResponse;

use crate::config::{Config, Listen};
use crate::container::exec::Execs;
use crate::image::Images;
use crate::network::Network;
use crate::pod::Pods;
use crate::store::Store;
use crate::vm::Vms;
use crate::volume::Volumes;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything the API handlers call.
pub struct Daemon {
    pub config: Arc<Config>,
    pub pods: Arc<Pods>,
    pub vms: Arc<Vms>,
    pub images: Arc<Images>,
    pub execs: Arc<Execs>,
    pub network: Arc<Network>,
    pub volumes: Arc<Volumes>,
}

impl Daemon {
    pub fn system_info(&self) -> error::Result<InfoResponse> {
        let (pods, containers) = self.pods.counts()?;
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_total = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        let os = std::fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default();
        let choice = self.vms.last_choice().unwrap_or_else(|| vm::VmmReport {
            vmm: self.config.vmm.as_arg().into(),
            acceleration: String::new(),
            reason: "decided when the first VM boots".into(),
        });
        Ok(InfoResponse {
            vmm: choice.vmm,
            acceleration: choice.acceleration,
            vmm_reason: choice.reason,
            id: std::process::id(),
            containers,
            images: self.images.count()?,
            pods,
            driver: "overlay".into(),
            driver_status: vec![],
            root_dir: self.config.root.display().to_string(),
            index_server_address: String::new(),
            execution_driver: self.config.vmm.as_arg().into(),
            mem_total,
            operating_system: os,
            name: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default(),
        })
    }
}

/// Why hyperd could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("another hyperd is already running on root {0}")]
    RootInUse(PathBuf),
    #[error("{0} is in use by another daemon")]
    SocketInUse(PathBuf),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Daemon(#[from] error::Error),
}

fn io(context: impl Into<String>, source: std::io::Error) -> StartError {
    StartError::Io {
        context: context.into(),
        source,
    }
}

/// Holds `<root>/hyperd.lock` for the daemon's lifetime: one hyperd per root.
fn lock_root(root: &Path) -> Result<File, StartError> {
    let path = root.join("hyperd.lock");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io(format!("open {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(StartError::RootInUse(root.into())),
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(io(format!("lock {}", path.display()), e));
        }
    }
    file.set_len(0).map_err(|e| io("truncate lock file", e))?;
    writeln!(file, "{}", std::process::id()).map_err(|e| io("write lock file", e))?;
    Ok(file)
}

/// Binds a unix socket: a stale socket file is replaced, a live one is refused. Mode 0660.
async fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener, StartError> {
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(StartError::SocketInUse(path.into()));
        }
        std::fs::remove_file(path)
            .map_err(|e| io(format!("remove stale {}", path.display()), e))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io(format!("mkdir {}", dir.display()), e))?;
    }
    // Created with its final mode (0660): no window in which anyone else could connect. Start-up
    // creates no other file meanwhile, so the process-wide mask is safe to borrow.
    let mask = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o117));
    let bound = tokio::net::UnixListener::bind(path);
    rustix::process::umask(mask);
    bound.map_err(|e| io(format!("bind {}", path.display()), e))
}

/// Runs the daemon until SIGTERM or SIGINT. Shims (and so pods) keep running afterwards.
pub async fn run(config: Config) -> Result<(), StartError> {
    for dir in [&config.root, &config.run_dir] {
        std::fs::create_dir_all(dir).map_err(|e| io(format!("mkdir {}", dir.display()), e))?;
    }
    // The root holds credentials, pod environments and image content, the run dir the shims'
    // sockets and VM consoles: owner only.
    for dir in [&config.root, &config.run_dir] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io(format!("chmod {}", dir.display()), e))?;
    }
    let _lock = lock_root(&config.root)?;
    let config = Arc::new(config);
    let store = Arc::new(Store::open(&config.db_path()).map_err(error::Error::from)?);
    let registry = image::registry::Registry::new(image::registry::RegistryConfig {
        insecure: config.insecure_registries.clone(),
        mirrors: config.registry_mirrors.clone(),
        certs_dir: config.certs_dir.clone(),
        docker_hub_host: config.docker_hub_host.clone(),
    })
    .map_err(|e| error::Error::from(image::Error::from(e)))?;
    let (died_tx, mut died_rx) = mpsc::unbounded_channel();
    // The bridge and the firewall before any VM boots or pod is recovered: VMs get their NIC
    // on the bridge and recovered pods find their forwarding.
    let network = Network::start(config.network.clone(), store.clone())
        .await
        .map_err(error::Error::from)?;
    let vms = Vms::new(config.clone(), store.clone(), network.clone(), died_tx);
    // Builds died with the previous hyperd: their VMs go before Images clears their work dirs.
    vms.destroy_orphan_builds()
        .await
        .map_err(error::Error::from)?;
    let images =
        Arc::new(Images::new(&config.root, store.clone(), registry).map_err(error::Error::from)?);
    let (changes, _) = watch::channel(0u64);
    let pods = Pods::new(
        &config.root,
        store.clone(),
        vms.clone(),
        images.clone(),
        network.clone(),
        changes.clone(),
        config.log_default,
    )
    .map_err(|e| io("mkdir containers", e))?;
    let execs = Arc::new(Execs::new(store.clone(), vms.clone(), changes));

    // Listeners first: a second daemon on the same socket fails before touching any pod.
    let mut unix = Vec::new();
    let mut tcp = Vec::new();
    for listen in &config.listen {
        match listen {
            Listen::Unix(path) => unix.push((path.clone(), bind_unix(path).await?)),
            Listen::Tcp(addr) => {
                tracing::warn!(%addr, "listening on TCP without TLS: anyone who can reach it controls hyperd");
                tcp.push(
                    tokio::net::TcpListener::bind(addr)
                        .await
                        .map_err(|e| io(format!("bind {addr}"), e))?,
                );
            }
        }
    }

    pods.recover().await.map_err(error::Error::from)?;
    {
        let pods = pods.clone();
        tokio::spawn(async move {
            while let Some(vm_id) = died_rx.recv().await {
                pods.vm_died(&vm_id).await;
            }
        });
    }

    let daemon = Arc::new(Daemon {
        config: config.clone(),
        pods,
        vms,
        images,
        execs,
        network,
        volumes: Arc::new(Volumes::new(&config.root, store.clone())),
    });
    let app = tower::util::MapRequestLayer::new(api::strip_version).layer(api::router(daemon));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        if rx.wait_for(|s| *s).await.is_err() {
            tracing::debug!("stop signal dropped");
        }
    };
    for (path, listener) in unix {
        tracing::info!(socket = %path.display(), "serving");
        let svc = app.clone().into_make_service();
        let shutdown = stopped(stop_rx.clone());
        servers.spawn(async move {
            let served = axum::serve(listener, svc)
                .with_graceful_shutdown(shutdown)
                .await;
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!("remove {}: {e}", path.display());
            }
            served
        });
    }
    for listener in tcp {
        let svc = ServiceExtHelper::make(app.clone());
        let shutdown = stopped(stop_rx.clone());
        servers.spawn(async move {
            axum::serve(listener, svc)
                .with_graceful_shutdown(shutdown)
                .await
        });
    }
    tracing::info!(version = VERSION, root = %config.root.display(), "hyperd running");

    let mut term = signal(SignalKind::terminate()).map_err(|e| io("SIGTERM handler", e))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| io("SIGINT handler", e))?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping hyperd; pods keep running"),
        _ = int.recv() => tracing::info!("SIGINT: stopping hyperd; pods keep running"),
        Some(done) = servers.join_next() => {
            tracing::error!("a listener stopped: {done:?}");
        }
    }
    stop_tx.send_replace(true);
    // Open hijacked streams do not hold the exit up for long.
    if tokio::time::timeout(Duration::from_secs(5), async {
        while servers.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("connections still open at exit");
    }
    Ok(())
}

/// `into_make_service` for a TCP listener (the same app, another listener type).
struct ServiceExtHelper;

impl ServiceExtHelper {
    fn make<S>(
        svc: S,
    ) -> axum::extract::connect_info::IntoMakeServiceWithConnectInfo<S, std::net::SocketAddr>
    where
        S: tower::Service<Request> + Clone,
    {
        svc.into_make_service_with_connect_info::<std::net::SocketAddr>()
    }
}
