//! The snapshotter: every layer unpacked once, keyed by its chain id (containerd's split: the
//! content store keeps blobs, the snapshotter keeps unpacked layers). A snapshot is
//! `<root>/snapshots/<chain hex>/` holding `fs/` (one overlayfs lower dir, whiteouts in overlay
//! form) and `size` (bytes of file content, as text). It is built in a `.tmp-*` dir and renamed
//! into place whole, so a snapshot that is visible is complete; removal renames it away first.
//! Two builders of the same chain id race harmlessly: the first rename wins and the other's
//! work is discarded.

use std::io;
use std::path::{Path, PathBuf};

use super::digest::Digest;

const STAGING_PREFIX: &str = ".tmp-";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("snapshots: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

pub struct Snapshots {
    dir: PathBuf,
}

/// A snapshot being built: unpack into [`Staging::fs`], then [`Snapshots::commit`].
pub struct Staging {
    dir: tempfile::TempDir,
}

impl Staging {
    pub fn fs(&self) -> PathBuf {
        self.dir.path().join("fs")
    }
}

impl Snapshots {
    /// Opens (creating) the snapshot dir, removing what a crash left half-built or half-removed.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(io_err(format!("mkdir {}", dir.display())))?;
        for entry in std::fs::read_dir(dir).map_err(io_err("list snapshots"))? {
            let entry = entry.map_err(io_err("list snapshots"))?;
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(STAGING_PREFIX)
            {
                std::fs::remove_dir_all(entry.path())
                    .map_err(io_err(format!("remove {}", entry.path().display())))?;
            }
        }
        Ok(Self { dir: dir.into() })
    }

    /// The lower dir of a snapshot (whether or not it exists).
    pub fn fs_path(&self, chain_id: &Digest) -> PathBuf {
        self.dir.join(chain_id.hex()).join("fs")
    }

    pub fn contains(&self, chain_id: &Digest) -> bool {
        self.fs_path(chain_id).is_dir()
    }

    /// Bytes of file content in the snapshot.
    pub fn size(&self, chain_id: &Digest) -> u64 {
        std::fs::read_to_string(self.dir.join(chain_id.hex()).join("size"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn staging(&self) -> Result<Staging, Error> {
        let dir = tempfile::Builder::new()
            .prefix(STAGING_PREFIX)
            .tempdir_in(&self.dir)
            .map_err(io_err("create a staging dir"))?;
        std::fs::create_dir(dir.path().join("fs")).map_err(io_err("create a staging dir"))?;
        Ok(Staging { dir })
    }

    /// Moves a built snapshot into place. If another builder got there first, its snapshot
    /// stays and this one is dropped.
    pub fn commit(&self, staging: Staging, chain_id: &Digest, size: u64) -> Result<(), Error> {
        std::fs::write(staging.dir.path().join("size"), size.to_string())
            .map_err(io_err("write the snapshot size"))?;
        let target = self.dir.join(chain_id.hex());
        let staged = staging.dir.keep();
        match std::fs::rename(&staged, &target) {
            Ok(()) => Ok(()),
            Err(_) if self.contains(chain_id) => {
                remove_tree(&staged);
                Ok(())
            }
            Err(e) => {
                remove_tree(&staged);
                Err(io_err(format!("commit snapshot {chain_id}"))(e))
            }
        }
    }

    /// Moves the directory `dir` (on the same filesystem, already in lower-dir form: an overlay
    /// upper dir) in as the snapshot of `chain_id`, without copying it. If the snapshot exists
    /// already, it stays and `dir` is left where it is for the caller to remove.
    pub fn commit_dir(&self, dir: &Path, chain_id: &Digest, size: u64) -> Result<(), Error> {
        if self.contains(chain_id) {
            return Ok(());
        }
        let staging = self.staging()?;
        std::fs::remove_dir(staging.fs()).map_err(io_err("prepare a staging dir"))?;
        std::fs::rename(dir, staging.fs())
            .map_err(io_err(format!("move {} into a snapshot", dir.display())))?;
        self.commit(staging, chain_id, size)
    }

    /// Every committed snapshot's chain id.
    pub fn list(&self) -> Result<Vec<Digest>, Error> {
        Ok(std::fs::read_dir(&self.dir)
            .map_err(io_err("list snapshots"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| Digest::from_hex(&e.file_name().to_string_lossy()).ok())
            .collect())
    }

    pub fn remove(&self, chain_id: &Digest) -> Result<(), Error> {
        let path = self.dir.join(chain_id.hex());
        let doomed = self
            .dir
            .join(format!("{STAGING_PREFIX}rm-{}", chain_id.hex()));
        match std::fs::rename(&path, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(format!("remove snapshot {chain_id}"))(e)),
        }
        std::fs::remove_dir_all(&doomed).map_err(io_err(format!("remove snapshot {chain_id}")))
    }
}

fn remove_tree(path: &Path) {
    if let Err(e) = std::fs::remove_dir_all(path) {
        tracing::warn!("remove {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_committed_snapshot_is_whole_and_a_second_builder_loses_quietly() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = Snapshots::open(dir.path()).unwrap();
        let chain = Digest::of(b"layer");
        let first = snaps.staging().unwrap();
        std::fs::write(first.fs().join("a"), "1").unwrap();
        let second = snaps.staging().unwrap();
        std::fs::write(second.fs().join("b"), "2").unwrap();
        assert!(!snaps.contains(&chain));
        snaps.commit(first, &chain, 1).unwrap();
        snaps.commit(second, &chain, 1).unwrap();
        assert!(snaps.fs_path(&chain).join("a").exists());
        assert!(!snaps.fs_path(&chain).join("b").exists());
        assert_eq!(snaps.size(&chain), 1);
        assert_eq!(snaps.list().unwrap(), vec![chain.clone()]);
        // Nothing left over but the snapshot itself.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        snaps.remove(&chain).unwrap();
        assert!(snaps.list().unwrap().is_empty());
    }

    #[test]
    fn a_half_built_snapshot_is_gone_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = Snapshots::open(dir.path()).unwrap();
        let staging = snaps.staging().unwrap();
        std::fs::write(staging.fs().join("a"), "1").unwrap();
        std::mem::forget(staging); // the process died mid-unpack
        Snapshots::open(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
