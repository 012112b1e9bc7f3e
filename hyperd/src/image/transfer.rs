//! Image archives in and out: `load` of a docker-archive or OCI layout tar (plain or
//! compressed), `save` of images as either. The formats themselves are [`super::archive`]'s;
//! this module moves their content between the archive and the stores.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;

use super::archive::{self, ImageToSave, LayerToSave};
use super::content::ContentStore;
use super::{
    Digest, Error, ImageConfigFile, Images, LayerRecord, Progress, Reference, Result, blocking,
    compression,
};
use crate::ids;
use crate::store::{self, ImageTag};

/// What `GET /images/save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `docker save`'s tar: `manifest.json`, configs and uncompressed layers.
    Docker,
    /// An OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`) as a tar.
    Oci,
}

impl std::str::FromStr for ArchiveFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "" | "docker" | "docker-archive" => Ok(ArchiveFormat::Docker),
            "oci" | "oci-archive" => Ok(ArchiveFormat::Oci),
            other => Err(Error::Invalid(format!(
                "format {other:?}: want docker or oci"
            ))),
        }
    }
}

impl Images {
    /// Loads every image of an archive streamed in `body`; returns the names (or ids) loaded.
    pub async fn load<S, E>(&self, body: S, progress: &Progress) -> Result<Vec<String>>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let _gc = self.gc_lock.read().await;
        let upload = self.receive(body).await?;
        let dir = tempfile::tempdir_in(&self.tmp).map_err(|e| Error::io("create a load dir", e))?;
        let (path, dir_path) = (upload.path().to_path_buf(), dir.path().to_path_buf());
        let archived = blocking(move || {
            let file = std::fs::File::open(&path).map_err(|e| Error::io("open the archive", e))?;
            let (_, reader) =
                compression::decompress(file).map_err(|e| Error::io("read the archive", e))?;
            archive::extract(reader, &dir_path)?;
            Ok(archive::read_layout(&dir_path)?)
        })
        .await?;
        drop(upload);
        if archived.is_empty() {
            return Err(Error::Invalid("load: the archive holds no image".into()));
        }
        let mut loaded = Vec::new();
        for image in archived {
            let config = ImageConfigFile::parse(&image.config).map_err(|e| {
                Error::BadContent(format!("image config {}: {e}", image.config_digest))
            })?;
            let mut layers = Vec::new();
            let mut size = 0;
            let mut parent: Option<Digest> = None;
            for (layer, diff_id) in image.layers.iter().zip(&config.rootfs.diff_ids) {
                let name = layer.digest.clone();
                progress.status("Loading layer", short(&name));
                let (record, unpacked) = self
                    .add_layer_file(
                        layer.path.clone(),
                        parent.clone(),
                        Some(diff_id.clone()),
                        &name,
                    )
                    .await?;
                parent = Some(record.chain_id.clone());
                size += unpacked;
                layers.push(record);
            }
            // An OCI layout's manifest is kept when the blobs it names are the ones stored.
            let manifest = image.manifest.as_ref().filter(|_| {
                image
                    .layers
                    .iter()
                    .zip(&layers)
                    .all(|(a, l)| a.digest == l.digest.to_string())
            });
            let record = self.record_image(
                &image.config,
                manifest.map(|m| m.bytes.as_slice()),
                layers,
                size,
                ids::now(),
            )?;
            let mut names = Vec::new();
            for tag in &image.repo_tags {
                match Reference::parse(tag) {
                    Ok(r) if !r.tag.is_empty() && r.digest.is_none() => names.push(r),
                    _ => tracing::warn!(tag, "load: not a repo:tag name, left untagged"),
                }
            }
            self.store.write(|tx| {
                for r in &names {
                    store::tag_image(
                        tx,
                        &ImageTag {
                            repo: r.repo.clone(),
                            tag: r.tag.clone(),
                            image_id: record.id.clone(),
                        },
                    )?;
                }
                Ok(())
            })?;
            if names.is_empty() {
                let line = format!("Loaded image ID: sha256:{}", record.id);
                progress.line(line.clone());
                loaded.push(format!("sha256:{}", record.id));
            }
            for r in names {
                progress.line(format!("Loaded image: {r}"));
                loaded.push(r.to_string());
            }
            tracing::info!(image_id = %record.id, "image loaded");
        }
        Ok(loaded)
    }

    /// Writes the images `names` as one archive into a temp file and returns it, opened and
    /// already unlinked, for the caller to stream.
    pub async fn save(&self, names: &[String], format: ArchiveFormat) -> Result<std::fs::File> {
        if names.is_empty() {
            return Err(Error::Invalid("query parameter names: required".into()));
        }
        let _gc = self.gc_lock.read().await;
        let mut images = Vec::new();
        for name in names {
            let image = self.resolve(name)?;
            let (manifest_digest, manifest, parsed) = self.manifest_of(&image, "save")?;
            let config_digest = Digest::from_hex(&image.id)
                .map_err(|e| Error::BadContent(format!("image {}: {e}", image.id)))?;
            let manifest_media_type = parsed.own_media_type().to_string();
            // Saved by name: the archive carries that name; by id: no name, as Docker does.
            let repo_tags = match Reference::parse(name) {
                Ok(r)
                    if !r.tag.is_empty()
                        && r.digest.is_none()
                        && !name.starts_with("sha256:")
                        && self.is_tag(&r, &image.id)? =>
                {
                    vec![r.to_string()]
                }
                _ => Vec::new(),
            };
            images.push(ImageToSave {
                config: self.content.read(&config_digest)?,
                config_digest: config_digest.to_string(),
                manifest,
                manifest_media_type,
                manifest_digest: manifest_digest.to_string(),
                layers: image.layers.iter().map(layer_to_save).collect(),
                repo_tags,
            });
        }
        let content = Arc::clone(&self.content);
        let tmp = self.tmp.clone();
        blocking(move || {
            let out =
                tempfile::tempfile_in(&tmp).map_err(|e| Error::io("create the archive", e))?;
            let mut writer = std::io::BufWriter::new(out);
            let blobs = ContentBlobs(&content);
            match format {
                ArchiveFormat::Docker => {
                    archive::write_docker_archive(&mut writer, &images, &blobs, &tmp)?
                }
                ArchiveFormat::Oci => archive::write_oci_archive(&mut writer, &images, &blobs)?,
            }
            let mut out = writer
                .into_inner()
                .map_err(|e| Error::io("write the archive", e.into_error()))?;
            std::io::Seek::rewind(&mut out).map_err(|e| Error::io("rewind the archive", e))?;
            Ok(out)
        })
        .await
    }

    fn is_tag(&self, r: &Reference, image_id: &str) -> Result<bool> {
        Ok(self
            .store
            .read(|c| store::image_by_tag(c, &r.repo, &r.tag))?
            .is_some_and(|i| i.id == image_id))
    }
}

fn layer_to_save(l: &LayerRecord) -> LayerToSave {
    LayerToSave {
        digest: l.digest.to_string(),
        diff_id: l.diff_id.to_string(),
        media_type: l.media_type.clone(),
        size: l.size,
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

/// The content store as the archive writers read it.
struct ContentBlobs<'a>(&'a ContentStore);

impl archive::BlobSource for ContentBlobs<'_> {
    fn open_blob(&self, digest: &str) -> std::io::Result<std::fs::File> {
        let d: Digest = digest.parse().map_err(std::io::Error::other)?;
        self.0.open_blob(&d).map_err(std::io::Error::other)
    }

    fn open_uncompressed_layer(&self, digest: &str) -> std::io::Result<Box<dyn Read>> {
        let file = self.open_blob(digest)?;
        let (_, reader) = compression::decompress(file)?;
        Ok(reader)
    }
}
