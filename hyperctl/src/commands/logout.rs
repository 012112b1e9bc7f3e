//! `hyperctl logout [SERVER]`: forgets the credentials kept for a registry (Docker's
//! credential store, see [`crate::credentials`]).

use anyhow::Result;

use crate::credentials::{INDEX_SERVER, Store, server_key};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The registry (HOST[:PORT]) [default: Docker Hub, https://index.docker.io/v1/].
    pub server: Option<String>,
}

pub fn run(args: Args) -> Result<i32> {
    let server = server_key(args.server.as_deref().unwrap_or(INDEX_SERVER));
    if Store::from_env()?.erase(&server)? {
        println!("Removing login credentials for {server}");
    } else {
        println!("Not logged in to {server}");
    }
    Ok(0)
}
