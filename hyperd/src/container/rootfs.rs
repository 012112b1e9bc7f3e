//! A container's own root filesystem, made from its image's rootfs under
//! `<root>/containers/<id>/rootfs`, so nothing a container writes reaches the image.
//!
//! Today this is a copy of the image's tree (hard links are not safe: a write through a link
//! would change the image). The shim will mount an overlay of the image (lower) and a
//! per-container upper dir itself once shim.proto carries layers; this module then shrinks to
//! making the upper and work dirs.

use std::path::{Path, PathBuf};

use super::Error;

pub fn rootfs_path(container_dir: &Path) -> PathBuf {
    container_dir.join("rootfs")
}

/// Copies `image_rootfs` to `<container_dir>/rootfs` (replacing an older copy).
pub fn prepare(image_rootfs: &Path, container_dir: &Path) -> Result<PathBuf, Error> {
    let dest = rootfs_path(container_dir);
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(|e| io(&dest, "remove old rootfs", e))?;
    }
    copy_tree(image_rootfs, &dest)?;
    Ok(dest)
}

/// Removes the container's rootfs, keeping its output log.
pub fn release(container_dir: &Path) -> Result<(), Error> {
    let dest = rootfs_path(container_dir);
    match std::fs::remove_dir_all(&dest) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(&dest, "remove rootfs", e)),
    }
}

fn io(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::Io {
        context: format!("{what} {}", path.display()),
        source: e,
    }
}

fn copy_tree(src: &Path, dest: &Path) -> Result<(), Error> {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let meta = std::fs::symlink_metadata(src).map_err(|e| io(src, "stat", e))?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(src).map_err(|e| io(src, "readlink", e))?;
        symlink(&target, dest).map_err(|e| io(dest, "symlink", e))?;
    } else if ft.is_dir() {
        std::fs::create_dir(dest).map_err(|e| io(dest, "mkdir", e))?;
        for entry in std::fs::read_dir(src).map_err(|e| io(src, "read dir", e))? {
            let entry = entry.map_err(|e| io(src, "read dir", e))?;
            copy_tree(&entry.path(), &dest.join(entry.file_name()))?;
        }
        std::fs::set_permissions(
            dest,
            std::fs::Permissions::from_mode(meta.permissions().mode()),
        )
        .map_err(|e| io(dest, "chmod", e))?;
    } else if ft.is_file() {
        std::fs::copy(src, dest).map_err(|e| io(dest, "copy", e))?;
    } else {
        // Device nodes, fifos and sockets are not copied: the guest provides /dev.
        tracing::debug!("skip special file {}", src.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_independent_of_the_image() {
        let d = tempfile::tempdir().unwrap();
        let image = d.path().join("image");
        std::fs::create_dir_all(image.join("bin")).unwrap();
        std::fs::write(image.join("bin/busybox"), b"bb").unwrap();
        std::os::unix::fs::symlink("/bin/busybox", image.join("bin/sh")).unwrap();
        let cdir = d.path().join("c");
        std::fs::create_dir_all(&cdir).unwrap();
        let root = prepare(&image, &cdir).unwrap();
        assert_eq!(
            std::fs::read_link(root.join("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        std::fs::write(root.join("bin/busybox"), b"changed").unwrap();
        assert_eq!(std::fs::read(image.join("bin/busybox")).unwrap(), b"bb");
        release(&cdir).unwrap();
        assert!(!root.exists());
    }
}
