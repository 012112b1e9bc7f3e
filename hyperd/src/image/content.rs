//! The content store: immutable blobs addressed by their sha256 digest, in the OCI image
//! layout's terms (`<root>/content/blobs/sha256/<hex>`). A blob is written to a private temp
//! file under `ingest/`, hashed while it is written, checked against the digest the caller
//! expects, fsynced and only then renamed into place, so a blob that is visible is always
//! whole and correct. Two writers of the same blob each write their own temp file; the second
//! rename replaces identical bytes. What a crash leaves in `ingest/` is removed at start.
//!
//! The store knows nothing of images: which blobs are still needed is the image module's call
//! (see `Images::collect_garbage`).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::digest::{Digest, HashingWriter};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("blob {expected}: content has digest {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest}: {actual} bytes, expected {expected}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {0}: not in the content store")]
    NotFound(Digest),
    #[error("content store: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl Error {
    fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Opens (creating) the store under `dir`, removing temp files a crash left behind.
    pub fn open(dir: &Path) -> Result<Self> {
        let blobs = dir.join("blobs").join("sha256");
        let ingest = dir.join("ingest");
        if ingest.exists() {
            std::fs::remove_dir_all(&ingest)
                .map_err(|e| Error::io(format!("clear {}", ingest.display()), e))?;
        }
        for d in [&blobs, &ingest] {
            std::fs::create_dir_all(d)
                .map_err(|e| Error::io(format!("mkdir {}", d.display()), e))?;
        }
        Ok(Self { blobs, ingest })
    }

    /// Where the blob `digest` lives (whether or not it is there).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        File::open(self.path(digest)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound(digest.clone()),
            _ => Error::io(format!("open blob {digest}"), e),
        })
    }

    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.open_blob(digest)?
            .read_to_end(&mut out)
            .map_err(|e| Error::io(format!("read blob {digest}"), e))?;
        Ok(out)
    }

    /// Stores `bytes` and returns their digest.
    pub fn put(&self, bytes: &[u8]) -> Result<Digest> {
        let mut w = self.writer()?;
        w.write_all(bytes).map_err(|e| Error::io("write blob", e))?;
        w.commit(None)
    }

    /// A writer for one new blob; nothing is visible until [`Ingest::commit`].
    pub fn writer(&self) -> Result<Ingest> {
        let file = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&self.ingest)
            .map_err(|e| Error::io("create an ingest file", e))?;
        Ok(Ingest {
            file: HashingWriter::new(file),
            blobs: self.blobs.clone(),
        })
    }

    /// Every stored blob's digest.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let entries = std::fs::read_dir(&self.blobs)
            .map_err(|e| Error::io(format!("list {}", self.blobs.display()), e))?;
        Ok(entries
            .filter_map(|e| e.ok())
            .filter_map(|e| Digest::from_hex(&e.file_name().to_string_lossy()).ok())
            .collect())
    }

    pub fn remove(&self, digest: &Digest) -> Result<()> {
        match std::fs::remove_file(self.path(digest)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("remove blob {digest}"), e)),
        }
    }
}

/// A blob being written: hashed as it goes, renamed into the store by [`Ingest::commit`], and
/// deleted if dropped uncommitted.
pub struct Ingest {
    file: HashingWriter<tempfile::NamedTempFile>,
    blobs: PathBuf,
}

impl Ingest {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.file.written()
    }

    /// Verifies the digest (when `expected` is given), fsyncs and moves the blob into place.
    pub fn commit(self, expected: Option<(&Digest, Option<u64>)>) -> Result<Digest> {
        let (actual, written, file) = self.file.finish();
        if let Some((expected, size)) = expected {
            if *expected != actual {
                return Err(Error::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
            if let Some(size) = size
                && size != written
            {
                return Err(Error::SizeMismatch {
                    digest: actual,
                    expected: size,
                    actual: written,
                });
            }
        }
        file.as_file()
            .sync_all()
            .map_err(|e| Error::io(format!("sync blob {actual}"), e))?;
        let path = self.blobs.join(actual.hex());
        file.persist(&path)
            .map_err(|e| Error::io(format!("store blob {actual}"), e.error))?;
        // The rename is durable once the directory is.
        if let Ok(dir) = File::open(&self.blobs) {
            let _ = dir.sync_all();
        }
        Ok(actual)
    }
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_stored_under_its_digest_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let d = store.put(b"hello").unwrap();
        assert_eq!(
            d.to_string(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(store.read(&d).unwrap(), b"hello");
        assert_eq!(store.list().unwrap(), vec![d.clone()]);
        store.remove(&d).unwrap();
        assert!(matches!(store.read(&d), Err(Error::NotFound(_))));
    }

    #[test]
    fn a_wrong_digest_or_size_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let expected = Digest::of(b"the real thing");
        let mut w = store.writer().unwrap();
        w.write_all(b"something else").unwrap();
        let err = w.commit(Some((&expected, None))).unwrap_err();
        assert!(err.to_string().contains("content has digest"), "{err}");

        let mut w = store.writer().unwrap();
        w.write_all(b"the real thing").unwrap();
        let err = w.commit(Some((&expected, Some(3)))).unwrap_err();
        assert!(err.to_string().contains("expected 3"), "{err}");

        assert!(store.list().unwrap().is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join("ingest"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn leftovers_of_a_crash_are_cleared_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let mut w = store.writer().unwrap();
        w.write_all(b"half").unwrap();
        std::mem::forget(w); // as if the process died mid-write
        assert_eq!(
            std::fs::read_dir(dir.path().join("ingest"))
                .unwrap()
                .count(),
            1
        );
        ContentStore::open(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("ingest"))
                .unwrap()
                .count(),
            0
        );
    }
}
