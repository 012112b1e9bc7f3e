//! The OCI image layout (OCI image spec v1.1, "image-layout.md"), as a directory or a tar of one
//! (skopeo's `oci:`/`oci-archive:`, Docker 25+'s `docker save`): `oci-layout`, `index.json` and
//! content-addressed `blobs/sha256/<hex>`, every blob stored verbatim.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{
    ArchivedImage, ArchivedLayer, ArchivedManifest, BlobSource, Error, ImageToSave,
    MAX_METADATA_BYTES, PLATFORM_ARCHITECTURE, PLATFORM_OS, Result, TOP_LEVEL, append_blob,
    append_bytes, append_dir, check_bytes, check_digest, check_layer_count, digest_hex, hash_file,
    parse_json, read_small, resolve_file, sha256_hex,
};

pub(super) const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(super) const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(super) const MEDIA_TYPE_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
pub(super) const MEDIA_TYPE_DOCKER_MANIFEST: &str =
    "application/vnd.docker.distribution.manifest.v2+json";

/// The full image name, as containerd and Docker 25+ write it (`docker.io/library/busybox:1`).
pub(super) const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// The OCI reference name; containerd and Docker put only the tag there (`1`).
pub(super) const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

const LAYOUT: &str = "oci-layout";
const INDEX: &str = "index.json";
const LAYOUT_VERSION: &str = "1.0.0";
/// Indexes nested deeper than this are refused (a cycle is impossible with digests, but a long
/// chain is a waste).
const MAX_NESTING: usize = 8;

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Layout {
    image_layout_version: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    digest: String,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
struct Platform {
    os: String,
    architecture: String,
}

impl Platform {
    fn is_ours(&self) -> bool {
        self.os == PLATFORM_OS && self.architecture == PLATFORM_ARCHITECTURE
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// Reads the images of an OCI layout in `dir`: one per manifest that `index.json` names
/// (directly or through nested indexes, picking linux/amd64), entries naming the same manifest
/// merged into one image with several tags. Entries whose platform is another are skipped.
pub(super) fn read(dir: &Path) -> Result<Vec<ArchivedImage>> {
    let layout: Layout = parse_json(
        &read_small(&resolve_file(dir, LAYOUT, TOP_LEVEL)?, LAYOUT)?,
        LAYOUT,
    )?;
    if !layout.image_layout_version.starts_with("1.") {
        return Err(Error::invalid(
            LAYOUT,
            format!(
                "imageLayoutVersion {:?} is not 1.x",
                layout.image_layout_version
            ),
        ));
    }
    let index: Index = parse_json(
        &read_small(&resolve_file(dir, INDEX, TOP_LEVEL)?, INDEX)?,
        INDEX,
    )?;
    let mut images: Vec<ArchivedImage> = Vec::new();
    let mut image_of_manifest: HashMap<String, usize> = HashMap::new();
    for (i, entry) in index.manifests.iter().enumerate() {
        if entry.platform.as_ref().is_some_and(|p| !p.is_ours()) {
            continue;
        }
        let named_by = format!("{INDEX} manifests[{i}]");
        let (manifest_desc, bytes) = resolve_manifest(dir, entry, &named_by, 0)?;
        let name = image_name(entry);
        if let Some(&k) = image_of_manifest.get(&manifest_desc.digest) {
            let tags = &mut images[k].repo_tags;
            if let Some(name) = name.filter(|n| !tags.contains(n)) {
                tags.push(name);
            }
            continue;
        }
        let mut image = read_image(dir, &manifest_desc, bytes)?;
        image.repo_tags.extend(name);
        image_of_manifest.insert(manifest_desc.digest.clone(), images.len());
        images.push(image);
    }
    Ok(images)
}

/// The name an index entry gives its image: containerd's full name, else the OCI ref name as
/// given.
fn image_name(entry: &Descriptor) -> Option<String> {
    let annotations = entry.annotations.as_ref()?;
    annotations
        .get(ANNOTATION_IMAGE_NAME)
        .or_else(|| annotations.get(ANNOTATION_REF_NAME))
        .cloned()
}

/// Follows `desc` down to an image manifest: itself, or the linux/amd64 entry of the index it
/// names (else its first entry without a platform). Returns the manifest's descriptor and
/// checked bytes.
fn resolve_manifest(
    dir: &Path,
    desc: &Descriptor,
    named_by: &str,
    depth: usize,
) -> Result<(Descriptor, Vec<u8>)> {
    let media_type = desc.media_type.as_deref().ok_or_else(|| {
        Error::invalid(
            named_by,
            format!("descriptor {} has no mediaType", desc.digest),
        )
    })?;
    match media_type {
        MEDIA_TYPE_OCI_MANIFEST | MEDIA_TYPE_DOCKER_MANIFEST => {
            Ok((desc.clone(), read_blob(dir, desc, named_by)?))
        }
        MEDIA_TYPE_OCI_INDEX | MEDIA_TYPE_DOCKER_LIST => {
            if depth >= MAX_NESTING {
                return Err(Error::invalid(
                    named_by,
                    format!("indexes nested more than {MAX_NESTING} deep"),
                ));
            }
            let bytes = read_blob(dir, desc, named_by)?;
            let index_name = format!("index {}", desc.digest);
            let index: Index = parse_json(&bytes, &index_name)?;
            let chosen = index
                .manifests
                .iter()
                .find(|d| d.platform.as_ref().is_some_and(Platform::is_ours))
                .or_else(|| index.manifests.iter().find(|d| d.platform.is_none()))
                .ok_or_else(|| Error::NoPlatform {
                    index: index_name.clone(),
                })?;
            resolve_manifest(dir, chosen, &index_name, depth + 1)
        }
        other => Err(Error::invalid(
            named_by,
            format!(
                "{} has media type {other:?}, neither an image manifest nor an index",
                desc.digest
            ),
        )),
    }
}

fn read_image(dir: &Path, desc: &Descriptor, bytes: Vec<u8>) -> Result<ArchivedImage> {
    let name = format!("manifest {}", desc.digest);
    let manifest: Manifest = parse_json(&bytes, &name)?;
    let config = read_blob(dir, &manifest.config, &name)?;
    check_layer_count(
        &config,
        &format!("config {}", manifest.config.digest),
        manifest.layers.len(),
        &name,
    )?;
    let layers = manifest
        .layers
        .iter()
        .map(|layer| {
            Ok(ArchivedLayer {
                path: verified_blob_file(dir, layer, &name)?,
                digest: layer.digest.clone(),
                media_type: layer.media_type.clone(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ArchivedImage {
        config,
        config_digest: manifest.config.digest.clone(),
        layers,
        repo_tags: Vec::new(),
        manifest: Some(ArchivedManifest {
            bytes,
            media_type: desc.media_type.clone().unwrap_or_default(),
            digest: desc.digest.clone(),
        }),
    })
}

fn blob_path(dir: &Path, desc: &Descriptor, named_by: &str) -> Result<PathBuf> {
    let hex = digest_hex(&desc.digest, named_by)?;
    resolve_file(dir, &format!("blobs/sha256/{hex}"), named_by)
}

/// A small blob (manifest, index, config), checked against its descriptor.
fn read_blob(dir: &Path, desc: &Descriptor, named_by: &str) -> Result<Vec<u8>> {
    let path = blob_path(dir, desc, named_by)?;
    if desc.size > MAX_METADATA_BYTES {
        return Err(Error::invalid(
            named_by,
            format!(
                "{} is announced as {} bytes, too large",
                desc.digest, desc.size
            ),
        ));
    }
    let bytes = read_small(&path, &desc.digest)?;
    check_size(desc, bytes.len() as u64)?;
    check_digest(&desc.digest, &desc.digest, &sha256_hex(&bytes))?;
    Ok(bytes)
}

/// A layer blob's path, its content checked against its descriptor.
fn verified_blob_file(dir: &Path, desc: &Descriptor, named_by: &str) -> Result<PathBuf> {
    let path = blob_path(dir, desc, named_by)?;
    let (hex, len) = hash_file(&path)?;
    check_size(desc, len)?;
    check_digest(&desc.digest, &desc.digest, &hex)?;
    Ok(path)
}

fn check_size(desc: &Descriptor, actual: u64) -> Result<()> {
    if actual == desc.size {
        Ok(())
    } else {
        Err(Error::SizeMismatch {
            name: desc.digest.clone(),
            expected: desc.size,
            actual,
        })
    }
}

/// Writes `images` as a tar of an OCI image layout to `out`: `oci-layout`, every config,
/// manifest and layer blob verbatim under `blobs/sha256/` (once each), and `index.json` with one
/// manifest descriptor per tag of each image (one without annotations for an untagged image),
/// annotated with [`ANNOTATION_IMAGE_NAME`] = the full name and [`ANNOTATION_REF_NAME`] = its
/// tag, as containerd does. Errors: a config or manifest whose bytes do not match its digest, a
/// manifest whose layers are not `image.layers`, a layer blob whose size or sha256 is not the
/// one given ([`Error::SizeMismatch`], [`Error::DigestMismatch`]), and I/O.
pub fn write_oci_archive(
    out: impl Write,
    images: &[ImageToSave],
    blobs: &dyn BlobSource,
) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    let layout = serde_json::to_vec(&Layout {
        image_layout_version: LAYOUT_VERSION.into(),
    })
    .map_err(|e| Error::io("encode oci-layout", std::io::Error::other(e)))?;
    append_bytes(&mut tar, LAYOUT, &layout)?;
    append_dir(&mut tar, "blobs/")?;
    append_dir(&mut tar, "blobs/sha256/")?;
    let mut written: HashSet<String> = HashSet::new();
    let mut index = Index {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_OCI_INDEX.into()),
        manifests: Vec::new(),
    };
    for image in images {
        check_bytes(&image.config_digest, &image.config, &image.config_digest)?;
        check_bytes(
            &image.manifest_digest,
            &image.manifest,
            &image.manifest_digest,
        )?;
        check_manifest_layers(image)?;
        let config_hex = digest_hex(&image.config_digest, "image config")?;
        if written.insert(config_hex.to_string()) {
            append_bytes(
                &mut tar,
                &format!("blobs/sha256/{config_hex}"),
                &image.config,
            )?;
        }
        for layer in &image.layers {
            let hex = digest_hex(&layer.digest, "layer")?;
            if written.insert(hex.to_string()) {
                let file = blobs
                    .open_blob(&layer.digest)
                    .map_err(|e| Error::io(format!("open blob {}", layer.digest), e))?;
                append_blob(
                    &mut tar,
                    &format!("blobs/sha256/{hex}"),
                    file,
                    layer.size,
                    &layer.digest,
                )?;
            }
        }
        let manifest_hex = digest_hex(&image.manifest_digest, "image manifest")?;
        if written.insert(manifest_hex.to_string()) {
            append_bytes(
                &mut tar,
                &format!("blobs/sha256/{manifest_hex}"),
                &image.manifest,
            )?;
        }
        let descriptor = |annotations| Descriptor {
            media_type: Some(image.manifest_media_type.clone()),
            digest: image.manifest_digest.clone(),
            size: image.manifest.len() as u64,
            platform: None,
            annotations,
        };
        if image.repo_tags.is_empty() {
            index.manifests.push(descriptor(None));
        }
        for name in &image.repo_tags {
            let mut annotations = BTreeMap::new();
            annotations.insert(ANNOTATION_IMAGE_NAME.to_string(), name.clone());
            if let Some(tag) = tag_of(name) {
                annotations.insert(ANNOTATION_REF_NAME.to_string(), tag.to_string());
            }
            index.manifests.push(descriptor(Some(annotations)));
        }
    }
    let index = serde_json::to_vec(&index)
        .map_err(|e| Error::io("encode index.json", std::io::Error::other(e)))?;
    append_bytes(&mut tar, INDEX, &index)?;
    tar.into_inner()
        .and_then(|mut out| out.flush())
        .map_err(|e| Error::io("finish the archive", e))
}

/// The tag of `repo:tag` (a `:` before the last `/` is a registry port, not a tag).
fn tag_of(name: &str) -> Option<&str> {
    match name.rsplit_once(':') {
        Some((_, tag)) if !tag.contains('/') => Some(tag),
        _ => None,
    }
}

/// The manifest must list exactly the config and layers we are about to write, or the archive
/// would name blobs it does not hold.
fn check_manifest_layers(image: &ImageToSave) -> Result<()> {
    let name = format!("manifest {}", image.manifest_digest);
    let manifest: Manifest = parse_json(&image.manifest, &name)?;
    let listed: Vec<&str> = manifest.layers.iter().map(|d| d.digest.as_str()).collect();
    let given: Vec<&str> = image.layers.iter().map(|l| l.digest.as_str()).collect();
    if manifest.config.digest != image.config_digest || listed != given {
        return Err(Error::invalid(
            name,
            "its config and layers are not the image's ones".to_string(),
        ));
    }
    Ok(())
}
