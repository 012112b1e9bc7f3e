//! Block volumes given to the VM at boot (`CreateVmRequest.disks`): their validation, and the
//! image files or block devices opened by the shim without following symlinks. The VMM reaches
//! each through the shim's descriptor ([`crate::hostpath::fd_path`]), never through the path.

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

use nix::fcntl::OFlag;

use hyper_proto::types::DiskSpec;

use crate::error::{Error, Result};
use crate::hostpath::{self, Kind};

/// QEMU's cache modes; "" means the first.
pub const CACHE_MODES: &[&str] = &["writeback", "none", "writethrough", "directsync", "unsafe"];
pub const FORMATS: &[&str] = &["raw", "qcow2"];
/// virtio-blk's serial field holds 20 bytes.
pub const MAX_SERIAL_LEN: usize = 20;

/// A disk the VM boots with: its spec (defaults filled in) and the shim's open descriptor.
#[derive(Debug, Clone)]
pub struct Disk {
    pub spec: DiskSpec,
    pub fd: Arc<OwnedFd>,
    /// Where the VMM opens it: the shim's descriptor as `/proc/<pid>/fd/<n>`.
    pub vmm_path: PathBuf,
}

/// Whether `serial` is 1..=20 bytes of `[A-Za-z0-9_-]` (safe on any VMM's option syntax).
pub fn valid_serial(serial: &str) -> bool {
    (1..=MAX_SERIAL_LEN).contains(&serial.len())
        && serial
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks every disk and fills in defaults (cache "writeback"). Errors:
/// [`Error::InvalidArgument`] naming the disk and the field.
pub fn validate(specs: &[DiskSpec]) -> Result<Vec<DiskSpec>> {
    let mut serials = HashSet::new();
    let mut out = Vec::with_capacity(specs.len());
    for (i, d) in specs.iter().enumerate() {
        let bad = |msg: String| Error::InvalidArgument(format!("disks[{i}]: {msg}"));
        if !valid_serial(&d.serial) {
            return Err(bad(format!(
                "serial {:?}: use 1-{MAX_SERIAL_LEN} letters, digits, '_' or '-'",
                d.serial
            )));
        }
        if !serials.insert(d.serial.as_str()) {
            return Err(bad(format!("serial {:?}: given twice", d.serial)));
        }
        if !PathBuf::from(&d.path).is_absolute() {
            return Err(bad(format!("path {:?}: must be an absolute path", d.path)));
        }
        if !FORMATS.contains(&d.format.as_str()) {
            return Err(bad(format!(
                "format {:?}: must be one of {}",
                d.format,
                FORMATS.join(", ")
            )));
        }
        let cache = if d.cache.is_empty() {
            CACHE_MODES[0]
        } else {
            d.cache.as_str()
        };
        if !CACHE_MODES.contains(&cache) {
            return Err(bad(format!(
                "cache {:?}: must be one of {}",
                d.cache,
                CACHE_MODES.join(", ")
            )));
        }
        out.push(DiskSpec {
            cache: cache.to_string(),
            ..d.clone()
        });
    }
    Ok(out)
}

/// Validates and opens every disk (`O_RDONLY` when read-only, else `O_RDWR`): a regular file
/// or a block device. Errors: as [`validate`] and [`hostpath::open`]; anything else than a
/// file or block device is [`Error::InvalidArgument`].
pub fn open_all(specs: &[DiskSpec]) -> Result<Vec<Disk>> {
    validate(specs)?
        .into_iter()
        .enumerate()
        .map(|(i, spec)| {
            let mode = if spec.read_only {
                OFlag::O_RDONLY
            } else {
                OFlag::O_RDWR
            };
            let fd = hostpath::open(&format!("disks[{i}]: path"), &spec.path, mode)?;
            match hostpath::kind(&fd)? {
                Kind::File | Kind::BlockDevice => {}
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "disks[{i}]: path {}: not a file or block device",
                        spec.path
                    )));
                }
            }
            let vmm_path = hostpath::fd_path(&fd);
            Ok(Disk {
                spec,
                fd: Arc::new(fd),
                vmm_path,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(serial: &str) -> DiskSpec {
        DiskSpec {
            path: "/img/data.raw".into(),
            format: "raw".into(),
            read_only: false,
            serial: serial.into(),
            cache: String::new(),
        }
    }

    #[test]
    fn defaults_are_filled_in() {
        let v = validate(&[disk("data")]).unwrap();
        assert_eq!(v[0].cache, "writeback");
    }

    #[test]
    fn bad_disks_name_the_field() {
        let err = |d: DiskSpec| validate(&[d]).unwrap_err().to_string();
        assert!(err(disk("")).starts_with("disks[0]: serial \"\""));
        assert!(err(disk("a,b")).starts_with("disks[0]: serial \"a,b\""));
        assert!(err(disk(&"x".repeat(21))).contains("serial"));
        assert!(valid_serial(&"x".repeat(20)));
        assert!(
            err(DiskSpec {
                path: "rel.img".into(),
                ..disk("d")
            })
            .starts_with("disks[0]: path \"rel.img\"")
        );
        assert!(
            err(DiskSpec {
                format: "vmdk".into(),
                ..disk("d")
            })
            .starts_with("disks[0]: format \"vmdk\"")
        );
        assert!(
            err(DiskSpec {
                cache: "fast".into(),
                ..disk("d")
            })
            .starts_with("disks[0]: cache \"fast\"")
        );
        let e = validate(&[disk("d"), disk("d")]).unwrap_err().to_string();
        assert_eq!(e, "disks[1]: serial \"d\": given twice");
    }

    #[test]
    fn images_are_opened_by_descriptor_and_symlinks_refused() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("d.raw");
        std::fs::write(&img, vec![0u8; 4096]).unwrap();
        std::os::unix::fs::symlink(&img, dir.path().join("link.raw")).unwrap();
        let spec = |p: &std::path::Path| DiskSpec {
            path: p.to_string_lossy().into(),
            read_only: true,
            ..disk("d")
        };
        let disks = open_all(&[spec(&img)]).unwrap();
        assert_eq!(std::fs::read(&disks[0].vmm_path).unwrap().len(), 4096);
        let e = open_all(&[spec(&dir.path().join("link.raw"))]).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        let e = open_all(&[spec(dir.path())]).unwrap_err();
        assert!(e.to_string().contains("not a file or block device"), "{e}");
        let e = open_all(&[spec(&dir.path().join("none"))]).unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e}");
    }
}
