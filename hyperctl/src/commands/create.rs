//! `hyperctl create`: the pod flags shared with `run`, and `POST /pod/create` (pulling the
//! pod's missing images first when the daemon says one is missing, as hyperctl 1.1 did).

use anyhow::{Context, Result, bail};
use hyper::{Method, StatusCode};

use hyper_proto::rest::{
    EnvironmentVar, IdResponse, ImageInspect, UserContainer, UserPod, UserResource, UserVolume,
    UserVolumeReference,
};

use super::port::parse_publishes;
use super::pull::pull;
use crate::client::{Client, enc, refused_status};
use crate::progress::Output;
use crate::reference::{DEFAULT_TAG, ImageRef};

#[derive(Debug, clap::Args)]
pub struct PodFlags {
    /// Read the pod spec from FILE instead of the command line (hyperctl 1.1's `-p`; `-p` is
    /// now --publish, as Docker's): JSON, or YAML when FILE ends in .yaml or .yml (hyperd
    /// 1.1's `-y` files; keys in any case).
    #[arg(long = "podfile")]
    pub podfile: Option<std::path::PathBuf>,
    /// Pod id and container name [default: <image>-<10 digits>].
    #[arg(long)]
    pub name: Option<String>,
    /// The container's working directory.
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// vCPUs of the pod's VM.
    #[arg(long, default_value_t = 1)]
    pub cpu: i32,
    /// Memory of the pod's VM, in MiB.
    #[arg(long, default_value_t = 128)]
    pub memory: i32,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Override the entrypoint (one string).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Allocate a TTY (its stdin is then open for attach; `run -i -t` uses it).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Keep the container's stdin open for attach, with or without a TTY (`run -i` sends
    /// ours to it and closes it at our end of file).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Publish a port: HOST:CONTAINER[/tcp|/udp], ranges as 8000-8010:80-90 (repeatable).
    #[arg(short = 'p', long = "publish", value_name = "HOST:CONTAINER[/PROTO]")]
    pub publish: Vec<String>,
    /// The pod's network: `bridge` (hyperd's bridge, an address from its pool; the daemon's
    /// default) or `none` (loopback only).
    #[arg(long = "net", visible_alias = "network", value_enum)]
    pub net: Option<NetMode>,
    /// Mount a volume: an absolute host path (a directory or file, shared with the VM) or the
    /// name of a named volume (made on first use, kept after the pod), at the absolute path
    /// DST in the container; `:ro` mounts it read-only (repeatable).
    #[arg(short = 'v', long = "volume", value_name = "SRC:DST[:ro|rw]")]
    pub volumes: Vec<String>,
    /// The container's restart policy: no (default), on-failure[:N], always or unless-stopped
    /// (Docker's `--restart`; the daemon checks it).
    #[arg(long = "restart", value_name = "POLICY")]
    pub restart: Option<String>,
    /// IMAGE [COMMAND [ARG...]] (not with --podfile).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// `--net`: the pod spec's `network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetMode {
    Bridge,
    None,
}

impl NetMode {
    fn as_spec(self) -> &'static str {
        match self {
            Self::Bridge => "bridge",
            Self::None => "none",
        }
    }
}

fn random_digits() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{:010}",
        (nanos ^ u128::from(std::process::id()) << 20) % 10_000_000_000
    )
}

/// `<image-basename>-<tag>-<10 digits>`, or `<image-basename>-<10 digits>` without a tag.
fn default_name(image: &str) -> String {
    let (repo, tag) = match image.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, Some(t)),
        _ => (image, None),
    };
    let base = repo.rsplit('/').next().unwrap_or(repo);
    match tag {
        Some(t) => format!("{base}-{t}-{}", random_digits()),
        None => format!("{base}-{}", random_digits()),
    }
}

/// `-e KEY=VALUE` flags as the pod spec's `envs`.
pub fn parse_envs(flags: &[String]) -> Result<Vec<EnvironmentVar>> {
    flags
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok(EnvironmentVar {
                env: k.into(),
                value: v.into(),
            }),
            None => bail!("--env {kv:?}: expected KEY=VALUE"),
        })
        .collect()
}

/// `-v SRC:DST[:ro|rw]` flags as the container's volume references, each with its volume
/// inline (`detail`): an absolute SRC is a host path (a `vfs` volume named after its last
/// component and 5 digits, as hyperctl 1.1 named it); any other SRC is a named volume.
pub fn parse_volumes(flags: &[String]) -> Result<Vec<UserVolumeReference>> {
    flags
        .iter()
        .enumerate()
        .map(|(i, flag)| {
            let parts: Vec<&str> = flag.split(':').collect();
            let (src, dst, read_only) = match parts.as_slice() {
                [src, dst] => (*src, *dst, false),
                [src, dst, "ro"] => (*src, *dst, true),
                [src, dst, "rw"] => (*src, *dst, false),
                [_, _, mode] => bail!("--volume {flag:?}: mode {mode:?}: must be ro or rw"),
                _ => bail!("--volume {flag:?}: expected SRC:DST[:ro|rw]"),
            };
            if src.is_empty() {
                bail!("--volume {flag:?}: SRC is empty: give a host path or a volume name");
            }
            if !dst.starts_with('/') {
                bail!("--volume {flag:?}: DST {dst:?} must be an absolute path in the container");
            }
            let detail = if src.starts_with('/') {
                let base: String = src
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || "_.-".contains(*c))
                    .collect();
                let base = match base.trim_start_matches(['_', '.', '-']) {
                    "" => "volume",
                    b => b,
                };
                let digits = random_digits();
                UserVolume {
                    name: format!("{base}{}{i}", &digits[digits.len() - 4..]),
                    source: src.into(),
                    format: "vfs".into(),
                    ..Default::default()
                }
            } else {
                UserVolume {
                    name: src.into(),
                    ..Default::default()
                }
            };
            Ok(UserVolumeReference {
                volume: detail.name.clone(),
                path: dst.into(),
                read_only,
                detail: Some(detail),
            })
        })
        .collect()
}

impl PodFlags {
    /// The pod JSON to send.
    /// The Content-Type of [`Self::spec`]: YAML for a `.yaml`/`.yml` pod file, else JSON.
    pub fn content_type(&self) -> &'static str {
        let yaml = self.podfile.as_ref().is_some_and(|f| {
            f.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
        });
        if yaml {
            "application/yaml"
        } else {
            "application/json"
        }
    }

    pub fn spec(&self) -> Result<Vec<u8>> {
        if let Some(file) = &self.podfile {
            if !self.args.is_empty() {
                bail!("give either a pod file or IMAGE [COMMAND], not both");
            }
            if !self.publish.is_empty() || self.net.is_some() || !self.volumes.is_empty() {
                bail!(
                    "--publish, --net and --volume are not taken with --podfile: give `portmappings`, `network` and `volumes` in the pod file"
                );
            }
            if self.restart.is_some() {
                bail!(
                    "--restart is not taken with --podfile: give `restartPolicy` in the pod file"
                );
            }
            return std::fs::read(file).with_context(|| format!("read {}", file.display()));
        }
        let Some((image, command)) = self.args.split_first() else {
            bail!("an IMAGE (or --podfile) is required");
        };
        let name = self.name.clone().unwrap_or_else(|| default_name(image));
        let envs = parse_envs(&self.env)?;
        let portmappings = parse_publishes(&self.publish)?;
        let volumes = parse_volumes(&self.volumes)?;
        let pod = UserPod {
            id: name.clone(),
            containers: vec![UserContainer {
                name,
                image: image.clone(),
                command: command.to_vec(),
                entrypoint: self.entrypoint.iter().cloned().collect(),
                workdir: self.workdir.clone().unwrap_or_default(),
                envs,
                tty: self.tty,
                stdin: self.interactive,
                volumes,
                restart_policy: self.restart.clone().unwrap_or_else(|| "never".into()),
                ..Default::default()
            }],
            resource: UserResource {
                vcpu: self.cpu,
                memory: self.memory,
            },
            portmappings,
            network: self.net.map(NetMode::as_spec).unwrap_or_default().into(),
            ..Default::default()
        };
        Ok(serde_json::to_vec(&pod)?)
    }
}

/// `POST /pod/create`. When the daemon answers 404 and some of the pod's images are missing
/// (`GET /image/inspect` says 404), pulls them (progress on stderr, so a container's output on
/// stdout stays clean) and creates the pod once more.
pub async fn create_pod(client: &Client, flags: &PodFlags) -> Result<String> {
    let spec = flags.spec()?;
    let content_type = flags.content_type();
    let post = |spec: Vec<u8>| async move {
        let body = client
            .call(Method::POST, "/pod/create", Some(content_type), spec.into())
            .await?;
        let resp: IdResponse =
            serde_json::from_slice(&body).context("unexpected answer to /pod/create")?;
        Ok::<_, anyhow::Error>(resp.id)
    };
    let refused = match post(spec.clone()).await {
        Ok(id) => return Ok(id),
        Err(e) => e,
    };
    if refused_status(&refused) != Some(StatusCode::NOT_FOUND) {
        return Err(refused);
    }
    let missing = missing_images(client, &spec).await?;
    if missing.is_empty() {
        return Err(refused);
    }
    for image in &missing {
        let shown = match ImageRef::parse(image) {
            Ok(r) if r.is_untagged() => format!("{image}:{DEFAULT_TAG}"),
            _ => image.clone(),
        };
        eprintln!("Unable to find image '{shown}' locally");
        pull(client, image, Output::Stderr).await?;
    }
    post(spec).await
}

/// The `containers[].image` values of a pod document (JSON or YAML, keys in any case).
fn images_of(spec: &[u8]) -> Result<Vec<String>> {
    let doc: serde_json::Value = match serde_json::from_slice(spec) {
        Ok(v) => v,
        Err(_) => serde_yaml::from_slice(spec).context("read the pod spec")?,
    };
    let get = |v: &serde_json::Value, key: &str| {
        v.as_object().and_then(|m| {
            m.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.clone())
        })
    };
    let containers = get(&doc, "containers");
    Ok(containers
        .as_ref()
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
        .filter_map(|c| get(c, "image").and_then(|i| i.as_str().map(String::from)))
        .collect())
}

/// The images of the pod spec `spec` that the daemon does not have, each once.
async fn missing_images(client: &Client, spec: &[u8]) -> Result<Vec<String>> {
    let mut missing: Vec<String> = Vec::new();
    for image in &images_of(spec)? {
        if image.is_empty() || missing.contains(image) {
            continue;
        }
        let path = format!("/image/inspect?imageId={}", enc(image));
        match client.get::<ImageInspect>(&path).await {
            Ok(_) => {}
            Err(e) if refused_status(&e) == Some(StatusCode::NOT_FOUND) => {
                missing.push(image.clone());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(missing)
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub pod: PodFlags,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    let id = create_pod(client, &args.pod).await?;
    println!("Pod ID is {id}");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_follow_hyperctl() {
        let n = default_name("busybox");
        assert!(
            n.starts_with("busybox-") && n.len() == "busybox-".len() + 10,
            "{n}"
        );
        assert!(default_name("reg:5000/x/nginx:1.15").starts_with("nginx-1.15-"));
    }

    #[test]
    fn volume_flags_are_host_paths_or_named_volumes() {
        let v = parse_volumes(&["/srv/www/:/data:ro".into(), "cache:/var/cache".into()]).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].path, "/data");
        assert!(v[0].read_only);
        let d = v[0].detail.as_ref().unwrap();
        assert_eq!((d.source.as_str(), d.format.as_str()), ("/srv/www/", "vfs"));
        assert!(
            d.name.starts_with("www") && d.name.len() == "www".len() + 5,
            "{}",
            d.name
        );
        assert_eq!(v[0].volume, d.name);
        assert!(!v[1].read_only);
        let d = v[1].detail.as_ref().unwrap();
        assert_eq!((d.name.as_str(), d.source.as_str()), ("cache", ""));
        assert_eq!(v[1].volume, "cache");
        for (flag, want) in [
            ("/a", "expected SRC:DST[:ro|rw]"),
            ("/a:/b:rx", "mode \"rx\": must be ro or rw"),
            (":/b", "SRC is empty"),
            ("/a:b", "DST \"b\" must be an absolute path"),
        ] {
            let e = parse_volumes(&[flag.into()]).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--volume {flag:?}: ")), "{e}");
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn restart_sets_the_containers_policy() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            pod: PodFlags,
        }
        let policy = |argv: &[&str]| {
            let cli = <Cli as clap::Parser>::try_parse_from(argv).unwrap();
            let pod: UserPod = serde_json::from_slice(&cli.pod.spec().unwrap()).unwrap();
            pod.containers[0].restart_policy.clone()
        };
        assert_eq!(policy(&["c", "busybox"]), "never");
        assert_eq!(
            policy(&["c", "--restart", "on-failure:3", "busybox", "false"]),
            "on-failure:3"
        );
        let cli = <Cli as clap::Parser>::try_parse_from([
            "c",
            "--restart",
            "always",
            "--podfile",
            "/p.json",
        ])
        .unwrap();
        assert!(cli.pod.spec().is_err());
    }
}
