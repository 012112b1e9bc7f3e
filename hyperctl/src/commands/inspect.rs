//! `hyperctl inspect NAME...`: for each name, the image (`GET /image/inspect?imageId=`) or,
//! when no image has that name, the pod (`GET /pod/info?podName=`, with its `podIP` and
//! `hostIP`), printed as `docker inspect` prints: a JSON array, indented by four spaces.

use anyhow::{Result, bail};
use hyper::StatusCode;
use serde::Serialize;

use hyper_proto::rest::{ImageInspect, PodInfo};

use crate::client::{Client, enc, refused_status};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Images (NAME[:TAG], NAME@DIGEST or an id) or pods.
    #[arg(required = true)]
    pub images: Vec<String>,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    let mut found = Vec::new();
    for name in &args.images {
        found.push(inspect(client, name).await?);
    }
    println!("{}", pretty(&found));
    Ok(0)
}

/// What a name turned out to be.
#[derive(Serialize)]
#[serde(untagged)]
enum Inspected {
    Image(Box<ImageInspect>),
    Pod(Box<PodInfo>),
}

/// The image called `name`, else the pod of that name or id.
async fn inspect(client: &Client, name: &str) -> Result<Inspected> {
    let image = client
        .get::<ImageInspect>(&format!("/image/inspect?imageId={}", enc(name)))
        .await;
    match image {
        Ok(v) => return Ok(Inspected::Image(Box::new(v))),
        Err(e) if refused_status(&e) == Some(StatusCode::NOT_FOUND) => {}
        Err(e) => return Err(e),
    }
    match client
        .get::<PodInfo>(&format!("/pod/info?podName={}", enc(name)))
        .await
    {
        Ok(v) => Ok(Inspected::Pod(Box::new(v))),
        Err(e) if refused_status(&e) == Some(StatusCode::NOT_FOUND) => {
            bail!("no such image or pod: {name}")
        }
        Err(e) => Err(e),
    }
}

fn pretty(value: &impl Serialize) -> String {
    let mut ser = serde_json::Serializer::with_formatter(
        Vec::new(),
        serde_json::ser::PrettyFormatter::with_indent(b"    "),
    );
    value.serialize(&mut ser).expect("inspect data serialises");
    String::from_utf8(ser.into_inner()).expect("serde_json writes UTF-8")
}
