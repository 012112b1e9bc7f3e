//! Image archives, as files and tar streams: the docker-archive format that `docker save` writes
//! and `docker load` reads (`manifest.json` at the top), and the OCI image layout
//! (`oci-layout`, `index.json`, `blobs/sha256/…`; OCI image spec v1.1, "image-layout.md").
//!
//! This module owns the formats only. Reading is two steps: [`extract`] unpacks the (already
//! decompressed) outer tar into a directory the caller owns, refusing any entry that would land
//! outside it, and [`read_layout`] finds the images in that directory, checking every blob
//! against its digest. Writing streams one tar: [`write_docker_archive`] or
//! [`write_oci_archive`], with blobs coming from a [`BlobSource`]. All of it is blocking
//! `std::io`; callers run it in `spawn_blocking`.

mod docker;
mod oci;

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use crate::error::Kind;
use crate::image::digest::{Digest, HashingReader, HashingWriter};
use crate::image::unpack;

pub use docker::write_docker_archive;
pub use oci::write_oci_archive;

/// The platform picked from a multi-platform index: hyperd's guests are x86-64 Linux.
pub const PLATFORM_OS: &str = "linux";
pub const PLATFORM_ARCHITECTURE: &str = "amd64";

/// Metadata files (manifests, configs, indexes) are read into memory; anything larger than this
/// is not an honest one.
const MAX_METADATA_BYTES: u64 = 32 << 20;

/// Symbolic links followed while resolving one name, as Linux's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An entry of the outer tar that would land outside the extraction directory, or is of a
    /// kind an image archive never holds.
    #[error("archive entry {}: {reason}", unpack::printable(&format!("{entry:?}")))]
    UnsafeEntry { entry: String, reason: String },
    /// Shows what the tar parser said without the client bytes it may quote.
    #[error("read the archive: {}", unpack::tar_complaint(.0))]
    Tar(#[source] io::Error),
    #[error("not an image archive: it has neither manifest.json nor oci-layout with index.json")]
    UnknownLayout,
    /// A name in the archive's metadata that is not there (`named_by` is the file naming it).
    #[error("{named_by} names {name:?}, which is not in the archive")]
    Missing { named_by: String, name: String },
    /// A name whose symbolic links lead outside the archive.
    #[error("{named_by} names {name:?}, which leads outside the archive")]
    Escapes { named_by: String, name: String },
    /// A file or field of the archive's metadata that does not parse or is inconsistent.
    #[error("{file}: {reason}")]
    Invalid { file: String, reason: String },
    #[error("blob {name}: its content has digest sha256:{actual}, not {expected}")]
    DigestMismatch {
        name: String,
        expected: String,
        actual: String,
    },
    #[error("blob {name}: {actual} bytes, but {expected} were announced")]
    SizeMismatch {
        name: String,
        expected: u64,
        actual: u64,
    },
    #[error("{index}: no image for {PLATFORM_OS}/{PLATFORM_ARCHITECTURE}")]
    NoPlatform { index: String },
    #[error("the archive holds no image")]
    NoImages,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Anything wrong with an archive is the client's; only our own I/O is internal.
    pub fn kind(&self) -> Kind {
        match self {
            Error::Io { .. } => Kind::Internal,
            _ => Kind::InvalidInput,
        }
    }

    fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    fn invalid(file: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            file: file.into(),
            reason: reason.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// One image found by [`read_layout`].
#[derive(Debug, Clone)]
pub struct ArchivedImage {
    /// The config blob's exact bytes; their sha256 is the image id.
    pub config: Vec<u8>,
    /// `sha256:<hex>` of `config`.
    pub config_digest: String,
    /// Bottom layer first, as the config's `rootfs.diff_ids` (same count, checked).
    pub layers: Vec<ArchivedLayer>,
    /// docker-archive: `RepoTags` as written (`busybox:latest`). OCI layout: the
    /// `io.containerd.image.name` annotation of each index entry naming this manifest, else its
    /// `org.opencontainers.image.ref.name` as given (a bare tag such as `latest` has no repo).
    pub repo_tags: Vec<String>,
    /// OCI layouts: the image manifest as stored. docker-archives have none.
    pub manifest: Option<ArchivedManifest>,
}

#[derive(Debug, Clone)]
pub struct ArchivedManifest {
    pub bytes: Vec<u8>,
    /// The media type its descriptor gave (OCI or Docker schema 2 manifest).
    pub media_type: String,
    /// `sha256:<hex>` of `bytes`.
    pub digest: String,
}

#[derive(Debug, Clone)]
pub struct ArchivedLayer {
    /// The layer file inside the extraction directory, symbolic links resolved. It may be
    /// compressed: docker-archives usually hold plain tars, OCI layouts what the registry had.
    pub path: PathBuf,
    /// `sha256:<hex>` of the file as stored (for a plain tar this is its diff id). The caller
    /// checks the uncompressed digest against the config's `rootfs.diff_ids`.
    pub digest: String,
    /// OCI layouts: the descriptor's media type. docker-archives: `None`.
    pub media_type: Option<String>,
}

/// An image for [`write_docker_archive`] / [`write_oci_archive`], as the content store holds it.
#[derive(Debug, Clone)]
pub struct ImageToSave {
    pub config: Vec<u8>,
    /// `sha256:<hex>` of `config` (checked).
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_media_type: String,
    /// `sha256:<hex>` of `manifest` (checked).
    pub manifest_digest: String,
    /// Bottom first.
    pub layers: Vec<LayerToSave>,
    /// Full references, `repo:tag` (`docker.io/library/busybox:latest` or `busybox:latest`).
    pub repo_tags: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct LayerToSave {
    /// `sha256:<hex>` of the blob as stored (maybe compressed).
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    pub media_type: String,
    /// Bytes of the blob as stored.
    pub size: u64,
}

/// Where the writers get blobs from (the content store).
pub trait BlobSource {
    /// The blob `digest` (`sha256:<hex>`) exactly as stored, maybe compressed.
    fn open_blob(&self, digest: &str) -> io::Result<File>;
    /// The layer blob `digest` as an uncompressed tar (docker-archive needs it: `docker load`
    /// checks diff ids).
    fn open_uncompressed_layer(&self, digest: &str) -> io::Result<Box<dyn Read>>;
}

/// Extracts the outer tar of an image archive (already decompressed) into `dir`, which must
/// exist. Only regular files, directories and relative symbolic links that stay inside `dir`
/// are allowed; an absolute name, a `..` component, a link pointing out, or an entry whose path
/// goes through (or replaces) a symbolic link is refused with [`Error::UnsafeEntry`] naming the
/// entry, before anything is written for it.
pub fn extract(archive: impl Read, dir: &Path) -> Result<()> {
    let mut tar = tar::Archive::new(archive);
    tar.set_preserve_permissions(false);
    tar.set_preserve_mtime(false);
    tar.set_unpack_xattrs(false);
    for entry in tar.entries().map_err(Error::Tar)? {
        let mut entry = entry.map_err(Error::Tar)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let unsafe_entry = |reason: &str| Error::UnsafeEntry {
            entry: name.clone(),
            reason: reason.to_string(),
        };
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            continue;
        }
        let parts = relative_parts(Path::new(&name)).map_err(unsafe_entry)?;
        if parts.is_empty() {
            if kind.is_dir() {
                continue; // `./`: the directory itself
            }
            return Err(unsafe_entry("has an empty name"));
        }
        // Nothing may be written through a link: the links are the archive's own.
        let mut at = dir.to_path_buf();
        for part in &parts {
            at.push(part);
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(unsafe_entry("goes through a symbolic link of the archive"));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                // An earlier entry put a file where this one needs a directory.
                Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                    return Err(unsafe_entry("has a parent that is not a directory"));
                }
                Err(e) => return Err(Error::io(format!("stat {}", at.display()), e)),
            }
        }
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Directory => {}
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(Error::Tar)?
                    .ok_or_else(|| unsafe_entry("is a symbolic link without a target"))?;
                let mut depth = parts.len() - 1;
                for c in target.components() {
                    match c {
                        Component::Normal(_) => depth += 1,
                        Component::CurDir => {}
                        Component::ParentDir if depth > 0 => depth -= 1,
                        Component::ParentDir => {
                            return Err(unsafe_entry(&format!(
                                "is a symbolic link to {}, outside the archive",
                                target.display()
                            )));
                        }
                        Component::RootDir | Component::Prefix(_) => {
                            return Err(unsafe_entry(&format!(
                                "is a symbolic link to the absolute path {}",
                                target.display()
                            )));
                        }
                    }
                }
            }
            other => {
                return Err(unsafe_entry(&format!(
                    "is a {other:?} entry; an image archive holds only files, directories and symbolic links"
                )));
            }
        }
        // unpack_in checks again that the parent stays inside `dir`.
        // The tar reader's own message names the server's temp path: say it in the archive's
        // terms when the archive is at fault (cut short), keep it for our own failures.
        let unpacked = entry.unpack_in(dir).map_err(|e| {
            // Our disk failing is ours; anything else while reading one entry is the archive's
            // (cut short, damaged), and the tar reader's text would show our temp paths.
            use io::ErrorKind::*;
            if matches!(
                e.kind(),
                StorageFull | QuotaExceeded | ReadOnlyFilesystem | PermissionDenied | OutOfMemory
            ) {
                Error::Tar(e)
            } else {
                unsafe_entry("cannot be read whole: the archive is cut short or damaged")
            }
        })?;
        if !unpacked {
            return Err(unsafe_entry("was refused by the tar reader"));
        }
    }
    Ok(())
}

/// The normal components of a relative archive name (`.` dropped); the reason when the name is
/// absolute or climbs with `..`.
fn relative_parts(name: &Path) -> std::result::Result<Vec<OsString>, &'static str> {
    let mut parts = Vec::new();
    for c in name.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_os_string()),
            Component::CurDir => {}
            Component::ParentDir => return Err("has a `..` component"),
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path"),
        }
    }
    Ok(parts)
}

/// Finds the images of an extracted archive: a docker-archive when `manifest.json` is there
/// (Docker ≤24 `<id>/layer.tar` layers, Docker 25+ and skopeo `blobs/sha256/<hex>` or
/// `<hex>.tar`), else an OCI image layout (`oci-layout` + `index.json`; nested indexes are
/// followed and linux/amd64 picked). Every blob named by a digest is checked against it; a
/// docker-archive's `<hex>.json`/`<hex>.tar`/`blobs/sha256/<hex>` names count as digests.
/// Errors name the file, blob or field at fault.
pub fn read_layout(dir: &Path) -> Result<Vec<ArchivedImage>> {
    // symlink_metadata: the names may be links, followed only by resolve_file.
    let has = |name: &str| std::fs::symlink_metadata(dir.join(name)).is_ok();
    let images = if has("manifest.json") {
        docker::read(dir)?
    } else if has("oci-layout") && has("index.json") {
        oci::read(dir)?
    } else {
        return Err(Error::UnknownLayout);
    };
    if images.is_empty() {
        return Err(Error::NoImages);
    }
    Ok(images)
}

/// Resolves `name`, a relative path from the archive's metadata, inside `root`: symbolic links
/// are followed as the kernel would, but no step may leave `root`.
fn resolve_inside(root: &Path, name: &str, named_by: &str) -> Result<PathBuf> {
    let escapes = || Error::Escapes {
        named_by: named_by.to_string(),
        name: name.to_string(),
    };
    let mut todo: VecDeque<OsString> = VecDeque::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(p) => todo.push_back(p.to_os_string()),
            Component::CurDir => {}
            Component::ParentDir => todo.push_back("..".into()),
            Component::RootDir | Component::Prefix(_) => return Err(escapes()),
        }
    }
    let mut done = root.to_path_buf();
    let mut depth = 0usize;
    let mut links = 0usize;
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            if depth == 0 {
                return Err(escapes());
            }
            done.pop();
            depth -= 1;
            continue;
        }
        let next = done.join(&part);
        let meta = match std::fs::symlink_metadata(&next) {
            Ok(m) => m,
            // Missing, or under something that is a file in the archive: not there either way.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Err(Error::Missing {
                    named_by: named_by.to_string(),
                    name: name.to_string(),
                });
            }
            Err(e) => return Err(Error::io(format!("stat {}", next.display()), e)),
        };
        if !meta.file_type().is_symlink() {
            done = next;
            depth += 1;
            continue;
        }
        links += 1;
        if links > MAX_SYMLINKS {
            return Err(Error::invalid(
                named_by,
                format!("{name:?}: too many levels of symbolic links"),
            ));
        }
        let target = std::fs::read_link(&next)
            .map_err(|e| Error::io(format!("readlink {}", next.display()), e))?;
        let mut expanded = Vec::new();
        for c in target.components() {
            match c {
                Component::Normal(p) => expanded.push(p.to_os_string()),
                Component::CurDir => {}
                Component::ParentDir => expanded.push("..".into()),
                Component::RootDir | Component::Prefix(_) => return Err(escapes()),
            }
        }
        for p in expanded.into_iter().rev() {
            todo.push_front(p);
        }
    }
    Ok(done)
}

/// [`resolve_inside`], and the name must end at a regular file.
fn resolve_file(root: &Path, name: &str, named_by: &str) -> Result<PathBuf> {
    let path = resolve_inside(root, name, named_by)?;
    let meta = std::fs::symlink_metadata(&path)
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
    if !meta.is_file() {
        return Err(Error::invalid(
            named_by,
            format!("{name:?} is not a regular file"),
        ));
    }
    Ok(path)
}

/// The name of the archive's own top-level files, in errors.
const TOP_LEVEL: &str = "the archive";

/// `sha256:<hex>` → `<hex>`, refusing other algorithms and anything but 64 lowercase hex digits
/// (the hex becomes a file name).
fn digest_hex<'a>(digest: &'a str, named_by: &str) -> Result<&'a str> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if is_sha256_hex(hex) => Ok(hex),
        _ => Err(Error::invalid(
            named_by,
            format!("digest {digest:?} is not sha256:<64 lowercase hex digits>"),
        )),
    }
}

fn is_sha256_hex(s: &str) -> bool {
    Digest::from_hex(s).is_ok()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Digest::of(bytes).hex().to_owned()
}

/// Reads a metadata file whole (at most [`MAX_METADATA_BYTES`]).
fn read_small(path: &Path, name: &str) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    let mut bytes = Vec::new();
    file.take(MAX_METADATA_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    if bytes.len() as u64 > MAX_METADATA_BYTES {
        return Err(Error::invalid(
            name,
            format!("larger than {MAX_METADATA_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

/// The sha256 hex and length of a file, streamed.
fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut file =
        File::open(path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    let mut hashing = HashingWriter::new(io::sink());
    io::copy(&mut file, &mut hashing)
        .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    let (digest, len, _) = hashing.finish();
    Ok((digest.hex().to_owned(), len))
}

/// Checks `actual_hex` against `expected` (`sha256:<hex>`).
fn check_digest(name: &str, expected: &str, actual_hex: &str) -> Result<()> {
    if expected.strip_prefix("sha256:") == Some(actual_hex) {
        Ok(())
    } else {
        Err(Error::DigestMismatch {
            name: name.to_string(),
            expected: expected.to_string(),
            actual: actual_hex.to_string(),
        })
    }
}

/// Parses JSON, naming the field that failed.
fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], file: &str) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            Error::invalid(file, inner.to_string())
        } else {
            Error::invalid(file, format!("{path}: {inner}"))
        }
    })
}

/// The number of layers an image config lists in `rootfs.diff_ids`, checked against the count
/// its manifest gives, so an image whose layers do not match its config is refused at once.
fn check_layer_count(
    config: &[u8],
    config_name: &str,
    layers: usize,
    listed_by: &str,
) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    #[derive(serde::Deserialize)]
    struct RootFs {
        diff_ids: Vec<String>,
    }
    let parsed: Config = parse_json(config, config_name)?;
    let n = parsed.rootfs.diff_ids.len();
    if n != layers {
        return Err(Error::invalid(
            config_name,
            format!("rootfs.diff_ids lists {n} layers, but {listed_by} lists {layers}"),
        ));
    }
    Ok(())
}

/// Appends one regular file of `size` bytes read from `data`, checking that exactly `size` bytes
/// came and that their sha256 is `digest` (a tar header states the size before the content, so
/// a short or changed blob would otherwise make a corrupt archive).
fn append_blob<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    data: impl Read,
    size: u64,
    digest: &str,
) -> Result<()> {
    let mut header = file_header(size);
    let mut reader = HashingReader::new(data.take(size));
    tar.append_data(&mut header, name, &mut reader)
        .map_err(|e| Error::io(format!("write {name} to the archive"), e))?;
    let (actual, len) = reader.finish();
    if len != size {
        return Err(Error::SizeMismatch {
            name: digest.to_string(),
            expected: size,
            actual: len,
        });
    }
    check_digest(digest, digest, actual.hex())
}

/// Appends a small file held in memory.
fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> Result<()> {
    let mut header = file_header(bytes.len() as u64);
    tar.append_data(&mut header, name, bytes)
        .map_err(|e| Error::io(format!("write {name} to the archive"), e))
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, name: &str) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    header.set_mtime(0);
    tar.append_data(&mut header, name, io::empty())
        .map_err(|e| Error::io(format!("write {name} to the archive"), e))
}

fn file_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(size);
    header.set_mtime(0);
    header
}

/// Checks that `bytes` hash to `digest`, the caller's claim about them.
fn check_bytes(name: &str, bytes: &[u8], digest: &str) -> Result<()> {
    digest_hex(digest, name)?;
    check_digest(name, digest, &sha256_hex(bytes))
}

#[cfg(test)]
mod tests {
    use std::io::Seek;
    use std::process::Command;

    use hyper_tests::oci::TestLayer;

    use super::*;

    const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    const PLAIN_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

    /// A layer holding regular files `files` (name, content).
    fn layer(files: &[(&str, &str)]) -> TestLayer {
        files.iter().fold(TestLayer::new(), |l, (name, data)| {
            l.file(name, data.as_bytes(), 0o644, 0, 0)
        })
    }

    fn digest_of(bytes: &[u8]) -> String {
        format!("sha256:{}", sha256_hex(bytes))
    }

    /// A directory of blobs named by their hex digest: the content store's part that the
    /// writers see.
    struct DirBlobs {
        dir: tempfile::TempDir,
    }

    impl DirBlobs {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn put(&self, bytes: &[u8]) -> String {
            let digest = digest_of(bytes);
            std::fs::write(self.dir.path().join(&digest[7..]), bytes).unwrap();
            digest
        }
    }

    impl BlobSource for DirBlobs {
        fn open_blob(&self, digest: &str) -> io::Result<File> {
            File::open(self.dir.path().join(&digest[7..]))
        }

        fn open_uncompressed_layer(&self, digest: &str) -> io::Result<Box<dyn Read>> {
            let mut file = self.open_blob(digest)?;
            let mut magic = [0u8; 2];
            file.read_exact(&mut magic)?;
            file.rewind()?;
            Ok(if magic == [0x1f, 0x8b] {
                Box::new(flate2::read::GzDecoder::new(file))
            } else {
                Box::new(file)
            })
        }
    }

    /// An image whose layers are `layers`, each stored gzipped when its flag says so, else as
    /// a plain tar; its config, manifest and layers go into `blobs`.
    fn image(
        blobs: &DirBlobs,
        layers: &[(&TestLayer, bool)],
        tags: &[&str],
        cmd: &str,
    ) -> ImageToSave {
        let layers: Vec<LayerToSave> = layers
            .iter()
            .map(|(layer, compressed)| {
                let plain = layer.tar();
                let stored = if *compressed {
                    layer.gzip()
                } else {
                    plain.clone()
                };
                LayerToSave {
                    digest: blobs.put(&stored),
                    diff_id: digest_of(&plain),
                    media_type: if *compressed { GZIP_LAYER } else { PLAIN_LAYER }.into(),
                    size: stored.len() as u64,
                }
            })
            .collect();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": [cmd]},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>()},
        }))
        .unwrap();
        let config_digest = blobs.put(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": oci::MEDIA_TYPE_OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": layers.iter().map(|l| serde_json::json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size})).collect::<Vec<_>>(),
        }))
        .unwrap();
        ImageToSave {
            manifest_digest: blobs.put(&manifest),
            manifest,
            manifest_media_type: oci::MEDIA_TYPE_OCI_MANIFEST.into(),
            config,
            config_digest,
            layers,
            repo_tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    /// Two images sharing a gzipped base layer, each with a plain top layer of its own.
    fn two_images(blobs: &DirBlobs) -> Vec<ImageToSave> {
        let base = layer(&[("etc/os-release", "ID=test\n"), ("bin/sh", "#!sh")]);
        let one = layer(&[("app/one", "1")]);
        let two = layer(&[("app/two", "22")]);
        vec![
            image(
                blobs,
                &[(&base, true), (&one, false)],
                &["example.com/one:1"],
                "one",
            ),
            image(
                blobs,
                &[(&base, true), (&two, true)],
                &["docker.io/library/two:latest", "docker.io/library/two:2"],
                "two",
            ),
        ]
    }

    fn diff_ids(config: &[u8]) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(config).unwrap();
        v["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect()
    }

    /// The sha256 of a layer file once uncompressed.
    fn uncompressed_digest(path: &Path) -> String {
        let bytes = std::fs::read(path).unwrap();
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut plain)
                .unwrap();
            digest_of(&plain)
        } else {
            digest_of(&bytes)
        }
    }

    fn entry_names(archive: &Path) -> Vec<String> {
        let mut tar = tar::Archive::new(File::open(archive).unwrap());
        tar.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    /// The shared base layer `blob` (`sha256:<hex>`) is in `archive` once, as
    /// `blobs/sha256/<hex>`; returns the archive's entry names.
    fn assert_written_once(archive: &Path, blob: &str) -> Vec<String> {
        let names = entry_names(archive);
        let entry = format!("blobs/sha256/{}", &blob["sha256:".len()..]);
        assert_eq!(
            names.iter().filter(|n| **n == entry).count(),
            1,
            "{entry} in {names:?}"
        );
        names
    }

    fn assert_same_config_and_tags(written: &ImageToSave, read: &ArchivedImage) {
        assert_eq!(read.config, written.config);
        assert_eq!(read.config_digest, written.config_digest);
        assert_eq!(read.repo_tags, written.repo_tags);
    }

    fn extract_and_read(archive: &Path) -> (tempfile::TempDir, Vec<ArchivedImage>) {
        let dir = tempfile::tempdir().unwrap();
        extract(File::open(archive).unwrap(), dir.path()).unwrap();
        let images = read_layout(dir.path()).unwrap();
        (dir, images)
    }

    /// Runs skopeo, panicking with its stderr on failure; `None` when it is not installed.
    fn skopeo(args: &[&str]) -> Option<Vec<u8>> {
        let out = match Command::new("skopeo").args(args).output() {
            Ok(out) => out,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                eprintln!("skipped: skopeo is not installed (apt-get install skopeo)");
                return None;
            }
            Err(e) => panic!("run skopeo: {e}"),
        };
        assert!(
            out.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(out.stdout)
    }

    #[test]
    fn docker_archive_round_trip_keeps_ids_and_writes_a_shared_layer_once() {
        let blobs = DirBlobs::new();
        let mut images = two_images(&blobs);
        // The first image once more under another name: one entry with both tags.
        let mut again = images[0].clone();
        again.repo_tags = vec!["example.com/one:again".into()];
        images.push(again);
        let work = tempfile::tempdir().unwrap();
        let file = work.path().join("images.tar");
        write_docker_archive(File::create(&file).unwrap(), &images, &blobs, work.path()).unwrap();
        images.pop();
        images[0].repo_tags.push("example.com/one:again".into());

        // docker-archive layers are plain tars, under their diff ids.
        let names = assert_written_once(&file, &images[0].layers[0].diff_id);
        assert!(names.contains(&"manifest.json".to_string()), "{names:?}");

        let (_dir, read) = extract_and_read(&file);
        assert_eq!(read.len(), 2);
        for (written, read) in images.iter().zip(&read) {
            assert_same_config_and_tags(written, read);
            assert!(read.manifest.is_none());
            // docker-archive layers are plain tars: their digest is the diff id.
            let layer_digests: Vec<&str> = read.layers.iter().map(|l| l.digest.as_str()).collect();
            assert_eq!(layer_digests, diff_ids(&written.config));
        }
    }

    #[test]
    fn oci_archive_round_trip_keeps_blobs_verbatim() {
        let blobs = DirBlobs::new();
        let images = two_images(&blobs);
        let work = tempfile::tempdir().unwrap();
        let file = work.path().join("images.tar");
        write_oci_archive(File::create(&file).unwrap(), &images, &blobs).unwrap();

        assert_written_once(&file, &images[0].layers[0].digest);

        let (_dir, read) = extract_and_read(&file);
        assert_eq!(read.len(), 2);
        for (written, read) in images.iter().zip(&read) {
            assert_same_config_and_tags(written, read);
            let manifest = read.manifest.as_ref().unwrap();
            assert_eq!(manifest.bytes, written.manifest);
            assert_eq!(manifest.digest, written.manifest_digest);
            assert_eq!(manifest.media_type, oci::MEDIA_TYPE_OCI_MANIFEST);
            let stored: Vec<(&str, Option<&str>)> = read
                .layers
                .iter()
                .map(|l| (l.digest.as_str(), l.media_type.as_deref()))
                .collect();
            let expected: Vec<(&str, Option<&str>)> = written
                .layers
                .iter()
                .map(|l| (l.digest.as_str(), Some(l.media_type.as_str())))
                .collect();
            assert_eq!(stored, expected);
            let uncompressed: Vec<String> = read
                .layers
                .iter()
                .map(|l| uncompressed_digest(&l.path))
                .collect();
            assert_eq!(uncompressed, diff_ids(&written.config));
        }
    }

    #[test]
    fn skopeo_reads_our_docker_archive() {
        let blobs = DirBlobs::new();
        let images = two_images(&blobs);
        let work = tempfile::tempdir().unwrap();
        let file = work.path().join("images.tar");
        write_docker_archive(File::create(&file).unwrap(), &images, &blobs, work.path()).unwrap();
        for image in &images {
            let source = format!("docker-archive:{}:{}", file.display(), image.repo_tags[0]);
            let Some(inspect) = skopeo(&["inspect", &source]) else {
                return;
            };
            let inspect: serde_json::Value = serde_json::from_slice(&inspect).unwrap();
            let layers: Vec<String> = serde_json::from_value(inspect["Layers"].clone()).unwrap();
            assert_eq!(layers, diff_ids(&image.config));
            let config = skopeo(&["inspect", "--config", "--raw", &source]).unwrap();
            assert_eq!(config, image.config);
            // A copy reads every blob and checks it against its digest.
            let copied = work.path().join("copied");
            let dest = format!("dir:{}", copied.display());
            skopeo(&["copy", "--quiet", &source, &dest]).unwrap();
            for diff_id in diff_ids(&image.config) {
                assert!(copied.join(&diff_id[7..]).is_file(), "{diff_id} not copied");
            }
            std::fs::remove_dir_all(&copied).unwrap();
        }
    }

    #[test]
    fn skopeo_reads_our_oci_archive() {
        let blobs = DirBlobs::new();
        let images = two_images(&blobs);
        let work = tempfile::tempdir().unwrap();
        let file = work.path().join("images.tar");
        write_oci_archive(File::create(&file).unwrap(), &images, &blobs).unwrap();
        // Refer to each image by its OCI ref name (the tag), as skopeo does.
        for (image, tag) in images.iter().zip(["1", "latest"]) {
            let source = format!("oci-archive:{}:{tag}", file.display());
            let Some(inspect) = skopeo(&["inspect", &source]) else {
                return;
            };
            let inspect: serde_json::Value = serde_json::from_slice(&inspect).unwrap();
            assert_eq!(inspect["Digest"], image.manifest_digest.as_str());
            let layers: Vec<String> = serde_json::from_value(inspect["Layers"].clone()).unwrap();
            let stored: Vec<&str> = image.layers.iter().map(|l| l.digest.as_str()).collect();
            assert_eq!(layers, stored);
            let config = skopeo(&["inspect", "--config", "--raw", &source]).unwrap();
            assert_eq!(config, image.config);
        }
    }

    #[test]
    fn skopeo_docker_archive_of_our_oci_layout_reads_back_with_the_same_ids() {
        let blobs = DirBlobs::new();
        let images = two_images(&blobs);
        let work = tempfile::tempdir().unwrap();
        let oci_tar = work.path().join("oci.tar");
        write_oci_archive(File::create(&oci_tar).unwrap(), &images, &blobs).unwrap();
        let layout = work.path().join("layout");
        std::fs::create_dir(&layout).unwrap();
        extract(File::open(&oci_tar).unwrap(), &layout).unwrap();

        let docker_tar = work.path().join("docker.tar");
        let source = format!("oci:{}:latest", layout.display());
        let dest = format!(
            "docker-archive:{}:example.com/copied:v1",
            docker_tar.display()
        );
        if skopeo(&["copy", "--quiet", &source, &dest]).is_none() {
            return;
        }
        let (_dir, read) = extract_and_read(&docker_tar);
        assert_eq!(read.len(), 1);
        let (copied, original) = (&read[0], &images[1]);
        assert_eq!(copied.repo_tags, ["example.com/copied:v1"]);
        assert_eq!(copied.config_digest, original.config_digest);
        let digests: Vec<&str> = copied.layers.iter().map(|l| l.digest.as_str()).collect();
        assert_eq!(digests, diff_ids(&original.config));
    }

    /// A tar whose entries are given raw, names and link targets unchecked, as a hostile
    /// archive would be: (name, kind, link target, content).
    fn raw_tar(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, link, data) in entries {
            let mut h = tar::Header::new_gnu();
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// Extracts `archive` into `<tmp>/dir`; returns the error and what `<tmp>` holds besides.
    fn extract_hostile(archive: &[u8]) -> (Error, Vec<String>, tempfile::TempDir) {
        let outer = tempfile::tempdir().unwrap();
        let dir = outer.path().join("dir");
        std::fs::create_dir(&dir).unwrap();
        let err = extract(archive, &dir).unwrap_err();
        let others = std::fs::read_dir(outer.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "dir")
            .collect();
        (err, others, outer)
    }

    use tar::EntryType::{Directory, Link, Regular, Symlink};

    #[test]
    fn binary_garbage_is_named_without_its_bytes() {
        let mut block = vec![b'x'; 1024];
        block[148..156].copy_from_slice(b"7;\xd6\xb20S\xff\xfe");
        let (err, _, _t) = extract_hostile(&block);
        assert_eq!(
            err.to_string(),
            "read the archive: numeric field did not have utf-8 text"
        );
        assert_eq!(err.kind(), Kind::InvalidInput);
    }

    #[test]
    fn extract_refuses_a_parent_dir_entry() {
        let (err, others, _t) = extract_hostile(&raw_tar(&[
            ("ok", Regular, "", b"fine"),
            ("../x", Regular, "", b"evil"),
        ]));
        assert_eq!(
            err.to_string(),
            r#"archive entry "../x": has a `..` component"#
        );
        assert_eq!(err.kind(), Kind::InvalidInput);
        assert!(others.is_empty(), "{others:?}");
    }

    #[test]
    fn extract_refuses_an_absolute_entry() {
        let outer = tempfile::tempdir().unwrap();
        let target = outer.path().join("abs");
        let name = target.to_str().unwrap();
        let (err, _, _t) = extract_hostile(&raw_tar(&[(name, Regular, "", b"evil")]));
        assert_eq!(
            err.to_string(),
            format!("archive entry {name:?}: is an absolute path")
        );
        assert!(!target.exists());
    }

    #[test]
    fn extract_refuses_a_symlink_out_and_a_file_through_it() {
        let (err, others, _t) = extract_hostile(&raw_tar(&[
            ("link", Symlink, "../", b""),
            ("link/x", Regular, "", b"evil"),
        ]));
        assert_eq!(
            err.to_string(),
            r#"archive entry "link": is a symbolic link to ../, outside the archive"#
        );
        assert!(others.is_empty(), "{others:?}");

        let (err, _, _t) = extract_hostile(&raw_tar(&[
            ("link", Symlink, "/etc", b""),
            ("link/x", Regular, "", b""),
        ]));
        assert_eq!(
            err.to_string(),
            r#"archive entry "link": is a symbolic link to the absolute path /etc"#
        );

        // Each step looks inside, together they lead out: `s` is the top, `t` is `s/..`.
        let (err, others, _t) = extract_hostile(&raw_tar(&[
            ("s", Symlink, ".", b""),
            ("t", Symlink, "s/..", b""),
            ("t/x", Regular, "", b"evil"),
        ]));
        assert_eq!(
            err.to_string(),
            r#"archive entry "t/x": goes through a symbolic link of the archive"#
        );
        assert!(others.is_empty(), "{others:?}");
        let (err, others, _t) = extract_hostile(&raw_tar(&[
            ("s", Symlink, ".", b""),
            ("t", Symlink, "s/..", b""),
            ("t", Directory, "", b""),
        ]));
        assert!(
            err.to_string().contains("goes through a symbolic link"),
            "{err}"
        );
        assert!(others.is_empty(), "{others:?}");
    }

    #[test]
    fn a_cut_short_archive_names_the_entry_not_our_paths() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(4096);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "blobs/sha256/layer", &[7u8; 4096][..])
            .unwrap();
        let tar = b.into_inner().unwrap();
        let cut = &tar[..512 + 1000];
        let dir = tempfile::tempdir().unwrap();
        let err = extract(cut, dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("blobs/sha256/layer") && text.contains("cut short"),
            "{text}"
        );
        assert!(!text.contains(&*dir.path().to_string_lossy()), "{text}");
        assert_eq!(err.kind(), Kind::InvalidInput);
    }

    #[test]
    fn extract_refuses_hard_links() {
        let (err, _, _t) = extract_hostile(&raw_tar(&[("h", Link, "/etc/passwd", b"")]));
        assert!(
            err.to_string()
                .starts_with(r#"archive entry "h": is a Link entry"#),
            "{err}"
        );
    }

    #[test]
    fn read_refuses_a_link_whose_chain_leads_out() {
        // The links pass extraction one by one; following `t` to its end climbs above the top.
        let dir = tempfile::tempdir().unwrap();
        let manifest = br#"[{"Config":"t/c.json","RepoTags":null,"Layers":[]}]"#;
        extract(
            &raw_tar(&[
                ("s", Symlink, ".", b""),
                ("t", Symlink, "s/..", b""),
                ("manifest.json", Regular, "", manifest),
            ])[..],
            dir.path(),
        )
        .unwrap();
        let err = read_layout(dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"manifest.json names "t/c.json", which leads outside the archive"#
        );

        // The top-level files themselves are followed the same way.
        let outer = tempfile::tempdir().unwrap();
        let dir = outer.path().join("dir");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(outer.path().join("manifest.json"), manifest).unwrap();
        extract(
            &raw_tar(&[
                ("s", Symlink, ".", b""),
                ("t", Symlink, "s/..", b""),
                ("manifest.json", Symlink, "t/manifest.json", b""),
            ])[..],
            &dir,
        )
        .unwrap();
        let err = read_layout(&dir).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"the archive names "manifest.json", which leads outside the archive"#
        );
    }

    /// An extracted OCI layout holding `images`.
    fn oci_layout(images: &[ImageToSave], blobs: &DirBlobs) -> tempfile::TempDir {
        let mut archive = Vec::new();
        write_oci_archive(&mut archive, images, blobs).unwrap();
        let dir = tempfile::tempdir().unwrap();
        extract(&archive[..], dir.path()).unwrap();
        dir
    }

    #[test]
    fn read_refuses_a_blob_whose_content_is_not_its_digest() {
        let blobs = DirBlobs::new();
        let images = two_images(&blobs);
        let dir = oci_layout(&images[..1], &blobs);
        let top = &images[0].layers[1].digest;
        let path = dir.path().join("blobs/sha256").join(&top[7..]);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] ^= 1; // same size, other content
        std::fs::write(&path, &bytes).unwrap();
        let err = read_layout(dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "blob {top}: its content has digest sha256:{}, not {top}",
                sha256_hex(&bytes)
            )
        );
    }

    #[test]
    fn read_refuses_a_docker_config_whose_name_is_not_its_digest() {
        let config = br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let name = format!("{}.json", "a".repeat(64));
        let manifest = format!(r#"[{{"Config":"{name}","RepoTags":["x:1"],"Layers":[]}}]"#);
        let dir = tempfile::tempdir().unwrap();
        extract(
            &raw_tar(&[
                (&name, Regular, "", config),
                ("manifest.json", Regular, "", manifest.as_bytes()),
            ])[..],
            dir.path(),
        )
        .unwrap();
        let err = read_layout(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("blob {name}: its content has digest sha256:")),
            "{err}"
        );
    }

    #[test]
    fn read_refuses_a_manifest_naming_a_missing_file() {
        let layer = layer(&[("a", "a")]).tar();
        let config = serde_json::to_vec(&serde_json::json!({
            "rootfs": {"type": "layers", "diff_ids": [digest_of(&layer), digest_of(b"gone")]},
        }))
        .unwrap();
        let config_name = format!("{}.json", sha256_hex(&config));
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": config_name, "RepoTags": ["x:1"], "Layers": ["l1/layer.tar", "l2/layer.tar"],
        }]))
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        extract(
            &raw_tar(&[
                (&config_name, Regular, "", &config),
                ("l1/layer.tar", Regular, "", &layer),
                ("manifest.json", Regular, "", &manifest),
            ])[..],
            dir.path(),
        )
        .unwrap();
        let err = read_layout(dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"manifest.json names "l2/layer.tar", which is not in the archive"#
        );
    }

    #[test]
    fn reads_a_legacy_docker_archive_with_linked_layers() {
        // Docker ≤24: `<id>/layer.tar`, a layer repeated in one image linked to the first copy.
        let layer = layer(&[("a", "a")]).tar();
        let diff = digest_of(&layer);
        let config = serde_json::to_vec(&serde_json::json!({
            "rootfs": {"type": "layers", "diff_ids": [diff, diff]},
        }))
        .unwrap();
        let config_name = format!("{}.json", sha256_hex(&config));
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": config_name, "RepoTags": ["busybox:latest"],
            "Layers": ["aaa/layer.tar", "bbb/layer.tar"],
        }]))
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        extract(
            &raw_tar(&[
                ("aaa/", Directory, "", b""),
                ("aaa/layer.tar", Regular, "", &layer),
                ("bbb/", Directory, "", b""),
                ("bbb/layer.tar", Symlink, "../aaa/layer.tar", b""),
                (&config_name, Regular, "", &config),
                ("manifest.json", Regular, "", &manifest),
            ])[..],
            dir.path(),
        )
        .unwrap();
        let read = read_layout(dir.path()).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].repo_tags, ["busybox:latest"]);
        assert_eq!(read[0].config_digest, digest_of(&config));
        let layers: Vec<(&str, PathBuf)> = read[0]
            .layers
            .iter()
            .map(|l| (l.digest.as_str(), l.path.clone()))
            .collect();
        let first = dir.path().join("aaa/layer.tar");
        assert_eq!(
            layers,
            [(diff.as_str(), first.clone()), (diff.as_str(), first)]
        );
    }

    /// Writes `bytes` as a blob of the layout in `dir`; returns its descriptor.
    fn put_blob(dir: &Path, media_type: &str, bytes: &[u8]) -> serde_json::Value {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("blobs/sha256").join(sha256_hex(bytes)), bytes).unwrap();
        serde_json::json!({"mediaType": media_type, "digest": digest_of(bytes), "size": bytes.len()})
    }

    #[test]
    fn reads_the_amd64_image_of_a_nested_multi_platform_index() {
        let blobs = DirBlobs::new();
        let amd64 = &two_images(&blobs)[0];
        let dir = oci_layout(std::slice::from_ref(amd64), &blobs);
        let manifest = put_blob(dir.path(), oci::MEDIA_TYPE_OCI_MANIFEST, &amd64.manifest);
        let mut arm64 = manifest.clone();
        // Only the chosen platform's blobs need be there.
        arm64["digest"] = digest_of(b"not stored").into();
        arm64["platform"] = serde_json::json!({"os": "linux", "architecture": "arm64"});
        let mut ours = manifest;
        ours["platform"] = serde_json::json!({"os": "linux", "architecture": "amd64"});
        let inner = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": oci::MEDIA_TYPE_OCI_INDEX, "manifests": [arm64, ours],
        }))
        .unwrap();
        let inner = put_blob(dir.path(), oci::MEDIA_TYPE_OCI_INDEX, &inner);
        let middle = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": oci::MEDIA_TYPE_OCI_INDEX, "manifests": [inner],
        }))
        .unwrap();
        let mut middle = put_blob(dir.path(), oci::MEDIA_TYPE_OCI_INDEX, &middle);
        middle["annotations"] = serde_json::json!({oci::ANNOTATION_REF_NAME: "latest"});
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [middle]});
        std::fs::write(dir.path().join("index.json"), index.to_string()).unwrap();

        let read = read_layout(dir.path()).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].config_digest, amd64.config_digest);
        assert_eq!(
            read[0].manifest.as_ref().unwrap().digest,
            amd64.manifest_digest
        );
        assert_eq!(read[0].repo_tags, ["latest"]); // a bare tag, reported as given

        // Without an amd64 entry there is nothing to load, and the error says which index.
        let only_arm = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "manifests": [arm64],
        }))
        .unwrap();
        let only_arm = put_blob(dir.path(), oci::MEDIA_TYPE_OCI_INDEX, &only_arm);
        let digest = only_arm["digest"].as_str().unwrap().to_string();
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [only_arm]});
        std::fs::write(dir.path().join("index.json"), index.to_string()).unwrap();
        let err = read_layout(dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("index {digest}: no image for linux/amd64")
        );
    }

    #[test]
    fn write_refuses_a_layer_that_is_not_its_diff_id() {
        let blobs = DirBlobs::new();
        let mut images = two_images(&blobs);
        let wrong = digest_of(b"something else");
        images[0].layers[0].diff_id = wrong.clone();
        let work = tempfile::tempdir().unwrap();
        let err = write_docker_archive(io::sink(), &images, &blobs, work.path()).unwrap_err();
        let stored = &images[0].layers[0].digest;
        assert!(
            err.to_string().starts_with(&format!(
                "blob {stored} uncompressed: its content has digest"
            )),
            "{err}"
        );
        assert!(err.to_string().ends_with(&format!("not {wrong}")), "{err}");
    }

    #[test]
    fn not_an_archive_says_so() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("something"), b"x").unwrap();
        assert_eq!(
            read_layout(dir.path()).unwrap_err().to_string(),
            "not an image archive: it has neither manifest.json nor oci-layout with index.json"
        );
    }
}

/// Image archives are client input (`/image/load`): any outer tar either gives images or a
/// typed refusal (never our own I/O error, never a panic), and nothing is written outside the
/// extraction directory. Members are drawn from the names and JSON shapes docker-archive and
/// OCI layouts use, pointing at each other, plus `..`, absolute names and symbolic links.
/// `PROPTEST_CASES=10000` for the long run.
#[cfg(test)]
mod proptests {
    use std::fs;

    use proptest::prelude::*;
    use tar::EntryType;

    use super::*;
    use hyper_tests::oci::{RawEntry, raw_tar};

    const HEX: &str = "4f1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

    fn name() -> BoxedStrategy<String> {
        prop_oneof![
            Just("manifest.json".to_string()),
            Just("index.json".to_string()),
            Just("oci-layout".to_string()),
            Just("repositories".to_string()),
            Just(format!("blobs/sha256/{HEX}")),
            Just(format!("{HEX}.json")),
            Just(format!("{HEX}/layer.tar")),
            Just("blobs".to_string()),
            Just("../escape".to_string()),
            Just("/abs".to_string()),
            Just("a/../b".to_string()),
            "[a-z]{1,3}(/[a-z]{1,3})?",
        ]
        .boxed()
    }

    fn content() -> BoxedStrategy<Vec<u8>> {
        let digest = prop_oneof![
            Just(format!("sha256:{HEX}")),
            "sha256:[0-9a-f]{0,64}",
            ".{0,8}"
        ];
        let media = prop_oneof![
            Just("application/vnd.oci.image.index.v1+json"),
            Just("application/vnd.oci.image.manifest.v1+json"),
            Just("application/vnd.oci.image.config.v1+json"),
            Just("application/vnd.oci.image.layer.v1.tar"),
            Just("application/vnd.docker.distribution.manifest.v2+json"),
        ];
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            Just(br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            (name(), prop::collection::vec(name(), 0..3), ".{0,12}").prop_map(
                |(config, layers, repo_tag)| {
                    serde_json::to_vec(&serde_json::json!([{
                        "Config": config, "RepoTags": [repo_tag], "Layers": layers
                    }]))
                    .unwrap()
                }
            ),
            (media.clone(), digest.clone(), any::<i64>(), ".{0,12}").prop_map(
                |(media, digest, size, reference)| {
                    serde_json::to_vec(&serde_json::json!({
                        "schemaVersion": 2,
                        "mediaType": media,
                        "manifests": [{
                            "mediaType": media, "digest": digest, "size": size,
                            "annotations": {"org.opencontainers.image.ref.name": reference},
                            "platform": {"os": "linux", "architecture": "amd64"}
                        }],
                        "config": {"mediaType": media, "digest": digest, "size": size},
                        "layers": [{"mediaType": media, "digest": digest, "size": size}]
                    }))
                    .unwrap()
                }
            ),
            Just(br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec()),
        ]
        .boxed()
    }

    fn member() -> impl Strategy<Value = RawEntry> {
        let kind = prop_oneof![
            6 => Just(EntryType::Regular),
            2 => Just(EntryType::Directory),
            2 => Just(EntryType::Symlink),
            1 => Just(EntryType::Link),
            1 => Just(EntryType::Fifo),
        ];
        (kind, name(), name(), content()).prop_map(|(kind, path, link, data)| RawEntry {
            kind,
            path,
            link,
            data,
            mode: 0o644,
        })
    }

    fn tar_of(members: &[RawEntry]) -> Vec<u8> {
        raw_tar(members)
    }

    fn check(tar: &[u8]) -> std::result::Result<(), TestCaseError> {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("x");
        fs::create_dir(&dir).unwrap();
        fs::write(parent.path().join("escape"), b"keep").unwrap();
        let read = extract(tar, &dir).and_then(|()| read_layout(&dir));
        if let Err(e) = &read {
            prop_assert!(!matches!(e, Error::Io { .. }), "not a typed refusal: {e}");
            prop_assert_eq!(e.kind(), Kind::InvalidInput);
        }
        let mut names: Vec<_> = fs::read_dir(parent.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        prop_assert_eq!(names, ["escape", "x"]);
        prop_assert_eq!(fs::read(parent.path().join("escape")).unwrap(), b"keep");
        Ok(())
    }

    proptest! {
        #[test]
        fn any_archive_gives_images_or_a_typed_refusal(members in prop::collection::vec(member(), 0..8)) {
            check(&tar_of(&members))?;
        }

        #[test]
        fn any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            check(&bytes)?;
        }
    }
}
