//! `hyperctl commit [-m MSG] [-a AUTHOR] [-c CHANGE]... [--pause=false] CONTAINER [REPO[:TAG]]`:
//! `POST /container/commit` makes an image of the container's changes; prints its id.

use anyhow::{Result, bail};
use hyper_proto::rest::IdResponse;

use crate::client::{Client, enc};
use crate::reference::ImageRef;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The commit message (the history entry's comment).
    #[arg(short = 'm', long = "message", default_value = "")]
    pub message: String,
    /// The author (`Name <email>`).
    #[arg(short = 'a', long = "author", default_value = "")]
    pub author: String,
    /// A Dockerfile instruction applied to the image config (CMD, ENTRYPOINT, ENV, EXPOSE,
    /// LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR); repeatable.
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
    /// Freeze the container's VM while its changes are read.
    #[arg(short = 'p', long = "pause", default_value_t = true, action = clap::ArgAction::Set)]
    pub pause: bool,
    /// The container: name, id or unique id prefix.
    pub container: String,
    /// The new image's name, REPO[:TAG].
    pub name: Option<String>,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    let mut path = format!(
        "/container/commit?container={}&comment={}&author={}&pause={}",
        enc(&args.container),
        enc(&args.message),
        enc(&args.author),
        args.pause
    );
    if let Some(name) = &args.name {
        let r = ImageRef::parse(name)?;
        if r.digest.is_some() {
            bail!("commit {name}: the new name cannot hold a digest");
        }
        path.push_str(&format!(
            "&repo={}&tag={}",
            enc(&r.name),
            enc(r.tag_or_digest())
        ));
    }
    for c in &args.change {
        path.push_str(&format!("&changes={}", enc(c)));
    }
    let id: IdResponse = client.post(&path).await?;
    println!("{}", id.id);
    Ok(0)
}
