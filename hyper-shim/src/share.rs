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

/// Where a container's rootfs comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootfsSource {
    /// A host directory, bind-mounted.
    Dir(PathBuf),
    /// Read-only layers (topmost first) under a writable upper dir.
    Overlay {
        layers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
    },
}

fn require_dir(what: &str, path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::InvalidArgument(format!(
            "{what} {}: not a directory",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound(format!(
            "{what} {}: no such directory",
            path.display()
        ))),
        Err(e) => Err(Error::io(format!("{what} {}", path.display()), e)),
    }
}

/// overlayfs mount options. Its option syntax has no escaping we can rely on for ':' and ','.
pub fn overlay_options(layers: &[PathBuf], upper: &Path, work: &Path) -> Result<String> {
    let all = layers.iter().map(PathBuf::as_path).chain([upper, work]);
    for p in all {
        let s = p.to_string_lossy();
        if !p.is_absolute() || s.contains([':', ',']) {
            return Err(Error::InvalidArgument(format!(
                "overlay path {s:?}: must be absolute and free of ':' and ','"
            )));
        }
    }
    if layers.is_empty() {
        return Err(Error::InvalidArgument("overlay: no layers".into()));
    }
    let lower: Vec<String> = layers
        .iter()
        .map(|l| l.to_string_lossy().into_owned())
        .collect();
    Ok(format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    ))
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

    /// Makes the container's rootfs visible to the guest as `<id>/rootfs`.
    pub fn attach(&self, container_id: &str, rootfs: &RootfsSource) -> Result<()> {
        let target = self.root.join(guest_rootfs(container_id));
        if target.exists() {
            return Err(Error::Conflict(format!(
                "container {container_id} is already in this VM"
            )));
        }
        // Everything is checked before anything is created.
        let overlay_data = match rootfs {
            RootfsSource::Dir(dir) => {
                require_dir("rootfs", dir)?;
                None
            }
            RootfsSource::Overlay {
                layers,
                upper,
                work,
            } => {
                let data = overlay_options(layers, upper, work)?;
                for layer in layers {
                    require_dir("layer", layer)?;
                }
                for dir in [upper, work] {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| Error::io(format!("mkdir {}", dir.display()), e))?;
                }
                Some(data)
            }
        };
        std::fs::create_dir_all(&target).map_err(|e| Error::io("mkdir share target", e))?;
        let mounted = match (rootfs, &overlay_data) {
            (RootfsSource::Dir(dir), _) => mount(
                Some(dir.as_path()),
                &target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            ),
            (RootfsSource::Overlay { .. }, data) => mount(
                Some("overlay"),
                &target,
                Some("overlay"),
                MsFlags::empty(),
                data.as_deref(),
            ),
        };
        if let Err(e) = mounted {
            self.remove_dirs(container_id);
            return Err(Error::io(
                format!("mount the rootfs of {container_id} into the VM share"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_options_list_layers_topmost_first() {
        let o = overlay_options(
            &["/img/top".into(), "/img/base".into()],
            Path::new("/c/upper"),
            Path::new("/c/work"),
        )
        .unwrap();
        assert_eq!(
            o,
            "lowerdir=/img/top:/img/base,upperdir=/c/upper,workdir=/c/work"
        );
    }

    #[test]
    fn overlay_paths_that_would_break_the_option_string_are_refused() {
        let up = Path::new("/c/upper");
        let work = Path::new("/c/work");
        for bad in ["/a:b", "/a,b", "relative"] {
            let e = overlay_options(&[bad.into()], up, work).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{bad}");
        }
        assert!(overlay_options(&[], up, work).is_err());
    }
}
