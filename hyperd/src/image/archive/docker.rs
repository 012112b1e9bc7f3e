//! The docker-archive format (`docker save`/`docker load`, skopeo's `docker-archive:`): a tar
//! whose `manifest.json` is a list of `{"Config", "RepoTags", "Layers"}`, each a path inside the
//! tar. Layers are plain tars, because `docker load` checks each one's sha256 against the
//! config's `rootfs.diff_ids`.

use std::collections::{HashMap, HashSet};
use std::io::{self, Seek, Write};
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use super::{
    ArchivedImage, ArchivedLayer, BlobSource, Error, HashingWriter, ImageToSave, LayerToSave,
    Result, TOP_LEVEL, append_blob, append_bytes, append_dir, check_bytes, check_digest,
    check_layer_count, digest_hex, hash_file, is_sha256_hex, parse_json, read_small, resolve_file,
    sha256_hex,
};

const MANIFEST: &str = "manifest.json";

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Reads the images of an extracted docker-archive in `dir`.
pub(super) fn read(dir: &Path) -> Result<Vec<ArchivedImage>> {
    let bytes = read_small(&resolve_file(dir, MANIFEST, TOP_LEVEL)?, MANIFEST)?;
    let entries: Vec<ManifestEntry> = parse_json(&bytes, MANIFEST)?;
    let mut images = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let config_path = resolve_file(dir, &entry.config, MANIFEST)?;
        let config = read_small(&config_path, &entry.config)?;
        let config_hex = sha256_hex(&config);
        if let Some(named) = digest_in_name(&entry.config) {
            check_digest(&entry.config, &format!("sha256:{named}"), &config_hex)?;
        }
        let config_digest = format!("sha256:{config_hex}");
        check_layer_count(
            &config,
            &entry.config,
            entry.layers.len(),
            &format!("{MANIFEST}[{i}].Layers"),
        )?;
        let mut layers = Vec::with_capacity(entry.layers.len());
        for name in &entry.layers {
            let path = resolve_file(dir, name, MANIFEST)?;
            let (hex, _) = hash_file(&path)?;
            if let Some(named) = digest_in_name(name) {
                check_digest(name, &format!("sha256:{named}"), &hex)?;
            }
            layers.push(ArchivedLayer {
                path,
                digest: format!("sha256:{hex}"),
                media_type: None,
            });
        }
        images.push(ArchivedImage {
            config,
            config_digest,
            layers,
            repo_tags: entry.repo_tags.clone().unwrap_or_default(),
            manifest: None,
        });
    }
    Ok(images)
}

/// The digest a docker-archive name carries: `blobs/sha256/<hex>` (Docker 25+) or
/// `<hex>.json`/`<hex>.tar` (Docker ≤24 configs, skopeo). Docker ≤24's `<id>/layer.tar` carries
/// none (the id is a legacy v1 id).
fn digest_in_name(name: &str) -> Option<&str> {
    let parts: Vec<&str> = Path::new(name)
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => p.to_str(),
            _ => None,
        })
        .collect();
    match parts.as_slice() {
        [.., "blobs", "sha256", hex] if is_sha256_hex(hex) => Some(hex),
        [.., file] => file
            .strip_suffix(".json")
            .or_else(|| file.strip_suffix(".tar"))
            .filter(|hex| is_sha256_hex(hex)),
        [] => None,
    }
}

/// Writes `images` as a docker-archive tar to `out`: `manifest.json` and, under
/// `blobs/sha256/`, each config and each layer as a plain tar named by its diff id (the layout
/// of Docker 25+, which `docker load` of any version and skopeo read). A layer or config shared
/// by several images is written once; images with the same config are one entry with all their
/// tags. A compressed layer is spooled uncompressed to an unnamed temporary file in `scratch`
/// first, because a tar header needs the size before the content. Errors: a config whose bytes
/// do not match its digest, a layer whose uncompressed content does not match its diff id
/// ([`Error::DigestMismatch`]), and I/O on `out` or the blobs.
pub fn write_docker_archive(
    out: impl Write,
    images: &[ImageToSave],
    blobs: &dyn BlobSource,
    scratch: &Path,
) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    append_dir(&mut tar, "blobs/")?;
    append_dir(&mut tar, "blobs/sha256/")?;
    let mut written: HashSet<String> = HashSet::new();
    let mut entries: Vec<ManifestEntry> = Vec::new();
    let mut entry_of_config: HashMap<String, usize> = HashMap::new();
    for image in images {
        let config_hex = digest_hex(&image.config_digest, "image config")?;
        let config_name = format!("blobs/sha256/{config_hex}");
        if let Some(&i) = entry_of_config.get(config_hex) {
            let tags = entries[i].repo_tags.get_or_insert_with(Vec::new);
            for tag in &image.repo_tags {
                if !tags.contains(tag) {
                    tags.push(tag.clone());
                }
            }
            continue;
        }
        check_bytes(&image.config_digest, &image.config, &image.config_digest)?;
        if written.insert(config_hex.to_string()) {
            append_bytes(&mut tar, &config_name, &image.config)?;
        }
        let mut layer_names = Vec::with_capacity(image.layers.len());
        for layer in &image.layers {
            let hex = digest_hex(&layer.diff_id, "layer diff id")?;
            let name = format!("blobs/sha256/{hex}");
            if written.insert(hex.to_string()) {
                append_plain_layer(&mut tar, &name, layer, blobs, scratch)?;
            }
            layer_names.push(name);
        }
        entry_of_config.insert(config_hex.to_string(), entries.len());
        entries.push(ManifestEntry {
            config: config_name,
            repo_tags: Some(image.repo_tags.clone()),
            layers: layer_names,
        });
    }
    let manifest = serde_json::to_vec(&entries)
        .map_err(|e| Error::io("encode manifest.json", io::Error::other(e)))?;
    append_bytes(&mut tar, MANIFEST, &manifest)?;
    tar.into_inner()
        .and_then(|mut out| out.flush())
        .map_err(|e| Error::io("finish the archive", e))
}

/// Appends `layer` uncompressed as `name`, checked against its diff id.
fn append_plain_layer<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    layer: &LayerToSave,
    blobs: &dyn BlobSource,
    scratch: &Path,
) -> Result<()> {
    if layer.digest == layer.diff_id {
        // Stored uncompressed already: no copy needed, the size is the file's.
        let file = blobs
            .open_blob(&layer.digest)
            .map_err(|e| Error::io(format!("open blob {}", layer.digest), e))?;
        let size = file
            .metadata()
            .map_err(|e| Error::io(format!("stat blob {}", layer.digest), e))?
            .len();
        return append_blob(tar, name, file, size, &layer.diff_id);
    }
    let mut plain = blobs
        .open_uncompressed_layer(&layer.digest)
        .map_err(|e| Error::io(format!("open layer {}", layer.digest), e))?;
    let spool = tempfile::tempfile_in(scratch)
        .map_err(|e| Error::io(format!("create a spool file in {}", scratch.display()), e))?;
    let mut hashing = HashingWriter::new(spool);
    io::copy(&mut plain, &mut hashing)
        .map_err(|e| Error::io(format!("uncompress layer {}", layer.digest), e))?;
    let (actual, size, mut spool) = hashing.finish();
    check_digest(
        &format!("{} uncompressed", layer.digest),
        &layer.diff_id,
        actual.hex(),
    )?;
    spool
        .rewind()
        .map_err(|e| Error::io(format!("rewind the spool of layer {}", layer.digest), e))?;
    append_blob(tar, name, spool, size, &layer.diff_id)
}
