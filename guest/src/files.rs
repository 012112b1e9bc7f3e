//! The pod spec's `files`: written into a container's rootfs before it is created, resolved
//! inside it (`openat2` with `RESOLVE_IN_ROOT`: symlinks and `..` cannot lead out), with their
//! exact mode and owner.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

use hyper_proto::types::FileInjection;

use crate::error::{Error, Result};

/// Writes every file. Owners are numbers or names from the container's /etc/passwd and
/// /etc/group ("" is root); missing parents are made 0755 root. Errors:
/// [`Error::InvalidArgument`] naming the file (a relative path, a mode above 0o7777, an
/// unknown owner, a directory in the way).
pub fn write_all(rootfs: &Path, files: &[FileInjection], passwd: &str, group: &str) -> Result<()> {
    for f in files {
        write(rootfs, f, passwd, group)?;
    }
    Ok(())
}

fn write(rootfs: &Path, f: &FileInjection, passwd: &str, group: &str) -> Result<()> {
    let path = f.path.as_str();
    let bad = |msg: String| Error::InvalidArgument(format!("file {path}: {msg}"));
    let p = Path::new(path);
    if !p.is_absolute() || p.file_name().is_none() {
        return Err(bad("must be an absolute file path".into()));
    }
    if f.mode > 0o7777 {
        return Err(bad(format!("mode {:o}: above 7777", f.mode)));
    }
    let uid = crate::user::uid(&f.user, passwd).map_err(|e| bad(e.to_string()))?;
    let gid = crate::user::gid(&f.group, group).map_err(|e| bad(e.to_string()))?;
    if let Some(parent) = p.parent() {
        crate::rootfs::ensure_dir("file", rootfs, &parent.to_string_lossy(), 0, 0)?;
    }
    let root = std::fs::File::open(rootfs)
        .map_err(|e| Error::io(format!("open {}", rootfs.display()), e))?;
    let how = OpenHow::new()
        .flags(
            OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_TRUNC
                | OFlag::O_CLOEXEC
                | OFlag::O_NOCTTY
                | OFlag::O_NONBLOCK,
        )
        .mode(Mode::from_bits_truncate(0o600))
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(root.as_raw_fd(), path.trim_start_matches('/'), how).map_err(|e| match e {
        nix::errno::Errno::EISDIR => bad("a directory is there".into()),
        e => Error::io(format!("file {path}: open"), e.into()),
    })?;
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(fd);
    let meta = file
        .metadata()
        .map_err(|e| Error::io(format!("file {path}: stat"), e))?;
    if !meta.is_file() {
        return Err(bad("not a regular file in the image".into()));
    }
    file.write_all(&f.content)
        .map_err(|e| Error::io(format!("file {path}: write"), e))?;
    nix::unistd::fchown(file.as_raw_fd(), Some(uid.into()), Some(gid.into()))
        .map_err(|e| Error::io(format!("file {path}: chown"), e.into()))?;
    // After chown, which clears set-id bits; fchmod is not subject to the umask.
    nix::sys::stat::fchmod(file.as_raw_fd(), Mode::from_bits_truncate(f.mode))
        .map_err(|e| Error::io(format!("file {path}: chmod"), e.into()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, symlink};

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:app\n";

    fn file(path: &str, mode: u32, user: &str, group: &str) -> FileInjection {
        FileInjection {
            path: path.into(),
            content: b"secret".to_vec(),
            mode,
            user: user.into(),
            group: group.into(),
        }
    }

    #[test]
    fn files_get_their_exact_mode_and_owner_inside_the_rootfs() {
        let d = tempfile::tempdir().unwrap();
        let rootfs = d.path().join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        symlink(&outside, rootfs.join("escape")).unwrap();
        symlink("/etc", rootfs.join("up")).unwrap();
        write_all(
            &rootfs,
            &[
                file("/run/secrets/key", 0o600, "1000", "1000"),
                file("/escape/x", 0o644, "app", "staff"),
                file("/up/../../../../y", 0o4755, "", ""),
            ],
            PASSWD,
            GROUP,
        )
        .unwrap();
        let meta = std::fs::metadata(rootfs.join("run/secrets/key")).unwrap();
        assert_eq!(
            (meta.mode() & 0o7777, meta.uid(), meta.gid()),
            (0o600, 1000, 1000)
        );
        assert_eq!(
            std::fs::read(rootfs.join("run/secrets/key")).unwrap(),
            b"secret"
        );
        let dir = std::fs::metadata(rootfs.join("run/secrets")).unwrap();
        assert_eq!((dir.uid(), dir.mode() & 0o777), (0, 0o755));
        // The absolute link resolves inside the rootfs; nothing is written outside it.
        let inside = rootfs.join(outside.strip_prefix("/").unwrap()).join("x");
        let meta = std::fs::metadata(inside).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1000, 50));
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        assert_eq!(
            std::fs::metadata(rootfs.join("y")).unwrap().mode() & 0o7777,
            0o4755
        );
    }

    #[test]
    fn bad_files_are_named() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("dir")).unwrap();
        let err = |f| {
            write_all(d.path(), &[f], PASSWD, GROUP)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(file("rel", 0o600, "", "")),
            "file rel: must be an absolute file path"
        );
        assert_eq!(
            err(file("/a", 0o17777, "", "")),
            "file /a: mode 17777: above 7777"
        );
        assert!(err(file("/a", 0o600, "nobody", "")).starts_with("file /a: user nobody"));
        assert_eq!(
            err(file("/dir", 0o600, "", "")),
            "file /dir: a directory is there"
        );
    }
}
