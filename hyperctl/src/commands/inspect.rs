//! `hyperctl inspect IMAGE...`: `GET /image/inspect?imageId=` for each image, printed as
//! `docker image inspect` prints: a JSON array, indented by four spaces.

use anyhow::Result;
use serde::Serialize;

use hyper_proto::rest::ImageInspect;

use crate::client::{Client, enc};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Images: NAME[:TAG], NAME@DIGEST or an id.
    #[arg(required = true)]
    pub images: Vec<String>,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    let mut found = Vec::new();
    for image in &args.images {
        let info: ImageInspect = client
            .get(&format!("/image/inspect?imageId={}", enc(image)))
            .await?;
        found.push(info);
    }
    println!("{}", pretty(&found));
    Ok(0)
}

fn pretty(value: &impl Serialize) -> String {
    let mut ser = serde_json::Serializer::with_formatter(
        Vec::new(),
        serde_json::ser::PrettyFormatter::with_indent(b"    "),
    );
    value.serialize(&mut ser).expect("inspect data serialises");
    String::from_utf8(ser.into_inner()).expect("serde_json writes UTF-8")
}
