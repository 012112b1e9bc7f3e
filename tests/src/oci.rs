//! Real container images built on disk by a test, no daemon involved: layers as tar archives
//! made in memory ([`TestLayer`]: files with their owner and mode, directories, symlinks,
//! hardlinks, whiteouts), and images over them ([`TestImage`]: an image config, an OCI
//! manifest) written as an OCI image layout (single image or multi-platform index) or as a
//! `docker save` archive. [`skopeo_push`] puts a layout into a registry (plain HTTP, or TLS
//! with a CA and credentials).
//!
//! Follows the OCI image spec v1.1 (image layout, manifest, index, config, layer changesets with
//! whiteouts) and Docker's image archive format (`manifest.json`). Builders panic on a bad
//! input (a test bug) rather than return errors; so does every function here on an I/O error.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The modification time of every entry we write (2023-11-14), so that the same layer always
/// has the same digest.
const MTIME: u64 = 1_700_000_000;
/// The `created` time of every image config, for the same reason.
const CREATED: &str = "2023-11-14T22:13:20Z";

/// A tar entry written as is, for tests of hostile archives: the name and link name go into
/// the header raw (cut at 100 bytes), so `..`, absolute paths and NULs survive, which the tar
/// crate's own setters refuse. Content is written for regular files only.
#[derive(Debug, Clone)]
pub struct RawEntry {
    pub kind: tar::EntryType,
    pub path: String,
    pub link: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

/// A tar of `entries`, in order.
pub fn raw_tar(entries: &[RawEntry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let old = h.as_old_mut();
        for (field, value) in [
            (&mut old.name[..], &e.path),
            (&mut old.linkname[..], &e.link),
        ] {
            let n = value.len().min(field.len());
            field[..n].copy_from_slice(&value.as_bytes()[..n]);
        }
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        let data: &[u8] = if e.kind == tar::EntryType::Regular {
            &e.data
        } else {
            &[]
        };
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// `sha256:<hex>` of `data`: an OCI digest.
pub fn sha256(data: &[u8]) -> String {
    let hex: String = Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// One entry of a layer, in archive order.
#[derive(Debug, Clone)]
enum Entry {
    File {
        path: String,
        data: Vec<u8>,
        mode: u32,
        uid: u64,
        gid: u64,
    },
    Dir {
        path: String,
        mode: u32,
        uid: u64,
        gid: u64,
    },
    Symlink {
        path: String,
        target: String,
    },
    Hardlink {
        path: String,
        target: String,
    },
}

/// A layer changeset: a tar archive built in memory, entries in the order they were added.
/// Paths are relative to the image root (a leading `/` or `./` is dropped). Parent directories
/// are not implied: add them with [`TestLayer::dir`] where their mode or owner matters.
#[derive(Debug, Clone, Default)]
pub struct TestLayer {
    entries: Vec<Entry>,
}

/// `path` as a tar entry names it: relative, without `./`.
fn entry_path(path: &str) -> String {
    let p = path.trim_start_matches('/');
    let p = p.strip_prefix("./").unwrap_or(p);
    assert!(
        !p.is_empty(),
        "an entry needs a path below the root: {path:?}"
    );
    p.trim_end_matches('/').to_string()
}

impl TestLayer {
    pub fn new() -> Self {
        Self::default()
    }

    /// A regular file; `mode` holds the permission bits (e.g. `0o755`, `0o4755` for setuid).
    pub fn file(mut self, path: &str, contents: &[u8], mode: u32, uid: u64, gid: u64) -> Self {
        self.entries.push(Entry::File {
            path: entry_path(path),
            data: contents.to_vec(),
            mode,
            uid,
            gid,
        });
        self
    }

    pub fn dir(mut self, path: &str, mode: u32, uid: u64, gid: u64) -> Self {
        self.entries.push(Entry::Dir {
            path: entry_path(path),
            mode,
            uid,
            gid,
        });
        self
    }

    /// A symlink to `target`, kept verbatim (absolute or relative).
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.entries.push(Entry::Symlink {
            path: entry_path(path),
            target: target.to_string(),
        });
        self
    }

    /// A hardlink to `target`, an entry of this or a lower layer (a path from the root).
    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        self.entries.push(Entry::Hardlink {
            path: entry_path(path),
            target: entry_path(target),
        });
        self
    }

    /// Deletes `path` of the lower layers: an empty file `<parent>/.wh.<name>`.
    pub fn whiteout(self, path: &str) -> Self {
        let path = entry_path(path);
        let whiteout = match path.rsplit_once('/') {
            Some((parent, name)) => format!("{parent}/.wh.{name}"),
            None => format!(".wh.{path}"),
        };
        self.file(&whiteout, b"", 0o644, 0, 0)
    }

    /// Hides everything the lower layers have in `dir` (the directory itself stays): an empty
    /// file `<dir>/.wh..wh..opq`.
    pub fn opaque(self, dir: &str) -> Self {
        let marker = format!("{}/.wh..wh..opq", entry_path(dir));
        self.file(&marker, b"", 0o644, 0, 0)
    }

    /// A layer holding the whole tree under `root` (not `root` itself), parents before their
    /// children, names sorted, with each entry's mode, owner and symlink target; files that
    /// share an inode become hardlinks to the first one. Panics on a device, FIFO or socket.
    pub fn from_dir(root: &Path) -> Self {
        let mut layer = Self::new();
        let mut inodes = HashMap::new();
        layer.add_tree(root, "", &mut inodes);
        layer
    }

    fn add_tree(&mut self, dir: &Path, prefix: &str, inodes: &mut HashMap<(u64, u64), String>) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").file_name())
            .collect();
        names.sort();
        for name in names {
            let source = dir.join(&name);
            let path = format!("{prefix}{}", name.to_str().expect("UTF-8 file name"));
            let meta = std::fs::symlink_metadata(&source)
                .unwrap_or_else(|e| panic!("stat {}: {e}", source.display()));
            let (mode, uid, gid) = (meta.mode() & 0o7777, meta.uid().into(), meta.gid().into());
            let kind = meta.file_type();
            let entry = if kind.is_dir() {
                Entry::Dir {
                    path: path.clone(),
                    mode,
                    uid,
                    gid,
                }
            } else if kind.is_symlink() {
                let target = std::fs::read_link(&source).unwrap();
                Entry::Symlink {
                    path: path.clone(),
                    target: target.to_str().expect("UTF-8 link target").to_string(),
                }
            } else if kind.is_file() {
                let first = (meta.nlink() > 1)
                    .then(|| inodes.get(&(meta.dev(), meta.ino())).cloned())
                    .flatten();
                match first {
                    Some(target) => Entry::Hardlink {
                        path: path.clone(),
                        target,
                    },
                    None => {
                        inodes.insert((meta.dev(), meta.ino()), path.clone());
                        Entry::File {
                            path: path.clone(),
                            data: std::fs::read(&source).unwrap(),
                            mode,
                            uid,
                            gid,
                        }
                    }
                }
            } else {
                let what = if kind.is_fifo() {
                    "FIFO"
                } else {
                    "device or socket"
                };
                panic!("{}: a {what} is not supported", source.display());
            };
            self.entries.push(entry);
            if kind.is_dir() {
                self.add_tree(&source, &format!("{path}/"), inodes);
            }
        }
    }

    /// The layer as an uncompressed tar archive (GNU headers); its digest is the layer's
    /// `diff_id`.
    pub fn tar(&self) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for entry in &self.entries {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(MTIME);
            let appended = match entry {
                Entry::File {
                    path,
                    data,
                    mode,
                    uid,
                    gid,
                } => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(data.len() as u64);
                    h.set_mode(*mode);
                    h.set_uid(*uid);
                    h.set_gid(*gid);
                    b.append_data(&mut h, path, data.as_slice())
                }
                Entry::Dir {
                    path,
                    mode,
                    uid,
                    gid,
                } => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(*mode);
                    h.set_uid(*uid);
                    h.set_gid(*gid);
                    b.append_data(&mut h, format!("{path}/"), std::io::empty())
                }
                Entry::Symlink { path, target } => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    h.set_mode(0o777);
                    b.append_link(&mut h, path, target)
                }
                Entry::Hardlink { path, target } => {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    h.set_mode(0o644);
                    b.append_link(&mut h, path, target)
                }
            };
            appended.expect("append to an in-memory tar");
        }
        b.into_inner().expect("finish an in-memory tar")
    }

    /// The tar archive, gzip-compressed (fast level: test layers are often random data).
    pub fn gzip(&self) -> Vec<u8> {
        Compression::Gzip.compress(self.tar())
    }

    /// The tar archive, zstd-compressed.
    pub fn zstd(&self) -> Vec<u8> {
        Compression::Zstd.compress(self.tar())
    }
}

/// How an image's layers are stored in a layout (and so pushed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The OCI layer media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    fn compress(self, tar: Vec<u8>) -> Vec<u8> {
        match self {
            Compression::None => tar,
            Compression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&tar).expect("gzip in memory");
                gz.finish().expect("gzip in memory")
            }
            Compression::Zstd => zstd::encode_all(tar.as_slice(), 3).expect("zstd in memory"),
        }
    }
}

/// The layers' digests and blobs, computed once per image.
#[derive(Debug, Clone)]
struct Blobs {
    diff_ids: Vec<String>,
    layers: Vec<Vec<u8>>,
}

/// An image: layers (base first) and the config a runtime honours. `linux/amd64`, gzip layers
/// and an empty config (no Entrypoint, Cmd, Env…) unless set.
#[derive(Debug, Clone)]
pub struct TestImage {
    layers: Vec<TestLayer>,
    compression: Compression,
    os: String,
    architecture: String,
    variant: Option<String>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Vec<String>,
    working_dir: Option<String>,
    user: Option<String>,
    exposed_ports: Vec<String>,
    volumes: Vec<String>,
    stop_signal: Option<String>,
    labels: BTreeMap<String, String>,
    blobs: OnceLock<Blobs>,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// An OCI descriptor of `data`.
fn descriptor(media_type: &str, data: &[u8]) -> Value {
    json!({ "mediaType": media_type, "digest": sha256(data), "size": data.len() })
}

/// Writes `data` as `<dir>/blobs/sha256/<hex>`.
fn write_blob(dir: &Path, data: &[u8]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let digest = sha256(data);
    std::fs::write(blobs.join(&digest["sha256:".len()..]), data).unwrap();
}

/// Makes `dir` an OCI layout whose `index.json` names `top` as `tag`, keeping what it already
/// names under other tags.
fn write_layout_index(dir: &Path, top: Value, tag: &str) {
    let mut top = top;
    top["annotations"] = json!({ REF_NAME: tag });
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index_path = dir.join("index.json");
    let mut manifests: Vec<Value> = match std::fs::read(&index_path) {
        Ok(bytes) => {
            let index: Value = serde_json::from_slice(&bytes).expect("index.json is JSON");
            index["manifests"].as_array().cloned().unwrap_or_default()
        }
        Err(_) => Vec::new(),
    };
    manifests.retain(|m| m["annotations"][REF_NAME] != tag);
    manifests.push(top);
    let index = json!({ "schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": manifests });
    std::fs::write(index_path, serde_json::to_vec_pretty(&index).unwrap()).unwrap();
}

impl TestImage {
    pub fn new(layers: Vec<TestLayer>) -> Self {
        Self {
            layers,
            compression: Compression::Gzip,
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
            entrypoint: None,
            cmd: None,
            env: Vec::new(),
            working_dir: None,
            user: None,
            exposed_ports: Vec::new(),
            volumes: Vec::new(),
            stop_signal: None,
            labels: BTreeMap::new(),
            blobs: OnceLock::new(),
        }
    }

    pub fn entrypoint(mut self, args: &[&str]) -> Self {
        self.entrypoint = Some(strings(args));
        self
    }

    pub fn cmd(mut self, args: &[&str]) -> Self {
        self.cmd = Some(strings(args));
        self
    }

    /// The whole environment, `KEY=value` each.
    pub fn env(mut self, vars: &[&str]) -> Self {
        self.env = strings(vars);
        self
    }

    pub fn workdir(mut self, dir: &str) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    /// `user`, `uid`, `user:group` or `uid:gid`, as the config's `User`.
    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.into());
        self
    }

    /// A port to expose, `80/tcp` or `53/udp`.
    pub fn expose(mut self, port: &str) -> Self {
        self.exposed_ports.push(port.into());
        self
    }

    /// A path the image declares as a volume.
    pub fn volume(mut self, path: &str) -> Self {
        self.volumes.push(path.into());
        self
    }

    /// `SIGTERM`, `SIGQUIT`, `9`…, as the config's `StopSignal`.
    pub fn stop_signal(mut self, signal: &str) -> Self {
        self.stop_signal = Some(signal.into());
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// The platform, e.g. `("linux", "arm64")`.
    pub fn platform(mut self, os: &str, architecture: &str) -> Self {
        self.os = os.into();
        self.architecture = architecture.into();
        self
    }

    /// The platform variant, e.g. `v8` for arm64.
    pub fn variant(mut self, variant: &str) -> Self {
        self.variant = Some(variant.into());
        self
    }

    /// How the layers are stored in an OCI layout (gzip by default); a docker archive always
    /// holds them uncompressed.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self.blobs = OnceLock::new();
        self
    }

    fn blobs(&self) -> &Blobs {
        self.blobs.get_or_init(|| {
            let (diff_ids, layers) = self
                .layers
                .iter()
                .map(|l| {
                    let tar = l.tar();
                    (sha256(&tar), self.compression.compress(tar))
                })
                .unzip();
            Blobs { diff_ids, layers }
        })
    }

    /// The layers' `diff_id`s: digests of the uncompressed tars, base first.
    pub fn diff_ids(&self) -> Vec<String> {
        self.blobs().diff_ids.clone()
    }

    /// The digests of the layer blobs as the manifest lists them (compressed), base first.
    pub fn layer_digests(&self) -> Vec<String> {
        self.layer_blobs().iter().map(|l| sha256(l)).collect()
    }

    /// The layer blobs as a layout holds them and a registry serves them (compressed as
    /// [`TestImage::compression`] says), base first.
    pub fn layer_blobs(&self) -> &[Vec<u8>] {
        &self.blobs().layers
    }

    fn platform_json(&self) -> Value {
        let mut p = json!({ "os": self.os, "architecture": self.architecture });
        if let Some(v) = &self.variant {
            p["variant"] = json!(v);
        }
        p
    }

    /// The image config (OCI image config, Docker's field names in `config`), with
    /// `rootfs.diff_ids` and one `history` entry per layer. Unset fields are left out.
    pub fn config(&self) -> Value {
        let mut c = serde_json::Map::new();
        let mut set = |key: &str, value: Value| {
            c.insert(key.into(), value);
        };
        if let Some(v) = &self.entrypoint {
            set("Entrypoint", json!(v));
        }
        if let Some(v) = &self.cmd {
            set("Cmd", json!(v));
        }
        if !self.env.is_empty() {
            set("Env", json!(self.env));
        }
        if let Some(v) = &self.working_dir {
            set("WorkingDir", json!(v));
        }
        if let Some(v) = &self.user {
            set("User", json!(v));
        }
        let as_set =
            |items: &[String]| -> Value { items.iter().map(|i| (i.clone(), json!({}))).collect() };
        if !self.exposed_ports.is_empty() {
            set("ExposedPorts", as_set(&self.exposed_ports));
        }
        if !self.volumes.is_empty() {
            set("Volumes", as_set(&self.volumes));
        }
        if let Some(v) = &self.stop_signal {
            set("StopSignal", json!(v));
        }
        if !self.labels.is_empty() {
            set("Labels", json!(self.labels));
        }
        let history: Vec<Value> = (0..self.layers.len())
            .map(|i| json!({ "created": CREATED, "created_by": format!("hyper-tests layer {i}") }))
            .collect();
        let mut config = json!({
            "created": CREATED,
            "architecture": self.architecture,
            "os": self.os,
            "config": c,
            "rootfs": { "type": "layers", "diff_ids": self.blobs().diff_ids },
            "history": history,
        });
        if let Some(v) = &self.variant {
            config["variant"] = json!(v);
        }
        config
    }

    /// The config blob: [`TestImage::config`] as the manifest's config descriptor names it.
    pub fn config_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.config()).unwrap()
    }

    /// `sha256:` of the config blob: the image ID hyperd should report.
    pub fn config_digest(&self) -> String {
        sha256(&self.config_bytes())
    }

    /// The OCI image manifest, as bytes.
    pub fn manifest(&self) -> Vec<u8> {
        let layers: Vec<Value> = self
            .blobs()
            .layers
            .iter()
            .map(|l| descriptor(self.compression.media_type(), l))
            .collect();
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": descriptor(MEDIA_CONFIG, &self.config_bytes()),
            "layers": layers,
        }))
        .unwrap()
    }

    /// `sha256:` of the manifest: the digest a registry serves this image under when pushed
    /// as is (`<repo>@<digest>`, `RepoDigests`).
    pub fn manifest_digest(&self) -> String {
        sha256(&self.manifest())
    }

    /// Writes the config, layer and manifest blobs; returns the manifest's descriptor (with
    /// its platform).
    fn write_blobs(&self, dir: &Path) -> Value {
        write_blob(dir, &self.config_bytes());
        for layer in &self.blobs().layers {
            write_blob(dir, layer);
        }
        let manifest = self.manifest();
        write_blob(dir, &manifest);
        let mut d = descriptor(MEDIA_MANIFEST, &manifest);
        d["platform"] = self.platform_json();
        d
    }

    /// Writes this image into the OCI image layout `dir` (`oci-layout`, `index.json`,
    /// `blobs/sha256/`; created if missing, other tags kept), its manifest named `tag` by the
    /// `org.opencontainers.image.ref.name` annotation: `oci:<dir>:<tag>` to skopeo.
    pub fn write_oci_layout(&self, dir: &Path, tag: &str) {
        let top = self.write_blobs(dir);
        write_layout_index(dir, top, tag);
    }

    /// The OCI image index over `images`, one manifest per image with its platform, as bytes.
    pub fn index(images: &[TestImage]) -> Vec<u8> {
        let manifests: Vec<Value> = images
            .iter()
            .map(|i| {
                let mut d = descriptor(MEDIA_MANIFEST, &i.manifest());
                d["platform"] = i.platform_json();
                d
            })
            .collect();
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": manifests,
        }))
        .unwrap()
    }

    /// `sha256:` of [`TestImage::index`]: the digest of the multi-platform image.
    pub fn index_digest(images: &[TestImage]) -> String {
        sha256(&Self::index(images))
    }

    /// Writes a multi-platform image into the OCI layout `dir`: every image's blobs, and an
    /// image index over their manifests named `tag` (see [`TestImage::write_oci_layout`]).
    pub fn write_oci_index(images: &[TestImage], dir: &Path, tag: &str) {
        for image in images {
            image.write_blobs(dir);
        }
        let index = Self::index(images);
        write_blob(dir, &index);
        write_layout_index(dir, descriptor(MEDIA_INDEX, &index), tag);
    }

    /// Writes a `docker save` archive to `file`: `manifest.json` (`Config`, `RepoTags` with
    /// `repo_tag` unless empty, `Layers`), the config as `<hex>.json` and each layer
    /// uncompressed as `<diff_id hex>/layer.tar`.
    pub fn write_docker_archive(&self, file: &Path, repo_tag: &str) {
        let out = std::fs::File::create(file)
            .unwrap_or_else(|e| panic!("create {}: {e}", file.display()));
        let mut b = tar::Builder::new(std::io::BufWriter::new(out));
        let mut add = |path: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(MTIME);
            b.append_data(&mut h, path, data)
                .unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        };
        let config = self.config_bytes();
        let config_name = format!("{}.json", &sha256(&config)["sha256:".len()..]);
        add(&config_name, &config);
        let mut layer_names: Vec<String> = Vec::new();
        for layer in &self.layers {
            let tar = layer.tar();
            let name = format!("{}/layer.tar", &sha256(&tar)["sha256:".len()..]);
            // The same layer twice in one image is stored once.
            if !layer_names.contains(&name) {
                add(&name, &tar);
            }
            layer_names.push(name);
        }
        let repo_tags: Vec<&str> = [repo_tag].into_iter().filter(|t| !t.is_empty()).collect();
        let manifest = json!([{
            "Config": config_name,
            "RepoTags": repo_tags,
            "Layers": layer_names,
        }]);
        add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
        b.into_inner()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    }
}

/// How [`skopeo_push`] reaches a registry and what it sends. The default: plain HTTP (or TLS
/// unverified), anonymous, the manifest and its digests kept.
#[derive(Debug, Clone, Copy, Default)]
pub struct PushOptions<'a> {
    /// A directory holding the registry's CA as `ca.crt` (`--dest-cert-dir`): TLS verified
    /// against it. `None`: `--dest-tls-verify=false`, which also allows plain HTTP.
    pub cert_dir: Option<&'a Path>,
    /// `(user, password)` for the registry (`--dest-creds`).
    pub credentials: Option<(&'a str, &'a str)>,
    /// A manifest format to convert to (`--format`, e.g. `v2s2` for Docker's schema 2): the
    /// manifest, and so its digest, changes. `None`: digests preserved (`--preserve-digests`).
    pub format: Option<&'a str>,
}

/// Copies `oci:<layout>:<tag>` (an image or an index, every platform) to
/// `docker://<dest>`; `dest` is `<host>/<repo>:<tag>`. Panics with skopeo's stderr if the
/// copy fails.
pub fn skopeo_push(layout: &Path, tag: &str, dest: &str, options: PushOptions) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy", "copy", "--quiet", "--all"]);
    match options.format {
        // skopeo refuses to preserve digests it has to change.
        Some(format) => cmd.args(["--format", format]),
        None => cmd.arg("--preserve-digests"),
    };
    match options.cert_dir {
        Some(dir) => cmd.arg("--dest-cert-dir").arg(dir),
        None => cmd.arg("--dest-tls-verify=false"),
    };
    if let Some((user, password)) = options.credentials {
        cmd.arg(format!("--dest-creds={user}:{password}"));
    }
    crate::run_tool(
        cmd.arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}", dest.trim_start_matches("docker://"))),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs skopeo; its stdout, or a panic with its stderr.
    fn skopeo(args: &[&str]) -> Vec<u8> {
        crate::run_tool(Command::new("skopeo").args(args))
    }

    fn skopeo_json(args: &[&str]) -> Value {
        serde_json::from_slice(&skopeo(args)).expect("skopeo prints JSON")
    }

    /// `skopeo copy` reads every blob and checks its digest and size: a layout or archive
    /// that copies is internally consistent.
    fn skopeo_copies(src: &str, dir: &Path) {
        let dest = format!("oci:{}:copy", dir.join("copy").display());
        skopeo(&["--insecure-policy", "copy", "--quiet", "--all", src, &dest]);
    }

    /// `tar -tvf` of a layer: what GNU tar makes of our archive.
    fn tar_listing(layer: &TestLayer, dir: &Path) -> String {
        let file = dir.join("layer.tar");
        std::fs::write(&file, layer.tar()).unwrap();
        let out = Command::new("tar")
            .args(["--numeric-owner", "-tvf"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn app_image() -> TestImage {
        let base = TestLayer::new().dir("app", 0o755, 0, 0).file(
            "app/run.sh",
            b"#!/bin/sh\necho hi\n",
            0o755,
            1000,
            1000,
        );
        let top = TestLayer::new().file("/etc/motd", b"hello\n", 0o644, 0, 0);
        TestImage::new(vec![base, top])
            .entrypoint(&["/app/run.sh"])
            .cmd(&["--verbose"])
            .env(&["PATH=/bin:/usr/bin", "GREETING=hi"])
            .workdir("/app")
            .user("1000:1000")
            .expose("8080/tcp")
            .volume("/data")
            .stop_signal("SIGQUIT")
            .label("org.example.role", "test")
    }

    #[test]
    fn oci_layout_shows_the_config_and_layers_to_skopeo() {
        let tmp = tempfile::tempdir().unwrap();
        let image = app_image();
        let layout = tmp.path().join("layout");
        image.write_oci_layout(&layout, "v1");
        let src = format!("oci:{}:v1", layout.display());

        let inspect = skopeo_json(&["inspect", &src]);
        assert_eq!(inspect["Architecture"], "amd64");
        assert_eq!(inspect["Os"], "linux");
        assert_eq!(inspect["Env"], json!(["PATH=/bin:/usr/bin", "GREETING=hi"]));
        assert_eq!(inspect["Labels"], json!({ "org.example.role": "test" }));
        assert_eq!(inspect["Layers"], json!(image.layer_digests()));
        assert_eq!(inspect["Digest"], image.manifest_digest());

        let config = skopeo_json(&["inspect", "--config", &src]);
        assert_eq!(config["config"]["Entrypoint"], json!(["/app/run.sh"]));
        assert_eq!(config["config"]["Cmd"], json!(["--verbose"]));
        assert_eq!(config["config"]["WorkingDir"], "/app");
        assert_eq!(config["config"]["User"], "1000:1000");
        assert_eq!(config["config"]["ExposedPorts"], json!({ "8080/tcp": {} }));
        assert_eq!(config["config"]["Volumes"], json!({ "/data": {} }));
        assert_eq!(config["config"]["StopSignal"], "SIGQUIT");
        assert_eq!(config["rootfs"]["diff_ids"], json!(image.diff_ids()));

        let manifest = skopeo_json(&["inspect", "--raw", &src]);
        assert_eq!(manifest["config"]["digest"], image.config_digest());
        assert_eq!(
            manifest["layers"][0]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        skopeo_copies(&src, tmp.path());
    }

    #[test]
    fn a_second_tag_in_the_same_layout_keeps_the_first() {
        let tmp = tempfile::tempdir().unwrap();
        let first = app_image();
        let second = TestImage::new(vec![TestLayer::new().file("x", b"x", 0o644, 0, 0)]);
        first.write_oci_layout(tmp.path(), "first");
        second.write_oci_layout(tmp.path(), "second");
        for (tag, image) in [("first", &first), ("second", &second)] {
            let src = format!("oci:{}:{tag}", tmp.path().display());
            let inspect = skopeo_json(&["inspect", &src]);
            assert_eq!(inspect["Digest"], image.manifest_digest(), "{tag}");
        }
    }

    #[test]
    fn docker_archive_is_read_by_skopeo() {
        let tmp = tempfile::tempdir().unwrap();
        let image = app_image();
        let archive = tmp.path().join("app.tar");
        image.write_docker_archive(&archive, "example.com/app:v1");
        let src = format!("docker-archive:{}", archive.display());

        // skopeo finds the image by the tag in manifest.json's RepoTags.
        let tagged = format!("{src}:example.com/app:v1");
        let inspect = skopeo_json(&["inspect", &tagged]);
        let untagged = format!("{src}:example.com/app:v2");
        let out = Command::new("skopeo")
            .args(["inspect", &untagged])
            .output()
            .unwrap();
        assert!(!out.status.success(), "a tag the archive does not have");
        // Docker archive layers are uncompressed: their digests are the diff_ids.
        assert_eq!(inspect["Layers"], json!(image.diff_ids()));
        assert_eq!(inspect["Env"], json!(["PATH=/bin:/usr/bin", "GREETING=hi"]));
        let config = skopeo_json(&["inspect", "--config", &src]);
        assert_eq!(config, image.config());
        let manifest = skopeo_json(&["inspect", "--raw", &src]);
        assert_eq!(manifest["config"]["digest"], image.config_digest());
        skopeo_copies(&src, tmp.path());
    }

    #[test]
    fn oci_index_lists_both_platforms() {
        let tmp = tempfile::tempdir().unwrap();
        let layer = |arch: &str| TestLayer::new().file("arch", arch.as_bytes(), 0o644, 0, 0);
        let images = [
            TestImage::new(vec![layer("amd64")]).cmd(&["/amd64"]),
            TestImage::new(vec![layer("arm64")])
                .cmd(&["/arm64"])
                .platform("linux", "arm64")
                .variant("v8"),
        ];
        TestImage::write_oci_index(&images, tmp.path(), "multi");
        let src = format!("oci:{}:multi", tmp.path().display());

        let raw = skopeo(&["inspect", "--raw", &src]);
        assert_eq!(sha256(&raw), TestImage::index_digest(&images));
        let index: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(index["mediaType"], MEDIA_INDEX);
        let platforms: Vec<&Value> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["platform"])
            .collect();
        assert_eq!(
            platforms,
            [
                &json!({ "os": "linux", "architecture": "amd64" }),
                &json!({ "os": "linux", "architecture": "arm64", "variant": "v8" }),
            ]
        );
        for (arch, image) in [("amd64", &images[0]), ("arm64", &images[1])] {
            let config = skopeo_json(&["--override-arch", arch, "inspect", "--config", &src]);
            assert_eq!(config["config"]["Cmd"], json!([format!("/{arch}")]));
            assert_eq!(config, image.config());
        }
        skopeo_copies(&src, tmp.path());
    }

    #[test]
    fn whiteouts_opaque_dirs_and_links_are_tar_entries_skopeo_accepts() {
        let tmp = tempfile::tempdir().unwrap();
        let base = TestLayer::new()
            .dir("etc", 0o755, 0, 0)
            .file("etc/gone", b"old", 0o644, 0, 0)
            .dir("var/cache", 0o700, 33, 33)
            .file("var/cache/stale", b"old", 0o600, 33, 33)
            .file("bin/tool", b"\x7fELF", 0o4755, 0, 0);
        let top = TestLayer::new()
            .whiteout("/etc/gone")
            .whiteout("toplevel")
            .opaque("var/cache/")
            .hardlink("bin/tool2", "/bin/tool")
            .symlink("bin/sh", "/bin/busybox");
        let listing = tar_listing(&top, tmp.path());
        let lines: Vec<Vec<&str>> = listing
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        // mode owner size date time name [-> target | link to target]
        let names: Vec<&[&str]> = lines.iter().map(|l| &l[5..]).collect();
        assert_eq!(
            names,
            [
                &["etc/.wh.gone"][..],
                &[".wh.toplevel"],
                &["var/cache/.wh..wh..opq"],
                &["bin/tool2", "link", "to", "bin/tool"],
                &["bin/sh", "->", "/bin/busybox"],
            ],
            "{listing}"
        );
        assert!(lines[3][0].starts_with('h'), "{listing}");
        assert!(lines[4][0].starts_with('l'), "{listing}");
        let base_listing = tar_listing(&base, tmp.path());
        assert!(
            base_listing.contains("drwx------ 33/33") && base_listing.contains("-rwsr-xr-x 0/0"),
            "{base_listing}"
        );

        let image = TestImage::new(vec![base, top]).compression(Compression::Zstd);
        let layout = tmp.path().join("layout");
        image.write_oci_layout(&layout, "wh");
        let src = format!("oci:{}:wh", layout.display());
        let manifest = skopeo_json(&["inspect", "--raw", &src]);
        assert_eq!(
            manifest["layers"][1]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
        skopeo_copies(&src, tmp.path());
    }

    #[test]
    fn from_dir_keeps_modes_symlinks_and_hardlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = crate::busybox_rootfs(tmp.path());
        std::fs::hard_link(rootfs.join("etc/passwd"), rootfs.join("etc/passwd.link")).unwrap();
        std::fs::set_permissions(
            rootfs.join("tmp"),
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        )
        .unwrap();
        let layer = TestLayer::from_dir(&rootfs);
        let listing = tar_listing(&layer, tmp.path());
        for expected in [
            "bin/sh -> /bin/busybox",
            "etc/passwd.link link to etc/passwd",
        ] {
            assert!(listing.contains(expected), "{expected:?} in:\n{listing}");
        }
        let tmp_line = listing
            .lines()
            .find(|l| l.ends_with(" tmp/"))
            .unwrap_or_else(|| panic!("tmp/ in:\n{listing}"));
        assert!(tmp_line.starts_with("drwxrwxrwt"), "{tmp_line}");
        let busybox = listing
            .lines()
            .find(|l| l.ends_with(" bin/busybox"))
            .unwrap();
        let size = std::fs::metadata(rootfs.join("bin/busybox")).unwrap().len();
        assert!(busybox.contains(&format!(" {size} ")), "{busybox}");
    }
}
