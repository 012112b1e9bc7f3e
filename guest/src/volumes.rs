//! A container's volumes in the guest: share paths (host directories and files the shim
//! bind-mounted into the share) and virtio-blk disks found by serial, mounted once per VM under
//! [`DISK_DIR`]; their mount points made inside the rootfs; Docker's rule that a new, empty
//! volume first gets what the image has at its path.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::mount::{MsFlags, mount};

use hyper_proto::types::GuestMount;

use crate::container::rootfs_path;
use crate::error::{Error, Result};
use crate::spec::BindMount;

/// Where the VM's disks are mounted, one directory per serial.
pub const DISK_DIR: &str = "/run/hyper/disks";
const DEFAULT_FSTYPE: &str = "ext4";
/// What mkfs puts in a new filesystem: a volume holding only this is still empty.
const LOST_FOUND: &str = "lost+found";

/// The VM's virtio-blk disks, each mounted at its first use and kept for the VM's life.
pub struct Disks {
    sys_block: PathBuf,
    dev: PathBuf,
    dir: PathBuf,
    /// serial → the fstype it was mounted as.
    mounted: Mutex<HashMap<String, String>>,
}

impl Default for Disks {
    fn default() -> Self {
        Self::new(
            Path::new("/sys/block"),
            Path::new("/dev"),
            Path::new(DISK_DIR),
        )
    }
}

/// The block device (`vda`, ...) whose virtio serial is `serial`, from `sys_block`
/// (`/sys/block`).
pub fn find_disk(sys_block: &Path, serial: &str) -> Option<String> {
    let entries = std::fs::read_dir(sys_block).ok()?;
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vd"))
        .collect();
    names.sort();
    names.into_iter().find(|n| {
        std::fs::read_to_string(sys_block.join(n).join("serial"))
            .is_ok_and(|s| s.trim_end_matches(['\n', '\0']) == serial)
    })
}

impl Disks {
    pub fn new(sys_block: &Path, dev: &Path, dir: &Path) -> Self {
        Self {
            sys_block: sys_block.to_path_buf(),
            dev: dev.to_path_buf(),
            dir: dir.to_path_buf(),
            mounted: Mutex::new(HashMap::new()),
        }
    }

    /// Mounts the disk of `serial` as `fstype` ("": ext4) unless it is already, and returns
    /// where. A disk the VMM gives read-only is mounted read-only. Errors:
    /// [`Error::NotFound`] when no disk has this serial, [`Error::InvalidArgument`] when it
    /// does not hold a `fstype` filesystem or was mounted as another.
    pub fn mount(&self, serial: &str, fstype: &str) -> Result<PathBuf> {
        let fstype = if fstype.is_empty() {
            DEFAULT_FSTYPE
        } else {
            fstype
        };
        let target = self.dir.join(serial);
        let mut mounted = self.mounted.lock().expect("disks lock");
        if let Some(was) = mounted.get(serial) {
            if was != fstype {
                return Err(Error::InvalidArgument(format!(
                    "disk {serial}: already mounted as {was}, not {fstype}"
                )));
            }
            return Ok(target);
        }
        let name = find_disk(&self.sys_block, serial).ok_or_else(|| {
            Error::NotFound(format!("disk {serial}: no virtio-blk disk has this serial"))
        })?;
        let device = self.dev.join(&name);
        let read_only = std::fs::read_to_string(self.sys_block.join(&name).join("ro"))
            .is_ok_and(|s| s.trim() == "1");
        std::fs::create_dir_all(&target)
            .map_err(|e| Error::io(format!("mkdir {}", target.display()), e))?;
        let flags = if read_only {
            MsFlags::MS_RDONLY
        } else {
            MsFlags::empty()
        };
        let mounted_now = mount(
            Some(device.as_path()),
            &target,
            Some(fstype),
            flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            None::<&str>,
        );
        if let Err(e) = mounted_now {
            let _ = std::fs::remove_dir(&target);
            return Err(match e {
                nix::errno::Errno::EINVAL => Error::InvalidArgument(format!(
                    "disk {serial}: {} holds no {fstype} filesystem",
                    device.display()
                )),
                nix::errno::Errno::ENODEV => Error::InvalidArgument(format!(
                    "disk {serial}: fstype {fstype}: not supported by the guest kernel"
                )),
                e => Error::io(
                    format!("disk {serial}: mount {} as {fstype}", device.display()),
                    e.into(),
                ),
            });
        }
        tracing::info!(serial, device = %device.display(), fstype, read_only, "disk mounted");
        mounted.insert(serial.to_string(), fstype.to_string());
        Ok(target)
    }
}

/// Turns the request's mounts into bind mounts of the OCI spec: the source in the guest, the
/// mount point made in the rootfs (a directory, or an empty file for a file source) and
/// resolved there, so no symlink of the image leads the mount out of it. A `populate` volume
/// that is empty first gets a copy of the image's directory at its path. Errors:
/// [`Error::InvalidArgument`] naming `mounts[i]`, [`Error::NotFound`] for a missing source.
pub fn prepare(
    share: &Path,
    rootfs: &Path,
    mounts: &[GuestMount],
    disks: &Disks,
) -> Result<Vec<BindMount>> {
    let mut out = Vec::with_capacity(mounts.len());
    for (i, m) in mounts.iter().enumerate() {
        let bad = |msg: String| Error::InvalidArgument(format!("mounts[{i}]: {msg}"));
        let dest = m.destination.as_str();
        if !dest.starts_with('/') || Path::new(dest).file_name().is_none() {
            return Err(bad(format!(
                "destination {dest:?}: must be an absolute path below /"
            )));
        }
        let source = match (m.share_path.is_empty(), m.block_serial.is_empty()) {
            (false, true) => {
                let p = rootfs_path(share, &m.share_path)
                    .map_err(|_| bad(format!("share_path {:?}: invalid", m.share_path)))?;
                if std::fs::symlink_metadata(&p).is_err() {
                    return Err(Error::NotFound(format!(
                        "mounts[{i}]: share_path {}: not in the share",
                        m.share_path
                    )));
                }
                p
            }
            (true, false) => disks.mount(&m.block_serial, &m.fstype)?,
            _ => return Err(bad("give exactly one of share_path and block_serial".into())),
        };
        let meta = std::fs::symlink_metadata(&source)
            .map_err(|e| Error::io(format!("mounts[{i}]: stat {}", source.display()), e))?;
        if meta.is_dir() {
            if m.populate && !m.read_only {
                populate(rootfs, dest, &source)?;
            }
            crate::rootfs::ensure_dir("volume", rootfs, dest, 0, 0)?;
        } else if meta.is_file() {
            crate::rootfs::ensure_file("volume", rootfs, dest)?;
        } else {
            return Err(bad(format!(
                "source {}: not a directory or regular file",
                source.display()
            )));
        }
        let destination = crate::rootfs::resolve_in(rootfs, dest)
            .ok_or_else(|| bad(format!("destination {dest}: vanished from the rootfs")))?;
        out.push(BindMount {
            source,
            destination,
            read_only: m.read_only,
        });
    }
    Ok(out)
}

/// Whether a volume directory holds nothing (a filesystem's lost+found aside).
fn is_empty(dir: &Path) -> Result<bool> {
    let mut entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("read {}", dir.display()), e))?;
    Ok(!entries.any(|e| e.is_err() || e.is_ok_and(|e| e.file_name() != LOST_FOUND)))
}

/// Docker's rule for a new volume: when it is empty and the image has a directory at `dest`,
/// that directory's content (modes, owners, symlinks) is copied in, and the volume's root
/// takes the directory's mode and owner.
fn populate(rootfs: &Path, dest: &str, volume: &Path) -> Result<()> {
    let Some(image_dir) = crate::rootfs::resolve(rootfs, dest) else {
        return Ok(());
    };
    let Ok(meta) = std::fs::symlink_metadata(&image_dir) else {
        return Ok(());
    };
    if !meta.is_dir() || !is_empty(volume)? {
        return Ok(());
    }
    copy_tree(&image_dir, volume)?;
    set_owner_and_mode(volume, &meta)?;
    tracing::info!(dest, "volume populated from the image");
    Ok(())
}

fn set_owner_and_mode(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()))
        .map_err(|e| Error::io(format!("chown {}", path.display()), e))?;
    if !meta.file_type().is_symlink() {
        // After chown, which clears set-id bits.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(|e| Error::io(format!("chmod {}", path.display()), e))?;
    }
    Ok(())
}

/// Copies the content of `from` into the existing directory `to`: directories, regular
/// files and symlinks, with their modes and owners. Other kinds (devices, sockets, fifos)
/// are skipped.
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let entries =
        std::fs::read_dir(from).map_err(|e| Error::io(format!("read {}", from.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("read {}", from.display()), e))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&src)
            .map_err(|e| Error::io(format!("stat {}", src.display()), e))?;
        let ft = meta.file_type();
        let copied = if ft.is_dir() {
            std::fs::create_dir(&dst)
                .map_err(|e| Error::io(format!("mkdir {}", dst.display()), e))?;
            copy_tree(&src, &dst)?;
            true
        } else if ft.is_file() {
            std::fs::copy(&src, &dst)
                .map_err(|e| Error::io(format!("copy {}", src.display()), e))?;
            true
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&src)
                .map_err(|e| Error::io(format!("readlink {}", src.display()), e))?;
            std::os::unix::fs::symlink(&target, &dst)
                .map_err(|e| Error::io(format!("symlink {}", dst.display()), e))?;
            true
        } else {
            tracing::warn!(path = %src.display(), "populate: not a file, directory or symlink; skipped");
            false
        };
        if copied {
            set_owner_and_mode(&dst, &meta)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn disks_are_found_by_serial() {
        let sys = tempfile::tempdir().unwrap();
        for (name, serial) in [("vda", "other"), ("vdb", "data\n"), ("sda", "data")] {
            std::fs::create_dir(sys.path().join(name)).unwrap();
            std::fs::write(sys.path().join(name).join("serial"), serial).unwrap();
        }
        assert_eq!(find_disk(sys.path(), "data").as_deref(), Some("vdb"));
        assert_eq!(find_disk(sys.path(), "none"), None);
        let disks = Disks::new(sys.path(), Path::new("/dev"), sys.path());
        let e = disks.mount("none", "").unwrap_err();
        assert!(matches!(e, Error::NotFound(_)));
        assert_eq!(
            e.to_string(),
            "disk none: no virtio-blk disk has this serial"
        );
    }

    fn tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let share = d.path().join("share");
        let rootfs = d.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("var/lib/app/sub")).unwrap();
        std::fs::write(rootfs.join("var/lib/app/sub/f"), b"image").unwrap();
        std::fs::set_permissions(
            rootfs.join("var/lib/app/sub/f"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::os::unix::fs::lchown(rootfs.join("var/lib/app/sub"), Some(1000), Some(1000)).unwrap();
        symlink("sub/f", rootfs.join("var/lib/app/link")).unwrap();
        std::fs::create_dir_all(share.join("c1/volumes/0")).unwrap();
        std::fs::create_dir_all(share.join("c1/volumes/1")).unwrap();
        std::fs::write(share.join("c1/volumes/1/mine"), b"kept").unwrap();
        std::fs::write(share.join("c1/volumes/2"), b"file").unwrap();
        (d, share, rootfs)
    }

    fn mount(share_path: &str, dest: &str, populate: bool) -> GuestMount {
        GuestMount {
            destination: dest.into(),
            share_path: share_path.into(),
            populate,
            ..Default::default()
        }
    }

    #[test]
    fn an_empty_volume_is_populated_from_the_image_and_a_full_one_is_not() {
        let (_d, share, rootfs) = tree();
        let out = prepare(
            &share,
            &rootfs,
            &[
                mount("c1/volumes/0", "/var/lib/app", true),
                mount("c1/volumes/1", "/var/lib/app", true),
            ],
            &Disks::default(),
        )
        .unwrap();
        assert_eq!(out[0].destination, "/var/lib/app");
        assert_eq!(out[0].source, share.join("c1/volumes/0"));
        let v0 = share.join("c1/volumes/0");
        assert_eq!(std::fs::read(v0.join("sub/f")).unwrap(), b"image");
        let meta = std::fs::metadata(v0.join("sub/f")).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o640);
        assert_eq!(std::fs::metadata(v0.join("sub")).unwrap().uid(), 1000);
        assert_eq!(
            std::fs::read_link(v0.join("link")).unwrap(),
            Path::new("sub/f")
        );
        let v1: Vec<_> = std::fs::read_dir(share.join("c1/volumes/1"))
            .unwrap()
            .collect();
        assert_eq!(v1.len(), 1, "a volume with content is left alone");
    }

    #[test]
    fn mount_points_are_made_in_the_rootfs_and_resolved_there() {
        let (_d, share, rootfs) = tree();
        symlink("/", rootfs.join("escape")).unwrap();
        let out = prepare(
            &share,
            &rootfs,
            &[
                mount("c1/volumes/0", "/escape/data", false),
                mount("c1/volumes/2", "/etc/app.conf", false),
            ],
            &Disks::default(),
        )
        .unwrap();
        assert_eq!(out[0].destination, "/data");
        assert!(rootfs.join("data").is_dir());
        assert!(rootfs.join("etc/app.conf").is_file());
        for (m, want) in [
            (
                mount("../etc", "/x", false),
                "mounts[0]: share_path \"../etc\": invalid",
            ),
            (
                mount("c1/volumes/0", "rel", false),
                "mounts[0]: destination \"rel\": must be an absolute path below /",
            ),
            (
                mount("c1/volumes/0", "/", false),
                "mounts[0]: destination \"/\": must be an absolute path below /",
            ),
            (
                mount("c1/volumes/9", "/x", false),
                "mounts[0]: share_path c1/volumes/9: not in the share",
            ),
        ] {
            let e = prepare(&share, &rootfs, &[m], &Disks::default()).unwrap_err();
            assert_eq!(e.to_string(), want);
        }
    }
}
