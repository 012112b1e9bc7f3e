//! Layers from directories: an overlayfs upper dir (what a `RUN` or `COPY` step changed) packed
//! as an OCI layer tar ("Image Layer Filesystem Changeset"), with overlayfs's whiteouts turned
//! into OCI's: a 0:0 char device `<name>` becomes an empty file `.wh.<name>`, a dir with
//! `trusted.overlay.opaque=y` gets a `.wh..wh..opq` member after its own entry.
//!
//! The tar is deterministic for a given tree: members in byte order of their names, parents
//! before children, owners as numbers only (no user or group names), mtimes kept as the files
//! have them (as Docker does): two identical trees give the same diff id. Hard links inside
//! the tree are kept as tar hard links. Sockets are left out (Docker does the same); xattrs
//! other than the opaque marker are not carried.
//!
//! The same pass strips overlayfs's bookkeeping xattrs (`trusted.overlay.origin`, `impure`,
//! ...) from the tree, so the dir can then serve as a lower dir (a snapshot) as it is.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs as rfs;

const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// overlayfs's own metadata on upper dir entries, meaningless in a lower dir.
const OVERLAY_BOOKKEEPING: &[&str] = &[
    "trusted.overlay.origin",
    "trusted.overlay.impure",
    "trusted.overlay.nlink",
    "trusted.overlay.upper",
    "trusted.overlay.protattr",
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("layer from {path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// overlayfs wrote something we cannot express in a layer (a redirect or metacopy entry,
    /// which only appear with overlay options we never set).
    #[error("layer from {path}: {what}")]
    Unsupported { path: PathBuf, what: String },
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> Error + use<'a> {
    move |source| Error::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// What [`pack_dir`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PackStats {
    /// Tar members, whiteouts and opaque markers included.
    pub entries: u64,
    /// Bytes of regular file content.
    pub size: u64,
}

/// Writes the tree under `dir` (an overlay upper dir, or a plain dir) as an uncompressed layer
/// tar to `out`; with `strip`, also removes overlayfs bookkeeping xattrs from it (for a dir that
/// becomes a snapshot; never for the upper dir of a mounted overlay). `dir` itself is not a
/// member.
/// Errors: [`Error::Io`] naming the path that failed; [`Error::Unsupported`] for overlay
/// redirects.
pub fn pack_dir(dir: &Path, out: impl Write, strip: bool) -> Result<PackStats, Error> {
    let mut packer = Packer {
        tar: tar::Builder::new(out),
        links: HashMap::new(),
        stats: PackStats::default(),
        strip,
    };
    packer.tar.follow_symlinks(false);
    packer.dir(dir, &PathBuf::new())?;
    packer
        .tar
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io_err(dir, "finish the tar"))?;
    Ok(packer.stats)
}

struct Packer<W: Write> {
    tar: tar::Builder<W>,
    /// (dev, ino) of files with more than one link → the first member's name.
    links: HashMap<(u64, u64), PathBuf>,
    stats: PackStats,
    strip: bool,
}

impl<W: Write> Packer<W> {
    /// Packs the children of `abs` (whose member name is `rel`), sorted by name.
    fn dir(&mut self, abs: &Path, rel: &Path) -> Result<(), Error> {
        let mut names: Vec<OsString> = std::fs::read_dir(abs)
            .map_err(io_err(abs, "list"))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(io_err(abs, "list"))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            self.entry(&abs.join(&name), &rel.join(&name), &name)?;
        }
        Ok(())
    }

    fn entry(&mut self, abs: &Path, rel: &Path, name: &OsString) -> Result<(), Error> {
        let meta = std::fs::symlink_metadata(abs).map_err(io_err(abs, "stat"))?;
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            // overlayfs's whiteout.
            let mut wh_name = OsString::from(".wh.");
            wh_name.push(name);
            let wh = rel.with_file_name(wh_name);
            let mut h = header(&meta, tar::EntryType::Regular);
            h.set_mode(0o600);
            h.set_size(0);
            self.tar
                .append_data(&mut h, &wh, io::empty())
                .map_err(io_err(abs, "write a whiteout"))?;
            self.stats.entries += 1;
            return Ok(());
        }
        if ft.is_socket() {
            return Ok(());
        }
        if self.strip {
            strip_bookkeeping(abs)?;
        }
        if xattr(abs, "trusted.overlay.redirect").is_some()
            || xattr(abs, "trusted.overlay.metacopy").is_some()
        {
            return Err(Error::Unsupported {
                path: abs.to_path_buf(),
                what: "an overlay redirect or metacopy entry".into(),
            });
        }
        self.stats.entries += 1;
        if ft.is_dir() {
            let mut h = header(&meta, tar::EntryType::Directory);
            h.set_size(0);
            self.tar
                .append_data(&mut h, rel, io::empty())
                .map_err(io_err(abs, "write a dir"))?;
            if xattr(abs, OPAQUE_XATTR).as_deref() == Some(b"y") {
                let mut h = header(&meta, tar::EntryType::Regular);
                h.set_mode(0o600);
                h.set_size(0);
                self.tar
                    .append_data(&mut h, rel.join(".wh..wh..opq"), io::empty())
                    .map_err(io_err(abs, "write an opaque marker"))?;
                self.stats.entries += 1;
            }
            return self.dir(abs, rel);
        }
        if ft.is_symlink() {
            let target = std::fs::read_link(abs).map_err(io_err(abs, "read the symlink"))?;
            let mut h = header(&meta, tar::EntryType::Symlink);
            h.set_size(0);
            self.tar
                .append_link(&mut h, rel, &target)
                .map_err(io_err(abs, "write a symlink"))?;
            return Ok(());
        }
        if meta.nlink() > 1 && !ft.is_dir() {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                let mut h = header(&meta, tar::EntryType::Link);
                h.set_size(0);
                self.tar
                    .append_link(&mut h, rel, first)
                    .map_err(io_err(abs, "write a hard link"))?;
                return Ok(());
            }
            self.links.insert(key, rel.to_path_buf());
        }
        if ft.is_file() {
            let mut h = header(&meta, tar::EntryType::Regular);
            h.set_size(meta.len());
            let f = std::fs::File::open(abs).map_err(io_err(abs, "open"))?;
            self.tar
                .append_data(&mut h, rel, f)
                .map_err(io_err(abs, "write a file"))?;
            self.stats.size += meta.len();
            return Ok(());
        }
        let kind = if ft.is_char_device() {
            tar::EntryType::Char
        } else if ft.is_block_device() {
            tar::EntryType::Block
        } else {
            tar::EntryType::Fifo
        };
        let mut h = header(&meta, kind);
        h.set_size(0);
        let rdev = meta.rdev();
        h.set_device_major(libc::major(rdev))
            .and_then(|()| h.set_device_minor(libc::minor(rdev)))
            .map_err(io_err(abs, "write a device"))?;
        self.tar
            .append_data(&mut h, rel, io::empty())
            .map_err(io_err(abs, "write a device"))?;
        Ok(())
    }
}

/// A GNU header (long names as GNU extensions, as the tar crate writes them) with the
/// metadata of `meta`: mode bits, numeric owner, mtime.
fn header(meta: &std::fs::Metadata, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(meta.uid().into());
    h.set_gid(meta.gid().into());
    h.set_mtime(meta.mtime().max(0) as u64);
    h
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    match rfs::lgetxattr(path, name, &mut buf[..]) {
        Ok(n) => {
            buf.truncate(n);
            Some(buf)
        }
        Err(_) => None,
    }
}

fn strip_bookkeeping(path: &Path) -> Result<(), Error> {
    for name in OVERLAY_BOOKKEEPING {
        match rfs::lremovexattr(path, *name) {
            Ok(()) => {}
            Err(e)
                if e == rustix::io::Errno::NODATA
                    || e == rustix::io::Errno::NOTSUP
                    || e == rustix::io::Errno::PERM =>
            {
                // Not there (the usual case), or a filesystem without trusted xattrs.
            }
            Err(e) => return Err(io_err(path, "remove an overlay xattr")(e.into())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn members(tar_bytes: &[u8]) -> Vec<(String, tar::EntryType, u64, u32)> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                    h.entry_type(),
                    h.uid().unwrap(),
                    h.mode().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn whiteouts_and_opaque_dirs_become_oci_markers() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("etc")).unwrap();
        std::fs::write(d.join("etc/b"), "bb").unwrap();
        std::fs::write(d.join("etc/a"), "a").unwrap();
        std::os::unix::fs::symlink("etc/a", d.join("link")).unwrap();
        std::fs::hard_link(d.join("etc/a"), d.join("hard")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.join("gone"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .unwrap();
        std::fs::create_dir(d.join("opq")).unwrap();
        std::fs::set_permissions(d.join("opq"), std::fs::Permissions::from_mode(0o750)).unwrap();
        rfs::lsetxattr(d.join("opq"), OPAQUE_XATTR, b"y", rfs::XattrFlags::empty()).unwrap();
        rfs::lsetxattr(
            d.join("etc"),
            "trusted.overlay.origin",
            b"x",
            rfs::XattrFlags::empty(),
        )
        .unwrap();
        let mut out = Vec::new();
        let stats = pack_dir(d, &mut out, true).unwrap();
        let got = members(&out);
        let names: Vec<&str> = got.iter().map(|m| m.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc",
                "etc/a",
                "etc/b",
                ".wh.gone",
                "hard",
                "link",
                "opq",
                "opq/.wh..wh..opq"
            ]
        );
        assert_eq!(got[4].1, tar::EntryType::Link);
        assert_eq!(got[5].1, tar::EntryType::Symlink);
        assert_eq!(got[6].3, 0o750);
        assert_eq!(stats.size, 3);
        // The bookkeeping xattr is gone, the opaque marker stays for the snapshot.
        assert!(xattr(&d.join("etc"), "trusted.overlay.origin").is_none());
        assert_eq!(
            xattr(&d.join("opq"), OPAQUE_XATTR).as_deref(),
            Some(&b"y"[..])
        );
    }

    #[test]
    fn the_same_tree_packs_to_the_same_bytes_and_unpacks_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a");
        std::fs::create_dir_all(d.join("x/y")).unwrap();
        std::fs::write(d.join("x/y/f"), "hello").unwrap();
        std::fs::write(d.join("z"), "z".repeat(200)).unwrap();
        let mut one = Vec::new();
        pack_dir(&d, &mut one, true).unwrap();
        let mut two = Vec::new();
        pack_dir(&d, &mut two, true).unwrap();
        assert_eq!(one, two);
        let back = dir.path().join("b");
        std::fs::create_dir(&back).unwrap();
        crate::image::unpack::unpack_layer(one.as_slice(), &back).unwrap();
        assert_eq!(
            std::fs::read_to_string(back.join("x/y/f")).unwrap(),
            "hello"
        );
        let mut three = Vec::new();
        pack_dir(&back, &mut three, true).unwrap();
        assert_eq!(
            one, three,
            "unpack keeps what the tar says (mtimes included)"
        );
    }
}
