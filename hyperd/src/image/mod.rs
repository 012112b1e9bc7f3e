//! Images, in OCI terms: blobs in a content store ([`content`]), layers unpacked once per chain
//! id ([`snapshot`]), and image records in the database (id = the config's digest, repo tags,
//! repo digests, the manifest and its layers). Images arrive by import of a rootfs tarball
//! (`POST /image/create?fromSrc=-`), by pull, or by load of an archive; they leave by push and
//! save. A record is written only once every blob and snapshot it names is in place, so a crash
//! or an error at any point leaves no visible partial image; blobs and snapshots no image needs
//! are collected when images are removed.

pub mod archive;
pub mod build;
pub mod commit;
pub mod compression;
pub mod config;
mod content;
pub mod digest;
pub mod manifest;
mod progress;
mod pull;
mod push;
mod reference;
pub mod registry;
mod snapshot;
mod transfer;
pub mod unpack;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use hyper_proto::rest;

use crate::error::Kind;
use crate::ids;
use crate::store::{self, ImageRecord, ImageTag, Store};
pub use config::ImageConfigFile;
use content::ContentStore;
pub use digest::Digest;
use manifest::{Descriptor, Manifest};
pub use progress::Progress;
pub use reference::Reference;
use snapshot::Snapshots;
pub use transfer::ArchiveFormat;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such image: {0}")]
    NotFound(String),
    #[error("image reference {0:?} matches more than one image")]
    Ambiguous(String),
    #[error("{0}")]
    Invalid(String),
    /// The image is in use, or the request would untag more than it names.
    #[error("{0}")]
    Conflict(String),
    /// A layer the client sent (import, load) is not one we can unpack.
    #[error("layer {layer}: {source}")]
    BadLayer {
        layer: String,
        #[source]
        source: unpack::Error,
    },
    /// Content a registry or archive gave us is not what it claims to be.
    #[error("{0}")]
    BadContent(String),
    #[error(transparent)]
    Content(#[from] content::Error),
    #[error(transparent)]
    Snapshot(#[from] snapshot::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Registry(registry::Error),
    #[error(transparent)]
    Archive(#[from] archive::Error),
    #[error(transparent)]
    Pack(#[from] build::layer::Error),
}

impl Error {
    pub fn kind(&self) -> Kind {
        match self {
            Error::NotFound(_) => Kind::NotFound,
            Error::Ambiguous(_) | Error::Invalid(_) | Error::BadContent(_) => Kind::InvalidInput,
            Error::BadLayer { source, .. } => match source {
                unpack::Error::Invalid { .. } => Kind::InvalidInput,
                _ => Kind::Internal,
            },
            Error::Conflict(_) => Kind::Conflict,
            Error::Registry(e) => e.kind(),
            Error::Archive(e) => e.kind(),
            Error::Content(content::Error::DigestMismatch { .. })
            | Error::Content(content::Error::SizeMismatch { .. }) => Kind::InvalidInput,
            Error::Content(_)
            | Error::Snapshot(_)
            | Error::Io { .. }
            | Error::Store(_)
            | Error::Pack(_) => Kind::Internal,
        }
    }

    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// One layer of an image record: the blob as stored, the uncompressed tar's digest (diff id)
/// and the chain id its snapshot is kept under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerRecord {
    pub digest: Digest,
    pub diff_id: Digest,
    pub chain_id: Digest,
    pub media_type: String,
    /// Bytes of the blob.
    pub size: u64,
}

/// An image as `/images/get` lists it.
#[derive(Debug, Clone)]
pub struct ListedImage {
    pub image: ImageRecord,
    pub tags: Vec<ImageTag>,
    /// `(repo, digest)`.
    pub digests: Vec<(String, String)>,
}

/// What one removal did, in order: tags removed, then images deleted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Removed {
    pub untagged: Vec<String>,
    pub deleted: Vec<String>,
}

pub struct Images {
    content: Arc<ContentStore>,
    snapshots: Arc<Snapshots>,
    /// Work files of imports and loads (`<root>/tmp`), cleared at start.
    tmp: PathBuf,
    store: Arc<Store>,
    registry: registry::Registry,
    /// Held shared by everything that adds blobs or snapshots before it records them, and
    /// exclusively by garbage collection, so a collection never takes what a pull just wrote.
    gc_lock: tokio::sync::RwLock<()>,
}

impl Images {
    pub fn new(root: &Path, store: Arc<Store>, registry: registry::Registry) -> Result<Self> {
        let tmp = root.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io("clear tmp", e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io("mkdir tmp", e))?;
        Ok(Self {
            content: Arc::new(ContentStore::open(&root.join("content"))?),
            snapshots: Arc::new(Snapshots::open(&root.join("snapshots"))?),
            tmp,
            store,
            registry,
            gc_lock: tokio::sync::RwLock::new(()),
        })
    }

    /// Imports a tarball of a root filesystem (plain, gzip, bzip2, xz or zstd) streamed in
    /// `body` as `repo:tag`: a one-layer image with an empty config.
    pub async fn import<S, E>(&self, body: S, repo: &str, tag: &str) -> Result<ImageRecord>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let reference = Reference::for_import(repo, tag)?;
        let _gc = self.gc_lock.read().await;
        let upload = self.receive(body).await?;
        let (layer, size) = self
            .add_layer_file(upload.path().to_path_buf(), None, None, "import")
            .await?;
        drop(upload);
        let created = ids::now();
        let config = ImageConfigFile::single_layer(
            layer.diff_id.clone(),
            &config::rfc3339(created),
            "Imported from -",
        );
        let image = self.record_image(
            &serde_json::to_vec(&config).expect("a config serialises"),
            None,
            vec![layer],
            size,
            created,
        )?;
        self.store.write(|tx| {
            store::tag_image(
                tx,
                &ImageTag {
                    repo: reference.repo.clone(),
                    tag: reference.tag.clone(),
                    image_id: image.id.clone(),
                },
            )
        })?;
        tracing::info!(image_id = %image.id, reference = %reference, "image imported");
        Ok(image)
    }

    /// Writes a request body to a temp file.
    async fn receive<S, E>(&self, mut body: S) -> Result<tempfile::NamedTempFile>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut file = tempfile::NamedTempFile::new_in(&self.tmp)
            .map_err(|e| Error::io("create an upload file", e))?;
        let mut len = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Error::Invalid(format!("read the request body: {e}")))?;
            len += chunk.len() as u64;
            file.write_all(&chunk)
                .map_err(|e| Error::io("write the upload file", e))?;
        }
        if len == 0 {
            return Err(Error::Invalid(
                "the request body is empty; send a tar archive".into(),
            ));
        }
        Ok(file)
    }

    /// Stores a layer given as a (maybe compressed) tar file: the blob in the content store
    /// (as is when OCI has a media type for its compression, else decompressed) and its
    /// snapshot on top of `parent_chain`. `expected_diff_id`, when given, must match the
    /// uncompressed content. Returns the layer and its unpacked size.
    async fn add_layer_file(
        &self,
        path: PathBuf,
        parent_chain: Option<Digest>,
        expected_diff_id: Option<Digest>,
        name: &str,
    ) -> Result<(LayerRecord, u64)> {
        let name = name.to_string();
        let content = self.content.clone();
        let snapshots = self.snapshots.clone();
        blocking(move || {
            let (digest, media_type, size) = store_layer_blob(&content, &path)?;
            let (diff_id, chain_id, unpacked) = snapshot_blob(
                &content,
                &snapshots,
                &digest,
                parent_chain.as_ref(),
                expected_diff_id.as_ref(),
                &name,
            )?;
            let layer = LayerRecord {
                digest,
                diff_id,
                chain_id,
                media_type,
                size,
            };
            Ok((layer, unpacked))
        })
        .await
    }

    /// Stores the directory `dir` (an overlay upper dir or a plain tree, on the filesystem of
    /// hyperd's root) as a layer on top of `parent_chain`: a gzip layer blob in the content store,
    /// and `dir` itself moved in as the layer's snapshot (no unpacking). `dir` is gone or left
    /// for the caller to remove. Returns the layer and its bytes of file content. The caller
    /// holds [`Images::gc_guard`] until something records the layer.
    pub async fn layer_from_dir(
        &self,
        dir: PathBuf,
        parent_chain: Option<Digest>,
    ) -> Result<(LayerRecord, u64)> {
        let content = self.content.clone();
        let snapshots = self.snapshots.clone();
        blocking(move || {
            let mut blob = content.writer()?;
            let gz = flate2::write::GzEncoder::new(&mut blob, flate2::Compression::default());
            let mut tar = digest::HashingWriter::new(gz);
            let stats = build::layer::pack_dir(&dir, &mut tar, true)?;
            let (diff_id, _, gz) = tar.finish();
            gz.finish()
                .map_err(|e| Error::io("compress the layer", e))?;
            let size = blob.written();
            let digest = blob.commit(None)?;
            let chain_id = digest::chain_id(parent_chain.as_ref(), &diff_id);
            snapshots.commit_dir(&dir, &chain_id, stats.size)?;
            let layer = LayerRecord {
                digest,
                diff_id,
                chain_id,
                media_type: manifest::MEDIA_TYPE_OCI_LAYER_GZIP.to_string(),
                size,
            };
            Ok((layer, stats.size))
        })
        .await
    }

    /// Held while work adds blobs and snapshots that nothing records yet (a build between its
    /// steps): garbage collection waits for it.
    pub async fn gc_guard(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.gc_lock.read().await
    }

    /// The snapshot dir (overlay lower dir) of a layer stack's chain id.
    pub fn snapshot_path(&self, chain_id: &Digest) -> PathBuf {
        self.snapshots.fs_path(chain_id)
    }

    /// Where builds and commits keep their work dirs: on the filesystem of the snapshots, so a
    /// finished upper dir moves into a snapshot by rename. Cleared at start.
    pub fn work_dir(&self) -> &Path {
        &self.tmp
    }

    /// Writes the config and manifest blobs and the image record for `layers` (bottom first,
    /// chain ids recomputed here). The manifest is `manifest` when given (a pulled image's,
    /// verbatim), else an OCI manifest made from the layers.
    fn record_image(
        &self,
        config_bytes: &[u8],
        manifest: Option<&[u8]>,
        layers: Vec<LayerRecord>,
        size: u64,
        created: i64,
    ) -> Result<ImageRecord> {
        let config = ImageConfigFile::parse(config_bytes)
            .map_err(|e| Error::BadContent(format!("image config: {e}")))?;
        let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
        if config.rootfs.diff_ids != diff_ids {
            return Err(Error::BadContent(format!(
                "image config lists layers {:?}, the content has {:?}",
                config
                    .rootfs
                    .diff_ids
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>(),
                diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()
            )));
        }
        debug_assert!(
            layers
                .iter()
                .zip(digest::chain_ids(&diff_ids))
                .all(|(l, c)| l.chain_id == c)
        );
        // Docker lists an image by when its config says it was made, not when it arrived.
        let created = humantime::parse_rfc3339_weak(&config.created)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(created, |d| d.as_secs() as i64);
        let config_digest = self.content.put(config_bytes)?;
        let manifest_bytes = match manifest {
            Some(bytes) => bytes.to_vec(),
            None => Manifest::oci(
                Descriptor {
                    media_type: config::MEDIA_TYPE_OCI_CONFIG.into(),
                    digest: config_digest.clone(),
                    size: config_bytes.len() as u64,
                },
                layers
                    .iter()
                    .map(|l| Descriptor {
                        media_type: l.media_type.clone(),
                        digest: l.digest.clone(),
                        size: l.size,
                    })
                    .collect(),
            )
            .to_bytes(),
        };
        let manifest_digest = self.content.put(&manifest_bytes)?;
        let image = ImageRecord {
            id: config_digest.hex().to_string(),
            created,
            size: size as i64,
            rootfs: String::new(),
            manifest: manifest_digest.to_string(),
            layers,
        };
        self.store.write(|tx| {
            // A second pull or load of the same image keeps the first record's date.
            if store::get_image(tx, &image.id)?.is_none() {
                store::insert_image(tx, &image)?;
            }
            Ok(())
        })?;
        Ok(self
            .store
            .read(|c| store::get_image(c, &image.id))?
            .unwrap_or(image))
    }

    /// `POST /auth`: checks the credentials against the registry they name.
    /// Returns the identity token the registry's token service issued, if it did.
    pub async fn login(&self, auth: &rest::AuthConfig) -> Result<Option<String>> {
        let creds = registry::Credentials::from_auth_config(auth)?;
        Ok(self.registry.login(&auth.serveraddress, &creds).await?)
    }

    /// Finds an image by `repo[:tag]`, `repo@digest`, full id (with or without `sha256:`), or
    /// a unique id prefix.
    pub fn resolve(&self, reference: &str) -> Result<ImageRecord> {
        let id = reference.strip_prefix("sha256:").unwrap_or(reference);
        if id.len() == 64
            && id.chars().all(|c| c.is_ascii_hexdigit())
            && let Some(img) = self.store.read(|c| store::get_image(c, id))?
        {
            return Ok(img);
        }
        if let Ok(r) = Reference::parse(reference) {
            let found = match &r.digest {
                Some(d) => self
                    .store
                    .read(|c| store::image_by_digest(c, &r.repo, &d.to_string()))?,
                None => self
                    .store
                    .read(|c| store::image_by_tag(c, &r.repo, &r.tag))?,
            };
            if let Some(img) = found {
                return Ok(img);
            }
        }
        let hex = id.chars().all(|c| c.is_ascii_hexdigit());
        if !hex && let Err(e) = Reference::parse(reference) {
            // Neither an id nor a valid name: say what is wrong with it.
            return Err(e);
        }
        if id.len() >= 4 && hex {
            let mut found = self.store.read(|c| store::images_by_id_prefix(c, id))?;
            match found.len() {
                1 => return Ok(found.remove(0)),
                0 => {}
                _ => return Err(Error::Ambiguous(reference.into())),
            }
        }
        Err(Error::NotFound(reference.to_string()))
    }

    /// The image's config (an empty one for the old rootfs images).
    pub fn config_of(&self, image: &ImageRecord) -> Result<ImageConfigFile> {
        if image.manifest.is_empty() {
            return Ok(ImageConfigFile::default());
        }
        let digest = Digest::from_hex(&image.id)
            .map_err(|e| Error::BadContent(format!("image {}: {e}", image.id)))?;
        ImageConfigFile::parse(&self.content.read(&digest)?)
            .map_err(|e| Error::BadContent(format!("image {} config: {e}", image.id)))
    }

    /// The image's manifest: its digest, its exact bytes and what they say. `what` names the
    /// operation for images from before manifests existed, which have none.
    fn manifest_of(&self, image: &ImageRecord, what: &str) -> Result<(Digest, Vec<u8>, Manifest)> {
        if image.manifest.is_empty() {
            return Err(Error::Invalid(format!(
                "image {} was imported before images had manifests: import it again to {what} it",
                &image.id[..12]
            )));
        }
        let digest: Digest = image
            .manifest
            .parse()
            .map_err(|e: digest::InvalidDigest| Error::BadContent(e.to_string()))?;
        let bytes = self.content.read(&digest)?;
        let manifest = Manifest::parse(&bytes).map_err(Error::BadContent)?;
        Ok((digest, bytes, manifest))
    }

    /// The overlayfs lower dirs of an image's rootfs, topmost first.
    pub fn lower_dirs(&self, image: &ImageRecord) -> Vec<String> {
        if image.layers.is_empty() {
            return vec![image.rootfs.clone()];
        }
        image
            .layers
            .iter()
            .rev()
            .map(|l| {
                self.snapshots
                    .fs_path(&l.chain_id)
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }

    /// Every image with its tags and digests, newest first.
    pub fn list(&self) -> Result<Vec<ListedImage>> {
        Ok(self.store.read(|c| {
            store::list_images(c)?
                .into_iter()
                .map(|image| {
                    Ok(ListedImage {
                        tags: store::tags_of_image(c, &image.id)?,
                        digests: store::digests_of_image(c, &image.id)?,
                        image,
                    })
                })
                .collect::<store::Result<Vec<_>>>()
        })?)
    }

    pub fn count(&self) -> Result<u64> {
        Ok(self.store.read(store::count_images)?)
    }

    /// Docker's image inspect of `reference`.
    pub fn inspect(&self, reference: &str) -> Result<rest::ImageInspect> {
        let image = self.resolve(reference)?;
        let config = self.config_of(&image)?;
        let (tags, digests) = self.store.read(|c| {
            Ok((
                store::tags_of_image(c, &image.id)?,
                store::digests_of_image(c, &image.id)?,
            ))
        })?;
        Ok(rest::ImageInspect {
            id: format!("sha256:{}", image.id),
            repo_tags: tags
                .iter()
                .map(|t| format!("{}:{}", t.repo, t.tag))
                .collect(),
            repo_digests: digests.iter().map(|(r, d)| format!("{r}@{d}")).collect(),
            created: if config.created.is_empty() {
                config::rfc3339(image.created)
            } else {
                config.created.clone()
            },
            author: config.author.clone(),
            architecture: config.architecture.clone(),
            os: config.os.clone(),
            size: image.size,
            config: config.to_rest(),
            root_fs: rest::RootFs {
                kind: "layers".into(),
                layers: image.layers.iter().map(|l| l.diff_id.to_string()).collect(),
            },
        })
    }

    /// Docker's image history of `reference`: one row per history entry of its config, newest
    /// first; entries that made a layer (not `empty_layer`) take the image's layers in order.
    pub fn history(&self, reference: &str) -> Result<Vec<rest::ImageHistoryItem>> {
        let image = self.resolve(reference)?;
        let config = self.config_of(&image)?;
        let tags: Vec<String> = self
            .store
            .read(|c| store::tags_of_image(c, &image.id))?
            .iter()
            .map(|t| format!("{}:{}", t.repo, t.tag))
            .collect();
        let mut layers = image.layers.iter();
        let mut rows: Vec<rest::ImageHistoryItem> = config
            .history
            .iter()
            .map(|h| {
                let empty = h["empty_layer"].as_bool().unwrap_or(false);
                let size = if empty {
                    0
                } else {
                    layers
                        .next()
                        .map_or(0, |l| self.snapshots.size(&l.chain_id) as i64)
                };
                let created = h["created"]
                    .as_str()
                    .and_then(|c| humantime::parse_rfc3339_weak(c.trim_end_matches('Z')).ok())
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs() as i64);
                rest::ImageHistoryItem {
                    id: "<missing>".into(),
                    created,
                    created_by: h["created_by"].as_str().unwrap_or("").to_string(),
                    tags: vec![],
                    size,
                    comment: h["comment"].as_str().unwrap_or("").to_string(),
                }
            })
            .collect();
        // Layers no history entry accounts for (a config without history).
        for l in layers {
            rows.push(rest::ImageHistoryItem {
                id: "<missing>".into(),
                size: self.snapshots.size(&l.chain_id) as i64,
                ..Default::default()
            });
        }
        rows.reverse();
        if let Some(top) = rows.first_mut() {
            top.id = format!("sha256:{}", image.id);
            top.tags = tags;
        }
        Ok(rows)
    }

    /// Tags the image `source` as `repo:tag` (moving the tag if another image had it).
    pub fn tag(&self, source: &str, repo: &str, tag: &str) -> Result<Reference> {
        let image = self.resolve(source)?;
        let target = Reference::for_import(repo, tag)?;
        if target.repo == "sha256" && Digest::from_hex(&target.tag).is_ok() {
            return Err(Error::Invalid(format!(
                "{target}: a name that reads as an image id"
            )));
        }
        self.store.write(|tx| {
            store::tag_image(
                tx,
                &ImageTag {
                    repo: target.repo.clone(),
                    tag: target.tag.clone(),
                    image_id: image.id.clone(),
                },
            )
        })?;
        Ok(target)
    }

    /// Removes `reference` as Docker's `rmi` does. `repo:tag` removes that tag (and the
    /// repo's digest references once its last tag there goes); `repo@digest` removes that
    /// digest reference; an id removes every name (only with `force` when it has several
    /// tags). The image itself goes with its last name. An image that containers use is
    /// never deleted: without `force` that is a conflict; with it only the names go.
    pub async fn remove(&self, reference: &str, force: bool) -> Result<Removed> {
        let image = self.resolve(reference)?;
        let (tags, digests, users) = self.store.read(|c| {
            Ok((
                store::tags_of_image(c, &image.id)?,
                store::digests_of_image(c, &image.id)?,
                store::containers_using_image(c, &image.id)?,
            ))
        })?;
        let named = Reference::parse(reference).ok();
        let by_digest = named.as_ref().and_then(|r| {
            let d = r.digest.as_ref()?;
            digests
                .iter()
                .find(|(repo, digest)| *repo == r.repo && digest == d)
                .cloned()
        });
        let by_tag = named.as_ref().filter(|r| {
            r.digest.is_none() && tags.iter().any(|t| t.repo == r.repo && t.tag == r.tag)
        });
        let in_use = || {
            Error::Conflict(format!(
                "image {} is used by container {}: remove the container first",
                &image.id[..12],
                users.join(", ")
            ))
        };
        let (untag, undigest): (Vec<ImageTag>, Vec<(String, String)>) = match (by_tag, by_digest) {
            (Some(r), _) => {
                let untag: Vec<ImageTag> = tags
                    .iter()
                    .filter(|t| t.repo == r.repo && t.tag == r.tag)
                    .cloned()
                    .collect();
                // The repo's last tag here takes the repo's digest references with it.
                let repo_keeps_a_tag = tags.iter().any(|t| t.repo == r.repo && t.tag != r.tag);
                let undigest = if repo_keeps_a_tag {
                    Vec::new()
                } else {
                    digests
                        .iter()
                        .filter(|(repo, _)| *repo == r.repo)
                        .cloned()
                        .collect()
                };
                (untag, undigest)
            }
            (None, Some(d)) => (Vec::new(), vec![d]),
            (None, None) => {
                if tags.len() > 1 && !force {
                    return Err(Error::Conflict(format!(
                        "image {} is tagged as {}: remove the tags one by one, or use force",
                        &image.id[..12],
                        tags.iter()
                            .map(|t| format!("{}:{}", t.repo, t.tag))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                if !users.is_empty() && !force {
                    return Err(in_use());
                }
                (tags.clone(), digests.clone())
            }
        };
        let left = tags.len() - untag.len() + digests.len() - undigest.len();
        if !users.is_empty() && left == 0 && (!force || (untag.is_empty() && undigest.is_empty())) {
            // The image would lose its last name while containers use it; with force that is
            // allowed unless there is no name left to remove at all: then say why.
            return Err(in_use());
        }
        let delete = left == 0 && users.is_empty();
        let _gc = self.gc_lock.write().await;
        self.store.write(|tx| {
            for t in &untag {
                store::untag_image(tx, &t.repo, &t.tag)?;
            }
            for (repo, digest) in &undigest {
                store::remove_repo_digest(tx, repo, digest)?;
            }
            if delete {
                store::delete_image(tx, &image.id)?;
            }
            Ok(())
        })?;
        let mut removed = Removed {
            untagged: untag
                .iter()
                .map(|t| format!("{}:{}", t.repo, t.tag))
                .chain(undigest.iter().map(|(repo, d)| format!("{repo}@{d}")))
                .collect(),
            deleted: Vec::new(),
        };
        if delete {
            removed.deleted.push(format!("sha256:{}", image.id));
            if !image.rootfs.is_empty() {
                let dir = Path::new(&image.rootfs)
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!("remove {}: {e}", dir.display());
                }
            }
            self.collect_garbage_locked()?;
        }
        tracing::info!(image_id = %image.id, ?removed, "image removed");
        Ok(removed)
    }

    /// Deletes every blob and snapshot that no image record names. The caller holds the gc
    /// lock exclusively.
    fn collect_garbage_locked(&self) -> Result<()> {
        let images = self.store.read(store::list_images)?;
        let mut blobs = std::collections::HashSet::new();
        let mut chains = std::collections::HashSet::new();
        // The build cache's layers are roots too: an unchanged rebuild must find them.
        for l in self.store.read(store::build_cache_layers)? {
            blobs.insert(l.digest);
            chains.insert(l.chain_id);
        }
        for image in &images {
            if image.manifest.is_empty() {
                continue;
            }
            if let Ok(d) = image.manifest.parse::<Digest>() {
                blobs.insert(d);
            }
            if let Ok(d) = Digest::from_hex(&image.id) {
                blobs.insert(d);
            }
            for l in &image.layers {
                blobs.insert(l.digest.clone());
                chains.insert(l.chain_id.clone());
            }
        }
        let mut freed = (0, 0);
        for d in self.content.list()? {
            if !blobs.contains(&d) {
                self.content.remove(&d)?;
                freed.0 += 1;
            }
        }
        for c in self.snapshots.list()? {
            if !chains.contains(&c) {
                self.snapshots.remove(&c)?;
                freed.1 += 1;
            }
        }
        tracing::debug!(blobs = freed.0, snapshots = freed.1, "garbage collected");
        Ok(())
    }
}

/// Runs file-tree work on a blocking thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io("blocking task", std::io::Error::other(e.to_string())))?
}

/// Puts a layer file into the content store: as is when its compression has an OCI media
/// type (none, gzip, zstd), decompressed otherwise (bzip2, xz). Returns (digest, media type,
/// size in bytes).
fn store_layer_blob(content: &ContentStore, path: &Path) -> Result<(Digest, String, u64)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("open the layer", e))?;
    let (compression, mut reader) =
        compression::decompress(file).map_err(|e| Error::io("read the layer", e))?;
    let mut w = content.writer()?;
    let media_type = match manifest::layer_media_type(compression) {
        Some(media_type) => {
            let mut f = std::fs::File::open(path).map_err(|e| Error::io("open the layer", e))?;
            std::io::copy(&mut f, &mut w).map_err(|e| Error::io("store the layer", e))?;
            media_type
        }
        None => {
            std::io::copy(&mut reader, &mut w).map_err(|e| {
                Error::BadContent(format!("layer: not a valid {compression:?} stream: {e}"))
            })?;
            manifest::MEDIA_TYPE_OCI_LAYER
        }
    };
    let size = w.written();
    Ok((w.commit(None)?, media_type.to_string(), size))
}

/// Unpacks the layer blob `blob` into the snapshot of its chain id (unless that snapshot
/// exists), hashing the uncompressed stream on the way: that is the diff id, checked against
/// `expected_diff_id`. Returns (diff id, chain id, unpacked bytes).
fn snapshot_blob(
    content: &ContentStore,
    snapshots: &Snapshots,
    blob: &Digest,
    parent_chain: Option<&Digest>,
    expected_diff_id: Option<&Digest>,
    name: &str,
) -> Result<(Digest, Digest, u64)> {
    let chain_of = |diff_id: &Digest| digest::chain_id(parent_chain, diff_id);
    let file = content.open_blob(blob)?;
    if let Some(expected) = expected_diff_id {
        let chain = chain_of(expected);
        if snapshots.contains(&chain) {
            // Unpacked before, but this blob may not be what it claims: its content must
            // still hash to the diff id, or an archive or registry could pair a layer with
            // another image's snapshot.
            let (_, reader) =
                compression::decompress(file).map_err(|e| Error::io("read the layer", e))?;
            let mut hashing = digest::HashingReader::new(reader);
            std::io::copy(&mut hashing, &mut std::io::sink())
                .map_err(|e| Error::BadContent(format!("layer {name}: {e}")))?;
            let (diff_id, _) = hashing.finish();
            if diff_id != *expected {
                return Err(Error::BadContent(format!(
                    "layer {name}: uncompressed content has digest {diff_id}, the image config says {expected}"
                )));
            }
            return Ok((diff_id, chain.clone(), snapshots.size(&chain)));
        }
    }
    let (_, reader) = compression::decompress(file).map_err(|e| Error::io("read the layer", e))?;
    let mut hashing = digest::HashingReader::new(reader);
    let staging = snapshots.staging()?;
    let stats =
        unpack::unpack_layer(&mut hashing, &staging.fs()).map_err(|source| Error::BadLayer {
            layer: name.to_string(),
            source,
        })?;
    // The tar's end-of-archive padding counts towards the diff id too.
    std::io::copy(&mut hashing, &mut std::io::sink())
        .map_err(|e| Error::BadContent(format!("layer {name}: {e}")))?;
    let (diff_id, _) = hashing.finish();
    if let Some(expected) = expected_diff_id
        && *expected != diff_id
    {
        return Err(Error::BadContent(format!(
            "layer {name}: uncompressed content has digest {diff_id}, the image config says {expected}"
        )));
    }
    let chain = chain_of(&diff_id);
    snapshots.commit(staging, &chain, stats.size)?;
    Ok((diff_id, chain, stats.size))
}

#[cfg(test)]
mod tests;
