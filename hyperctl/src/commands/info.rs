//! `hyperctl info`.

use anyhow::Result;

use hyper_proto::rest::InfoResponse;

use crate::client::Client;
use crate::table::human_size;

pub async fn run(client: &Client) -> Result<i32> {
    let i: InfoResponse = client.get("/info").await?;
    println!("Images: {}", i.images);
    println!("Containers: {}", i.containers);
    println!("PODs: {}", i.pods);
    println!("Storage Driver: {}", i.driver);
    for (k, v) in &i.driver_status {
        println!("  {k}: {v}");
    }
    println!("Hyper Root Dir: {}", i.root_dir);
    println!("Index Server Address: {}", i.index_server_address);
    println!("Execution Driver: {}", i.execution_driver);
    match i.acceleration.as_str() {
        "" => println!("VMM: {}", i.vmm),
        accel => println!("VMM: {} ({accel})", i.vmm),
    }
    println!("VMM Reason: {}", i.vmm_reason);
    println!("Total Memory: {}", human_size(i.mem_total as f64 * 1000.0));
    println!("Operating System: {}", i.operating_system);
    Ok(0)
}
