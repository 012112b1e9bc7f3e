//! The hyperd binary: flags, logging, then [`hyperd::run`].

use clap::Parser;

use hyperd::config::{Args, Config};

fn main() {
    let args = Args::parse();
    let log = args
        .log
        .clone()
        .unwrap_or_else(|| hyperd::config::DEFAULT_LOG.into());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(log))
        .init();
    let result = Config::load(args)
        .map_err(anyhow::Error::from)
        .and_then(|config| {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime
                .block_on(hyperd::run(config))
                .map_err(anyhow::Error::from)
        });
    if let Err(e) = result {
        eprintln!("hyperd: {e:#}");
        std::process::exit(1);
    }
}
