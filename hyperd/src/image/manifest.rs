//! Image manifests: OCI `application/vnd.oci.image.manifest.v1+json` and Docker's schema 2
//! `application/vnd.docker.distribution.manifest.v2+json` (the same shape), read to find an
//! image's config and layers, and written for the images we make (imports, loads).

use serde::{Deserialize, Serialize};

use super::digest::Digest;

pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_TYPE_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_TYPE_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_TYPE_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// An OCI content descriptor: what a blob is, its digest and its size in bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

impl Manifest {
    /// Parses a single-image manifest (not an index: the registry client resolves those).
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let m: Self = serde_json::from_slice(bytes).map_err(|e| format!("manifest: {e}"))?;
        if m.schema_version != 2 {
            return Err(format!(
                "manifest: schemaVersion {}: only 2 is supported",
                m.schema_version
            ));
        }
        Ok(m)
    }

    /// An OCI manifest of a config and its layers.
    pub fn oci(config: Descriptor, layers: Vec<Descriptor>) -> Self {
        Self {
            schema_version: 2,
            media_type: MEDIA_TYPE_OCI_MANIFEST.into(),
            config,
            layers,
        }
    }

    /// The manifest's own media type: the declared one, else OCI.
    pub fn own_media_type(&self) -> &str {
        if self.media_type.is_empty() {
            MEDIA_TYPE_OCI_MANIFEST
        } else {
            &self.media_type
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest serialises")
    }
}

/// The layer media type for a blob of the given compression (OCI names; bzip2 and xz have
/// none, so such layers are stored decompressed).
pub fn layer_media_type(compression: super::compression::Compression) -> Option<&'static str> {
    use super::compression::Compression;
    match compression {
        Compression::None => Some(MEDIA_TYPE_OCI_LAYER),
        Compression::Gzip => Some(MEDIA_TYPE_OCI_LAYER_GZIP),
        Compression::Zstd => Some(MEDIA_TYPE_OCI_LAYER_ZSTD),
        Compression::Bzip2 | Compression::Xz => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_docker_schema2_manifest_parses_and_schema1_is_refused() {
        let d = format!("sha256:{}", "b".repeat(64));
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MEDIA_TYPE_DOCKER_MANIFEST}",
            "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{d}","size":7}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{d}","size":9}}]}}"#
        );
        let m = Manifest::parse(json.as_bytes()).unwrap();
        assert_eq!(m.layers[0].size, 9);
        assert_eq!(m.own_media_type(), MEDIA_TYPE_DOCKER_MANIFEST);
        let err = Manifest::parse(br#"{"schemaVersion":1,"config":{},"layers":[]}"#).unwrap_err();
        assert!(err.starts_with("manifest:"), "{err}");
    }
}
