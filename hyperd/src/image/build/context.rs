//! The build context: the tar a client posts to `/image/build` (uncompressed, gzip, bzip2 or xz,
//! told apart by magic bytes), unpacked into a directory the build owns, with `.dockerignore`
//! applied, and the lookups the executor needs: the Dockerfile's text, the files a COPY/ADD
//! names (Go `filepath.Match` globs, as Docker's classic builder matches them), and their
//! content digest for the build cache.
//!
//! The tar is unpacked by [`crate::image::unpack`] (every write resolved inside the directory
//! with `openat2(RESOLVE_IN_ROOT)`), after a first pass that refuses entries naming `..` or an
//! absolute path, so a hostile context is refused whole rather than quietly rewritten.
//! Paths `.dockerignore` excludes are then moved aside (Docker's client never sends them), so
//! neither the executor's copies nor the digests can see them; the Dockerfile is still read
//! from there when it is itself excluded, as Docker does.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
use sha2::{Digest as _, Sha256};

use super::dockerignore::{self, DockerIgnore, PatternError};
use crate::error::Kind;
use crate::image::{compression, digest::Digest, unpack};

/// The name Docker reads ignore rules from, at the context root.
pub const DOCKERIGNORE: &str = ".dockerignore";

/// How many symlinks one lookup follows before giving up (Linux's own limit).
const MAX_SYMLINKS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The body could not be read or decompressed (a cut-short upload, corrupt gzip).
    #[error("reading the build context: {0}")]
    Read(#[source] io::Error),
    /// Holds what the tar parser said, without the client bytes it may quote.
    #[error("build context: not a valid tar archive ({0})")]
    NotATar(String),
    /// An entry whose path (or hard-link target) is absolute or contains `..`.
    #[error("build context entry {}: {reason}", unpack::printable(&format!("{entry:?}")))]
    UnsafePath { entry: String, reason: String },
    /// An entry the unpacker refused (an unsupported type, a hard link to nothing).
    #[error("build context: {0}")]
    BadEntry(#[source] unpack::Error),
    #[error("build context: {0}")]
    BadIgnore(#[from] PatternError),
    /// The Dockerfile named (default `Dockerfile`) is not a file of the context.
    #[error("cannot locate specified Dockerfile: {0}")]
    NoDockerfile(String),
    /// A COPY/ADD source that matches nothing (or only excluded paths).
    #[error("COPY/ADD source {0:?}: file not found in build context or excluded by .dockerignore")]
    NotFound(String),
    /// A source, or a path inside a copied directory, that leads outside the context.
    #[error("COPY/ADD source {0:?}: forbidden path outside the build context")]
    OutsideContext(String),
    #[error("build context {path}: {op}: {source}")]
    Io {
        path: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

impl ContextError {
    pub fn kind(&self) -> Kind {
        match self {
            ContextError::BadEntry(e) => e.kind(),
            ContextError::Io { .. } => Kind::Internal,
            _ => Kind::InvalidInput,
        }
    }
}

fn io_error(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> ContextError {
    let path = path.display().to_string();
    move |source| ContextError::Io { path, op, source }
}

/// An unpacked build context.
#[derive(Debug)]
pub struct BuildContext {
    /// `<dir>/context`: the files the build may use.
    root: PathBuf,
    /// `<dir>/excluded`: what `.dockerignore` left out, same layout.
    aside: PathBuf,
    ignore: DockerIgnore,
}

/// A COPY/ADD source found in the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Absolute, inside the context root. A symlink is the link itself (copied as a link).
    pub path: PathBuf,
    /// Relative to the context root, `/`-separated; `.` for the root itself.
    pub relative: String,
    /// A directory (whose contents a COPY copies), not a symlink to one.
    pub is_dir: bool,
}

impl BuildContext {
    /// Unpacks a context tar (uncompressed, gzip, bzip2 or xz by magic bytes; PAX global headers
    /// and GNU long names accepted) into `dir` (a fresh directory the caller owns and removes;
    /// the files land in `dir/context`, excluded ones in `dir/excluded`), and reads its
    /// `.dockerignore`. An empty body is an empty context.
    ///
    /// Errors: [`ContextError::UnsafePath`] naming the first entry whose path or hard-link
    /// target is absolute or has a `..` component (nothing is unpacked then);
    /// [`ContextError::Read`], [`ContextError::NotATar`], [`ContextError::BadEntry`] for a bad
    /// body; [`ContextError::BadIgnore`] for a malformed `.dockerignore`.
    pub fn extract(reader: impl Read, dir: &Path) -> Result<BuildContext, ContextError> {
        let root = dir.join("context");
        let aside = dir.join("excluded");
        fs::create_dir(&root).map_err(io_error(&root, "mkdir"))?;
        fs::create_dir(&aside).map_err(io_error(&aside, "mkdir"))?;

        let (_, mut tar) = compression::decompress(reader).map_err(ContextError::Read)?;
        // Two passes over a spooled copy: check every entry, then unpack.
        let mut spool = tempfile::tempfile_in(dir).map_err(io_error(dir, "create a temp file"))?;
        io::copy(&mut tar, &mut spool).map_err(ContextError::Read)?;
        spool
            .seek(SeekFrom::Start(0))
            .map_err(io_error(dir, "seek"))?;
        let entries = check_entries(&mut spool)?;
        if entries > 0 {
            spool
                .seek(SeekFrom::Start(0))
                .map_err(io_error(dir, "seek"))?;
            unpack::unpack_layer(&mut spool, &root).map_err(ContextError::BadEntry)?;
        }

        let ignore_path = root.join(DOCKERIGNORE);
        let ignore = match fs::symlink_metadata(&ignore_path) {
            Ok(m) if m.is_file() => {
                let text = fs::read(&ignore_path).map_err(io_error(&ignore_path, "read"))?;
                DockerIgnore::try_parse(&String::from_utf8_lossy(&text))?
            }
            Ok(_) => {
                return Err(ContextError::UnsafePath {
                    entry: DOCKERIGNORE.into(),
                    reason: "is not a regular file".into(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => DockerIgnore::default(),
            Err(e) => return Err(io_error(&ignore_path, "stat")(e)),
        };
        let context = BuildContext {
            root,
            aside,
            ignore,
        };
        if !context.ignore.is_empty() {
            context.set_aside("")?;
        }
        Ok(context)
    }

    /// The directory the context's files are in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `.dockerignore` rules read from the context (empty when it has none).
    pub fn ignore(&self) -> &DockerIgnore {
        &self.ignore
    }

    /// Moves what `.dockerignore` excludes under `rel` (a directory of the root) aside.
    fn set_aside(&self, rel: &str) -> Result<(), ContextError> {
        let dir = self.root.join(rel);
        for entry in sorted_dir(&dir)? {
            let name = entry.0;
            let child = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let is_dir = entry.1.is_dir();
            if self.ignore.is_excluded(&child) {
                if is_dir && self.ignore.may_include_under(&child) {
                    self.set_aside(&child)?;
                    continue;
                }
                let to = self.aside.join(&child);
                if let Some(parent) = to.parent() {
                    fs::create_dir_all(parent).map_err(io_error(parent, "mkdir"))?;
                }
                let from = self.root.join(&child);
                fs::rename(&from, &to).map_err(io_error(&from, "move aside"))?;
            } else if is_dir {
                self.set_aside(&child)?;
            }
        }
        Ok(())
    }

    /// The Dockerfile's text: `name` (empty means `Dockerfile`) relative to the context; read
    /// even when `.dockerignore` excludes it, and resolved inside the context (a symlink to
    /// `/etc/passwd` reads the context's own `etc/passwd`).
    ///
    /// Errors: [`ContextError::NoDockerfile`] naming it when it is not a file of the context
    /// (or not UTF-8 text).
    pub fn dockerfile(&self, name: &str) -> Result<String, ContextError> {
        let name = if name.is_empty() { "Dockerfile" } else { name };
        let rel = dockerignore::clean(name.trim_start_matches('/'));
        if rel == "." || rel.starts_with("../") || rel == ".." {
            return Err(ContextError::NoDockerfile(name.to_string()));
        }
        for base in [&self.root, &self.aside] {
            match read_in_root(base, &rel) {
                Ok(bytes) => {
                    return String::from_utf8(bytes).map_err(|_| {
                        ContextError::NoDockerfile(format!("{name} (not UTF-8 text)"))
                    });
                }
                Err(e) if is_missing(&e) => continue,
                Err(e) => return Err(io_error(&base.join(&rel), "read")(e)),
            }
        }
        Err(ContextError::NoDockerfile(name.to_string()))
    }

    /// COPY/ADD sources, in order: each pattern (a path, or a Go `filepath.Match` glob over
    /// paths relative to the context root; a leading `/` and `./` mean the root) matched
    /// against the context minus what `.dockerignore` excludes. A directory that a glob matches
    /// is one source (its contents are not matched again). Duplicates are kept, as Docker does.
    ///
    /// Errors: [`ContextError::NotFound`] naming a pattern that matches nothing;
    /// [`ContextError::OutsideContext`] naming a source that leads outside the context (`..`,
    /// or a symlink whose target, followed from its place in the context, is absolute or
    /// climbs out), or a symlink inside a copied directory whose relative target climbs out
    /// (links inside the context, and absolute links inside a copied directory, which name
    /// paths of the image, are copied as links).
    pub fn sources(&self, patterns: &[String]) -> Result<Vec<Source>, ContextError> {
        let mut out = Vec::new();
        for pattern in patterns {
            let rel = dockerignore::clean(pattern.trim_start_matches('/'));
            if rel == ".." || rel.starts_with("../") {
                return Err(ContextError::OutsideContext(pattern.clone()));
            }
            let found = if dockerignore::has_wildcards(&rel) {
                dockerignore::path_match(&rel, "").map_err(ContextError::BadIgnore)?;
                let mut found = Vec::new();
                self.glob("", &rel, &mut found)?;
                found
            } else {
                self.source(pattern, &rel)?.into_iter().collect()
            };
            if found.is_empty() {
                return Err(ContextError::NotFound(pattern.clone()));
            }
            for source in &found {
                self.check_source(source)?;
            }
            out.extend(found);
        }
        Ok(out)
    }

    /// A plain (non-glob) source, with its parent directories resolved inside the context.
    fn source(&self, pattern: &str, rel: &str) -> Result<Option<Source>, ContextError> {
        if rel == "." {
            return Ok(Some(Source {
                path: self.root.clone(),
                relative: ".".into(),
                is_dir: true,
            }));
        }
        let (parent, base) = match rel.rsplit_once('/') {
            Some((p, b)) => (p, b),
            None => ("", rel),
        };
        let parent = match self.resolve(parent, 0) {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(None),
            Err(()) => return Err(ContextError::OutsideContext(pattern.to_string())),
        };
        let relative = join(&parent, base);
        let path = self.root.join(&relative);
        match fs::symlink_metadata(&path) {
            Ok(m) => Ok(Some(Source {
                path,
                relative,
                is_dir: m.is_dir(),
            })),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(io_error(&path, "stat")(e)),
        }
    }

    /// Resolves `rel` (clean, relative) inside the root, following symlinks as the kernel
    /// would: `Ok(Some(real relative path))`, `Ok(None)` if a component is missing (or not a
    /// directory where one is needed), `Err(())` if it leads outside.
    fn resolve(&self, rel: &str, depth: usize) -> Result<Option<String>, ()> {
        let mut done = String::new();
        let comps: Vec<&str> = rel
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        for (i, comp) in comps.iter().enumerate() {
            if *comp == ".." {
                if done.is_empty() {
                    return Err(());
                }
                done = match done.rsplit_once('/') {
                    Some((p, _)) => p.to_string(),
                    None => String::new(),
                };
                continue;
            }
            let candidate = join(&done, comp);
            let path = self.root.join(&candidate);
            let Ok(meta) = fs::symlink_metadata(&path) else {
                return Ok(None);
            };
            if meta.file_type().is_symlink() {
                if depth >= MAX_SYMLINKS {
                    return Err(());
                }
                let target = fs::read_link(&path).map_err(|_| ())?;
                if target.is_absolute() {
                    return Err(());
                }
                let rest = comps[i + 1..].join("/");
                let next = format!("{done}/{}/{rest}", target.to_string_lossy());
                if lexically_outside(&next) {
                    return Err(());
                }
                return self.resolve(&next, depth + 1);
            }
            if i + 1 < comps.len() && !meta.is_dir() {
                return Ok(None);
            }
            done = candidate;
        }
        Ok(Some(done))
    }

    /// Glob matches under `dir` (relative, "" for the root), depth first in name order.
    fn glob(&self, dir: &str, pattern: &str, found: &mut Vec<Source>) -> Result<(), ContextError> {
        for (name, file_type) in sorted_dir(&self.root.join(dir))? {
            let rel = join(dir, &name);
            let is_dir = file_type.is_dir();
            if dockerignore::path_match(pattern, &rel).unwrap_or(false) {
                found.push(Source {
                    path: self.root.join(&rel),
                    relative: rel,
                    is_dir,
                });
            } else if is_dir {
                self.glob(&rel, pattern, found)?;
            }
        }
        Ok(())
    }

    /// A symlink source must resolve inside the context; a directory's symlinks must not
    /// climb out of it.
    fn check_source(&self, source: &Source) -> Result<(), ContextError> {
        if source.relative == "." {
            return self.check_tree("");
        }
        let meta = fs::symlink_metadata(&source.path).map_err(io_error(&source.path, "stat"))?;
        if meta.file_type().is_symlink() {
            match self.resolve(&source.relative, 0) {
                Ok(_) => Ok(()),
                Err(()) => Err(ContextError::OutsideContext(source.relative.clone())),
            }
        } else if meta.is_dir() {
            self.check_tree(&source.relative)
        } else {
            Ok(())
        }
    }

    fn check_tree(&self, dir: &str) -> Result<(), ContextError> {
        for (name, file_type) in sorted_dir(&self.root.join(dir))? {
            let rel = join(dir, &name);
            if file_type.is_symlink() {
                let path = self.root.join(&rel);
                let target = fs::read_link(&path).map_err(io_error(&path, "readlink"))?;
                if !target.is_absolute()
                    && lexically_outside(&format!("{dir}/{}", target.to_string_lossy()))
                {
                    return Err(ContextError::OutsideContext(rel));
                }
            } else if file_type.is_dir() {
                self.check_tree(&rel)?;
            }
        }
        Ok(())
    }

    /// `sha256:<hex>` over the sources in order, and every path inside directory sources in
    /// name order: each path relative to the context, its type, permission bits (with setuid,
    /// setgid, sticky), owner uid and gid as the tar gave them, symlink target, device
    /// numbers and file contents. Modification times are left out, so the same files give the
    /// same digest whatever the upload's compression or dates: the COPY/ADD part of a cache key.
    pub fn digest(&self, sources: &[Source]) -> Result<String, ContextError> {
        let mut hasher = Sha256::new();
        for source in sources {
            field(&mut hasher, b"source");
            field(&mut hasher, source.relative.as_bytes());
            self.hash_path(&mut hasher, &source.path, &source.relative)?;
        }
        Ok(Digest::from_sha256(hasher.finalize().as_slice()).to_string())
    }

    fn hash_path(&self, h: &mut Sha256, path: &Path, rel: &str) -> Result<(), ContextError> {
        let meta = fs::symlink_metadata(path).map_err(io_error(path, "stat"))?;
        let t = meta.file_type();
        field(h, rel.as_bytes());
        let kind: &[u8] = if t.is_symlink() {
            b"l"
        } else if t.is_dir() {
            b"d"
        } else if t.is_file() {
            b"f"
        } else if t.is_char_device() {
            b"c"
        } else if t.is_block_device() {
            b"b"
        } else if t.is_fifo() {
            b"p"
        } else {
            b"s"
        };
        field(h, kind);
        let numbers = format!("{:o} {} {}", meta.mode() & 0o7777, meta.uid(), meta.gid());
        field(h, numbers.as_bytes());
        if t.is_symlink() {
            let target = fs::read_link(path).map_err(io_error(path, "readlink"))?;
            field(h, target.as_os_str().as_bytes());
        } else if t.is_char_device() || t.is_block_device() {
            field(h, meta.rdev().to_string().as_bytes());
        } else if t.is_file() {
            let mut file = fs::File::open(path).map_err(io_error(path, "open"))?;
            h.update(meta.len().to_le_bytes());
            let mut copied = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = file.read(&mut buf).map_err(io_error(path, "read"))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                copied += n as u64;
            }
            if copied != meta.len() {
                return Err(io_error(path, "read")(io::Error::other(
                    "the file changed while it was hashed",
                )));
            }
        } else if t.is_dir() {
            for (name, _) in sorted_dir(path)? {
                let child_rel = join(rel, &name);
                self.hash_path(h, &path.join(&name), &child_rel)?;
            }
            field(h, b"end");
        }
        Ok(())
    }
}

/// One length-prefixed field, so no two sequences of fields hash the same.
fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() || dir == "." {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Whether a relative path climbs above its start when cleaned.
fn lexically_outside(rel: &str) -> bool {
    let cleaned = dockerignore::clean(rel.trim_start_matches('/'));
    cleaned == ".." || cleaned.starts_with("../")
}

fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP)
    ) || e.kind() == io::ErrorKind::NotFound
}

/// A directory's entries (name, type not following symlinks), in byte order of the names.
fn sorted_dir(dir: &Path) -> Result<Vec<(String, fs::FileType)>, ContextError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir, "read the directory"))? {
        let entry = entry.map_err(io_error(dir, "read the directory"))?;
        let file_type = entry.file_type().map_err(io_error(dir, "stat"))?;
        out.push((entry.file_name().to_string_lossy().into_owned(), file_type));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Reads a regular file at `rel` resolved inside `base` (symlinks and `..` cannot leave it).
/// Anything else (a FIFO, a device) is "missing": it is never opened for reading, which could
/// block or touch a device.
fn read_in_root(base: &Path, rel: &str) -> io::Result<Vec<u8>> {
    let dir = rfs::open(
        base,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let path_fd = rfs::openat2(
        &dir,
        rel,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        how,
    )?;
    if rfs::FileType::from_raw_mode(rfs::fstat(&path_fd)?.st_mode) != rfs::FileType::RegularFile {
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    }
    let fd = rfs::openat2(
        &dir,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        how,
    )?;
    let mut bytes = Vec::new();
    fs::File::from(fd).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Pass one: every entry's path and hard-link target must be relative and free of `..`;
/// whiteout names are refused (the unpacker would turn them into overlay whiteouts). Returns
/// how many entries describe files.
fn check_entries(tar: &mut fs::File) -> Result<u64, ContextError> {
    let mut archive = tar::Archive::new(tar);
    let mut count = 0;
    let not_a_tar = |after: &str, e: io::Error| {
        ContextError::NotATar(if after.is_empty() {
            unpack::tar_complaint(&e)
        } else {
            format!(
                "after entry {}: {}",
                unpack::printable(&format!("{after:?}")),
                unpack::tar_complaint(&e)
            )
        })
    };
    let mut last = String::new();
    for entry in archive.entries().map_err(|e| not_a_tar("", e))? {
        let entry = entry.map_err(|e| not_a_tar(&last, e))?;
        if entry.header().entry_type().is_pax_global_extensions() {
            continue;
        }
        let path = entry.path_bytes().into_owned();
        last = String::from_utf8_lossy(&path).into_owned();
        count += 1;
        check_path(&path, &last, "its path")?;
        if entry.header().entry_type().is_hard_link()
            && let Some(target) = entry.link_name_bytes()
        {
            check_path(&target, &last, "its hard-link target")?;
        }
        let is_whiteout = Path::new(std::ffi::OsStr::from_bytes(&path))
            .file_name()
            .is_some_and(|n| n.as_bytes().starts_with(b".wh."));
        if is_whiteout {
            return Err(ContextError::UnsafePath {
                entry: last,
                reason: "names starting with .wh. are reserved for layer whiteouts".into(),
            });
        }
    }
    Ok(count)
}

fn check_path(raw: &[u8], entry: &str, what: &str) -> Result<(), ContextError> {
    let unsafe_path = |reason: String| ContextError::UnsafePath {
        entry: entry.to_string(),
        reason,
    };
    if raw.starts_with(b"/") {
        return Err(unsafe_path(format!("{what} is absolute")));
    }
    let path = Path::new(std::ffi::OsStr::from_bytes(raw));
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(unsafe_path(format!(
            "{what} contains '..' and would leave the context"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    /// What a test tar holds.
    enum E<'a> {
        File(&'a str, &'a [u8], u32),
        Dir(&'a str),
        Link(&'a str, &'a str),
        /// A name written into the header bytes as is (the tar crate refuses `..` and `/x`).
        RawName(&'a [u8]),
        HardLink(&'a str, &'a [u8]),
        PaxGlobal(&'a str),
        Fifo(&'a str),
    }

    fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(1_700_000_000);
            match e {
                E::File(name, data, mode) => {
                    h.set_size(data.len() as u64);
                    h.set_mode(*mode);
                    h.set_uid(1000);
                    h.set_gid(1001);
                    h.set_cksum();
                    b.append_data(&mut h, name, *data).unwrap();
                }
                E::Dir(name) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    h.set_cksum();
                    b.append_data(&mut h, name, io::empty()).unwrap();
                }
                E::Link(name, target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    b.append_link(&mut h, name, target).unwrap();
                }
                E::RawName(name) => {
                    h.set_size(1);
                    h.set_mode(0o644);
                    h.as_old_mut().name[..name.len()].copy_from_slice(name);
                    h.set_cksum();
                    b.append(&h, &b"x"[..]).unwrap();
                }
                E::HardLink(name, target) => {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    h.set_mode(0o644);
                    h.set_path(name).unwrap();
                    h.as_old_mut().linkname[..target.len()].copy_from_slice(target);
                    h.set_cksum();
                    b.append(&h, io::empty()).unwrap();
                }
                E::Fifo(name) => {
                    h.set_entry_type(tar::EntryType::Fifo);
                    h.set_mode(0o644);
                    h.set_size(0);
                    h.set_cksum();
                    b.append_data(&mut h, name, io::empty()).unwrap();
                }
                E::PaxGlobal(comment) => {
                    // A PAX record is "<length> key=value\n", the length counting itself.
                    let record = format!(" comment={comment}\n");
                    let mut len = record.len();
                    while (len.to_string().len() + record.len()) != len {
                        len = len.to_string().len() + record.len();
                    }
                    let data = format!("{len}{record}");
                    assert_eq!(data.len(), len);
                    let mut h = tar::Header::new_ustar();
                    h.set_entry_type(tar::EntryType::XGlobalHeader);
                    h.set_path("pax_global_header").unwrap();
                    h.set_size(data.len() as u64);
                    h.set_cksum();
                    b.append(&h, data.as_bytes()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn compress(codec: &str, data: &[u8]) -> Vec<u8> {
        match codec {
            "none" => data.to_vec(),
            "gzip" => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            "bzip2" => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            "xz" => {
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            other => panic!("{other}"),
        }
    }

    fn extract(tar: &[u8]) -> (tempfile::TempDir, Result<BuildContext, ContextError>) {
        let dir = tempfile::tempdir().unwrap();
        let ctx = BuildContext::extract(tar, dir.path());
        (dir, ctx)
    }

    fn rels(sources: &[Source]) -> Vec<&str> {
        sources.iter().map(|s| s.relative.as_str()).collect()
    }

    fn patterns(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    const LONG: &str = "a-directory-name-that-is-long/and-a-file-name-that-together-pass-the-hundred-bytes-of-ustar.txt";

    fn sample() -> Vec<u8> {
        tar_of(&[
            E::PaxGlobal("written by a test"),
            E::File("Dockerfile", b"FROM scratch\nCOPY . /\n", 0o644),
            E::File(
                ".dockerignore",
                b"# test\n*.log\nsecret/\n!keep.log\n",
                0o644,
            ),
            E::Dir("src"),
            E::File("src/main.c", b"int main(){}", 0o644),
            E::File("src/util.c", b"void f(){}", 0o600),
            E::File("src/debug.log", b"noise", 0o644),
            E::File("keep.log", b"kept", 0o644),
            E::File("secret/key", b"hunter2", 0o600),
            E::File("run.sh", b"#!/bin/sh\n", 0o4755),
            E::Link("src/link", "main.c"),
            E::File(LONG, b"long", 0o644),
        ])
    }

    #[test]
    fn every_compression_gives_the_same_files_and_digest() {
        let tar = sample();
        let mut digests = Vec::new();
        for codec in ["none", "gzip", "bzip2", "xz"] {
            let (_dir, ctx) = extract(&compress(codec, &tar));
            let ctx = ctx.unwrap_or_else(|e| panic!("{codec}: {e}"));
            assert_eq!(ctx.dockerfile("").unwrap(), "FROM scratch\nCOPY . /\n");
            assert_eq!(fs::read(ctx.root().join(LONG)).unwrap(), b"long", "{codec}");
            let all = ctx.sources(&patterns(&["."])).unwrap();
            digests.push(ctx.digest(&all).unwrap());
        }
        assert!(digests[0].starts_with("sha256:"));
        assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");
    }

    #[test]
    fn dockerignore_exclusions_and_exceptions_are_not_sources() {
        let (_dir, ctx) = extract(&sample());
        let ctx = ctx.unwrap();
        let root = ctx.root();
        assert!(
            root.join("keep.log").exists(),
            "an exception brings a file back"
        );
        // `*.log` is for the root only, as in Docker (`**/*.log` would reach into dirs).
        assert!(root.join("src/debug.log").exists());
        assert!(!root.join("secret").exists());
        assert!(root.join("src/main.c").exists());
        assert!(matches!(
            ctx.sources(&patterns(&["secret/key"])),
            Err(ContextError::NotFound(p)) if p == "secret/key"
        ));
        assert_eq!(
            rels(&ctx.sources(&patterns(&["*.log", "src/*.log"])).unwrap()),
            ["keep.log", "src/debug.log"]
        );
        assert!(matches!(
            ctx.sources(&patterns(&["secret"])),
            Err(ContextError::NotFound(p)) if p == "secret"
        ));
    }

    #[test]
    fn an_excluded_dockerfile_is_still_read_but_not_copied() {
        let tar = tar_of(&[
            E::File("Dockerfile", b"FROM x\n", 0o644),
            E::File("build/Dockerfile.dev", b"FROM y\n", 0o644),
            E::File(
                ".dockerignore",
                b"Dockerfile\nbuild\n.dockerignore\n",
                0o644,
            ),
            E::File("app", b"1", 0o644),
        ]);
        let (_dir, ctx) = extract(&tar);
        let ctx = ctx.unwrap();
        assert_eq!(ctx.dockerfile("Dockerfile").unwrap(), "FROM x\n");
        assert_eq!(
            ctx.dockerfile("./build/Dockerfile.dev").unwrap(),
            "FROM y\n"
        );
        assert_eq!(rels(&ctx.sources(&patterns(&["*"])).unwrap()), ["app"]);
        for missing in ["Dockerfile.other", "../Dockerfile", "app/x"] {
            assert!(
                matches!(ctx.dockerfile(missing), Err(ContextError::NoDockerfile(n)) if n == missing),
                "{missing}"
            );
        }
    }

    #[test]
    fn a_context_without_a_dockerfile_says_so() {
        let (_dir, ctx) = extract(&tar_of(&[E::File("a", b"1", 0o644)]));
        assert_eq!(
            ctx.unwrap().dockerfile("").unwrap_err().to_string(),
            "cannot locate specified Dockerfile: Dockerfile"
        );
        // A FIFO is no Dockerfile (and reading it must not hang).
        let (_dir, ctx) = extract(&tar_of(&[E::Fifo("Dockerfile")]));
        assert!(matches!(
            ctx.unwrap().dockerfile(""),
            Err(ContextError::NoDockerfile(_))
        ));
        // An empty body is an empty context.
        let (_dir, ctx) = extract(b"");
        assert!(matches!(
            ctx.unwrap().dockerfile(""),
            Err(ContextError::NoDockerfile(_))
        ));
    }

    #[test]
    fn unsafe_entries_are_refused_naming_them_and_nothing_is_written() {
        let cases: &[(E<'_>, &str)] = &[
            (
                E::RawName(b"../evil"),
                "build context entry \"../evil\": its path contains '..' and would leave the context",
            ),
            (
                E::RawName(b"a/../../evil"),
                "build context entry \"a/../../evil\": its path contains '..' and would leave the context",
            ),
            (
                E::RawName(b"/etc/evil"),
                "build context entry \"/etc/evil\": its path is absolute",
            ),
            (
                E::HardLink("h", b"../../etc/passwd"),
                "build context entry \"h\": its hard-link target contains '..' and would leave the context",
            ),
            (
                E::HardLink("h", b"/etc/passwd"),
                "build context entry \"h\": its hard-link target is absolute",
            ),
            (
                E::RawName(b"d/.wh.x"),
                "build context entry \"d/.wh.x\": names starting with .wh. are reserved for layer whiteouts",
            ),
        ];
        for (entry, want) in cases {
            let tar = tar_of(&[
                E::File("Dockerfile", b"FROM x", 0o644),
                E::File("zz", b"1", 0o644),
            ]);
            // The bad entry goes last, so a refusal after unpacking would leave files.
            let mut bad = tar_of(&[E::File("Dockerfile", b"FROM x", 0o644)]);
            bad.truncate(bad.len() - 1024);
            bad.extend(tar_of(std::slice::from_ref(entry)));
            let (dir, ctx) = extract(&bad);
            let err = ctx.unwrap_err();
            assert_eq!(err.to_string(), *want);
            assert_eq!(err.kind(), Kind::InvalidInput);
            assert!(
                fs::read_dir(dir.path().join("context"))
                    .unwrap()
                    .next()
                    .is_none(),
                "{want}: something was unpacked"
            );
            assert!(extract(&tar).1.is_ok());
        }
    }

    /// A body whose first header's checksum field is not text: the message quotes none of it.
    #[test]
    fn binary_garbage_is_named_in_plain_words() {
        let mut block = vec![b'x'; 1024];
        block[148..156].copy_from_slice(b"7;\xd6\xb20S\xff\xfe");
        let (_dir, ctx) = extract(&block);
        let e = ctx.unwrap_err();
        assert_eq!(
            e.to_string(),
            "build context: not a valid tar archive (numeric field did not have utf-8 text)"
        );
        assert_eq!(e.kind(), Kind::InvalidInput);
    }

    #[test]
    fn garbage_is_not_a_tar() {
        let (_dir, ctx) = extract(b"this is not a tar archive, just some text that is long enough");
        assert!(matches!(ctx, Err(ContextError::NotATar(_))), "{ctx:?}");
        let mut cut = compress("gzip", &sample());
        cut.truncate(cut.len() / 2);
        let (_dir, ctx) = extract(&cut);
        assert!(matches!(ctx, Err(ContextError::Read(_))), "{ctx:?}");
    }

    #[test]
    fn a_malformed_dockerignore_is_refused() {
        let (_dir, ctx) = extract(&tar_of(&[E::File(".dockerignore", b"ok\n[oops\n", 0o644)]));
        assert_eq!(
            ctx.unwrap_err().to_string(),
            "build context: .dockerignore line 2: syntax error in pattern \"[oops\""
        );
    }

    #[test]
    fn sources_follow_docker_globs() {
        let tar = tar_of(&[
            E::File("a.txt", b"a", 0o644),
            E::File("b.txt", b"b", 0o644),
            E::File("c.md", b"c", 0o644),
            E::Dir("dir"),
            E::File("dir/d.txt", b"d", 0o644),
            E::Dir("dir/sub"),
            E::File("dir/sub/e.txt", b"e", 0o644),
            E::Dir("dirx"),
        ]);
        let (_dir, ctx) = extract(&tar);
        let ctx = ctx.unwrap();
        let cases: &[(&[&str], &[&str])] = &[
            (&["*.txt"], &["a.txt", "b.txt"]),
            (&["/a.txt", "./c.md"], &["a.txt", "c.md"]),
            (&["?.txt"], &["a.txt", "b.txt"]),
            (&["[ac].*"], &["a.txt", "c.md"]),
            (&["dir*"], &["dir", "dirx"]),
            (&["dir/*.txt"], &["dir/d.txt"]),
            (&["*/*/e.txt"], &["dir/sub/e.txt"]),
            (&["dir/sub/../d.txt"], &["dir/d.txt"]),
            (&["."], &["."]),
        ];
        for (pats, want) in cases {
            let got = ctx.sources(&patterns(pats)).unwrap();
            assert_eq!(rels(&got), *want, "{pats:?}");
            for s in &got {
                assert_eq!(
                    s.path,
                    if s.relative == "." {
                        ctx.root().to_path_buf()
                    } else {
                        ctx.root().join(&s.relative)
                    }
                );
                assert_eq!(s.is_dir, s.path.is_dir());
            }
        }
        for missing in ["nope", "*.rs", "a.txt/x"] {
            assert!(
                matches!(ctx.sources(&patterns(&[missing])), Err(ContextError::NotFound(p)) if p == missing),
                "{missing}"
            );
        }
        assert!(matches!(
            ctx.sources(&patterns(&["../x"])),
            Err(ContextError::OutsideContext(p)) if p == "../x"
        ));
        assert!(matches!(
            ctx.sources(&patterns(&["[x"])),
            Err(ContextError::BadIgnore(_))
        ));
    }

    #[test]
    fn symlinks_out_of_the_context_are_refused_when_copied() {
        let tar = tar_of(&[
            E::File("file", b"1", 0o644),
            E::Link("abs", "/etc/passwd"),
            E::Link("up", "../../etc/passwd"),
            E::Link("inside", "file"),
            E::Link("dangling", "missing"),
            E::Dir("d"),
            E::Link("d/ok", "../file"),
            E::Link("d/image-abs", "/bin/busybox"),
            E::Dir("e"),
            E::Link("e/escape", "../../outside"),
            E::Link("etc", "/etc"),
            E::Link("via", "d/../up"),
        ]);
        let (_dir, ctx) = extract(&tar);
        let ctx = ctx.unwrap();
        for ok in ["file", "inside", "dangling", "d"] {
            let s = ctx
                .sources(&patterns(&[ok]))
                .unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(rels(&s), [ok]);
        }
        // A link source is the link itself.
        assert!(!ctx.sources(&patterns(&["inside"])).unwrap()[0].is_dir);
        for (pattern, named) in [
            ("abs", "abs"),
            ("up", "up"),
            ("via", "via"),
            ("e", "e/escape"),
            ("etc/passwd", "etc/passwd"),
            ("*", "abs"),
            (".", "e/escape"),
        ] {
            match ctx.sources(&patterns(&[pattern])) {
                Err(ContextError::OutsideContext(p)) => assert_eq!(p, named, "{pattern}"),
                other => panic!("{pattern}: {other:?}"),
            }
        }
    }

    #[test]
    fn digests_cover_paths_modes_owners_links_and_contents() {
        let base = [
            E::File("f", b"content", 0o644),
            E::Link("l", "f"),
            E::Dir("d"),
            E::File("d/g", b"more", 0o755),
        ];
        let digest = |entries: &[E<'_>], pats: &[&str]| {
            let (_dir, ctx) = extract(&tar_of(entries));
            let ctx = ctx.unwrap();
            let sources = ctx.sources(&patterns(pats)).unwrap();
            ctx.digest(&sources).unwrap()
        };
        let all = ["f", "l", "d"];
        let reference = digest(&base, &all);
        assert_eq!(digest(&base, &all), reference, "stable");
        let variants: Vec<Vec<E<'_>>> = vec![
            vec![
                E::File("f", b"contenT", 0o644),
                E::Link("l", "f"),
                E::Dir("d"),
                E::File("d/g", b"more", 0o755),
            ],
            vec![
                E::File("f", b"content", 0o600),
                E::Link("l", "f"),
                E::Dir("d"),
                E::File("d/g", b"more", 0o755),
            ],
            vec![
                E::File("f", b"content", 0o644),
                E::Link("l", "d"),
                E::Dir("d"),
                E::File("d/g", b"more", 0o755),
            ],
            vec![
                E::File("f", b"content", 0o644),
                E::Link("l", "f"),
                E::Dir("d"),
                E::File("d/h", b"more", 0o755),
            ],
            vec![
                E::File("f", b"content", 0o644),
                E::Link("l", "f"),
                E::Dir("d"),
                E::File("d/g", b"more", 0o755),
                E::File("d/new", b"", 0o644),
            ],
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(digest(v, &all), reference, "variant {i}");
        }
        assert_ne!(digest(&base, &["f", "d"]), reference);
        assert_ne!(digest(&base, &["d", "f", "l"]), reference);
    }
}

/// Any archive extracts or is refused with a typed error, writes nothing outside its
/// directory, and whatever extracts can be searched and hashed without panics or I/O errors.
/// `PROPTEST_CASES=10000` for the long run.
#[cfg(test)]
mod proptests {
    use proptest::prelude::*;
    use tar::EntryType;

    use super::*;
    use hyper_tests::oci::{RawEntry, raw_tar};

    fn path() -> impl Strategy<Value = String> {
        let part = prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("..".to_string()),
            Just(".".to_string()),
            Just(String::new()),
            Just("Dockerfile".to_string()),
            Just(DOCKERIGNORE.to_string()),
            Just(".wh.a".to_string()),
            Just("outside".to_string()),
            "[a-z.*?\\[!]{1,5}",
        ];
        (
            prop_oneof![Just(""), Just("/"), Just("./")],
            prop::collection::vec(part, 1..4),
        )
            .prop_map(|(lead, parts)| format!("{lead}{}", parts.join("/")))
    }

    fn member() -> impl Strategy<Value = RawEntry> {
        let kind = prop_oneof![
            4 => Just(EntryType::Regular),
            3 => Just(EntryType::Directory),
            3 => Just(EntryType::Symlink),
            1 => Just(EntryType::Link),
            1 => Just(EntryType::Fifo),
            1 => any::<u8>().prop_map(EntryType::new),
        ];
        let link = prop_oneof![
            path(),
            Just("/etc".to_string()),
            Just("../../outside".to_string())
        ];
        let data = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..16),
            "[a-z*!/#\\[\n]{0,20}".prop_map(String::into_bytes),
        ];
        (kind, path(), link, data, 0u32..0o10000).prop_map(|(kind, path, link, data, mode)| {
            RawEntry {
                kind,
                path,
                link,
                data,
                mode,
            }
        })
    }

    fn listing(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if fs::symlink_metadata(&p).unwrap().is_dir() {
                    todo.push(p.clone());
                }
                out.push(p);
            }
        }
        out.sort();
        out
    }

    fn check(tar: &[u8]) -> Result<(), TestCaseError> {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("ctx");
        let outside = parent.path().join("outside");
        fs::create_dir_all(&dir).unwrap();
        fs::create_dir_all(outside.join("a")).unwrap();
        fs::write(outside.join("a/file"), b"keep").unwrap();
        let before = listing(&outside);
        match BuildContext::extract(tar, &dir) {
            Ok(ctx) => {
                for p in [".", "*", "a", "a/*", "Dockerfile", "?/b"] {
                    match ctx.sources(&[p.to_string()]) {
                        Ok(sources) => {
                            for s in &sources {
                                prop_assert!(s.path.starts_with(ctx.root()));
                            }
                            if let Err(e) = ctx.digest(&sources) {
                                prop_assert!(false, "digest of {p}: {e}");
                            }
                        }
                        Err(ContextError::NotFound(_) | ContextError::OutsideContext(_)) => {}
                        Err(e) => prop_assert!(false, "sources({p}): {e}"),
                    }
                }
                match ctx.dockerfile("Dockerfile") {
                    Ok(_) | Err(ContextError::NoDockerfile(_)) => {}
                    Err(e) => prop_assert!(false, "dockerfile: {e}"),
                }
            }
            Err(e) => prop_assert_eq!(e.kind(), Kind::InvalidInput, "{}", e),
        }
        prop_assert_eq!(listing(&outside), before);
        let mut names: Vec<_> = fs::read_dir(parent.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        prop_assert_eq!(names, ["ctx", "outside"]);
        Ok(())
    }

    proptest! {
        #[test]
        fn any_archive(members in prop::collection::vec(member(), 0..8)) {
            check(&raw_tar(&members))?;
        }

        #[test]
        fn any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            check(&bytes)?;
        }
    }
}
