//! `COPY` and `ADD` on the host: sources written into a fresh layer dir (never through the
//! image's lower layers), and the lookups they need in an image's merged filesystem (its
//! lower dirs, topmost first): whether a destination is a directory, the metadata of parent
//! dirs, `--chown` names in `/etc/passwd` and `/etc/group`, files and trees of another
//! stage for `COPY --from`.
//!
//! The merged view here is overlayfs's for the cases builds meet: the topmost layer that has a
//! path decides, a 0:0 char device is a deletion, and a dir is the union of the layers above
//! the last opaque one. Symlinks in the destination's parent path are not followed (Docker
//! follows them inside the image); a destination under an image symlink is an error there.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs as rfs;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("--chown={spec}: {reason}")]
    Chown { spec: String, reason: String },
    #[error("--chmod={0}: want an octal mode such as 755")]
    Chmod(String),
    #[error("{0}")]
    Invalid(String),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + use<'a> {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The owner `--chown` gives copied files: uid and gid.
pub type Owner = (u32, u32);

/// `dest` made absolute against `workdir` (Docker: a relative `COPY` destination is relative to
/// `WORKDIR`), normalised, as a relative path from the root (`""` for `/`). A destination that
/// ends in `/` (or is `.` with a workdir) is a directory: the bool says so.
pub fn resolve_dest(dest: &str, workdir: &str) -> Result<(PathBuf, bool), Error> {
    if dest.is_empty() {
        return Err(Error::Invalid("empty destination".into()));
    }
    let dir_syntax = dest.ends_with('/') || dest == "." || dest.ends_with("/.");
    let joined = if dest.starts_with('/') {
        PathBuf::from(dest)
    } else {
        Path::new(if workdir.is_empty() { "/" } else { workdir }).join(dest)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    let is_root = out.as_os_str().is_empty();
    Ok((out, dir_syntax || is_root))
}

/// The topmost path for `rel` in `lowers` (topmost first), or None when no layer has it or the
/// topmost one deleted it.
pub fn lookup(lowers: &[PathBuf], rel: &Path) -> Option<PathBuf> {
    if rel.as_os_str().is_empty() {
        return lowers.first().cloned();
    }
    for lower in lowers {
        let p = lower.join(rel);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_char_device() && m.rdev() == 0 => return None,
            Ok(_) => return Some(p),
            Err(_) => {
                // A layer that deleted or made opaque a parent hides everything below it.
                let mut parent = rel.parent();
                while let Some(d) = parent.filter(|d| !d.as_os_str().is_empty()) {
                    if let Ok(m) = std::fs::symlink_metadata(lower.join(d)) {
                        if (m.file_type().is_char_device() && m.rdev() == 0)
                            || (m.is_dir() && is_opaque(&lower.join(d)))
                        {
                            return None;
                        }
                        if !m.is_dir() {
                            return None;
                        }
                    }
                    parent = d.parent();
                }
            }
        }
    }
    None
}

fn is_opaque(dir: &Path) -> bool {
    let mut buf = [0u8; 4];
    matches!(rfs::lgetxattr(dir, "trusted.overlay.opaque", &mut buf[..]), Ok(1) if buf[0] == b'y')
}

/// `rel` with the image's symlinks in it followed, as Docker resolves a `COPY` destination
/// inside the image (`/bin` → `usr/bin` on merged-usr images): each component that is a symlink
/// in the merged view is replaced by its target (relative to its dir, or to the root when
/// absolute), at most 40 times; the result never leaves the root. The last component is
/// followed too unless `keep_last` (a file destination replaces a link).
pub fn resolve_in_image(lowers: &[PathBuf], rel: &Path, keep_last: bool) -> PathBuf {
    let mut todo: Vec<std::ffi::OsString> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            _ => None,
        })
        .rev()
        .collect();
    let mut out = PathBuf::new();
    let mut hops = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            out.pop();
            continue;
        }
        let candidate = out.join(&name);
        let last = todo.is_empty();
        let link = (!(last && keep_last) && hops < 40)
            .then(|| lookup(lowers, &candidate))
            .flatten()
            .filter(|p| {
                p.symlink_metadata()
                    .is_ok_and(|m| m.file_type().is_symlink())
            })
            .and_then(|p| std::fs::read_link(p).ok());
        match link {
            Some(target) => {
                hops += 1;
                if target.is_absolute() {
                    out = PathBuf::new();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => todo.push(n.to_owned()),
                        Component::ParentDir => todo.push("..".into()),
                        _ => {}
                    }
                }
            }
            None => out = candidate,
        }
    }
    out
}

/// Whether `rel` is a directory in the merged view.
pub fn is_dir(lowers: &[PathBuf], rel: &Path) -> bool {
    lookup(lowers, rel).is_some_and(|p| p.symlink_metadata().is_ok_and(|m| m.is_dir()))
}

/// Makes `rel` and its missing parents as directories under `layer`: a dir the image has
/// already gets the image's mode, owner and mtime (so the layer does not change it), a new
/// one 0755 root (or `owner` for the last component, as Docker's `WORKDIR` and `COPY` do).
pub fn make_dirs(
    layer: &Path,
    lowers: &[PathBuf],
    rel: &Path,
    owner: Option<Owner>,
) -> Result<(), Error> {
    let mut cur = PathBuf::new();
    let comps: Vec<_> = rel.components().collect();
    for (i, c) in comps.iter().enumerate() {
        cur.push(c);
        let target = layer.join(&cur);
        if target.symlink_metadata().is_ok() {
            continue;
        }
        std::fs::create_dir(&target).map_err(io_err("mkdir", &target))?;
        match lookup(lowers, &cur).and_then(|p| p.symlink_metadata().ok()) {
            Some(m) if m.is_dir() => {
                set_meta(
                    &target,
                    m.mode() & 0o7777,
                    (m.uid(), m.gid()),
                    Some(m.mtime()),
                )?;
            }
            Some(_) => {
                return Err(Error::Invalid(format!(
                    "/{} is not a directory in the image",
                    cur.display()
                )));
            }
            None => {
                let own = if i + 1 == comps.len() {
                    owner.unwrap_or((0, 0))
                } else {
                    (0, 0)
                };
                set_meta(&target, 0o755, own, None)?;
            }
        }
    }
    Ok(())
}

fn set_meta(path: &Path, mode: u32, owner: Owner, mtime: Option<i64>) -> Result<(), Error> {
    std::os::unix::fs::lchown(path, Some(owner.0), Some(owner.1)).map_err(io_err("chown", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io_err("chmod", path))?;
    if let Some(t) = mtime {
        let ts = rfs::Timespec {
            tv_sec: t,
            tv_nsec: 0,
        };
        rfs::utimensat(
            rfs::CWD,
            path,
            &rfs::Timestamps {
                last_access: ts,
                last_modification: ts,
            },
            rfs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io_err("set the mtime of", path)(e.into()))?;
    }
    Ok(())
}

/// How copied files are owned and moded.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyMeta {
    /// `--chown`; without it files are root's (context files) or keep their owner (`--from`).
    pub owner: Option<Owner>,
    /// `--chmod`, for files and directories alike.
    pub mode: Option<u32>,
    /// Copies from the context are root's unless `--chown`; copies from a stage keep owners.
    pub keep_owner: bool,
}

/// Copies the file, symlink or tree `src` (on the host) to `dest` (inside a layer dir), as
/// `COPY` does: contents, mode bits and mtimes kept, symlinks copied as symlinks, owner per
/// `meta`. A dir source copies the tree itself to `dest` (the caller decides whether that is
/// the dir's contents into an existing dir).
pub fn copy_tree(src: &Path, dest: &Path, meta: CopyMeta) -> Result<(), Error> {
    let m = std::fs::symlink_metadata(src).map_err(io_err("stat", src))?;
    let ft = m.file_type();
    if ft.is_char_device() && m.rdev() == 0 {
        return Ok(()); // a whiteout of a stage's layer: nothing to copy
    }
    let owner = meta.owner.unwrap_or(if meta.keep_owner {
        (m.uid(), m.gid())
    } else {
        (0, 0)
    });
    if ft.is_dir() {
        if dest.symlink_metadata().is_err() {
            std::fs::create_dir(dest).map_err(io_err("mkdir", dest))?;
        }
        let mut names: Vec<_> = std::fs::read_dir(src)
            .map_err(io_err("list", src))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(io_err("list", src))?;
        names.sort();
        for n in names {
            copy_tree(&src.join(&n), &dest.join(&n), meta)?;
        }
        set_meta(
            dest,
            meta.mode.unwrap_or(m.mode() & 0o7777),
            owner,
            Some(m.mtime()),
        )?;
        return Ok(());
    }
    remove_existing(dest)?;
    if ft.is_symlink() {
        let target = std::fs::read_link(src).map_err(io_err("read the symlink", src))?;
        std::os::unix::fs::symlink(&target, dest).map_err(io_err("symlink", dest))?;
        std::os::unix::fs::lchown(dest, Some(owner.0), Some(owner.1))
            .map_err(io_err("chown", dest))?;
        return Ok(());
    }
    if !ft.is_file() {
        return Err(Error::Invalid(format!(
            "{}: only files, dirs and symlinks can be copied",
            src.display()
        )));
    }
    std::fs::copy(src, dest).map_err(io_err("copy to", dest))?;
    set_meta(
        dest,
        meta.mode.unwrap_or(m.mode() & 0o7777),
        owner,
        Some(m.mtime()),
    )
}

fn remove_existing(p: &Path) -> Result<(), Error> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).map_err(io_err("replace", p)),
        Ok(_) => std::fs::remove_file(p).map_err(io_err("replace", p)),
        Err(_) => Ok(()),
    }
}

/// Builds the merged tree of `rel` in `lowers` (topmost first) at `dest`: layers applied
/// bottom up, whiteouts deleting and opaque dirs clearing what the layers below put there. For
/// `COPY --from` of a directory.
pub fn merge_tree(
    lowers: &[PathBuf],
    rel: &Path,
    dest: &Path,
    meta: CopyMeta,
) -> Result<(), Error> {
    for lower in lowers.iter().rev() {
        let src = lower.join(rel);
        if let Ok(m) = src.symlink_metadata() {
            if m.is_dir() {
                if is_opaque(&src) {
                    remove_existing(dest)?;
                }
                apply_layer_dir(&src, dest, meta)?;
            } else if m.file_type().is_char_device() && m.rdev() == 0 {
                remove_existing(dest)?;
            } else {
                copy_tree(&src, dest, meta)?;
            }
        }
    }
    Ok(())
}

fn apply_layer_dir(src: &Path, dest: &Path, meta: CopyMeta) -> Result<(), Error> {
    if !dest.symlink_metadata().is_ok_and(|m| m.is_dir()) {
        remove_existing(dest)?;
        std::fs::create_dir(dest).map_err(io_err("mkdir", dest))?;
    }
    for e in std::fs::read_dir(src).map_err(io_err("list", src))? {
        let e = e.map_err(io_err("list", src))?;
        let (s, d) = (e.path(), dest.join(e.file_name()));
        let m = s.symlink_metadata().map_err(io_err("stat", &s))?;
        if m.file_type().is_char_device() && m.rdev() == 0 {
            remove_existing(&d)?;
        } else if m.is_dir() {
            if is_opaque(&s) {
                remove_existing(&d)?;
            }
            apply_layer_dir(&s, &d, meta)?;
        } else {
            copy_tree(&s, &d, meta)?;
        }
    }
    let m = src.symlink_metadata().map_err(io_err("stat", src))?;
    let owner = meta.owner.unwrap_or((m.uid(), m.gid()));
    set_meta(
        dest,
        meta.mode.unwrap_or(m.mode() & 0o7777),
        owner,
        Some(m.mtime()),
    )
}

/// `--chmod=`: octal digits.
pub fn parse_chmod(spec: &str) -> Result<u32, Error> {
    if spec.is_empty() || spec.len() > 4 || !spec.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(Error::Chmod(spec.into()));
    }
    u32::from_str_radix(spec, 8).map_err(|_| Error::Chmod(spec.into()))
}

/// `--chown=user[:group]` against the image's `/etc/passwd` and `/etc/group` (numbers pass
/// through). A user without a group gets the gid equal to the uid, as Docker gives it.
pub fn resolve_chown(spec: &str, lowers: &[PathBuf]) -> Result<Owner, Error> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let err = |reason: String| Error::Chown {
        spec: spec.into(),
        reason,
    };
    if user.is_empty() {
        return Err(err("no user".into()));
    }
    let read = |file: &str| -> String {
        lookup(lowers, Path::new(file))
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    };
    let find = |text: &str, name: &str, what: &str| -> Result<u32, Error> {
        if let Ok(n) = name.parse::<u32>() {
            return Ok(n);
        }
        text.lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[0] == name).then(|| f[2].parse::<u32>().ok())?
            })
            .ok_or_else(|| {
                err(format!(
                    "no {what} {name:?} in the image's /etc/{what_file}",
                    what_file = if what == "user" { "passwd" } else { "group" }
                ))
            })
    };
    let uid = find(&read("etc/passwd"), user, "user")?;
    let gid = match group {
        Some(g) if !g.is_empty() => find(&read("etc/group"), g, "group")?,
        _ => uid,
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_resolve_against_the_workdir() {
        assert_eq!(resolve_dest("/a/b", "/w").unwrap(), ("a/b".into(), false));
        assert_eq!(resolve_dest("b/", "/w").unwrap(), ("w/b".into(), true));
        assert_eq!(resolve_dest(".", "/w").unwrap(), ("w".into(), true));
        assert_eq!(resolve_dest("x", "").unwrap(), ("x".into(), false));
        assert_eq!(resolve_dest("/", "").unwrap(), ("".into(), true));
        assert_eq!(resolve_dest("../../x", "/w").unwrap(), ("x".into(), false));
    }

    #[test]
    fn chown_names_come_from_the_image_and_numbers_pass() {
        let d = tempfile::tempdir().unwrap();
        let top = d.path().join("top");
        std::fs::create_dir_all(top.join("etc")).unwrap();
        std::fs::write(
            top.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(top.join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let lowers = vec![top];
        assert_eq!(resolve_chown("app", &lowers).unwrap(), (1000, 1000));
        assert_eq!(resolve_chown("app:staff", &lowers).unwrap(), (1000, 50));
        assert_eq!(resolve_chown("7:8", &lowers).unwrap(), (7, 8));
        let e = resolve_chown("nobody", &lowers).unwrap_err().to_string();
        assert!(e.contains("nobody") && e.contains("/etc/passwd"), "{e}");
        assert!(parse_chmod("755").is_ok());
        assert!(parse_chmod("9").is_err());
    }

    #[test]
    fn image_symlinks_in_a_destination_are_followed_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let l = d.path().join("l");
        std::fs::create_dir_all(l.join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", l.join("bin")).unwrap();
        std::os::unix::fs::symlink("/../../etc", l.join("up")).unwrap();
        std::os::unix::fs::symlink("x", l.join("usr/bin/link")).unwrap();
        let lowers = vec![l];
        let r = |p: &str, keep| resolve_in_image(&lowers, Path::new(p), keep);
        assert_eq!(r("bin/tool", false), PathBuf::from("usr/bin/tool"));
        assert_eq!(r("up/passwd", false), PathBuf::from("etc/passwd"));
        assert_eq!(r("bin/link", true), PathBuf::from("usr/bin/link"));
        assert_eq!(r("bin/link", false), PathBuf::from("usr/bin/x"));
        assert_eq!(r("plain/dir", false), PathBuf::from("plain/dir"));
    }

    #[test]
    fn the_merged_view_honours_whiteouts_and_opaque_dirs() {
        let d = tempfile::tempdir().unwrap();
        let (top, bottom) = (d.path().join("top"), d.path().join("bottom"));
        std::fs::create_dir_all(bottom.join("d")).unwrap();
        std::fs::write(bottom.join("d/old"), "1").unwrap();
        std::fs::write(bottom.join("d/kept"), "k").unwrap();
        std::fs::create_dir_all(top.join("d")).unwrap();
        rfs::mknodat(
            rfs::CWD,
            top.join("d/old"),
            rfs::FileType::CharacterDevice,
            rfs::Mode::empty(),
            0,
        )
        .unwrap();
        std::fs::write(top.join("d/new"), "2").unwrap();
        let lowers = vec![top, bottom];
        assert!(lookup(&lowers, Path::new("d/old")).is_none());
        assert!(lookup(&lowers, Path::new("d/kept")).is_some());
        assert!(is_dir(&lowers, Path::new("d")));
        let out = d.path().join("out");
        merge_tree(
            &lowers,
            Path::new("d"),
            &out,
            CopyMeta {
                keep_owner: true,
                ..Default::default()
            },
        )
        .unwrap();
        let mut names: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["kept", "new"]);
    }
}
