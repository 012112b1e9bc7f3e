//! `POST /container/commit`: an image from a container's changes. The container's overlay
//! upper dir (see `container::rootfs`) is packed as one layer on top of its image's layers
//! (overlay whiteouts become OCI whiteouts, as for a build's `RUN`), and the image config is
//! the container image's with the request's container-config body and `changes` (Dockerfile
//! lines: `CMD`, `ENTRYPOINT`, `ENV`, `EXPOSE`, `LABEL`, `ONBUILD`, `STOPSIGNAL`, `USER`,
//! `VOLUME`, `WORKDIR`, as Docker allows) applied on top. With `pause` (the default) the VM of
//! a running container is frozen through the shim's `PauseVm` while the upper dir is read, so
//! the layer is one moment's state; it is resumed however the read ends.

use std::collections::BTreeMap;
use std::sync::Arc;

use hyper_proto::types::Empty;
use serde::Deserialize;

use super::build::builder::{self, apply_instruction, env_lookup, exposed_ports};
use super::build::dockerfile::{self, Command};
use super::config;
use super::{Error as ImageError, Images, Reference};
use crate::container;
use crate::error::Kind;
use crate::ids;
use crate::store::{self, ImageRecord, ImageTag, Store};
use crate::vm::{self, Vms};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    /// The shim could not freeze the VM (or has no `PauseVm`).
    #[error(
        "container {container}: pause the vm to commit: {source} (pause=0 commits without freezing)"
    )]
    Pause {
        container: String,
        #[source]
        source: vm::Error,
    },
    #[error(transparent)]
    Container(#[from] container::Error),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("changes: {0}")]
    Change(#[from] builder::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("commit: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn kind(&self) -> Kind {
        match self {
            Error::Invalid(_) | Error::Change(_) => Kind::InvalidInput,
            Error::Pause { source, .. } => match source.kind() {
                Kind::Internal => Kind::Unavailable,
                k => k,
            },
            Error::Container(e) => e.kind(),
            Error::Image(e) => e.kind(),
            Error::Store(_) | Error::Io { .. } => Kind::Internal,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Docker's container config, as the seed's commit example sends it. The fields an image
/// config has are applied; the ones that describe a run and have no place in an OCI image
/// (`Hostname`, `Domainname`, `Memory`, `MemorySwap`, `CpuShares`, `Cpuset`, `Attach*`,
/// `PortSpecs`, `Tty`, `OpenStdin`, `StdinOnce`, `NetworkDisabled`) are accepted and not
/// kept, as Docker's own image config drops them; any other field is a 400 naming it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct CommitConfig {
    pub user: Option<String>,
    pub env: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    pub labels: Option<BTreeMap<String, String>>,
    pub stop_signal: Option<String>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub cpuset: Option<String>,
    pub attach_stdin: Option<bool>,
    pub attach_stdout: Option<bool>,
    pub attach_stderr: Option<bool>,
    pub port_specs: Option<serde_json::Value>,
    pub tty: Option<bool>,
    pub open_stdin: Option<bool>,
    pub stdin_once: Option<bool>,
    pub network_disabled: Option<bool>,
}

/// What a commit asks for.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `repo`, `tag`: the new image's name (none when `repo` is empty).
    pub name: Option<Reference>,
    pub comment: String,
    pub author: String,
    pub pause: bool,
    /// Dockerfile lines.
    pub changes: Vec<String>,
    pub config: Option<CommitConfig>,
}

/// Docker's list of instructions `commit --change` takes.
fn allowed(c: &Command) -> bool {
    matches!(
        c,
        Command::Cmd(_)
            | Command::Entrypoint(_)
            | Command::Env(_)
            | Command::Expose(_)
            | Command::Label(_)
            | Command::Onbuild(_)
            | Command::StopSignal(_)
            | Command::User(_)
            | Command::Volume(_)
            | Command::Workdir(_)
    )
}

/// Commits the container `reference` (name, id, id prefix). Returns the new image.
pub async fn commit(
    images: &Arc<Images>,
    vms: &Arc<Vms>,
    reference: &str,
    opts: &CommitOptions,
) -> Result<ImageRecord> {
    let store: &Store = &images.store;
    // Everything that can be refused is checked before the VM is touched.
    let changes = opts
        .changes
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let ins = dockerfile::parse_instruction(line, i + 1, '\\')
                .map_err(|e| Error::Change(e.into()))?;
            if !allowed(&ins.command) {
                return Err(Error::Invalid(format!(
                    "changes: {line:?}: commit takes only CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME and WORKDIR"
                )));
            }
            // Ports without `$` need no image to check (those with one are checked when the
            // changes are applied, before the VM is touched too).
            if let Command::Expose(words) = &ins.command {
                for w in words.iter().filter(|w| !w.contains('$')) {
                    exposed_ports(w).map_err(|m| {
                        Error::Invalid(format!("changes: {line:?}: EXPOSE: {m}"))
                    })?;
                }
            }
            Ok(ins)
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(body) = &opts.config {
        for key in body.exposed_ports.iter().flatten().map(|(k, _)| k) {
            // A key is one port with its protocol (`80/tcp`), as Docker's `nat.Port`.
            match exposed_ports(key) {
                Ok(keys) if keys.len() == 1 && key.contains('/') => {}
                Ok(_) => {
                    return Err(Error::Invalid(format!(
                        "config: ExposedPorts: {key:?}: want one port and its protocol, like 80/tcp"
                    )));
                }
                Err(m) => return Err(Error::Invalid(format!("config: ExposedPorts: {m}"))),
            }
        }
    }
    let ct = container::find(store, reference)?;
    let image = images.resolve(&ct.image_id)?;
    let mut config = images.config_of(&image)?;
    if image.manifest.is_empty() {
        return Err(ImageError::Invalid(format!(
            "container {}: its image was imported before images had layers; import it again to commit",
            ct.name
        ))
        .into());
    }
    // The new config first: a refused change leaves the VM untouched and no layer behind.
    if let Some(body) = &opts.config {
        apply_body(&mut config.config, body);
    }
    for ins in &changes {
        let env = config.config.env.clone();
        let lookup = move |n: &str| env_lookup(&env, n);
        apply_instruction(&mut config, ins, &lookup, '\\')?;
    }
    let upper = std::path::Path::new(&ct.dir).join("upper");
    if !upper.is_dir() {
        return Err(Error::Invalid(format!(
            "container {}: it has no filesystem yet (never started)",
            ct.name
        )));
    }
    let shim = if opts.pause && ct.state.is_running() {
        let vm_id = store
            .read(|c| store::get_pod(c, &ct.pod_id))?
            .and_then(|p| p.vm_id);
        match vm_id {
            Some(id) => Some(vms.shim(&id).map_err(|source| Error::Pause {
                container: ct.name.clone(),
                source,
            })?),
            None => None,
        }
    } else {
        None
    };
    if let Some(shim) = &shim {
        shim.client
            .clone()
            .pause_vm(Empty {})
            .await
            .map_err(|s| Error::Pause {
                container: ct.name.clone(),
                source: shim.error(s),
            })?;
    }
    let tar = tempfile::NamedTempFile::new_in(images.work_dir()).map_err(|e| Error::Io {
        context: "create a layer file".into(),
        source: e,
    });
    let packed = match tar {
        Ok(tar) => {
            let (dir, file) = (upper.clone(), tar.reopen());
            tokio::task::spawn_blocking(move || {
                let file = file?;
                super::build::layer::pack_dir(&dir, std::io::BufWriter::new(file), false)
                    .map_err(std::io::Error::other)
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map(|_| tar)
            .map_err(|e| Error::Io {
                context: format!("pack {}", upper.display()),
                source: e,
            })
        }
        Err(e) => Err(e),
    };
    if let Some(shim) = &shim
        && let Err(s) = shim.client.clone().resume_vm(Empty {}).await
    {
        tracing::error!(container = %ct.name, "resume the vm after commit: {}", s.message());
    }
    let tar = packed?;

    let _gc = images.gc_guard().await;
    let parent = image.layers.last().map(|l| l.chain_id.clone());
    let (layer, unpacked) = images
        .add_layer_file(tar.path().to_path_buf(), parent, None, "commit")
        .await?;
    drop(tar);

    let created = ids::now();
    config.created = config::rfc3339(created);
    if !opts.author.is_empty() {
        config.author = opts.author.clone();
    }
    config.rootfs.diff_ids.push(layer.diff_id.clone());
    let mut history = serde_json::json!({
        "created": config.created,
        "created_by": ct.process.args.join(" "),
    });
    if !opts.comment.is_empty() {
        history["comment"] = opts.comment.clone().into();
    }
    if !opts.author.is_empty() {
        history["author"] = opts.author.clone().into();
    }
    config.history.push(history);
    let mut layers = image.layers.clone();
    layers.push(layer);
    let bytes = serde_json::to_vec(&config).expect("a config serialises");
    let new = images.record_image(
        &bytes,
        None,
        layers,
        image.size.max(0) as u64 + unpacked,
        created,
    )?;
    if let Some(name) = &opts.name {
        store.write(|tx| {
            store::tag_image(
                tx,
                &ImageTag {
                    repo: name.repo.clone(),
                    tag: name.tag.clone(),
                    image_id: new.id.clone(),
                },
            )
        })?;
    }
    tracing::info!(container = %ct.name, image_id = %new.id, "container committed");
    Ok(new)
}

/// The body's image fields over the image's (non-empty ones win; `Env` entries by key).
fn apply_body(c: &mut config::RunConfig, b: &CommitConfig) {
    if let Some(u) = b.user.as_ref().filter(|u| !u.is_empty()) {
        c.user = u.clone();
    }
    for e in b.env.iter().flatten() {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        builder::set_env(&mut c.env, k, v);
    }
    if let Some(cmd) = b.cmd.as_ref().filter(|v| !v.is_empty()) {
        c.cmd = cmd.clone();
    }
    if let Some(e) = b.entrypoint.as_ref().filter(|v| !v.is_empty()) {
        c.entrypoint = e.clone();
    }
    if let Some(w) = b.working_dir.as_ref().filter(|w| !w.is_empty()) {
        c.working_dir = w.clone();
    }
    c.exposed_ports.extend(
        b.exposed_ports
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    c.volumes.extend(
        b.volumes
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    c.labels.extend(
        b.labels
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    if let Some(s) = b.stop_signal.as_ref().filter(|s| !s.is_empty()) {
        c.stop_signal = s.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_s_example_body_is_accepted_and_a_typo_is_named() {
        let seed = r#"{"Hostname":"","Domainname":"","User":"","Memory":0,"MemorySwap":0,
            "CpuShares":512,"Cpuset":"0,1","AttachStdin":false,"AttachStdout":true,
            "AttachStderr":true,"PortSpecs":null,"Tty":false,"OpenStdin":false,
            "StdinOnce":false,"Env":null,"Cmd":["date"],"Volumes":{"/tmp":{}},
            "WorkingDir":"","NetworkDisabled":false,"ExposedPorts":{"22/tcp":{}}}"#;
        let body: CommitConfig = serde_json::from_str(seed).unwrap();
        let mut c = config::RunConfig {
            cmd: vec!["sh".into()],
            working_dir: "/w".into(),
            ..Default::default()
        };
        apply_body(&mut c, &body);
        assert_eq!(c.cmd, ["date"]);
        assert_eq!(c.working_dir, "/w");
        assert!(c.volumes.contains_key("/tmp") && c.exposed_ports.contains_key("22/tcp"));
        let e = serde_json::from_str::<CommitConfig>(r#"{"Cmdd":["x"]}"#).unwrap_err();
        assert!(e.to_string().contains("Cmdd"), "{e}");
    }

    /// Bad ports are refused before the container is even looked up (none exists here).
    #[tokio::test]
    async fn a_bad_exposed_port_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let (images, vms) = crate::image::build::builder::tests::images_and_no_vms(&dir);
        let commit_with = |changes: &[&str], config: Option<CommitConfig>| CommitOptions {
            changes: changes.iter().map(|c| c.to_string()).collect(),
            config,
            ..Default::default()
        };
        for (opts, want) in [
            (
                commit_with(&["EXPOSE abc"], None),
                r#"changes: "EXPOSE abc": EXPOSE: invalid containerPort: abc"#,
            ),
            (
                commit_with(&["EXPOSE 80/tcp 9-8"], None),
                r#"changes: "EXPOSE 80/tcp 9-8": EXPOSE: invalid containerPort: 9-8"#,
            ),
            (
                commit_with(
                    &[],
                    Some(serde_json::from_str(r#"{"ExposedPorts":{"x/udp":{}}}"#).unwrap()),
                ),
                "config: ExposedPorts: invalid containerPort: x",
            ),
        ] {
            let e = commit(&images, &vms, "nope", &opts).await.unwrap_err();
            assert_eq!(e.to_string(), want);
            assert_eq!(e.kind(), Kind::InvalidInput);
        }
        // Good ports get as far as the container lookup.
        let e = commit(
            &images,
            &vms,
            "nope",
            &commit_with(&["EXPOSE 80 53/udp"], None),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }
}
