//! Host paths named by hyperd (volume sources, disk images), opened without following a
//! symlink anywhere on them (`openat2` with `RESOLVE_NO_SYMLINKS`): a path that became a
//! symlink after hyperd checked it is refused, and what the shim uses is the inode it opened.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};

use crate::error::{Error, Result};

/// Opens the absolute `path` with `flags` (plus `O_CLOEXEC`, never following symlinks).
/// `what` names the path in errors: [`Error::InvalidArgument`] for a relative path or a
/// symlink on it, [`Error::NotFound`] when it does not exist.
pub fn open(what: &str, path: &str, flags: OFlag) -> Result<OwnedFd> {
    if !Path::new(path).is_absolute() {
        return Err(Error::InvalidArgument(format!(
            "{what} {path:?}: must be an absolute path"
        )));
    }
    // openat2 refuses O_PATH with flags other than O_CLOEXEC, O_DIRECTORY and O_NOFOLLOW.
    let extra = if flags.contains(OFlag::O_PATH) {
        OFlag::O_CLOEXEC
    } else {
        OFlag::O_CLOEXEC | OFlag::O_NOCTTY
    };
    let how = OpenHow::new()
        .flags(flags | extra)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(libc::AT_FDCWD, path, how) {
        // SAFETY: openat2 returned a new descriptor that nothing else owns.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(Errno::ENOENT) => Err(Error::NotFound(format!(
            "{what} {path}: no such file or directory"
        ))),
        Err(Errno::ELOOP) => Err(Error::InvalidArgument(format!(
            "{what} {path}: a symbolic link is on the path (refused)"
        ))),
        Err(e) => Err(Error::io(format!("{what} {path}: open"), e.into())),
    }
}

/// What an open descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    BlockDevice,
    Other,
}

pub fn kind(fd: &OwnedFd) -> Result<Kind> {
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| Error::io("fstat", e.into()))?;
    Ok(match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFREG => Kind::File,
        libc::S_IFBLK => Kind::BlockDevice,
        _ => Kind::Other,
    })
}

/// The path through which another process of ours (running as root) reaches `fd`: the
/// magic link reopens the very inode the shim opened, whatever its path became since.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        fd.as_raw_fd()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_anywhere_on_the_path_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("real")).unwrap();
        std::fs::write(d.path().join("real/f"), b"x").unwrap();
        std::os::unix::fs::symlink("real", d.path().join("link")).unwrap();
        let p = |s: &str| d.path().join(s).to_string_lossy().into_owned();
        let fd = open("source", &p("real/f"), OFlag::O_PATH).unwrap();
        assert_eq!(kind(&fd).unwrap(), Kind::File);
        for bad in ["link", "link/f"] {
            let e = open("source", &p(bad), OFlag::O_PATH).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{bad}: {e}");
            assert!(e.to_string().contains(&p(bad)), "{e}");
        }
        let e = open("source", &p("nope"), OFlag::O_PATH).unwrap_err();
        assert!(matches!(e, Error::NotFound(_)));
        let e = open("source", "rel/path", OFlag::O_PATH).unwrap_err();
        assert_eq!(
            e.to_string(),
            "source \"rel/path\": must be an absolute path"
        );
    }
}
