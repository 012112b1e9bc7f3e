//! `hyperctl save [-o FILE] [--format oci|docker] IMAGE...`: `GET /images/save?names=&format=`
//! streams a tar archive of the images into FILE (written beside it, then renamed, so a failed
//! save leaves no partial file) or to stdout, never to a terminal.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use http_body_util::BodyExt;
use hyper::Method;
use hyper::body::Incoming;

use crate::client::{self, Client, enc};

/// The archive's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An OCI image layout (`oci-layout`, `index.json`, `blobs/`).
    Oci,
    /// Docker's `docker save` layout (`manifest.json`).
    Docker,
}

impl Format {
    fn as_str(self) -> &'static str {
        match self {
            Format::Oci => "oci",
            Format::Docker => "docker",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write the archive to FILE instead of stdout.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// The archive's layout: docker (what `docker save` writes, the default) or oci.
    #[arg(short = 'f', long, value_enum, default_value_t = Format::Docker)]
    pub format: Format,
    /// Images: NAME[:TAG], NAME@DIGEST or an id.
    #[arg(required = true)]
    pub images: Vec<String>,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    if args.output.is_none() && std::io::stdout().is_terminal() {
        bail!("refusing to write a tar archive to a terminal: give -o FILE or redirect stdout");
    }
    let names: String = args
        .images
        .iter()
        .map(|i| format!("names={}&", enc(i)))
        .collect();
    let path = format!("/images/save?{names}format={}", args.format.as_str());
    let body = client
        .open(
            Method::GET,
            &path,
            &[],
            None,
            client::full(bytes::Bytes::new()),
        )
        .await?;
    match &args.output {
        Some(file) => save_to(body, file).await?,
        None => copy(body, &mut std::io::stdout().lock()).await?,
    }
    Ok(0)
}

/// Writes the archive to a temp file beside `file`, then renames it to `file`.
async fn save_to(body: Incoming, file: &Path) -> Result<()> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".hyperctl-save")
        // The usual mode of a new file (the umask applies), not the temp file's 0600.
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .with_context(|| format!("create a file in {}", dir.display()))?;
    copy(body, &mut tmp).await?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("write {}", file.display()))?;
    tmp.persist(file)
        .with_context(|| format!("write {}", file.display()))?;
    Ok(())
}

async fn copy(mut body: Incoming, out: &mut impl Write) -> Result<()> {
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.context("read the archive")?.into_data() {
            out.write_all(&data).context("write the archive")?;
        }
    }
    out.flush().context("write the archive")?;
    Ok(())
}
