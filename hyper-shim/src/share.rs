//! The VM's shared directory: each container's rootfs is bind-mounted at `<id>/rootfs` in it,
//! its host volumes at `<id>/volumes/<index>` (the index in `AddContainerRequest.mounts`), and
//! virtiofsd serves the whole directory to the guest.
//!
//! The mounts live in the shim's private mount namespace (see `main.rs`), so they disappear
//! with the shim even when it is killed.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

use hyper_proto::shim::VolumeMount;
use hyper_proto::types::GuestMount;

use crate::hostpath::{self, Kind};

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

/// The volumes directory of a container, relative to the share.
pub fn guest_volume(container_id: &str, index: usize) -> String {
    format!("{container_id}/volumes/{index}")
}

/// A host volume source, opened (`O_PATH`, no symlinks followed) before anything is mounted.
#[derive(Debug)]
pub struct OpenVolume {
    pub index: usize,
    pub fd: OwnedFd,
    pub is_dir: bool,
    pub read_only: bool,
}

/// Checks a container's volumes and opens their host sources; turns them into what the agent
/// mounts. `disks` are the serials the VM booted with. Errors: [`Error::InvalidArgument`]
/// (naming `mounts[i]` and the field) for a relative destination, neither or both of source
/// and block_serial, a serial the VM has no disk for, a symlink on the source; and
/// [`Error::NotFound`] for a missing source.
pub fn open_volumes(
    container_id: &str,
    mounts: &[VolumeMount],
    disks: &[String],
) -> Result<(Vec<OpenVolume>, Vec<GuestMount>)> {
    let mut open = Vec::new();
    let mut guest = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        let bad = |msg: String| Error::InvalidArgument(format!("mounts[{i}]: {msg}"));
        if !Path::new(&m.destination).is_absolute() {
            return Err(bad(format!(
                "destination {:?}: must be an absolute path",
                m.destination
            )));
        }
        let share_path = match (m.source.is_empty(), m.block_serial.is_empty()) {
            (false, true) => {
                let fd = hostpath::open(&format!("mounts[{i}]: source"), &m.source, OFlag::O_PATH)?;
                let is_dir = match hostpath::kind(&fd)? {
                    Kind::Dir => true,
                    Kind::File => false,
                    _ => {
                        return Err(bad(format!(
                            "source {}: not a directory or regular file",
                            m.source
                        )));
                    }
                };
                open.push(OpenVolume {
                    index: i,
                    fd,
                    is_dir,
                    read_only: m.read_only,
                });
                guest_volume(container_id, i)
            }
            (true, false) => {
                if !disks.contains(&m.block_serial) {
                    return Err(bad(format!(
                        "block_serial {:?}: the VM has no such disk",
                        m.block_serial
                    )));
                }
                String::new()
            }
            _ => return Err(bad("give exactly one of source and block_serial".into())),
        };
        if !m.fstype.is_empty() && m.block_serial.is_empty() {
            return Err(bad(format!("fstype {:?}: only for block_serial", m.fstype)));
        }
        guest.push(GuestMount {
            destination: m.destination.clone(),
            read_only: m.read_only,
            share_path,
            block_serial: m.block_serial.clone(),
            fstype: m.fstype.clone(),
            populate: m.populate,
        });
    }
    Ok((open, guest))
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

    /// Bind-mounts the opened volume sources at `<id>/volumes/<index>` (read-only ones made
    /// read-only before they appear, see [`mount_detached`]), after [`SharedDir::attach`]. On error the caller detaches the
    /// container, which undoes what was mounted.
    pub fn attach_volumes(&self, container_id: &str, volumes: &[OpenVolume]) -> Result<()> {
        if volumes.is_empty() {
            return Ok(());
        }
        let dir = self.root.join(container_id).join("volumes");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("mkdir share volumes", e))?;
        for v in volumes {
            let target = dir.join(v.index.to_string());
            let made = if v.is_dir {
                std::fs::create_dir(&target)
            } else {
                std::fs::File::create_new(&target).map(drop)
            };
            made.map_err(|e| Error::io(format!("create {}", target.display()), e))?;
            let what = format!("volume {} of {container_id}", v.index);
            mount_detached(&v.fd, &target, v.read_only).map_err(|e| Error::io(&what, e))?;
        }
        Ok(())
    }

    /// Undoes [`SharedDir::attach`] and [`SharedDir::attach_volumes`] (volumes first); a
    /// container that was never attached is fine.
    pub fn detach(&self, container_id: &str) -> Result<()> {
        let dir = self.root.join(container_id);
        if !dir.exists() {
            return Ok(());
        }
        let volumes = dir.join("volumes");
        if let Ok(entries) = std::fs::read_dir(&volumes) {
            for entry in entries.flatten() {
                let target = entry.path();
                unmount(&target)?;
                // Unmounted: what is left is our empty mount point, never the volume.
                let removed = if target.is_dir() {
                    std::fs::remove_dir(&target)
                } else {
                    std::fs::remove_file(&target)
                };
                if let Err(e) = removed {
                    tracing::warn!("remove {}: {e}", target.display());
                }
            }
        }
        let target = dir.join("rootfs");
        if target.exists() {
            unmount(&target)?;
        }
        self.remove_dirs(container_id);
        Ok(())
    }

    fn remove_dirs(&self, container_id: &str) {
        let dir = self.root.join(container_id);
        // remove_dir (not _all): never recurse into a rootfs that is still mounted.
        for d in [dir.join("volumes"), dir.join("rootfs"), dir] {
            match std::fs::remove_dir(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("remove {}: {e}", d.display()),
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

/// Bind-mounts the opened `source` (recursively) at `target` with the new mount API: the
/// copy is made detached (`open_tree`), made read-only there when asked (`mount_setattr`),
/// and only then attached (`move_mount`), so no process — virtiofsd's sandbox included,
/// which gets copies of the share's mounts and never sees a later remount — can see it
/// writable.
fn mount_detached(source: &OwnedFd, target: &Path, read_only: bool) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;

    let empty = c"";
    // SAFETY: plain syscalls on descriptors we own and NUL-terminated strings.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            source.as_raw_fd(),
            empty.as_ptr(),
            libc::OPEN_TREE_CLONE
                | libc::OPEN_TREE_CLOEXEC
                | libc::AT_EMPTY_PATH as libc::c_uint
                | libc::AT_RECURSIVE as libc::c_uint,
        )
    };
    if tree < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: open_tree returned a new descriptor that nothing else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as i32) };
    if read_only {
        let attr = libc::mount_attr {
            attr_set: libc::MOUNT_ATTR_RDONLY,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        // SAFETY: as above; attr lives across the call and its size is given.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                tree.as_raw_fd(),
                empty.as_ptr(),
                (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
                &attr as *const libc::mount_attr,
                std::mem::size_of::<libc::mount_attr>(),
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    let target = CString::new(target.as_os_str().as_bytes())?;
    // SAFETY: as above.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Unmounts everything mounted at `target` (a mount point that is not one is fine).
fn unmount(target: &Path) -> Result<()> {
    loop {
        match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(Error::io(format!("unmount {}", target.display()), e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root (mount namespaces), as the shim does; run in a private mount namespace.
    #[test]
    fn volumes_are_bound_read_only_before_they_appear_and_detached_with_the_container() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("f"), b"x").unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"y").unwrap();
        let root = dir.path().join("share");
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
                mount(
                    None::<&str>,
                    "/",
                    None::<&str>,
                    MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                    None::<&str>,
                )
                .unwrap();
                let share = SharedDir::create(&root).unwrap();
                let mounts = [
                    VolumeMount {
                        source: src.to_string_lossy().into(),
                        destination: "/ro".into(),
                        read_only: true,
                        ..Default::default()
                    },
                    VolumeMount {
                        source: file.to_string_lossy().into(),
                        destination: "/f".into(),
                        ..Default::default()
                    },
                ];
                let (open, guest) = open_volumes("c1", &mounts, &[]).unwrap();
                assert_eq!(guest[0].share_path, "c1/volumes/0");
                assert_eq!(guest[1].share_path, "c1/volumes/1");
                std::fs::create_dir_all(root.join("c1")).unwrap();
                share.attach_volumes("c1", &open).unwrap();
                let ro = root.join("c1/volumes/0");
                assert_eq!(std::fs::read(ro.join("f")).unwrap(), b"x");
                let e = std::fs::write(ro.join("g"), b"z").unwrap_err();
                assert_eq!(e.raw_os_error(), Some(libc::EROFS));
                std::fs::write(root.join("c1/volumes/1"), b"written").unwrap();
                share.detach("c1").unwrap();
                assert!(!root.join("c1").exists());
            })
            .join()
            .unwrap();
        });
        assert_eq!(std::fs::read(&file).unwrap(), b"written");
        assert_eq!(std::fs::read_dir(&src).unwrap().count(), 1);
    }

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
