//! Pull: a manifest from a registry, its config and layer blobs into the content store
//! (verified by digest and size as they are written), each layer unpacked into its snapshot
//! (verified against the config's diff ids), and only then the image record. Whatever a
//! failed or interrupted pull stored stays, unreferenced, so the next pull of the same image
//! skips it; garbage collection takes it if nothing does.

use std::sync::Arc;

use tokio_util::io::SyncIoBridge;

use super::registry::{self, Credentials};
use super::{
    Digest, Error, ImageConfigFile, ImageRecord, Images, LayerRecord, Progress, Reference, Result,
    blocking, snapshot_blob,
};
use crate::ids;
use crate::store::{self, ImageTag};

/// Layers downloaded at once, as Docker's default `max-concurrent-downloads` is 3.
const CONCURRENT_DOWNLOADS: usize = 3;

impl Images {
    /// Pulls `r` (by tag or digest), reporting progress in Docker's messages.
    pub async fn pull(
        &self,
        r: &Reference,
        creds: &Credentials,
        progress: &Progress,
    ) -> Result<ImageRecord> {
        let _gc = self.gc_lock.read().await;
        let label = if r.tag.is_empty() {
            r.digest.clone().unwrap_or_default()
        } else {
            r.tag.clone()
        };
        progress.status(format!("Pulling from {}", r.repository()), label);
        let resolved = self.registry.resolve(r, creds).await?;
        if Digest::of(&resolved.bytes).to_string() != resolved.digest {
            return Err(Error::BadContent(format!(
                "manifest of {r}: content does not match digest {}",
                resolved.digest
            )));
        }
        let config_digest = parse_digest(&resolved.config.digest)?;
        self.download(r, creds, &config_digest, resolved.config.size, None)
            .await?;
        let config_bytes = self.content.read(&config_digest)?;
        let config = ImageConfigFile::parse(&config_bytes)
            .map_err(|e| Error::BadContent(format!("image config of {r}: {e}")))?;
        if config.rootfs.diff_ids.len() != resolved.layers.len() {
            return Err(Error::BadContent(format!(
                "{r}: the manifest has {} layers, the config {}",
                resolved.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }

        // Downloads, a few at a time; each layer reports under its short digest.
        let blobs: Vec<Digest> = resolved
            .layers
            .iter()
            .map(|l| parse_digest(&l.digest))
            .collect::<Result<_>>()?;
        let slots = tokio::sync::Semaphore::new(CONCURRENT_DOWNLOADS);
        let downloads: Vec<_> = resolved
            .layers
            .iter()
            .zip(&blobs)
            .map(|(layer, digest)| {
                let slots = &slots;
                async move {
                    let _slot = slots.acquire().await;
                    self.download(r, creds, digest, layer.size, Some(progress))
                        .await
                }
            })
            .collect();
        futures::future::try_join_all(downloads).await?;

        // Unpacks, bottom up: each snapshot sits on its parent's chain id.
        let mut layers = Vec::with_capacity(blobs.len());
        let mut size = 0;
        let mut parent: Option<Digest> = None;
        for ((descriptor, blob), diff_id) in resolved
            .layers
            .iter()
            .zip(&blobs)
            .zip(&config.rootfs.diff_ids)
        {
            let id = blob.short().to_string();
            progress.status("Extracting", &id);
            let (content, snapshots) = (Arc::clone(&self.content), Arc::clone(&self.snapshots));
            let (blob_c, parent_c, diff_c, name) = (
                blob.clone(),
                parent.clone(),
                diff_id.clone(),
                blob.to_string(),
            );
            let (diff_id, chain_id, unpacked) = blocking(move || {
                snapshot_blob(
                    &content,
                    &snapshots,
                    &blob_c,
                    parent_c.as_ref(),
                    Some(&diff_c),
                    &name,
                )
            })
            .await?;
            progress.status("Pull complete", &id);
            size += unpacked;
            parent = Some(chain_id.clone());
            layers.push(LayerRecord {
                digest: blob.clone(),
                diff_id,
                chain_id,
                media_type: descriptor.media_type.clone(),
                size: descriptor.size,
            });
        }

        let existed = self.resolve(&r.to_string()).ok().map(|i| i.id);
        let image = self.record_image(
            &config_bytes,
            Some(&resolved.bytes),
            layers,
            size,
            ids::now(),
        )?;
        let repo_digest = resolved
            .index_digest
            .clone()
            .unwrap_or(resolved.digest.clone());
        self.store.write(|tx| {
            if !r.tag.is_empty() {
                store::tag_image(
                    tx,
                    &ImageTag {
                        repo: r.repo.clone(),
                        tag: r.tag.clone(),
                        image_id: image.id.clone(),
                    },
                )?;
            }
            store::add_repo_digest(tx, &r.repo, &repo_digest, &image.id)
        })?;
        progress.status(format!("Digest: {repo_digest}"), "");
        let status = if existed.as_deref() == Some(image.id.as_str()) {
            "Image is up to date for"
        } else {
            "Downloaded newer image for"
        };
        progress.status(format!("Status: {status} {r}"), "");
        tracing::info!(image_id = %image.id, reference = %r, "image pulled");
        Ok(image)
    }

    /// Fetches blob `digest` into the content store unless it is there, checking digest and
    /// size. With `progress`, reports `Downloading` / `Download complete` (or `Already
    /// exists`) under the short digest.
    async fn download(
        &self,
        r: &Reference,
        creds: &Credentials,
        digest: &Digest,
        size: u64,
        progress: Option<&Progress>,
    ) -> Result<()> {
        let id = digest.short().to_string();
        if self.content.contains(digest) {
            if let Some(p) = progress {
                p.status("Already exists", &id);
            }
            return Ok(());
        }
        // The registry writes into one end of a pipe; a blocking thread hashes the other end
        // into the content store.
        let (mut writer, reader) = tokio::io::duplex(256 * 1024);
        let ingest = self.content.writer()?;
        let expected = digest.clone();
        let store_task = tokio::task::spawn_blocking(move || {
            let mut ingest = ingest;
            let mut reader = SyncIoBridge::new(reader);
            std::io::copy(&mut reader, &mut ingest)
                .map_err(|e| Error::io(format!("store blob {expected}"), e))?;
            Ok::<_, Error>(ingest.commit(Some((&expected, Some(size))))?)
        });
        let fetched = self
            .registry
            .fetch_blob(r, &digest.to_string(), creds, &mut writer, |n| {
                if let Some(p) = progress {
                    p.bytes("Downloading", &id, n, size);
                }
            })
            .await;
        drop(writer);
        let stored = store_task
            .await
            .map_err(|e| Error::io("store blob", std::io::Error::other(e.to_string())))?;
        // The transfer's own error says more than the short blob it left behind.
        fetched?;
        stored?;
        if let Some(p) = progress {
            p.status("Download complete", &id);
        }
        Ok(())
    }
}

fn parse_digest(d: &str) -> Result<Digest> {
    d.parse()
        .map_err(|e: super::digest::InvalidDigest| Error::BadContent(e.to_string()))
}

impl From<registry::Error> for Error {
    fn from(e: registry::Error) -> Self {
        Error::Registry(e)
    }
}
