//! What a container gets besides its rootfs, process and volumes: a read-only rootfs, the
//! pod's files, rlimits and sysctls (reference §2.3, §2.5), applied by the guest agent.
//!
//! Files with a `uri` are fetched once, at pod create ([`Pods::fetch_files`]): `file://` read
//! from the host, `http(s)://` fetched by hyperd, each at most [`MAX_FILE_BYTES`] within
//! [`FETCH_TIMEOUT`]. They are kept 0600 under `<root>/pod-files/<pod id>/` and removed with
//! the pod, so a pod starts the same way every time; inline content is read from the stored
//! spec.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_proto::rest::{UserFile, UserPod};
use hyper_proto::types::{ContainerOptions, FileInjection, Rlimit};

use super::spec::{SpecError, decode_file};
use super::{Error, Pods, Result};
use crate::store::{ContainerRecord, PodRecord};

/// The largest file a `uri` may give.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// How long fetching one `http(s)://` file may take, connection included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Files fetched for a pod being created, in a staging directory until the pod is recorded
/// ([`Pods::keep_files`]); dropped, the directory goes.
pub struct FetchedFiles {
    dir: Option<tempfile::TempDir>,
}

fn spec_error(field: String, message: String) -> Error {
    Error::Spec(SpecError { field, message })
}

impl Pods {
    fn files_root(&self) -> PathBuf {
        self.containers_dir
            .parent()
            .unwrap_or(&self.containers_dir)
            .join("pod-files")
    }

    fn files_dir(&self, pod_id: &str) -> PathBuf {
        self.files_root().join(pod_id)
    }

    /// Fetches the pod files of `pod` that have a `uri` (validated by [`super::spec`]): a
    /// missing or unreadable file, an HTTP error status, more than [`MAX_FILE_BYTES`], more
    /// than [`FETCH_TIMEOUT`] or content that does not decode is a spec error naming
    /// `files[i].uri`.
    pub async fn fetch_files(&self, pod: &UserPod) -> Result<FetchedFiles> {
        if pod.files.iter().all(|f| f.uri.is_empty()) {
            return Ok(FetchedFiles { dir: None });
        }
        let root = self.files_root();
        std::fs::create_dir_all(&root).map_err(|e| Error::Invalid(format!("{root:?}: {e}")))?;
        let dir = tempfile::Builder::new()
            .prefix(".staging-")
            .tempdir_in(&root)
            .map_err(|e| Error::Invalid(format!("{root:?}: {e}")))?;
        for (i, f) in pod.files.iter().enumerate() {
            if f.uri.is_empty() {
                continue;
            }
            let field = format!("files[{i}].uri");
            let bytes = fetch(&f.uri)
                .await
                .map_err(|m| spec_error(field.clone(), format!("{:?}: {m}", f.uri)))?;
            decode_file(&f.encoding, &bytes)
                .map_err(|m| spec_error(field.clone(), format!("{:?}: {m}", f.uri)))?;
            write_private(&dir.path().join(i.to_string()), &bytes)
                .map_err(|e| Error::Invalid(format!("{field}: keep the file: {e}")))?;
        }
        Ok(FetchedFiles { dir: Some(dir) })
    }

    /// Moves files fetched for a pod now recorded as `pod_id` to where its containers read
    /// them.
    pub fn keep_files(&self, pod_id: &str, fetched: FetchedFiles) -> Result<()> {
        let Some(dir) = fetched.dir else {
            return Ok(());
        };
        let dest = self.files_dir(pod_id);
        // The pod was just recorded: whatever is there was left by a hyperd that died before
        // a pod of the same id was removed.
        self.remove_files(pod_id);
        let staging = dir.keep();
        std::fs::rename(&staging, &dest).map_err(|e| {
            let _ = std::fs::remove_dir_all(&staging);
            Error::Invalid(format!("keep the files of pod {pod_id} in {dest:?}: {e}"))
        })
    }

    /// Removes the fetched files of a removed pod.
    pub(super) fn remove_files(&self, pod_id: &str) {
        let dir = self.files_dir(pod_id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(pod_id, "remove {dir:?}: {e}"),
        }
    }

    /// The options of container `ct` of `pod`: `readOnly` → a read-only rootfs, `ulimits` →
    /// rlimits, `sysctl` → sysctls, and its file references → files (the pod file named by
    /// `filename`, or the reference's `detail`; a `path` ending in `/` gets the file's name;
    /// `perm` octal → mode; `user`/`group` as given, resolved by the guest).
    pub(super) fn container_options(
        &self,
        pod: &PodRecord,
        ct: &ContainerRecord,
    ) -> Result<ContainerOptions> {
        let Some(c) = pod.spec.containers.get(ct.idx as usize) else {
            return Ok(ContainerOptions::default());
        };
        let mut files = Vec::new();
        for (j, r) in c.files.iter().enumerate() {
            let field = format!("containers[{}].files[{j}]", ct.idx);
            let (file, stored) = match &r.detail {
                Some(d) => (d, None),
                None => {
                    let Some(i) = pod.spec.files.iter().position(|f| f.name == r.filename) else {
                        return Err(spec_error(
                            format!("{field}.filename"),
                            format!("{:?}: no such pod file", r.filename),
                        ));
                    };
                    (
                        &pod.spec.files[i],
                        Some(self.files_dir(&pod.id).join(i.to_string())),
                    )
                }
            };
            let content =
                file_content(file, stored.as_deref()).map_err(|m| spec_error(field.clone(), m))?;
            let name = if r.filename.is_empty() {
                &file.name
            } else {
                &r.filename
            };
            let path = if r.path.ends_with('/') {
                format!("{}{name}", r.path)
            } else {
                r.path.clone()
            };
            let mode = u32::from_str_radix(&r.perm, 8).map_err(|_| {
                spec_error(format!("{field}.perm"), format!("{:?}: not octal", r.perm))
            })?;
            files.push(FileInjection {
                path,
                content,
                mode,
                user: r.user.clone(),
                group: r.group.clone(),
            });
        }
        Ok(ContainerOptions {
            read_only_rootfs: c.read_only,
            rlimits: c
                .ulimits
                .iter()
                .map(|u| Rlimit {
                    name: u.name.to_ascii_lowercase(),
                    soft: u.soft,
                    hard: u.hard,
                })
                .collect(),
            sysctls: c.sysctl.clone().into_iter().collect(),
            files,
        })
    }
}

/// A file's bytes: fetched ones from `stored`, inline ones from the spec; decoded.
fn file_content(file: &UserFile, stored: Option<&Path>) -> std::result::Result<Vec<u8>, String> {
    let raw = match stored {
        Some(path) if !file.uri.is_empty() => {
            std::fs::read(path).map_err(|e| format!("the file fetched from {:?}: {e}", file.uri))?
        }
        _ => file.content.as_bytes().to_vec(),
    };
    decode_file(&file.encoding, &raw)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The bytes at `uri` (`file://`, `http://`, `https://`), at most [`MAX_FILE_BYTES`].
async fn fetch(uri: &str) -> std::result::Result<Vec<u8>, String> {
    if let Some(path) = uri.strip_prefix("file://") {
        let path = PathBuf::from(path);
        return tokio::task::spawn_blocking(move || read_host_file(&path))
            .await
            .map_err(|e| e.to_string())?;
    }
    tokio::time::timeout(FETCH_TIMEOUT, fetch_http(uri))
        .await
        .map_err(|_| format!("not fetched within {}s", FETCH_TIMEOUT.as_secs()))?
}

fn read_host_file(path: &Path) -> std::result::Result<Vec<u8>, String> {
    // O_NONBLOCK: opening a FIFO would otherwise wait for a writer; a regular file reads the
    // same with it.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    Ok(bytes)
}

async fn fetch_http(uri: &str) -> std::result::Result<Vec<u8>, String> {
    let client = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let mut resp = client.get(uri).send().await.map_err(|e| chain(&e))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    if resp.content_length().is_some_and(|n| n > MAX_FILE_BYTES) {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| chain(&e))? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
        }
    }
    Ok(bytes)
}

/// An error with its causes, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
