//! `hyperctl rmi [-f] [--no-prune] IMAGE...`: `DELETE /image?imageId=&force=&noprune=` for
//! each image, printing what was untagged and deleted. An image that cannot be removed (409
//! while a container uses it, without `-f`) is reported and the others are still removed;
//! hyperctl then exits 255.

use anyhow::{Context, Result};
use hyper::Method;

use hyper_proto::rest::ImageRemoveResponse;

use crate::client::{Client, enc};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Remove the image even if a container uses it, and every tag of an id.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Keep untagged parent images.
    #[arg(long)]
    pub no_prune: bool,
    /// Images: NAME[:TAG], NAME@DIGEST or an id.
    #[arg(required = true)]
    pub images: Vec<String>,
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    let mut code = 0;
    for image in &args.images {
        let path = format!(
            "/image?imageId={}&force={}&noprune={}",
            enc(image),
            yes_no(args.force),
            yes_no(args.no_prune)
        );
        let removed: Result<ImageRemoveResponse> = async {
            let body = client
                .call(Method::DELETE, &path, None, bytes::Bytes::new())
                .await?;
            serde_json::from_slice(&body).with_context(|| format!("unexpected answer to {path}"))
        }
        .await;
        match removed {
            Ok(resp) => {
                for item in resp.images_list {
                    if !item.untaged.is_empty() {
                        println!("Untagged: {}", item.untaged);
                    }
                    if !item.deleted.is_empty() {
                        println!("Deleted: {}", item.deleted);
                    }
                }
            }
            Err(e) => {
                eprintln!("hyperctl ERROR: remove {image}: {e:#}");
                code = 255;
            }
        }
    }
    Ok(code)
}
