//! Layer unpacking: one decompressed layer tar written into an empty directory, in the form
//! overlayfs reads as one lower dir (OCI image spec, "Image Layer Filesystem Changeset", with
//! whiteouts turned into overlayfs's own form as Docker's and containerd's overlay drivers do).
//!
//! Every write is confined to that directory: parent directories are resolved with
//! `openat2(RESOLVE_IN_ROOT)` on a descriptor of it, so `..` and symlinks (absolute or not) can
//! never lead out, and the last component is then created with `*at` calls relative to the
//! resolved parent that never follow a symlink (`O_NOFOLLOW|O_EXCL`, `AT_SYMLINK_NOFOLLOW`,
//! `linkat` without `AT_SYMLINK_FOLLOW`). The `tar` crate only parses; its `unpack` is not used.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write as _};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec};
use rustix::fs::{Gid, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use crate::error::Kind;

/// The xattr overlayfs reads to hide a lower dir's contents (`trusted.overlay.opaque=y`).
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// OCI whiteout prefix: `.wh.<name>` deletes `<name>` of the layers below.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// `.wh..wh.<x>` names are whiteout metadata (aufs's `.wh..wh.plnk`, ...), not whiteouts.
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
/// OCI opaque marker: its directory hides everything of the layers below.
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";
/// Prefixes of the xattrs overlayfs keeps its own metadata in (`user.` with `-o userxattr`).
const OVERLAY_XATTR_PREFIXES: [&[u8]; 2] = [b"trusted.overlay.", b"user.overlay."];
/// PAX record prefix of an xattr, as GNU tar, bsdtar and Docker write them.
const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The archive's fault (a 4xx for an import): not a tar, an entry that would escape the
    /// layer dir, a forged overlay xattr, a hard link to nothing. `entry` is the member's path
    /// as the archive spells it, or empty for the archive as a whole.
    #[error("{}", invalid_message(.entry, .reason))]
    Invalid { entry: String, reason: String },
    /// Ours: the filesystem under the layer dir failed (`op` is what we were doing).
    #[error("layer entry {entry:?}: {op}: {source}")]
    Io {
        entry: String,
        op: String,
        #[source]
        source: io::Error,
    },
}

fn invalid_message(entry: &str, reason: &str) -> String {
    // Both come from the client's bytes (a member name, a tar parser's complaint).
    if entry.is_empty() {
        format!("invalid layer: {}", printable(reason))
    } else {
        format!(
            "invalid layer entry {}: {}",
            printable(&format!("{entry:?}")),
            printable(reason)
        )
    }
}

/// How many characters of client text a message shows.
const MAX_SHOWN: usize = 200;

/// `text` built from a client's bytes (a tar member's name, a parser's complaint quoting
/// them) made safe to show in an error: ASCII controls, U+FFFD (from invalid UTF-8) and every
/// other character that is neither ASCII nor a letter or digit become `\u{…}` escapes, and it
/// stops after 200 characters (then ends in `…`).
pub(crate) fn printable(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == MAX_SHOWN {
            out.push('…');
            break;
        }
        if c == ' ' || c.is_ascii_graphic() || (!c.is_ascii() && c.is_alphanumeric()) {
            out.push(c);
        } else {
            out.extend(c.escape_unicode());
        }
    }
    out
}

/// A tar parser's complaint without the client bytes it may quote: the `tar` crate writes
/// `numeric field did not have utf-8 text: <the field's bytes>`; when what follows the first
/// `": "` is not plain text, only what comes before it is kept.
pub(crate) fn tar_complaint(e: &io::Error) -> String {
    let text = e.to_string();
    match text.split_once(": ") {
        Some((what, quoted)) if printable(quoted) != quoted => what.to_string(),
        _ => printable(&text),
    }
}

impl Error {
    pub fn kind(&self) -> Kind {
        match self {
            Error::Invalid { .. } => Kind::InvalidInput,
            Error::Io { .. } => Kind::Internal,
        }
    }
}

/// What [`unpack_layer`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Archive members read: files, dirs, links, devices, whiteouts and opaque markers (PAX
    /// and GNU extension headers are part of the member they describe, and not counted).
    pub entries: u64,
    /// Bytes of regular file content written.
    pub size: u64,
}

/// Unpacks one layer tar (already decompressed, see `compression::decompress`) into `dest`,
/// an existing empty directory that becomes one overlayfs lower dir.
///
/// Follows GNU tar's extraction: regular files, dirs, symlinks, hard links (a link to a symlink
/// links the symlink itself), char and block devices and fifos; owner uid/gid, the full mode
/// (setuid, setgid, sticky), PAX `SCHILY.xattr.*` xattrs and mtimes (directories' last, as
/// creating children changes them); GNU and PAX long names. A leading `/` is dropped. A later
/// entry replaces what an earlier one put at its path (a dir over a dir keeps the dir and takes
/// the new metadata; anything else is removed first, a dir recursively).
///
/// OCI whiteouts become overlayfs's form: `.wh.<name>` a 0:0 char device `<name>` (after removing
/// what this layer put there), `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` on its dir
/// (which hides the lower layers only; this layer's files in it stay).
///
/// Errors: [`Error::Invalid`] for an archive that is empty or not a tar, an entry whose path or
/// hard-link target contains `..`, a hard link to a missing path or a directory, a path whose
/// parent is not a directory, an unsupported entry type, or an xattr in overlayfs's namespace
/// (`trusted.overlay.*`, `user.overlay.*`), which would let a layer forge overlay metadata.
/// [`Error::Io`] when the filesystem under `dest` fails. On error `dest` holds a partial layer
/// for the caller to remove; nothing is ever written outside it.
pub fn unpack_layer(tar: impl Read, dest: &Path) -> Result<LayerStats, Error> {
    let root = rfs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_error("", format!("open the layer dir {}", dest.display()), e))?;
    let mut unpacker = Unpacker {
        root,
        dir_times: BTreeMap::new(),
        stats: LayerStats::default(),
    };
    let mut archive = tar::Archive::new(tar);
    let not_a_tar = |after: &str, e: io::Error| Error::Invalid {
        entry: String::new(),
        reason: if after.is_empty() {
            format!("not a valid tar archive: {}", tar_complaint(&e))
        } else {
            format!(
                "not a valid tar archive after entry {after:?}: {}",
                tar_complaint(&e)
            )
        },
    };
    let mut last = String::new();
    for entry in archive.entries().map_err(|e| not_a_tar("", e))? {
        let mut entry = entry.map_err(|e| not_a_tar(&last, e))?;
        last = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        unpacker.entry(&mut entry, &last)?;
    }
    if unpacker.stats.entries == 0 {
        return Err(Error::Invalid {
            entry: String::new(),
            reason: "the tar archive is empty".into(),
        });
    }
    unpacker.set_dir_times()?;
    Ok(unpacker.stats)
}

fn io_error(entry: &str, op: impl Into<String>, e: impl Into<io::Error>) -> Error {
    Error::Io {
        entry: entry.to_string(),
        op: op.into(),
        source: e.into(),
    }
}

fn invalid(entry: &str, reason: impl Into<String>) -> Error {
    Error::Invalid {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

/// An entry's path inside the layer: components with a leading `/` and `.` dropped (GNU tar
/// drops the `/` too). `..` is refused: it could only mean "outside", and no builder writes it.
fn components(raw: &[u8]) -> Result<Vec<OsString>, String> {
    if raw.contains(&0) {
        return Err("its path contains a NUL byte".into());
    }
    let mut out = Vec::new();
    for c in Path::new(OsStr::from_bytes(raw)).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => out.push(name.to_owned()),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!(
                    "path {:?} contains '..' and would leave the layer",
                    String::from_utf8_lossy(raw)
                ));
            }
        }
    }
    Ok(out)
}

fn join(comps: &[OsString]) -> PathBuf {
    if comps.is_empty() {
        PathBuf::from(".")
    } else {
        comps.iter().collect()
    }
}

/// The metadata a member carries, read and checked before anything is written.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Timespec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    fn read<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Self, Error> {
        let h = entry.header();
        let field = |what: &str, e: io::Error| {
            invalid(name, format!("bad {what} field: {}", tar_complaint(&e)))
        };
        // A field left blank (all NUL or spaces) reads as 0, as Go's archive/tar (Docker's)
        // and GNU tar read it; some writers leave uid, gid and mtime blank.
        let old = h.as_old();
        let blank = |raw: &[u8]| raw.iter().all(|b| *b == 0 || *b == b' ');
        let numeric = |what: &str, raw: &[u8], v: io::Result<u64>| {
            if blank(raw) {
                Ok(0)
            } else {
                v.map_err(|e| field(what, e))
            }
        };
        let mode = numeric("mode", &old.mode, h.mode().map(u64::from))? as u32 & 0o7777;
        // The tar crate has already applied PAX `uid`/`gid` records to the header.
        let id = |what: &str, v: u64| {
            u32::try_from(v).map_err(|_| invalid(name, format!("{what} {v} is out of range")))
        };
        let uid = id("uid", numeric("uid", &old.uid, h.uid())?)?;
        let gid = id("gid", numeric("gid", &old.gid, h.gid())?)?;
        let mut mtime = Timespec {
            tv_sec: i64::try_from(numeric("mtime", &old.mtime, h.mtime())?).unwrap_or(i64::MAX),
            tv_nsec: 0,
        };
        let mut xattrs = Vec::new();
        let pax = entry
            .pax_extensions()
            .map_err(|e| invalid(name, format!("bad PAX header: {}", tar_complaint(&e))))?;
        for ext in pax.into_iter().flatten() {
            let ext =
                ext.map_err(|e| invalid(name, format!("bad PAX record: {}", tar_complaint(&e))))?;
            if ext.key_bytes() == b"mtime" {
                mtime = pax_time(ext.value_bytes())
                    .ok_or_else(|| invalid(name, "bad PAX mtime record"))?;
            } else if let Some(xattr) = ext.key_bytes().strip_prefix(PAX_XATTR_PREFIX) {
                if xattr.is_empty() || xattr.contains(&0) {
                    return Err(invalid(name, "bad PAX xattr name"));
                }
                if OVERLAY_XATTR_PREFIXES.iter().any(|p| xattr.starts_with(p)) {
                    return Err(invalid(
                        name,
                        format!(
                            "it carries the xattr {:?}, which would forge overlayfs metadata",
                            String::from_utf8_lossy(xattr)
                        ),
                    ));
                }
                xattrs.push((xattr.to_vec(), ext.value_bytes().to_vec()));
            }
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        })
    }

    fn times(&self) -> Timestamps {
        Timestamps {
            last_access: self.mtime,
            last_modification: self.mtime,
        }
    }
}

/// A PAX time, `<seconds>[.<fraction>]` (POSIX pax format, "mtime").
fn pax_time(v: &[u8]) -> Option<Timespec> {
    let v = std::str::from_utf8(v).ok()?;
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    let tv_sec: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let mut tv_nsec: i64 = digits.parse().ok()?;
    // "-1.5" is 1.5 s before the epoch: a negative second and a positive fraction.
    if secs.starts_with('-') && tv_nsec > 0 {
        return Some(Timespec {
            tv_sec: tv_sec - 1,
            tv_nsec: 1_000_000_000 - tv_nsec,
        });
    }
    tv_nsec = tv_nsec.min(999_999_999);
    Some(Timespec { tv_sec, tv_nsec })
}

struct Unpacker {
    root: OwnedFd,
    /// Directory mtimes, applied after all entries, by path inside the layer.
    dir_times: BTreeMap<PathBuf, Timestamps>,
    stats: LayerStats,
}

/// Opens `path` under `root`, resolved as if `root` were `/` (`RESOLVE_IN_ROOT`).
fn resolve(root: BorrowedFd<'_>, path: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
    // The kernel answers EAGAIN when a rename raced the lookup; it asks us to retry.
    let mut tries = 0;
    loop {
        match rfs::openat2(
            root,
            path,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::AGAIN) if tries < 64 => tries += 1,
            r => return r,
        }
    }
}

/// The file type of `name` in `dir`, without following a symlink; `None` if nothing is there.
fn type_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Option<FileType>, Errno> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes the directory `name` in `parent` and everything under it, never following a symlink.
fn remove_tree(parent: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    let dir = rfs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut children = Vec::new();
    for child in rfs::Dir::read_from(&dir)? {
        let child = child?;
        let child_name = OsStr::from_bytes(child.file_name().to_bytes());
        if child_name == "." || child_name == ".." {
            continue;
        }
        children.push((child_name.to_owned(), child.file_type()));
    }
    for (child, file_type) in children {
        let file_type = match file_type {
            FileType::Unknown => type_at(dir.as_fd(), &child)?.unwrap_or(FileType::Unknown),
            t => t,
        };
        if file_type == FileType::Directory {
            remove_tree(dir.as_fd(), &child)?;
        } else {
            rfs::unlinkat(&dir, &child, AtFlags::empty())?;
        }
    }
    rfs::unlinkat(parent, name, AtFlags::REMOVEDIR)
}

/// Sets `xattrs` on the object `name` in `dir` without following it, through the dir's
/// descriptor in /proc (there is no `lsetxattrat`).
fn set_xattrs_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    xattrs: &[(Vec<u8>, Vec<u8>)],
) -> Result<(), (String, io::Error)> {
    if xattrs.is_empty() {
        return Ok(());
    }
    let mut path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    path.push(name);
    for (key, value) in xattrs {
        let r = rfs::lsetxattr(&path, OsStr::from_bytes(key), value, XattrFlags::empty());
        check_xattr(key, r)?;
    }
    Ok(())
}

fn set_xattrs_fd(
    fd: BorrowedFd<'_>,
    xattrs: &[(Vec<u8>, Vec<u8>)],
) -> Result<(), (String, io::Error)> {
    for (key, value) in xattrs {
        let r = rfs::fsetxattr(fd, OsStr::from_bytes(key), value, XattrFlags::empty());
        check_xattr(key, r)?;
    }
    Ok(())
}

/// An xattr the filesystem cannot hold (no support, or `user.*` on a symlink or device) is
/// skipped with a warning, as Docker does; any other failure is an error.
fn check_xattr(key: &[u8], r: Result<(), Errno>) -> Result<(), (String, io::Error)> {
    let key = String::from_utf8_lossy(key);
    match r {
        Ok(()) => Ok(()),
        Err(e) if e == Errno::NOTSUP || e == Errno::PERM => {
            tracing::warn!(xattr = %key, "layer xattr not supported here, skipped: {e}");
            Ok(())
        }
        Err(e) => Err((format!("set xattr {key}"), e.into())),
    }
}

impl Unpacker {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, name: &str) -> Result<(), Error> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            // Global PAX records (a comment, a charset) describe no file.
            return Ok(());
        }
        let comps = components(&entry.path_bytes()).map_err(|r| invalid(name, r))?;
        let meta = Meta::read(entry, name)?;
        self.stats.entries += 1;
        let Some((base, parents)) = comps.split_last() else {
            // `./` or `/`: the layer's root itself.
            if !kind.is_dir() {
                return Err(invalid(name, "names the layer root but is not a directory"));
            }
            let root = self
                .root
                .try_clone()
                .map_err(|e| io_error(name, "dup", e))?;
            return self.dir_meta(root, &comps, &meta, name);
        };
        let base_bytes = base.as_bytes();
        if base_bytes == WHITEOUT_OPAQUE {
            return self.opaque(parents, name);
        }
        if base_bytes.starts_with(WHITEOUT_META_PREFIX) {
            tracing::debug!(entry = name, "whiteout metadata entry skipped");
            return Ok(());
        }
        let dir = self.parent(parents, name)?;
        if let Some(hidden) = base_bytes.strip_prefix(WHITEOUT_PREFIX) {
            return self.whiteout(dir.as_fd(), parents, OsStr::from_bytes(hidden), &meta, name);
        }
        let path = join(&comps);
        use tar::EntryType as T;
        match kind {
            T::Regular | T::Continuous | T::GNUSparse => {
                self.clear(dir.as_fd(), &path, base, false, name)?;
                self.file(entry, dir.as_fd(), base, &meta, name)
            }
            T::Directory => {
                let keep = self.clear(dir.as_fd(), &path, base, true, name)?;
                if !keep {
                    rfs::mkdirat(&dir, base, Mode::from_raw_mode(0o700))
                        .map_err(|e| io_error(name, "mkdir", e))?;
                }
                let fd = rfs::openat(
                    &dir,
                    base,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| io_error(name, "open the directory", e))?;
                self.dir_meta(fd, &comps, &meta, name)
            }
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| invalid(name, "symlink without a target"))?;
                if target.contains(&0) {
                    return Err(invalid(name, "its symlink target contains a NUL byte"));
                }
                self.clear(dir.as_fd(), &path, base, false, name)?;
                rfs::symlinkat(OsStr::from_bytes(&target), &dir, base)
                    .map_err(|e| io_error(name, "symlink", e))?;
                self.meta_at(dir.as_fd(), base, &meta, false, name)
            }
            T::Link => self.hard_link(entry, dir.as_fd(), &comps, name),
            T::Char | T::Block | T::Fifo => {
                let (file_type, dev) = match kind {
                    T::Fifo => (FileType::Fifo, 0),
                    _ => {
                        let h = entry.header();
                        let num = |v: io::Result<Option<u32>>| {
                            v.map_err(|e| invalid(name, format!("bad device number: {e}")))
                                .map(Option::unwrap_or_default)
                        };
                        let major = num(h.device_major())?;
                        let minor = num(h.device_minor())?;
                        let t = if kind == T::Char {
                            FileType::CharacterDevice
                        } else {
                            FileType::BlockDevice
                        };
                        (t, rfs::makedev(major, minor))
                    }
                };
                self.clear(dir.as_fd(), &path, base, false, name)?;
                rfs::mknodat(&dir, base, file_type, Mode::from_raw_mode(0o600), dev)
                    .map_err(|e| io_error(name, "mknod", e))?;
                self.meta_at(dir.as_fd(), base, &meta, true, name)
            }
            other => Err(invalid(
                name,
                format!("unsupported tar entry type {other:?}"),
            )),
        }
    }

    /// The directory `comps` (the parent of an entry), creating missing ones as GNU tar does
    /// (mode 0755, owned by root). Resolved in the layer's root, so it is always inside.
    fn parent(&self, comps: &[OsString], name: &str) -> Result<OwnedFd, Error> {
        let flags = OFlags::PATH | OFlags::DIRECTORY;
        let parent_error = |e: Errno| match e {
            Errno::NOTDIR | Errno::LOOP | Errno::EXIST | Errno::NAMETOOLONG => invalid(
                name,
                format!(
                    "its parent {:?} is not a directory ({e})",
                    join(comps).display()
                ),
            ),
            e => io_error(name, "open its parent directory", e),
        };
        match resolve(self.root.as_fd(), &join(comps), flags) {
            Err(Errno::NOENT) => {}
            r => return r.map_err(parent_error),
        }
        let mut cur = self
            .root
            .try_clone()
            .map_err(|e| io_error(name, "dup", e))?;
        for i in 0..comps.len() {
            let prefix = join(&comps[..=i]);
            cur = match resolve(self.root.as_fd(), &prefix, flags) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    rfs::mkdirat(&cur, &comps[i], Mode::from_raw_mode(0o755))
                        .map_err(parent_error)?;
                    let fd = rfs::openat(
                        &cur,
                        &comps[i],
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(parent_error)?;
                    // mkdir's mode went through the umask.
                    rfs::fchmod(&fd, Mode::from_raw_mode(0o755))
                        .map_err(|e| io_error(name, "chmod a parent directory", e))?;
                    fd
                }
                Err(e) => return Err(parent_error(e)),
            };
        }
        Ok(cur)
    }

    /// Makes room for a new `base` in `dir`. Returns true, touching nothing, if a directory is
    /// there and `keep_dir`; otherwise removes whatever is there (a dir with its contents).
    fn clear(
        &mut self,
        dir: BorrowedFd<'_>,
        path: &Path,
        base: &OsStr,
        keep_dir: bool,
        name: &str,
    ) -> Result<bool, Error> {
        let existing = type_at(dir, base).map_err(|e| io_error(name, "stat", e))?;
        match existing {
            None => Ok(false),
            Some(FileType::Directory) if keep_dir => Ok(true),
            Some(FileType::Directory) => {
                remove_tree(dir, base)
                    .map_err(|e| io_error(name, "remove the directory it replaces", e))?;
                self.dir_times.retain(|p, _| !p.starts_with(path));
                Ok(false)
            }
            Some(_) => {
                rfs::unlinkat(dir, base, AtFlags::empty())
                    .map_err(|e| io_error(name, "remove the file it replaces", e))?;
                Ok(false)
            }
        }
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        dir: BorrowedFd<'_>,
        base: &OsStr,
        meta: &Meta,
        name: &str,
    ) -> Result<(), Error> {
        let fd = rfs::openat(
            dir,
            base,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io_error(name, "create", e))?;
        let mut file = std::fs::File::from(fd);
        let mut buf = vec![0u8; 128 * 1024];
        let mut written = 0u64;
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(invalid(name, format!("its content cannot be read: {e}"))),
            };
            file.write_all(&buf[..n])
                .map_err(|e| io_error(name, "write", e))?;
            self.stats.size += n as u64;
            written += n as u64;
        }
        // The tar crate ends a member's content quietly at the end of the input.
        let expected = entry.size();
        if written != expected && entry.header().entry_type() != tar::EntryType::GNUSparse {
            return Err(invalid(
                name,
                format!("its content is truncated ({written} of {expected} bytes)"),
            ));
        }
        // chown clears setuid/setgid and file capabilities: chmod and xattrs come after it.
        rfs::fchown(
            &file,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .map_err(|e| io_error(name, "chown", e))?;
        rfs::fchmod(&file, Mode::from_raw_mode(meta.mode))
            .map_err(|e| io_error(name, "chmod", e))?;
        set_xattrs_fd(file.as_fd(), &meta.xattrs).map_err(|(op, e)| io_error(name, op, e))?;
        rfs::futimens(&file, &meta.times()).map_err(|e| io_error(name, "set mtime", e))
    }

    /// Owner, mode and xattrs of a directory now; its mtime once all entries are in.
    fn dir_meta(
        &mut self,
        fd: OwnedFd,
        comps: &[OsString],
        meta: &Meta,
        name: &str,
    ) -> Result<(), Error> {
        rfs::fchown(
            &fd,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .map_err(|e| io_error(name, "chown", e))?;
        rfs::fchmod(&fd, Mode::from_raw_mode(meta.mode)).map_err(|e| io_error(name, "chmod", e))?;
        set_xattrs_fd(fd.as_fd(), &meta.xattrs).map_err(|(op, e)| io_error(name, op, e))?;
        self.dir_times.insert(comps.iter().collect(), meta.times());
        Ok(())
    }

    /// Owner, mode (`chmod`: not for symlinks, whose mode Linux ignores), xattrs and mtime of
    /// a symlink, device or fifo `base` in `dir`, never following it.
    fn meta_at(
        &mut self,
        dir: BorrowedFd<'_>,
        base: &OsStr,
        meta: &Meta,
        chmod: bool,
        name: &str,
    ) -> Result<(), Error> {
        rfs::chownat(
            dir,
            base,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io_error(name, "chown", e))?;
        if chmod {
            // fchmodat cannot refuse to follow on older kernels: chmod through an O_PATH
            // descriptor of the node itself, opened without following.
            let node = rfs::openat(
                dir,
                base,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_error(name, "open", e))?;
            let st = rfs::fstat(&node).map_err(|e| io_error(name, "stat", e))?;
            if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
                let path = format!("/proc/self/fd/{}", node.as_raw_fd());
                rfs::chmodat(
                    rfs::CWD,
                    path.as_str(),
                    Mode::from_raw_mode(meta.mode),
                    AtFlags::empty(),
                )
                .map_err(|e| io_error(name, "chmod", e))?;
            }
        }
        set_xattrs_at(dir, base, &meta.xattrs).map_err(|(op, e)| io_error(name, op, e))?;
        rfs::utimensat(dir, base, &meta.times(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_error(name, "set mtime", e))
    }

    fn hard_link<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        dir: BorrowedFd<'_>,
        comps: &[OsString],
        name: &str,
    ) -> Result<(), Error> {
        let raw = entry
            .link_name_bytes()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid(name, "hard link without a target"))?;
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let target = components(&raw).map_err(|r| {
            invalid(
                name,
                format!("its hard link target is outside the layer: {r}"),
            )
        })?;
        let Some((target_base, target_parents)) = target.split_last() else {
            return Err(invalid(name, "hard link to the layer root"));
        };
        if target == comps {
            // GNU tar links a file to itself as a no-op.
            return Ok(());
        }
        let missing = || {
            invalid(
                name,
                format!("its hard link target {shown:?} does not exist"),
            )
        };
        let target_dir = match resolve(
            self.root.as_fd(),
            &join(target_parents),
            OFlags::PATH | OFlags::DIRECTORY,
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR) => return Err(missing()),
            Err(e) => return Err(io_error(name, "open its hard link target's directory", e)),
        };
        match type_at(target_dir.as_fd(), target_base) {
            Ok(None) => return Err(missing()),
            Ok(Some(FileType::Directory)) => {
                return Err(invalid(
                    name,
                    format!("its hard link target {shown:?} is a directory"),
                ));
            }
            Ok(Some(_)) => {}
            Err(e) => return Err(io_error(name, "stat its hard link target", e)),
        }
        let (base, _) = comps.split_last().expect("an entry below the root");
        self.clear(dir, &join(comps), base, false, name)?;
        // No AT_SYMLINK_FOLLOW: a link to a symlink (even a dangling one) links the symlink.
        rfs::linkat(&target_dir, target_base, dir, base, AtFlags::empty()).map_err(|e| match e {
            Errno::NOENT => missing(),
            e => io_error(name, "link", e),
        })
    }

    /// `.wh.<hidden>`: a 0:0 char device `<hidden>` hides the lower layers' `<hidden>`; what
    /// this layer put there before is gone too.
    fn whiteout(
        &mut self,
        dir: BorrowedFd<'_>,
        parents: &[OsString],
        hidden: &OsStr,
        meta: &Meta,
        name: &str,
    ) -> Result<(), Error> {
        if hidden.is_empty() || hidden == "." || hidden == ".." {
            return Err(invalid(name, "a whiteout that names no file"));
        }
        let path = join(parents).join(hidden);
        self.clear(dir, &path, hidden, false, name)?;
        rfs::mknodat(
            dir,
            hidden,
            FileType::CharacterDevice,
            Mode::empty(),
            rfs::makedev(0, 0),
        )
        .map_err(|e| io_error(name, "mknod the whiteout", e))?;
        rfs::chownat(
            dir,
            hidden,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io_error(name, "chown the whiteout", e))
    }

    /// `.wh..wh..opq`: its directory hides the lower layers' contents; this layer's stay.
    fn opaque(&mut self, parents: &[OsString], name: &str) -> Result<(), Error> {
        // Create it if the marker comes first; an entry for the dir may follow and keep it.
        drop(self.parent(parents, name)?);
        let dir = resolve(
            self.root.as_fd(),
            &join(parents),
            OFlags::RDONLY | OFlags::DIRECTORY,
        )
        .map_err(|e| io_error(name, "open the opaque directory", e))?;
        rfs::fsetxattr(&dir, OPAQUE_XATTR, b"y", XattrFlags::empty())
            .map_err(|e| io_error(name, format!("set xattr {OPAQUE_XATTR}"), e))
    }

    /// Directory mtimes last: creating their children changed them.
    fn set_dir_times(&self) -> Result<(), Error> {
        for (path, times) in &self.dir_times {
            let shown = path.to_string_lossy();
            let comps: Vec<OsString> = path.iter().map(OsStr::to_owned).collect();
            let Some((base, parents)) = comps.split_last() else {
                rfs::futimens(&self.root, times).map_err(|e| io_error(&shown, "set mtime", e))?;
                continue;
            };
            // A dir replaced since by something else has left the map; a parent path that
            // changed under a symlink since is skipped rather than guessed at.
            let Ok(dir) = resolve(
                self.root.as_fd(),
                &join(parents),
                OFlags::PATH | OFlags::DIRECTORY,
            ) else {
                continue;
            };
            if let Ok(Some(FileType::Directory)) = type_at(dir.as_fd(), base) {
                rfs::utimensat(&dir, base, times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| io_error(&shown, "set mtime", e))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use tar::EntryType as T;

    const T0: u64 = 1_600_000_000;

    /// One tar member as a test writes it: raw names, so `..` and `/abs` can be written too.
    struct E<'a> {
        kind: T,
        path: &'a str,
        link: &'a str,
        data: &'a [u8],
        mode: u32,
        owner: (u64, u64),
        mtime: u64,
        dev: (u32, u32),
        pax: Vec<(&'a str, &'a [u8])>,
    }

    fn e(kind: T, path: &str) -> E<'_> {
        E {
            kind,
            path,
            link: "",
            data: b"",
            mode: if kind == T::Directory { 0o755 } else { 0o644 },
            owner: (0, 0),
            mtime: T0,
            dev: (0, 0),
            pax: Vec::new(),
        }
    }
    fn file<'a>(path: &'a str, data: &'a [u8]) -> E<'a> {
        E {
            data,
            ..e(T::Regular, path)
        }
    }
    fn dir(path: &str) -> E<'_> {
        e(T::Directory, path)
    }
    fn symlink<'a>(path: &'a str, link: &'a str) -> E<'a> {
        E {
            link,
            mode: 0o777,
            ..e(T::Symlink, path)
        }
    }
    fn hardlink<'a>(path: &'a str, link: &'a str) -> E<'a> {
        E {
            link,
            ..e(T::Link, path)
        }
    }

    fn raw_name(slot: &mut [u8], s: &str) {
        assert!(s.len() <= slot.len(), "use a PAX record for {s}");
        slot.fill(0);
        slot[..s.len()].copy_from_slice(s.as_bytes());
    }

    /// PAX records: `<len> <key>=<value>\n`, where len counts the whole record.
    fn pax_data(records: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in records {
            let base = k.len() + v.len() + 3;
            let mut len = base + base.to_string().len();
            if len.to_string().len() > base.to_string().len() {
                len += 1;
            }
            out.extend(format!("{len} {k}=").as_bytes());
            out.extend(*v);
            out.push(b'\n');
        }
        out
    }

    fn tar_of(entries: &[E]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for m in entries {
            if !m.pax.is_empty() {
                let data = pax_data(&m.pax);
                let mut h = tar::Header::new_ustar();
                raw_name(&mut h.as_old_mut().name, "PaxHeaders/x");
                h.set_entry_type(T::XHeader);
                h.set_size(data.len() as u64);
                h.set_cksum();
                b.append(&h, &data[..]).unwrap();
            }
            let mut h = tar::Header::new_gnu();
            raw_name(&mut h.as_old_mut().name, &m.path[..m.path.len().min(100)]);
            raw_name(
                &mut h.as_old_mut().linkname,
                &m.link[..m.link.len().min(100)],
            );
            h.set_entry_type(m.kind);
            h.set_mode(m.mode);
            h.set_uid(m.owner.0);
            h.set_gid(m.owner.1);
            h.set_mtime(m.mtime);
            h.set_size(m.data.len() as u64);
            h.set_device_major(m.dev.0).unwrap();
            h.set_device_minor(m.dev.1).unwrap();
            h.set_cksum();
            b.append(&h, m.data).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// A parent temp dir holding `dest`, so a test can check that nothing else appeared.
    struct Dest {
        parent: tempfile::TempDir,
    }
    impl Dest {
        fn new() -> Self {
            let parent = tempfile::tempdir().unwrap();
            fs::create_dir(parent.path().join("dest")).unwrap();
            Dest { parent }
        }
        fn path(&self) -> PathBuf {
            self.parent.path().join("dest")
        }
        fn p(&self, rel: &str) -> PathBuf {
            self.path().join(rel)
        }
        fn unpack(&self, entries: &[E]) -> Result<LayerStats, Error> {
            unpack_layer(&tar_of(entries)[..], &self.path())
        }
        fn assert_only_dest(&self) {
            let names: Vec<_> = fs::read_dir(self.parent.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, [OsString::from("dest")]);
        }
        fn lstat(&self, rel: &str) -> fs::Metadata {
            fs::symlink_metadata(self.p(rel)).unwrap_or_else(|e| panic!("lstat {rel}: {e}"))
        }
        fn exists(&self, rel: &str) -> bool {
            fs::symlink_metadata(self.p(rel)).is_ok()
        }
        fn xattr(&self, rel: &str, name: &str) -> Option<Vec<u8>> {
            let mut buf = [0u8; 256];
            match rfs::lgetxattr(self.p(rel), name, &mut buf[..]) {
                Ok(n) => Some(buf[..n].to_vec()),
                Err(Errno::NODATA) => None,
                Err(e) => panic!("getxattr {rel} {name}: {e}"),
            }
        }
    }

    fn assert_whiteout(m: &fs::Metadata) {
        assert!(m.file_type().is_char_device(), "not a char device");
        assert_eq!(m.rdev(), 0, "whiteout rdev is not 0:0");
    }

    fn assert_invalid(r: Result<LayerStats, Error>, entry: &str, says: &str) {
        match r {
            Err(Error::Invalid { entry: got, reason }) => {
                assert_eq!(got, entry, "{reason}");
                assert!(reason.contains(says), "{reason:?} lacks {says:?}");
            }
            other => panic!("expected Invalid for {entry:?}, got {other:?}"),
        }
    }

    #[test]
    fn file_types_owners_modes_and_times_are_kept() {
        let d = Dest::new();
        let stats = d
            .unpack(&[
                E {
                    mtime: 1_400_000_000,
                    ..dir("bin")
                },
                E {
                    mode: 0o4755,
                    mtime: 1_500_000_000,
                    ..file("bin/su", b"#!su")
                },
                E {
                    mode: 0o2775,
                    owner: (1000, 1000),
                    ..dir("shared")
                },
                E {
                    mode: 0o640,
                    owner: (1000, 1000),
                    ..file("shared/notes", b"hello")
                },
                E {
                    owner: (0, 50),
                    ..file("etc/staff", b"")
                },
                E {
                    mode: 0o1777,
                    ..dir("tmp")
                },
                E {
                    owner: (1000, 1000),
                    mtime: 1_300_000_000,
                    ..symlink("bin/sh", "su")
                },
                symlink("dangling", "/no/such/file"),
                hardlink("bin/su2", "bin/su"),
                hardlink("bin/sh2", "bin/sh"),
                hardlink("dangling2", "dangling"),
                E {
                    mode: 0o666,
                    dev: (1, 3),
                    ..e(T::Char, "dev/null")
                },
                E {
                    mode: 0o660,
                    owner: (0, 6),
                    dev: (7, 0),
                    ..e(T::Block, "dev/loop0")
                },
                E {
                    mode: 0o600,
                    ..e(T::Fifo, "run/fifo")
                },
            ])
            .unwrap();
        assert_eq!(
            stats,
            LayerStats {
                entries: 14,
                size: 9
            }
        );

        let bin = d.lstat("bin");
        assert!(bin.is_dir());
        // Set after its children were created.
        assert_eq!(bin.mtime(), 1_400_000_000);
        let su = d.lstat("bin/su");
        assert!(su.is_file());
        assert_eq!(su.mode() & 0o7777, 0o4755);
        assert_eq!((su.uid(), su.gid()), (0, 0));
        assert_eq!(su.mtime(), 1_500_000_000);
        assert_eq!(fs::read(d.p("bin/su")).unwrap(), b"#!su");

        let shared = d.lstat("shared");
        assert_eq!(shared.mode() & 0o7777, 0o2775);
        assert_eq!((shared.uid(), shared.gid()), (1000, 1000));
        let notes = d.lstat("shared/notes");
        assert_eq!(notes.mode() & 0o7777, 0o640);
        assert_eq!((notes.uid(), notes.gid()), (1000, 1000));
        assert_eq!(
            (d.lstat("etc/staff").uid(), d.lstat("etc/staff").gid()),
            (0, 50)
        );
        assert_eq!(d.lstat("tmp").mode() & 0o7777, 0o1777);
        // The implicit parent of etc/staff.
        assert_eq!(d.lstat("etc").mode() & 0o7777, 0o755);

        let sh = d.lstat("bin/sh");
        assert!(sh.file_type().is_symlink());
        assert_eq!(fs::read_link(d.p("bin/sh")).unwrap(), Path::new("su"));
        assert_eq!((sh.uid(), sh.gid()), (1000, 1000));
        assert_eq!(sh.mtime(), 1_300_000_000);

        // Hard links share the inode; a link to a symlink (dangling or not) is the symlink.
        assert_eq!(d.lstat("bin/su2").ino(), su.ino());
        assert_eq!(d.lstat("bin/sh2").ino(), sh.ino());
        assert!(d.lstat("bin/sh2").file_type().is_symlink());
        let dangling2 = d.lstat("dangling2");
        assert!(dangling2.file_type().is_symlink());
        assert_eq!(dangling2.ino(), d.lstat("dangling").ino());
        assert_eq!(
            fs::read_link(d.p("dangling2")).unwrap(),
            Path::new("/no/such/file")
        );

        let null = d.lstat("dev/null");
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), rfs::makedev(1, 3));
        assert_eq!(null.mode() & 0o7777, 0o666);
        let lo = d.lstat("dev/loop0");
        assert!(lo.file_type().is_block_device());
        assert_eq!(lo.rdev(), rfs::makedev(7, 0));
        assert_eq!((lo.mode() & 0o7777, lo.gid()), (0o660, 6));
        assert!(d.lstat("run/fifo").file_type().is_fifo());
        d.assert_only_dest();
    }

    #[test]
    fn pax_xattrs_mtimes_and_ids_are_applied() {
        let d = Dest::new();
        d.unpack(&[
            E {
                pax: vec![
                    ("SCHILY.xattr.user.origin", b"layer"),
                    ("SCHILY.xattr.trusted.note", b"t"),
                ],
                ..dir("d")
            },
            E {
                pax: vec![
                    ("SCHILY.xattr.user.comment", b"hello"),
                    ("mtime", b"1700000000.25"),
                    ("uid", b"3000000000"),
                    ("gid", b"70000"),
                ],
                ..file("d/f", b"x")
            },
        ])
        .unwrap();
        assert_eq!(d.xattr("d", "user.origin").as_deref(), Some(&b"layer"[..]));
        assert_eq!(d.xattr("d", "trusted.note").as_deref(), Some(&b"t"[..]));
        assert_eq!(
            d.xattr("d/f", "user.comment").as_deref(),
            Some(&b"hello"[..])
        );
        let f = d.lstat("d/f");
        assert_eq!((f.mtime(), f.mtime_nsec()), (1_700_000_000, 250_000_000));
        assert_eq!((f.uid(), f.gid()), (3_000_000_000, 70000));
    }

    #[test]
    fn overlay_xattrs_in_the_archive_are_refused() {
        for name in [
            "trusted.overlay.opaque",
            "trusted.overlay.redirect",
            "user.overlay.origin",
        ] {
            let d = Dest::new();
            let key = format!("SCHILY.xattr.{name}");
            let r = d.unpack(&[E {
                pax: vec![(&key, b"y")],
                ..dir("hidden")
            }]);
            assert_invalid(r, "hidden", name);
            assert!(!d.exists("hidden"), "{name}: the entry was written");
        }
    }

    #[test]
    fn gnu_and_pax_long_names_and_link_names() {
        let long_dir = "d".repeat(120);
        let gnu_path = format!("{long_dir}/gnu-file");
        let gnu_target = format!("/{}", "t".repeat(150));
        let pax_path = format!("{}/pax-file", "p".repeat(250));
        let pax_link = format!("{}/pax-link", "p".repeat(250));

        // GNU: the builder writes `L` and `K` members for long names.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(T0);
        b.append_data(&mut h, &gnu_path, &b"gnu"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(T::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(T0);
        b.append_link(&mut h, format!("{long_dir}/gnu-link"), &gnu_target)
            .unwrap();
        let mut gnu = b.into_inner().unwrap();
        // Strip the end-of-archive blocks to append PAX members.
        gnu.truncate(gnu.len() - 1024);
        gnu.extend(tar_of(&[
            E {
                pax: vec![("path", pax_path.as_bytes())],
                ..file("short-pax-name", b"pax")
            },
            E {
                pax: vec![
                    ("path", pax_link.as_bytes()),
                    ("linkpath", pax_path.as_bytes()),
                ],
                ..hardlink("short", "short")
            },
        ]));
        let d = Dest::new();
        let stats = unpack_layer(&gnu[..], &d.path()).unwrap();
        assert_eq!(stats.entries, 4);
        assert_eq!(fs::read(d.p(&gnu_path)).unwrap(), b"gnu");
        assert_eq!(
            fs::read_link(d.p(&format!("{long_dir}/gnu-link"))).unwrap(),
            Path::new(&gnu_target)
        );
        assert_eq!(fs::read(d.p(&pax_path)).unwrap(), b"pax");
        assert_eq!(d.lstat(&pax_link).ino(), d.lstat(&pax_path).ino());
        assert!(!d.exists("short-pax-name"));
    }

    #[test]
    fn a_later_entry_replaces_an_earlier_one_as_gnu_tar_does() {
        let d = Dest::new();
        d.unpack(&[
            // A dir over a dir keeps it and its contents, and takes the new metadata.
            dir("keep"),
            file("keep/child", b"c"),
            E {
                mode: 0o700,
                owner: (1000, 1000),
                mtime: 1_234_567_890,
                ..dir("keep")
            },
            // A file over a dir removes the dir and its tree.
            dir("gone"),
            dir("gone/sub"),
            file("gone/sub/deep", b"x"),
            file("gone", b"now a file"),
            // A dir over a file, a file over a symlink (not written through it).
            file("was-file", b""),
            dir("was-file"),
            file("target", b"original"),
            symlink("link", "target"),
            file("link", b"replaced"),
            // A new file does not change the content of an earlier hard link to the old one.
            file("f", b"one"),
            hardlink("g", "f"),
            file("f", b"two"),
        ])
        .unwrap();
        let keep = d.lstat("keep");
        assert_eq!(keep.mode() & 0o7777, 0o700);
        assert_eq!((keep.uid(), keep.gid()), (1000, 1000));
        assert_eq!(keep.mtime(), 1_234_567_890);
        assert_eq!(fs::read(d.p("keep/child")).unwrap(), b"c");
        assert!(d.lstat("gone").is_file());
        assert_eq!(fs::read(d.p("gone")).unwrap(), b"now a file");
        assert!(d.lstat("was-file").is_dir());
        assert!(d.lstat("link").is_file());
        assert_eq!(fs::read(d.p("link")).unwrap(), b"replaced");
        assert_eq!(fs::read(d.p("target")).unwrap(), b"original");
        assert_eq!(fs::read(d.p("f")).unwrap(), b"two");
        assert_eq!(fs::read(d.p("g")).unwrap(), b"one");
    }

    #[test]
    fn whiteouts_become_overlay_char_devices_and_opaque_xattrs() {
        let d = Dest::new();
        let stats = d
            .unpack(&[
                E {
                    owner: (1000, 1000),
                    ..e(T::Regular, ".wh.deleted")
                },
                dir("etc"),
                e(T::Regular, "etc/.wh.old.conf"),
                // What this layer put at a path a whiteout names is gone too.
                file("mine", b"x"),
                e(T::Regular, ".wh.mine"),
                dir("tree"),
                file("tree/sub/leaf", b"x"),
                e(T::Regular, ".wh.tree"),
                // Opaque: this layer's files in the dir stay, before and after the marker.
                dir("cache"),
                file("cache/before", b"b"),
                e(T::Regular, "cache/.wh..wh..opq"),
                file("cache/after", b"a"),
                // A marker whose dir has no entry of its own (yet).
                e(T::Regular, "lazy/.wh..wh..opq"),
                // aufs metadata is not a whiteout.
                e(T::Regular, ".wh..wh.plnk"),
            ])
            .unwrap();
        assert_eq!(stats.entries, 14);
        let deleted = d.lstat("deleted");
        assert_whiteout(&deleted);
        assert_eq!((deleted.uid(), deleted.gid()), (1000, 1000));
        assert_whiteout(&d.lstat("etc/old.conf"));
        assert_whiteout(&d.lstat("mine"));
        assert_whiteout(&d.lstat("tree"));
        for name in [
            ".wh.deleted",
            "etc/.wh.old.conf",
            "cache/.wh..wh..opq",
            ".wh..wh.plnk",
            ".wh.plnk",
        ] {
            assert!(!d.exists(name), "{name} was written as is");
        }
        assert_eq!(d.xattr("cache", OPAQUE_XATTR).as_deref(), Some(&b"y"[..]));
        assert_eq!(fs::read(d.p("cache/before")).unwrap(), b"b");
        assert_eq!(fs::read(d.p("cache/after")).unwrap(), b"a");
        assert_eq!(d.xattr("lazy", OPAQUE_XATTR).as_deref(), Some(&b"y"[..]));
        assert_eq!(d.xattr("etc", OPAQUE_XATTR), None);
    }

    #[test]
    fn dot_dot_paths_are_refused_and_write_nothing_outside() {
        for path in ["../escape", "a/../../escape", "./../escape"] {
            let d = Dest::new();
            let r = d.unpack(&[file(path, b"x")]);
            assert_invalid(r, path, "'..'");
            d.assert_only_dest();
        }
    }

    #[test]
    fn absolute_paths_land_inside() {
        let d = Dest::new();
        d.unpack(&[file("/abs/path", b"x"), dir("/"), file("/./dot", b"y")])
            .unwrap();
        assert_eq!(fs::read(d.p("abs/path")).unwrap(), b"x");
        assert_eq!(fs::read(d.p("dot")).unwrap(), b"y");
        d.assert_only_dest();
    }

    #[test]
    fn writes_through_symlinks_stay_inside() {
        let marker = format!("hyperd-unpack-escape-{}", std::process::id());
        let through_root = format!("evil/tmp/{marker}");
        let through_dots = format!("up/{marker}-dots");
        let through_dir = format!("tmplink/{marker}-dir");
        let d = Dest::new();
        d.unpack(&[
            symlink("evil", "/"),
            dir("tmp"),
            file(&through_root, b"root"),
            symlink("up", "../../../../.."),
            file(&through_dots, b"dots"),
            symlink("tmplink", "/tmp"),
            file(&through_dir, b"dir"),
        ])
        .unwrap();
        // Each symlink resolved with dest as `/`.
        assert_eq!(fs::read(d.p(&format!("tmp/{marker}"))).unwrap(), b"root");
        assert_eq!(fs::read(d.p(&format!("{marker}-dots"))).unwrap(), b"dots");
        assert_eq!(fs::read(d.p(&format!("tmp/{marker}-dir"))).unwrap(), b"dir");
        for host in [
            format!("/tmp/{marker}"),
            format!("/{marker}-dots"),
            format!("/tmp/{marker}-dir"),
        ] {
            assert!(!Path::new(&host).exists(), "{host} was written on the host");
        }
        assert!(d.lstat("evil").file_type().is_symlink());
        d.assert_only_dest();
    }

    #[test]
    fn a_path_under_a_file_or_a_dangling_symlink_is_refused() {
        let d = Dest::new();
        let r = d.unpack(&[file("f", b""), file("f/x", b"")]);
        assert_invalid(r, "f/x", "not a directory");
        let d = Dest::new();
        let r = d.unpack(&[symlink("nowhere", "/missing"), file("nowhere/x", b"")]);
        assert_invalid(r, "nowhere/x", "not a directory");
        assert!(!Path::new("/missing/x").exists());
        d.assert_only_dest();
    }

    #[test]
    fn hard_links_cannot_reach_outside() {
        let d = Dest::new();
        let r = d.unpack(&[hardlink("hl", "../../etc/passwd")]);
        assert_invalid(r, "hl", "outside the layer");
        d.assert_only_dest();

        // A leading `/` is dropped, as for names: the target is the layer's own file, if any.
        let d = Dest::new();
        let r = d.unpack(&[hardlink("hl", "/etc/passwd")]);
        assert_invalid(r, "hl", "does not exist");
        let d = Dest::new();
        let r = d.unpack(&[symlink("evil", "/"), hardlink("hl", "evil/etc/passwd")]);
        assert_invalid(r, "hl", "does not exist");
        assert!(!d.exists("hl"));
        d.assert_only_dest();

        let d = Dest::new();
        d.unpack(&[
            file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
            symlink("evil", "/"),
            hardlink("hl", "/etc/passwd"),
            hardlink("hl2", "evil/etc/passwd"),
        ])
        .unwrap();
        let ino = d.lstat("etc/passwd").ino();
        assert_eq!(d.lstat("hl").ino(), ino);
        assert_eq!(d.lstat("hl2").ino(), ino);
        assert_ne!(fs::metadata("/etc/passwd").unwrap().ino(), ino);

        let d = Dest::new();
        let r = d.unpack(&[dir("d"), hardlink("hl", "d")]);
        assert_invalid(r, "hl", "is a directory");
    }

    #[test]
    fn client_bytes_in_messages_are_escaped_or_dropped() {
        assert_eq!(printable("café/a b.txt"), "café/a b.txt");
        assert_eq!(
            printable("a\u{1b}[2J\u{fffd}\u{301}\u{200b}"),
            "a\\u{1b}[2J\\u{fffd}\\u{301}\\u{200b}"
        );
        assert_eq!(printable(&"x".repeat(300)), format!("{}…", "x".repeat(200)));
        let quoting =
            io::Error::other("numeric field did not have utf-8 text: 7;\u{5b2}0S\u{fffd}");
        assert_eq!(
            tar_complaint(&quoting),
            "numeric field did not have utf-8 text"
        );
        let plain = io::Error::other("numeric field was not a number: 12x3");
        assert_eq!(
            tar_complaint(&plain),
            "numeric field was not a number: 12x3"
        );

        let d = Dest::new();
        let mut block = vec![b'x'; 1024];
        block[148..156].copy_from_slice(b"7;\xd6\xb20S\xff\xfe");
        let e = unpack_layer(&block[..], &d.path()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid layer: not a valid tar archive: numeric field did not have utf-8 text"
        );
    }

    #[test]
    fn empty_garbage_and_truncated_archives_are_invalid() {
        let d = Dest::new();
        let r = unpack_layer(&b""[..], &d.path());
        assert_invalid(r, "", "the tar archive is empty");
        let r = d.unpack(&[]);
        assert_invalid(r, "", "the tar archive is empty");
        let r = unpack_layer(
            &b"this is not a tar archive at all".repeat(40)[..],
            &d.path(),
        );
        assert_invalid(r, "", "not a valid tar archive");

        let mut t = tar_of(&[file("ok", b"fine"), file("big", &[7u8; 5000])]);
        t.truncate(512 * 4);
        let r = unpack_layer(&t[..], &d.path());
        assert_invalid(r, "big", "truncated");

        let r = d.unpack(&[e(T::new(b'V'), "volume-label")]);
        assert_invalid(r, "volume-label", "unsupported");
    }

    #[test]
    fn compressed_layers_unpack_through_decompress() {
        use std::io::Write as _;
        let plain = tar_of(&[file("a", b"alpha"), symlink("b", "a")]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::stream::encode_all(&plain[..], 1).unwrap();
        for (blob, want) in [
            (&plain, super::super::compression::Compression::None),
            (&gz, super::super::compression::Compression::Gzip),
            (&zst, super::super::compression::Compression::Zstd),
        ] {
            let d = Dest::new();
            let (found, reader) = super::super::compression::decompress(&blob[..]).unwrap();
            assert_eq!(found, want);
            let stats = unpack_layer(reader, &d.path()).unwrap();
            assert_eq!(
                stats,
                LayerStats {
                    entries: 2,
                    size: 5
                }
            );
            assert_eq!(fs::read(d.p("b")).unwrap(), b"alpha");
        }
    }

    /// An overlayfs mount, unmounted when dropped (even when the test panics).
    struct Overlay(PathBuf);
    impl Drop for Overlay {
        fn drop(&mut self) {
            let status = std::process::Command::new("umount").arg(&self.0).status();
            if !matches!(status, Ok(s) if s.success()) {
                eprintln!("umount {}: {status:?}", self.0.display());
            }
        }
    }

    #[test]
    fn three_layers_mount_as_a_real_overlayfs() {
        let tmp = tempfile::tempdir().unwrap();
        let layer = |n: &str, entries: &[E]| {
            let p = tmp.path().join(n);
            fs::create_dir(&p).unwrap();
            unpack_layer(&tar_of(entries)[..], &p).unwrap();
            p
        };
        let l1 = layer(
            "l1",
            &[
                dir("etc"),
                file("etc/passwd", b"root"),
                file("etc/old.conf", b"old"),
                dir("opt"),
                dir("opt/app"),
                file("opt/app/v1.bin", b"v1"),
                dir("data"),
                dir("data/cache"),
                file("data/cache/lower", b"l"),
            ],
        );
        let l2 = layer(
            "l2",
            &[
                dir("etc"),
                e(T::Regular, "etc/.wh.old.conf"),
                dir("opt"),
                file("opt/app", b"now a file"),
                dir("data"),
                dir("data/cache"),
                file("data/cache/before", b"b"),
                e(T::Regular, "data/cache/.wh..wh..opq"),
                file("data/cache/after", b"a"),
            ],
        );
        let l3 = layer("l3", &[dir("etc"), file("etc/new.conf", b"new")]);
        let mnt = tmp.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        let lower = format!(
            "lowerdir={}:{}:{}",
            l3.display(),
            l2.display(),
            l1.display()
        );
        let status = std::process::Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &lower])
            .arg(&mnt)
            .status()
            .unwrap();
        assert!(status.success(), "mount -t overlay: {status}");
        let _mounted = Overlay(mnt.clone());

        let names = |rel: &str| {
            let mut v: Vec<String> = fs::read_dir(mnt.join(rel))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names("etc"), ["new.conf", "passwd"]);
        assert!(!mnt.join("etc/old.conf").exists());
        assert_eq!(fs::read(mnt.join("etc/passwd")).unwrap(), b"root");
        assert!(mnt.join("opt/app").is_file());
        assert_eq!(fs::read(mnt.join("opt/app")).unwrap(), b"now a file");
        assert_eq!(names("data/cache"), ["after", "before"]);
    }
}

/// Layer tars are client input (import, load) and registry input (pull): any archive either
/// unpacks or is refused as invalid, and nothing is ever written outside the layer dir. The
/// archives are real tars with raw names, so `..`, absolute paths, links out, whiteouts and
/// devices all occur. `PROPTEST_CASES=10000` for the long run.
#[cfg(test)]
mod proptests {
    use std::fs;

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
            Just("".to_string()),
            Just(".wh.a".to_string()),
            Just(".wh..wh..opq".to_string()),
            Just(".wh..wh.plnk".to_string()),
            Just("outside".to_string()),
            "[a-z.]{1,6}",
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
            2 => Just(EntryType::Symlink),
            2 => Just(EntryType::Link),
            1 => Just(EntryType::Char),
            1 => Just(EntryType::Fifo),
            1 => Just(EntryType::Block),
            1 => any::<u8>().prop_map(EntryType::new),
        ];
        let link = prop_oneof![
            path(),
            Just("/".to_string()),
            Just("../../outside".to_string())
        ];
        (
            kind,
            path(),
            link,
            prop::collection::vec(any::<u8>(), 0..16),
            0u32..0o10000,
        )
            .prop_map(|(kind, path, link, data, mode)| RawEntry {
                kind,
                path,
                link,
                data,
                mode,
            })
    }

    fn tar_of(members: &[RawEntry]) -> Vec<u8> {
        raw_tar(members)
    }

    /// Every path under `dir` with its kind and (for files) content.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let meta = fs::symlink_metadata(&p).unwrap();
                let what = if meta.is_dir() {
                    todo.push(p.clone());
                    "dir".to_string()
                } else if meta.is_file() {
                    format!("{:?}", fs::read(&p).unwrap())
                } else {
                    format!("{:?}", meta.file_type())
                };
                out.push((p, what));
            }
        }
        out.sort();
        out
    }

    fn check(tar: &[u8]) -> Result<(), TestCaseError> {
        let parent = tempfile::tempdir().unwrap();
        let dest = parent.path().join("dest");
        let outside = parent.path().join("outside");
        fs::create_dir_all(&dest).unwrap();
        fs::create_dir_all(outside.join("a")).unwrap();
        fs::write(outside.join("a/file"), b"keep").unwrap();
        let before = snapshot(&outside);
        match unpack_layer(tar, &dest) {
            Ok(_) | Err(Error::Invalid { .. }) => {}
            Err(e) => prop_assert!(false, "not a typed refusal: {e}"),
        }
        prop_assert_eq!(snapshot(&outside), before);
        let mut names: Vec<_> = fs::read_dir(parent.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        prop_assert_eq!(names, ["dest", "outside"]);
        Ok(())
    }

    proptest! {
        #[test]
        fn any_archive_stays_in_its_layer(members in prop::collection::vec(member(), 0..8)) {
            check(&tar_of(&members))?;
        }

        #[test]
        fn any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            check(&bytes)?;
        }
    }
}
