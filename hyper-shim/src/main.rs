use clap::Parser;
use hyper_shim::config::{Args, ShimConfig};

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .init();
    let config = ShimConfig::from_args(args)?;
    // A private mount namespace: the rootfs bind mounts exist only for this shim and its
    // children, and vanish with them even on SIGKILL. unshare(CLONE_NEWNS) must happen while
    // the process is single-threaded, so before the runtime starts.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_SLAVE,
        None::<&str>,
    )?;
    // One thread: children get PR_SET_PDEATHSIG tied to the thread that forked them, and this
    // one lives as long as the shim.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(hyper_shim::run(config))?;
    Ok(())
}
