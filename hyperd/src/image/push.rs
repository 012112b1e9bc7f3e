//! Push: an image's blobs (those the registry lacks) and then its manifest, verbatim, so the
//! registry's digest of the image is the one we hold.

use serde_json::json;

use super::registry::{BlobSource, Credentials};
use super::{Digest, Error, Images, Progress, Reference, Result};
use crate::store;

impl Images {
    /// Pushes the local image `r` (`repo[:tag]`) to the registry its name points at.
    pub async fn push(
        &self,
        r: &Reference,
        creds: &Credentials,
        progress: &Progress,
    ) -> Result<String> {
        let image = self.resolve(&r.to_string()).map_err(|e| match e {
            Error::NotFound(_) => Error::NotFound(format!(
                "{r} (an image does not exist locally with that tag)"
            )),
            e => e,
        })?;
        let (_, manifest_bytes, manifest) = self.manifest_of(&image, "push")?;
        progress.status(
            format!(
                "The push refers to repository [{}/{}]",
                r.registry(),
                r.repository()
            ),
            "",
        );
        for layer in &manifest.layers {
            progress.status("Preparing", layer.digest.short());
        }
        for layer in &manifest.layers {
            self.upload(r, creds, &layer.digest, layer.size, Some(progress))
                .await?;
        }
        self.upload(
            r,
            creds,
            &manifest.config.digest,
            manifest.config.size,
            None,
        )
        .await?;
        let digest = self
            .registry
            .push_manifest(r, &manifest_bytes, manifest.own_media_type(), creds)
            .await?;
        self.store
            .write(|tx| store::add_repo_digest(tx, &r.repo, &digest, &image.id))?;
        let size = manifest_bytes.len();
        progress.status(format!("{}: digest: {digest} size: {size}", r.tag), "");
        progress.send(hyper_proto::rest::JsonMessage {
            aux: Some(json!({ "Tag": r.tag, "Digest": digest, "Size": size })),
            ..Default::default()
        });
        tracing::info!(image_id = %image.id, reference = %r, %digest, "image pushed");
        Ok(digest)
    }

    /// Uploads one blob unless the registry has it.
    async fn upload(
        &self,
        r: &Reference,
        creds: &Credentials,
        digest: &Digest,
        size: u64,
        progress: Option<&Progress>,
    ) -> Result<()> {
        let id = digest.short().to_string();
        if self
            .registry
            .blob_exists(r, &digest.to_string(), creds)
            .await?
        {
            if let Some(p) = progress {
                p.status("Layer already exists", &id);
            }
            return Ok(());
        }
        if !self.content.contains(digest) {
            return Err(Error::NotFound(format!("blob {digest} of {r}")));
        }
        let sink = progress.cloned();
        let bar_id = id.clone();
        self.registry
            .push_blob(
                r,
                &digest.to_string(),
                BlobSource::File(self.content.path(digest)),
                creds,
                move |n| {
                    if let Some(p) = &sink {
                        p.bytes("Pushing", &bar_id, n, size);
                    }
                },
            )
            .await?;
        if let Some(p) = progress {
            p.status("Pushed", &id);
        }
        Ok(())
    }
}
