//! Images: the store of unpacked root filesystems (`<root>/images/<id>/rootfs`), their tags,
//! and the import of a rootfs tarball (what `POST /image/create?fromSrc=-` does). An image's id
//! is the sha256 of the tarball it came from.

mod reference;
pub mod registry;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};

use crate::error::Kind;
use crate::ids;
use crate::store::{self, ImageRecord, ImageTag, Store};
pub use reference::Reference;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such image: {0}")]
    NotFound(String),
    #[error("image reference {0:?} matches more than one image")]
    Ambiguous(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl Error {
    pub fn kind(&self) -> Kind {
        match self {
            Error::NotFound(_) => Kind::NotFound,
            Error::Ambiguous(_) | Error::Invalid(_) => Kind::InvalidInput,
            Error::Io { .. } | Error::Store(_) => Kind::Internal,
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

/// A tagged image, as `/images/get` lists it.
#[derive(Debug, Clone)]
pub struct TaggedImage {
    pub tag: ImageTag,
    pub image: ImageRecord,
}

pub struct Images {
    dir: PathBuf,
    store: Arc<Store>,
}

impl Images {
    pub fn new(root: &Path, store: Arc<Store>) -> Result<Self> {
        let dir = root.join("images");
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("mkdir {}", dir.display()), e))?;
        Ok(Self { dir, store })
    }

    /// Imports a rootfs tarball streamed in `body` as `repo:tag`.
    pub async fn import<S, E>(&self, body: S, repo: &str, tag: &str) -> Result<ImageRecord>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let reference = Reference::for_import(repo, tag)?;
        let work = self.dir.join(format!("tmp-{}", ids::exec_id()));
        std::fs::create_dir_all(&work).map_err(|e| Error::io("mkdir import dir", e))?;
        let result = self.import_into(&work, body, &reference).await;
        if work.exists()
            && let Err(e) = std::fs::remove_dir_all(&work)
        {
            tracing::warn!("remove {}: {e}", work.display());
        }
        result
    }

    async fn import_into<S, E>(
        &self,
        work: &Path,
        mut body: S,
        r: &Reference,
    ) -> Result<ImageRecord>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        // 1. The body to a file, hashed on the way.
        let tar_path = work.join("layer.tar");
        let mut file =
            std::fs::File::create(&tar_path).map_err(|e| Error::io("create layer.tar", e))?;
        let mut hasher = Sha256::new();
        let mut len = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Error::Invalid(format!("read the request body: {e}")))?;
            hasher.update(&chunk);
            len += chunk.len() as u64;
            file.write_all(&chunk)
                .map_err(|e| Error::io("write layer.tar", e))?;
        }
        file.sync_all()
            .map_err(|e| Error::io("sync layer.tar", e))?;
        drop(file);
        if len == 0 {
            return Err(Error::Invalid(
                "import: the request body is empty; send a tar archive".into(),
            ));
        }
        let id = hex(&hasher.finalize());

        // 2. Unpack, unless this exact tarball is already an image.
        let existing = self.store.read(|c| store::get_image(c, &id))?;
        let image = match existing {
            Some(image) => image,
            None => {
                let rootfs = work.join("rootfs");
                let size = tokio::task::spawn_blocking({
                    let tar_path = tar_path.clone();
                    let rootfs = rootfs.clone();
                    move || unpack(&tar_path, &rootfs)
                })
                .await
                .map_err(|e| Error::io("unpack", std::io::Error::other(e.to_string())))??;
                let final_dir = self.dir.join(&id);
                if final_dir.exists() {
                    // Left over from an import that crashed before its record was written.
                    std::fs::remove_dir_all(&final_dir)
                        .map_err(|e| Error::io("remove stale image dir", e))?;
                }
                std::fs::create_dir_all(&final_dir).map_err(|e| Error::io("mkdir image dir", e))?;
                std::fs::rename(&rootfs, final_dir.join("rootfs"))
                    .map_err(|e| Error::io("move the rootfs in place", e))?;
                ImageRecord {
                    id: id.clone(),
                    created: ids::now(),
                    size: size as i64,
                    rootfs: final_dir.join("rootfs").to_string_lossy().into_owned(),
                }
            }
        };
        let tag = ImageTag {
            repo: r.repo.clone(),
            tag: r.tag.clone(),
            image_id: image.id.clone(),
        };
        self.store.write(|tx| {
            store::insert_image(tx, &image)?;
            store::tag_image(tx, &tag)
        })?;
        tracing::info!(image_id = %image.id, reference = %r, "image imported");
        Ok(image)
    }

    /// Finds an image by `repo[:tag]`, full id, or a unique id prefix.
    pub fn resolve(&self, reference: &str) -> Result<ImageRecord> {
        let r = Reference::parse(reference)?;
        if let Some(img) = self
            .store
            .read(|c| store::image_by_tag(c, &r.repo, &r.tag))?
        {
            return Ok(img);
        }
        let id = reference.strip_prefix("sha256:").unwrap_or(reference);
        if id.len() >= 4 && id.chars().all(|c| c.is_ascii_hexdigit()) {
            let mut found = self.store.read(|c| store::images_by_id_prefix(c, id))?;
            match found.len() {
                1 => return Ok(found.remove(0)),
                0 => {}
                _ => return Err(Error::Ambiguous(reference.into())),
            }
        }
        Err(Error::NotFound(reference.to_string()))
    }

    pub fn list(&self) -> Result<Vec<TaggedImage>> {
        Ok(self
            .store
            .read(store::list_image_tags)?
            .into_iter()
            .map(|(tag, image)| TaggedImage { tag, image })
            .collect())
    }

    pub fn count(&self) -> Result<u64> {
        Ok(self.store.read(store::count_images)?)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Unpacks a tar archive into `dest`; returns the sum of the file sizes.
fn unpack(tar_path: &Path, dest: &Path) -> Result<u64> {
    let invalid =
        |e: std::io::Error| Error::Invalid(format!("import: not a valid tar archive: {e}"));
    std::fs::create_dir_all(dest).map_err(|e| Error::io("mkdir rootfs", e))?;
    let file = std::fs::File::open(tar_path).map_err(|e| Error::io("open layer.tar", e))?;
    let mut archive = tar::Archive::new(file);
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    let mut size = 0u64;
    let mut entries_seen = 0u64;
    for entry in archive.entries().map_err(invalid)? {
        let mut entry = entry.map_err(invalid)?;
        size += entry.header().size().unwrap_or(0);
        entries_seen += 1;
        // unpack_in refuses paths that escape `dest` (.., absolute symlink tricks).
        entry.unpack_in(dest).map_err(invalid)?;
    }
    if entries_seen == 0 {
        return Err(Error::Invalid("import: the tar archive is empty".into()));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tarball(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn images() -> (tempfile::TempDir, Images) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
        let images = Images::new(dir.path(), store).unwrap();
        (dir, images)
    }

    fn body(
        data: Vec<u8>,
    ) -> impl Stream<Item = std::result::Result<Bytes, std::io::Error>> + Unpin {
        futures::stream::iter(vec![Ok(Bytes::from(data))])
    }

    #[tokio::test]
    async fn import_unpacks_tags_and_resolves() {
        let (_d, images) = images();
        let img = images
            .import(body(tarball(&[("bin/hello", b"hi")])), "busybox", "")
            .await
            .unwrap();
        assert_eq!(img.size, 2);
        assert_eq!(
            std::fs::read(Path::new(&img.rootfs).join("bin/hello")).unwrap(),
            b"hi"
        );
        assert_eq!(images.resolve("busybox").unwrap().id, img.id);
        assert_eq!(images.resolve("busybox:latest").unwrap().id, img.id);
        assert_eq!(images.resolve(&img.id[..12]).unwrap().id, img.id);
        let err = images.resolve("nginx").unwrap_err();
        assert_eq!(err.to_string(), "no such image: nginx");
        assert_eq!(err.kind(), Kind::NotFound);
        let listed = images.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].tag.repo.as_str(), listed[0].tag.tag.as_str()),
            ("busybox", "latest")
        );
    }

    #[tokio::test]
    async fn garbage_is_not_an_image() {
        let (_d, images) = images();
        let err = images
            .import(
                body(b"this is not a tar archive at all".repeat(40)),
                "x",
                "1",
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), Kind::InvalidInput, "{err}");
        let err = images.import(body(Vec::new()), "x", "1").await.unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        assert_eq!(images.count().unwrap(), 0);
    }
}
