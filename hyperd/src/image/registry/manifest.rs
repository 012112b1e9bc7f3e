//! What the registry serves, as far as we read it: manifests and indexes (OCI image spec
//! `manifest.md`, `image-index.md`; Docker's schema 2 and manifest list have the same shape),
//! the choice of the `linux/amd64` manifest, and the digests we accept (`sha256:` only).

use super::{Error, Result};
/// `sha256:` and 64 lowercase hex: digests become file names, so nothing else passes.
pub(super) use crate::image::reference::check_digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub(super) const ACCEPTED_MANIFESTS: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// The platform hyperd's guests run.
pub const PLATFORM_OS: &str = "linux";
pub const PLATFORM_ARCH: &str = "amd64";

/// A content descriptor (OCI image spec, `descriptor.md`); `digest` is `sha256:<64 hex>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// A single-platform image manifest as the registry serves it.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// `sha256:` of `bytes`.
    pub digest: String,
    /// OCI or Docker schema 2 image manifest media type.
    pub media_type: String,
    /// The manifest exactly as served: its digest is `digest`.
    pub bytes: Vec<u8>,
    pub config: Descriptor,
    /// Base layer first.
    pub layers: Vec<Descriptor>,
    /// The digest of the index (manifest list) the reference named, when it named one:
    /// what Docker shows as the pulled digest.
    pub index_digest: Option<String>,
}

/// The fields of a manifest or index we read (OCI image spec `manifest.md`, `image-index.md`;
/// Docker's schema 2 has the same shape).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ManifestJson {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<IndexEntry>>,
}

#[derive(serde::Deserialize)]
struct IndexEntry {
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(serde::Deserialize)]
struct Platform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = self.variant.as_deref().filter(|v| !v.is_empty()) {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

pub(super) fn parse_manifest(bytes: &[u8], what: &str) -> Result<ManifestJson> {
    let m: ManifestJson = serde_json::from_slice(bytes)
        .map_err(|e| Error::Protocol(format!("{what}: not a manifest: {e}")))?;
    if m.schema_version == 1 || m.media_type.as_deref() == Some(DOCKER_MANIFEST_V1) {
        return Err(Error::Protocol(format!(
            "{what}: Docker schema 1 manifests are not supported; push the image again with a current client"
        )));
    }
    Ok(m)
}

impl ManifestJson {
    pub(super) fn is_index(&self) -> bool {
        match self.media_type.as_deref() {
            Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => true,
            Some(_) => false,
            None => self.manifests.is_some(),
        }
    }

    /// The `linux/amd64` entry's digest; an error naming the platforms there are otherwise.
    pub(super) fn choose_platform(&self, what: &str) -> Result<String> {
        let entries = self.manifests.as_deref().unwrap_or_default();
        let chosen = entries.iter().find(|e| {
            e.platform
                .as_ref()
                .is_some_and(|p| p.os == PLATFORM_OS && p.architecture == PLATFORM_ARCH)
        });
        match chosen {
            Some(entry) => {
                check_digest(&entry.digest)
                    .map_err(|why| Error::Protocol(format!("{what}: {why}")))?;
                Ok(entry.digest.clone())
            }
            None => {
                let present: Vec<String> = entries
                    .iter()
                    .map(|e| {
                        e.platform
                            .as_ref()
                            .map_or("unknown".into(), |p| p.to_string())
                    })
                    .collect();
                Err(Error::Platform(format!(
                    "{what}: no {PLATFORM_OS}/{PLATFORM_ARCH} image; the index has {}",
                    if present.is_empty() {
                        "no manifests".into()
                    } else {
                        present.join(", ")
                    }
                )))
            }
        }
    }

    pub(super) fn into_resolved(
        self,
        bytes: Vec<u8>,
        digest: String,
        index_digest: Option<String>,
        what: &str,
    ) -> Result<Resolved> {
        let media_type = self
            .media_type
            .clone()
            .unwrap_or_else(|| OCI_MANIFEST.into());
        if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
            return Err(Error::Protocol(format!(
                "{what}: unsupported manifest media type {media_type:?}"
            )));
        }
        let config = self
            .config
            .ok_or_else(|| Error::Protocol(format!("{what}: the manifest has no config")))?;
        let layers = self.layers.unwrap_or_default();
        for d in std::iter::once(&config).chain(&layers) {
            check_digest(&d.digest).map_err(|why| Error::Protocol(format!("{what}: {why}")))?;
        }
        Ok(Resolved {
            digest,
            media_type,
            bytes,
            config,
            layers,
            index_digest,
        })
    }
}
