//! `hyperctl version`: the client's version, and the daemon's when it answers.

use anyhow::Result;

use hyper_proto::rest::VersionResponse;

use crate::client::Client;

pub async fn run(client: &Client) -> Result<i32> {
    println!("The hyperctl version is {}", env!("CARGO_PKG_VERSION"));
    let v: VersionResponse = client.get("/version").await?;
    println!("The hyperd version is {}", v.version);
    Ok(0)
}
