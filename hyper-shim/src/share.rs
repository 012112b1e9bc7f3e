//! The VM's shared directory: each container's rootfs is bind-mounted at `<id>/rootfs` in it,
//! and virtiofsd serves the whole directory to the guest.
//!
//! The mounts live in the shim's private mount namespace (see `main.rs`), so they disappear
//! with the shim even when it is killed.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::error::{Error, Result};

pub struct SharedDir {
    root: PathBuf,
}

/// The rootfs path the guest sees, relative to the share.
pub fn guest_rootfs(container_id: &str) -> String {
    format!("{container_id}/rootfs")
}

impl SharedDir {
    pub fn create(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root)
            .map_err(|e| Error::io(format!("mkdir {}", root.display()), e))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Makes `rootfs` visible to the guest as `<id>/rootfs`.
    pub fn attach(&self, container_id: &str, rootfs: &Path) -> Result<()> {
        let meta = std::fs::metadata(rootfs).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::NotFound(format!("rootfs {}: no such directory", rootfs.display()))
            }
            _ => Error::io(format!("rootfs {}", rootfs.display()), e),
        })?;
        if !meta.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "rootfs {}: not a directory",
                rootfs.display()
            )));
        }
        let target = self.root.join(guest_rootfs(container_id));
        if target.exists() {
            return Err(Error::Conflict(format!(
                "container {container_id} is already in this VM"
            )));
        }
        std::fs::create_dir_all(&target).map_err(|e| Error::io("mkdir share target", e))?;
        if let Err(e) = mount(
            Some(rootfs),
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ) {
            self.remove_dirs(container_id);
            return Err(Error::io(
                format!("bind {} into the VM share", rootfs.display()),
                e.into(),
            ));
        }
        Ok(())
    }

    /// Undoes [`SharedDir::attach`]; a container that was never attached is fine.
    pub fn detach(&self, container_id: &str) -> Result<()> {
        let target = self.root.join(guest_rootfs(container_id));
        if !target.exists() {
            return Ok(());
        }
        match umount2(&target, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
            Err(e) => return Err(Error::io(format!("unmount {}", target.display()), e.into())),
        }
        self.remove_dirs(container_id);
        Ok(())
    }

    fn remove_dirs(&self, container_id: &str) {
        let dir = self.root.join(container_id);
        // remove_dir (not _all): never recurse into a rootfs that is still mounted.
        for d in [dir.join("rootfs"), dir] {
            if let Err(e) = std::fs::remove_dir(&d) {
                tracing::warn!("remove {}: {e}", d.display());
            }
        }
    }

    /// Detaches every container still attached.
    pub fn detach_all(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if let Err(e) = self.detach(&id) {
                tracing::warn!(container_id = %id, "{e}");
            }
        }
    }
}
