//! `hyperctl build [OPTIONS] PATH|-`: builds an image from a Dockerfile, as `docker build`
//! does. The context is a directory, packed as an uncompressed tar without what its
//! `.dockerignore` excludes (the Dockerfile and `.dockerignore` themselves always go, as
//! Docker's client sends them), or `-` for a tar (any compression) on stdin. It is posted as
//! `application/x-tar` to `POST /image/build?t=&dockerfile=&buildargs=&nocache=&q=&pull=&labels=`
//! and the daemon's JSON message stream is shown as it arrives: `stream` text as is, pull
//! progress as plain lines, an `error` on stderr with exit status 1; with `-q` only the image id.

use std::collections::BTreeMap;
use std::fs;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use hyper::Method;
use tokio::io::AsyncBufReadExt;

use hyper_proto::dockerignore::DockerIgnore;
use hyper_proto::rest::JsonMessage;

use crate::client::{self, Client, enc};
use crate::progress;

/// Docker's default Dockerfile name.
const DEFAULT_DOCKERFILE: &str = "Dockerfile";
const DOCKERIGNORE: &str = ".dockerignore";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Name (and optionally a tag) for the image, NAME[:TAG]; repeatable.
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// The Dockerfile (default PATH/Dockerfile): relative to the current directory for a
    /// directory context, to the archive's root for `-`.
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// A build-time variable, KEY=VALUE, or KEY alone to take it from this environment;
    /// repeatable.
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Do not use the build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Print only the image id.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Pull base images even when they are present.
    #[arg(long)]
    pub pull: bool,
    /// An image label, KEY=VALUE (or KEY for an empty value); repeatable.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// The build context: a directory, or - for a tar archive on stdin.
    pub context: String,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    let (body, dockerfile) = if args.context == "-" {
        if std::io::stdin().is_terminal() {
            bail!(
                "refusing to read a build context from a terminal: redirect a tar archive to stdin"
            );
        }
        (client::streamed(tokio::io::stdin()), args.file.clone())
    } else {
        let dir = PathBuf::from(&args.context);
        if !dir.is_dir() {
            bail!(
                "unable to prepare context: path {:?} is not a directory",
                args.context
            );
        }
        let dockerfile = dockerfile_in_context(&dir, args.file.as_deref())?;
        let file = tempfile::tempfile().context("create a temp file for the build context")?;
        let mut file = pack_context(&dir, &dockerfile, file)?;
        std::io::Seek::rewind(&mut file).context("rewind the build context")?;
        let name = (dockerfile != DEFAULT_DOCKERFILE).then_some(dockerfile);
        (client::streamed(tokio::fs::File::from_std(file)), name)
    };
    let path = query(&args, dockerfile.as_deref())?;
    let answer = client
        .open(Method::POST, &path, &[], Some("application/x-tar"), body)
        .await?;
    let mut lines = client::reader(answer).lines();
    let mut shown = Shown::new(args.quiet);
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    while let Some(line) = lines
        .next_line()
        .await
        .context("read the daemon's answer")?
    {
        if line.trim().is_empty() {
            continue;
        }
        let msg: JsonMessage = serde_json::from_str(&line)
            .with_context(|| format!("unexpected line in the daemon's answer: {line}"))?;
        if shown.show(&msg, &mut stdout, &mut stderr)? {
            return Ok(1);
        }
    }
    shown.finish(&mut stdout)?;
    Ok(0)
}

/// The Dockerfile's path inside the context directory `dir`, `/`-separated. `-f` is relative
/// to the current directory, as with Docker; it must be a file inside the context.
fn dockerfile_in_context(dir: &Path, file: Option<&str>) -> Result<String> {
    let Some(file) = file else {
        if !dir.join(DEFAULT_DOCKERFILE).is_file() {
            bail!(
                "cannot locate specified Dockerfile: {}",
                dir.join(DEFAULT_DOCKERFILE).display()
            );
        }
        return Ok(DEFAULT_DOCKERFILE.into());
    };
    let real = fs::canonicalize(file)
        .with_context(|| format!("cannot locate specified Dockerfile: {file}"))?;
    if !real.is_file() {
        bail!("cannot locate specified Dockerfile: {file}");
    }
    let root = fs::canonicalize(dir).with_context(|| format!("resolve {}", dir.display()))?;
    let rel = real.strip_prefix(&root).map_err(|_| {
        anyhow::anyhow!(
            "the Dockerfile ({file}) must be inside the build context ({})",
            dir.display()
        )
    })?;
    rel.to_str()
        .map(str::to_string)
        .with_context(|| format!("the Dockerfile's path {} is not UTF-8", rel.display()))
}

/// `/image/build?…` with every option given.
fn query(args: &Args, dockerfile: Option<&str>) -> Result<String> {
    let mut q: Vec<String> = args.tags.iter().map(|t| format!("t={}", enc(t))).collect();
    if let Some(d) = dockerfile {
        q.push(format!("dockerfile={}", enc(d)));
    }
    let build_args = build_args(&args.build_args, |k| std::env::var(k).ok())?;
    if !build_args.is_empty() {
        q.push(format!(
            "buildargs={}",
            enc(&serde_json::to_string(&build_args)?)
        ));
    }
    let labels = key_values(&args.labels, "--label", |_| Some(String::new()))?;
    if !labels.is_empty() {
        q.push(format!("labels={}", enc(&serde_json::to_string(&labels)?)));
    }
    for (set, name) in [
        (args.no_cache, "nocache"),
        (args.quiet, "q"),
        (args.pull, "pull"),
    ] {
        if set {
            q.push(format!("{name}=1"));
        }
    }
    Ok(if q.is_empty() {
        "/image/build".into()
    } else {
        format!("/image/build?{}", q.join("&"))
    })
}

/// `--build-arg`s: `KEY=VALUE`, or `KEY` taking this process' variable (left out when it has
/// none, so the Dockerfile's default applies, as Docker does).
fn build_args(
    args: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>> {
    key_values(args, "--build-arg", env)
}

fn key_values(
    args: &[String],
    flag: &str,
    bare: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for a in args {
        let (k, v) = match a.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (a.as_str(), bare(a)),
        };
        if k.is_empty() {
            bail!("{flag} {a:?}: the name is empty");
        }
        if let Some(v) = v {
            out.insert(k.to_string(), v);
        }
    }
    Ok(out)
}

/// Writes the context directory `dir` as a tar into `out`: every path in name order, without
/// what `.dockerignore` excludes except `.dockerignore` and the Dockerfile (`dockerfile`,
/// relative), owners set to root as Docker's client does, symlinks as links (never followed),
/// sockets left out.
pub fn pack_context<W: Write>(dir: &Path, dockerfile: &str, out: W) -> Result<W> {
    let ignore_path = dir.join(DOCKERIGNORE);
    let mut text = match fs::read(&ignore_path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("read {}", ignore_path.display())),
    };
    let ignore = DockerIgnore::try_parse(&text)?;
    // Docker's client keeps these two even when excluded: the daemon needs to read them.
    for keep in [DOCKERIGNORE, dockerfile] {
        if ignore.is_excluded(keep) {
            text.push_str(&format!("\n!{keep}\n"));
        }
    }
    let ignore = DockerIgnore::try_parse(&text)?;
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    add_dir(&mut tar, dir, "", &ignore)?;
    tar.into_inner().context("finish the context archive")
}

fn add_dir<W: Write>(
    tar: &mut tar::Builder<W>,
    root: &Path,
    rel: &str,
    ignore: &DockerIgnore,
) -> Result<()> {
    let dir = root.join(rel);
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .with_context(|| format!("read {}", dir.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("read {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name = name
            .to_str()
            .with_context(|| format!("{}: the name is not UTF-8", entry.path().display()))?;
        let child = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let path = entry.path();
        let meta =
            fs::symlink_metadata(&path).with_context(|| format!("stat {}", path.display()))?;
        let excluded = ignore.is_excluded(&child);
        if excluded && !(meta.is_dir() && ignore.may_include_under(&child)) {
            continue;
        }
        let file_type = meta.file_type();
        if std::os::unix::fs::FileTypeExt::is_socket(&file_type) {
            continue;
        }
        if !excluded {
            let mut header = tar::Header::new_gnu();
            header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
            header.set_uid(0);
            header.set_gid(0);
            header.set_username("")?;
            header.set_groupname("")?;
            let add = if file_type.is_symlink() {
                let target =
                    fs::read_link(&path).with_context(|| format!("readlink {}", path.display()))?;
                tar.append_link(&mut header, &child, target)
            } else if file_type.is_file() {
                let file =
                    fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
                tar.append_data(&mut header, &child, file)
            } else {
                header.set_size(0);
                tar.append_data(&mut header, &child, std::io::empty())
            };
            add.with_context(|| format!("add {} to the context", path.display()))?;
        }
        if meta.is_dir() {
            add_dir(tar, root, &child, ignore)?;
        }
    }
    Ok(())
}

/// What the stream has shown so far.
struct Shown {
    quiet: bool,
    id: Option<String>,
    last_stream: String,
}

impl Shown {
    fn new(quiet: bool) -> Self {
        Shown {
            quiet,
            id: None,
            last_stream: String::new(),
        }
    }

    /// Shows one message; `true` when it was an error (shown on `err`), which ends the build.
    fn show(
        &mut self,
        msg: &JsonMessage,
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> Result<bool> {
        let error = if !msg.error.is_empty() {
            Some(msg.error.as_str())
        } else {
            msg.error_detail.as_ref().map(|d| d.message.as_str())
        };
        if let Some(error) = error {
            writeln!(err, "{}", error.trim_end())?;
            return Ok(true);
        }
        if let Some(id) = msg
            .aux
            .as_ref()
            .and_then(|a| a.get("ID"))
            .and_then(|v| v.as_str())
        {
            self.id = Some(id.to_string());
        }
        if !msg.stream.is_empty() {
            self.last_stream = msg.stream.clone();
            if !self.quiet {
                out.write_all(msg.stream.as_bytes())?;
                out.flush()?;
            }
        } else if !self.quiet
            && let Some(line) = progress::plain_line(msg)
        {
            writeln!(out, "{line}")?;
        }
        Ok(false)
    }

    /// With `-q`, prints the image id (from `aux`, else the last text the daemon sent).
    fn finish(&self, out: &mut impl Write) -> Result<()> {
        if self.quiet {
            match &self.id {
                Some(id) => writeln!(out, "{id}")?,
                None => writeln!(out, "{}", self.last_stream.trim())?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    /// The paths `pack_context` sends, checking every entry is owned by root.
    fn sent_paths(dir: &Path, dockerfile: &str) -> Vec<String> {
        let bytes = pack_context(dir, dockerfile, Vec::new()).unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let p = e.path().unwrap().to_string_lossy().into_owned();
                assert_eq!(
                    (e.header().uid().unwrap(), e.header().gid().unwrap()),
                    (0, 0)
                );
                p
            })
            .collect()
    }

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let p = dir.path().join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
        }
        dir
    }

    #[test]
    fn excluded_files_are_left_out_and_the_dockerfile_kept() {
        let dir = tree(&[
            ("Dockerfile", "FROM scratch\n"),
            (
                ".dockerignore",
                "*.log\nsecret\nDockerfile\n.dockerignore\nbuild\n!build/keep\n",
            ),
            ("app.log", "x"),
            ("src/main.c", "int main;"),
            ("src/deep.log", "kept: *.log is for the root only"),
            ("secret/key", "hunter2"),
            ("build/out.o", "o"),
            ("build/keep", "k"),
        ]);
        symlink("/etc/passwd", dir.path().join("link")).unwrap();
        fs::set_permissions(
            dir.path().join("src/main.c"),
            fs::Permissions::from_mode(0o751),
        )
        .unwrap();
        assert_eq!(
            sent_paths(dir.path(), "Dockerfile"),
            [
                ".dockerignore",
                "Dockerfile",
                "build/keep",
                "link",
                "src",
                "src/deep.log",
                "src/main.c"
            ]
        );
        let bytes = pack_context(dir.path(), "Dockerfile", Vec::new()).unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            if path == "link" {
                assert_eq!(e.header().entry_type(), tar::EntryType::Symlink);
                assert_eq!(
                    e.link_name().unwrap().unwrap().to_str(),
                    Some("/etc/passwd")
                );
            }
            if path == "src/main.c" {
                assert_eq!(e.header().mode().unwrap() & 0o7777, 0o751);
            }
        }
    }

    #[test]
    fn a_dockerfile_elsewhere_in_the_context_is_kept_even_under_an_excluded_dir() {
        let dir = tree(&[
            ("docker/Dockerfile.dev", "FROM x\n"),
            ("docker/other", "o"),
            (".dockerignore", "docker\n"),
            ("a", "a"),
        ]);
        assert_eq!(
            sent_paths(dir.path(), "docker/Dockerfile.dev"),
            [".dockerignore", "a", "docker/Dockerfile.dev"]
        );
        // Without a .dockerignore everything goes.
        let dir = tree(&[("Dockerfile", "FROM x"), ("d/e", "e")]);
        assert_eq!(
            sent_paths(dir.path(), "Dockerfile"),
            ["Dockerfile", "d", "d/e"]
        );
    }

    #[test]
    fn the_dockerfile_must_be_in_the_context() {
        let dir = tree(&[("Dockerfile", "FROM x"), ("sub/Dockerfile.x", "FROM y")]);
        assert_eq!(
            dockerfile_in_context(dir.path(), None).unwrap(),
            "Dockerfile"
        );
        let f = dir.path().join("sub/Dockerfile.x");
        assert_eq!(
            dockerfile_in_context(dir.path(), Some(f.to_str().unwrap())).unwrap(),
            "sub/Dockerfile.x"
        );
        let outside = tree(&[("Dockerfile", "FROM z")]);
        let f = outside.path().join("Dockerfile");
        let e = dockerfile_in_context(dir.path(), Some(f.to_str().unwrap())).unwrap_err();
        assert!(
            e.to_string().contains("must be inside the build context"),
            "{e}"
        );
        let empty = tree(&[]);
        let e = dockerfile_in_context(empty.path(), None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot locate specified Dockerfile"),
            "{e}"
        );
    }

    #[test]
    fn build_args_and_labels_become_json_maps() {
        let env = |k: &str| (k == "FROM_ENV").then(|| "env value".to_string());
        let args: Vec<String> = ["A=1", "B=", "FROM_ENV", "UNSET", "C=x=y"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let got = build_args(&args, env).unwrap();
        assert_eq!(
            serde_json::to_string(&got).unwrap(),
            r#"{"A":"1","B":"","C":"x=y","FROM_ENV":"env value"}"#
        );
        assert!(build_args(&["=1".to_string()], env).is_err());
        let a = Args {
            tags: vec!["app:1".into(), "app:latest".into()],
            file: None,
            build_args: vec!["V=1 2".into()],
            no_cache: true,
            quiet: false,
            pull: true,
            labels: vec!["k=v".into(), "flag".into()],
            context: ".".into(),
        };
        assert_eq!(
            query(&a, Some("sub/Dockerfile")).unwrap(),
            "/image/build?t=app%3A1&t=app%3Alatest&dockerfile=sub%2FDockerfile\
             &buildargs=%7B%22V%22%3A%221%202%22%7D&labels=%7B%22flag%22%3A%22%22%2C%22k%22%3A%22v%22%7D\
             &nocache=1&pull=1"
        );
    }

    #[test]
    fn the_stream_is_shown_step_by_step_and_an_error_ends_it() {
        let msgs = [
            r#"{"stream":"Step 1/2 : FROM scratch\n"}"#,
            r#"{"status":"Pulling from library/x","id":"latest"}"#,
            r#"{"stream":" ---> Running in 1\nhello"}"#,
            r#"{"aux":{"ID":"sha256:abc"}}"#,
            r#"{"stream":"Successfully built abc\n"}"#,
        ];
        let parse = |s: &str| serde_json::from_str::<JsonMessage>(s).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut shown = Shown::new(false);
        for m in msgs {
            assert!(!shown.show(&parse(m), &mut out, &mut err).unwrap());
        }
        shown.finish(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Step 1/2 : FROM scratch\nlatest: Pulling from library/x\n ---> Running in 1\nhelloSuccessfully built abc\n"
        );
        let mut quiet = Shown::new(true);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        for m in msgs {
            quiet.show(&parse(m), &mut out, &mut err).unwrap();
        }
        quiet.finish(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "sha256:abc\n");
        let failed = parse(
            r#"{"error":"The command '/bin/sh -c false' returned a non-zero code: 1","errorDetail":{"code":1,"message":"The command '/bin/sh -c false' returned a non-zero code: 1"}}"#,
        );
        assert!(
            Shown::new(false)
                .show(&failed, &mut Vec::new(), &mut err)
                .unwrap()
        );
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "The command '/bin/sh -c false' returned a non-zero code: 1\n"
        );
    }
}
