//! A pod's volumes (reference §2.4): host directories and files shared over virtio-fs, named
//! volumes kept under `--root` ([`crate::volume`]), image `VOLUME`s (anonymous volumes), and
//! block images given to the VM as disks.
//!
//! What is refused, and why: `nas` and `rbd` (the guest has no NFS or Ceph client), `vdi` (QEMU
//! attaches raw and qcow2 images as they are; nothing converts), a block `fstype` other than
//! ext4, ext3 or ext2 (the only file systems built into the guest kernel), and any source that
//! is relative, holds `..`, does not exist or is reached through a symlink (the shim opens it
//! without following symlinks, so what was checked is what is used).

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Component, Path};

use sha2::{Digest as _, Sha256};

use hyper_proto::rest::{UserPod, UserVolume, UserVolumeReference};
use hyper_proto::shim::VolumeMount;
use hyper_proto::types::{DiskSpec, Empty};

use super::spec::{SpecError, valid_name};
use super::{Error, Pods, Result};
use crate::store::{ContainerRecord, PodRecord};
use crate::volume::Volumes;

/// File systems the guest kernel mounts without modules ("" is ext4).
pub const BLOCK_FSTYPES: &[&str] = &["", "ext4", "ext3", "ext2"];

fn bad(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        message: message.into(),
    }
}

/// Checks the pod's volumes and its containers' volume references beyond their shape (which
/// [`super::spec::normalize`] checks): sources, paths, formats hyperd cannot mount. Errors name
/// the field (`volumes[0].source: "/x/../y": must not contain ..`). Nothing is created on the
/// host.
pub fn check_volumes(pod: &UserPod) -> std::result::Result<(), SpecError> {
    for (i, v) in pod.volumes.iter().enumerate() {
        check_volume(&format!("volumes[{i}]"), v)?;
    }
    for (i, c) in pod.containers.iter().enumerate() {
        let mut paths: HashMap<&str, usize> = HashMap::new();
        for (j, r) in c.volumes.iter().enumerate() {
            let field = format!("containers[{i}].volumes[{j}]");
            if let Some(d) = &r.detail {
                let d = detail(r, d);
                check_volume(&format!("{field}.detail"), &d)?;
            }
            let path = check_mount_path(&format!("{field}.path"), &r.path)?;
            if let Some(k) = paths.insert(path, j) {
                return Err(bad(
                    format!("{field}.path"),
                    format!(
                        "{:?}: containers[{i}].volumes[{k}] is mounted there too",
                        r.path
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// An inline volume with its name defaulted to the reference's `volume`.
fn detail(r: &UserVolumeReference, d: &UserVolume) -> UserVolume {
    let mut d = d.clone();
    if d.name.is_empty() {
        d.name = r.volume.clone();
    }
    d
}

/// The volume a reference names: its inline `detail`, or the pod volume of that name.
fn resolve(pod: &UserPod, r: &UserVolumeReference) -> Option<UserVolume> {
    match &r.detail {
        Some(d) => Some(detail(r, d)),
        None => pod.volumes.iter().find(|v| v.name == r.volume).cloned(),
    }
}

fn is_block(v: &UserVolume) -> bool {
    matches!(v.format.as_str(), "raw" | "qcow2")
}

fn is_named(v: &UserVolume) -> bool {
    !is_block(v) && v.source.is_empty()
}

/// The named volumes the pod's containers use (pod volumes and inline ones with an empty
/// source), by name, each once.
pub fn named_volumes(pod: &UserPod) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for c in &pod.containers {
        for r in &c.volumes {
            if let Some(v) = resolve(pod, r)
                && is_named(&v)
                && !names.contains(&v.name)
            {
                names.push(v.name);
            }
        }
    }
    names
}

fn check_volume(field: &str, v: &UserVolume) -> std::result::Result<(), SpecError> {
    let at = |f: &str| format!("{field}.{f}");
    match v.format.as_str() {
        "nas" => Err(bad(
            at("format"),
            "nas: not supported: the guest has no NFS client",
        )),
        "rbd" => Err(bad(
            at("format"),
            "rbd: not supported: the guest has no Ceph RBD client",
        )),
        "vdi" => Err(bad(
            at("format"),
            "vdi: not supported: block images are attached as raw or qcow2 only (qemu-img convert -O qcow2 makes one)",
        )),
        "raw" | "qcow2" => {
            if v.source.is_empty() {
                return Err(bad(
                    at("source"),
                    format!("required for a {} volume", v.format),
                ));
            }
            let meta = check_source(&at("source"), &v.source)?;
            if !(meta.is_file() || meta.file_type().is_block_device()) {
                return Err(bad(
                    at("source"),
                    format!("{:?}: not a regular file or block device", v.source),
                ));
            }
            if !BLOCK_FSTYPES.contains(&v.fstype.as_str()) {
                return Err(bad(
                    at("fstype"),
                    format!(
                        "{:?}: not supported: the guest kernel mounts ext4, ext3 and ext2 only",
                        v.fstype
                    ),
                ));
            }
            Ok(())
        }
        _ => {
            if !matches!(v.fstype.as_str(), "" | "dir") {
                return Err(bad(
                    at("fstype"),
                    format!(
                        "{:?}: a vfs volume is a host directory or file: fstype must be dir or empty",
                        v.fstype
                    ),
                ));
            }
            if !v.cache.is_empty() {
                return Err(bad(
                    at("cache"),
                    format!("{:?}: applies to raw and qcow2 volumes only", v.cache),
                ));
            }
            if v.source.is_empty() {
                if !valid_name(&v.name) {
                    return Err(bad(
                        at("name"),
                        format!(
                            "{:?}: a named volume (empty source) must match [a-zA-Z0-9][a-zA-Z0-9_.-]+",
                            v.name
                        ),
                    ));
                }
                return Ok(());
            }
            let meta = check_source(&at("source"), &v.source)?;
            if !(meta.is_dir() || meta.is_file()) {
                return Err(bad(
                    at("source"),
                    format!("{:?}: not a directory or regular file", v.source),
                ));
            }
            Ok(())
        }
    }
}

/// An absolute, existing host path without `..`, reached without any symlink (it equals its
/// canonical path); its own metadata.
fn check_source(field: &str, source: &str) -> std::result::Result<Metadata, SpecError> {
    let path = Path::new(source);
    if !path.is_absolute() {
        return Err(bad(field, format!("{source:?}: must be an absolute path")));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(bad(field, format!("{source:?}: must not contain ..")));
    }
    let meta = std::fs::symlink_metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            bad(field, format!("{source:?}: no such file or directory"))
        }
        _ => bad(field, format!("{source:?}: {e}")),
    })?;
    let real = std::fs::canonicalize(path).map_err(|e| bad(field, format!("{source:?}: {e}")))?;
    if real != path {
        return Err(bad(
            field,
            format!(
                "{source:?}: a symlink is on the path (symlinks are not followed): use {:?}",
                real.display().to_string()
            ),
        ));
    }
    Ok(meta)
}

/// A mount point in the container: absolute, without `..`, not `/`. Its form without trailing
/// slashes, to compare.
fn check_mount_path<'a>(field: &str, path: &'a str) -> std::result::Result<&'a str, SpecError> {
    if !path.starts_with('/') {
        return Err(bad(field, format!("{path:?}: must be absolute")));
    }
    if Path::new(path)
        .components()
        .any(|c| c == Component::ParentDir)
    {
        return Err(bad(field, format!("{path:?}: must not contain ..")));
    }
    match path.trim_end_matches('/') {
        "" => Err(bad(field, format!("{path:?}: cannot mount a volume on /"))),
        p => Ok(p),
    }
}

/// How the guest finds the disk of block source `source` (DiskSpec.serial): `vol-` and 16 hex
/// digits of its SHA-256, so a source has one serial whatever the order of volumes (20 bytes).
pub fn disk_serial(source: &str) -> String {
    let digest = Sha256::digest(source.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("vol-{hex}")
}

/// The name of the anonymous volume of container `container_id` at `path` (64 hex digits, as
/// Docker's): the same each time the pod starts, so its data lasts as long as the pod.
pub fn anonymous_name(container_id: &str, path: &str) -> String {
    let digest = Sha256::digest(format!("{container_id}\0{path}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The pod's block volumes used by a container, one per source (in order of first use): a
/// disk is read-only only if every reference to it is.
pub fn block_disks(pod: &UserPod) -> Vec<DiskSpec> {
    let mut disks: Vec<DiskSpec> = Vec::new();
    for c in &pod.containers {
        for r in &c.volumes {
            let Some(v) = resolve(pod, r).filter(is_block) else {
                continue;
            };
            let serial = disk_serial(&v.source);
            match disks.iter_mut().find(|d| d.serial == serial) {
                Some(d) => d.read_only &= r.read_only,
                None => disks.push(DiskSpec {
                    path: v.source.clone(),
                    format: v.format.clone(),
                    read_only: r.read_only,
                    serial,
                    cache: v.cache.clone(),
                }),
            }
        }
    }
    disks
}

/// The container's mounts as the spec gives them (host side), image volumes aside; a named
/// volume's source is its data dir under `volumes`, made now if it does not exist.
pub fn spec_mounts(
    pod: &UserPod,
    container: &hyper_proto::rest::UserContainer,
    volumes: &Volumes,
) -> Result<Vec<VolumeMount>> {
    let mut mounts = Vec::new();
    for r in &container.volumes {
        let v = resolve(pod, r).ok_or_else(|| {
            Error::Invalid(format!(
                "container {}: volume {:?}: no such pod volume",
                container.name, r.volume
            ))
        })?;
        let mut m = VolumeMount {
            destination: r.path.clone(),
            read_only: r.read_only,
            ..Default::default()
        };
        if is_block(&v) {
            m.block_serial = disk_serial(&v.source);
            m.fstype = v.fstype.clone();
        } else if v.source.is_empty() {
            m.source = volumes.ensure(&v.name)?.to_string_lossy().into_owned();
            m.populate = true;
        } else {
            // Checked again now: the path may have changed since the pod was created.
            check_source(&format!("volume {}.source", v.name), &v.source)?;
            m.source = v.source.clone();
        }
        mounts.push(m);
    }
    Ok(mounts)
}

impl Pods {
    /// The named volumes under this daemon's root.
    pub(super) fn volumes(&self) -> Volumes {
        let root = self.containers_dir.parent().unwrap_or(&self.containers_dir);
        Volumes::new(root, self.store.clone())
    }

    /// The volumes of container `ct`, host side, in mount order: its volume references, then
    /// the image's `VOLUME`s no reference covers (anonymous volumes of the pod, populated from
    /// the image). A block volume must be a disk of the pod's VM (given at boot): else 400.
    pub(super) async fn volume_mounts(
        &self,
        pod: &PodRecord,
        ct: &ContainerRecord,
    ) -> Result<Vec<VolumeMount>> {
        let Some(container) = pod.spec.containers.get(ct.idx as usize) else {
            return Ok(Vec::new());
        };
        let volumes = self.volumes();
        let mut mounts = spec_mounts(&pod.spec, container, &volumes)?;
        let image = self.images.resolve(&ct.image_id)?;
        let config = self.images.config_of(&image)?;
        for path in config.config.volumes.keys() {
            if !path.starts_with('/')
                || Path::new(path)
                    .components()
                    .any(|c| c == Component::ParentDir)
            {
                return Err(Error::Invalid(format!(
                    "image {}: VOLUME {path:?}: must be an absolute path without ..",
                    ct.image
                )));
            }
            let dest = match path.trim_end_matches('/') {
                "" => continue, // a volume on / is meaningless (Docker refuses it too)
                p => p,
            };
            if mounts
                .iter()
                .any(|m| m.destination.trim_end_matches('/') == dest)
            {
                continue;
            }
            let name = anonymous_name(&ct.id, dest);
            let data = volumes.ensure_anonymous(&name, &pod.id)?;
            mounts.push(VolumeMount {
                destination: dest.to_string(),
                source: data.to_string_lossy().into_owned(),
                populate: true,
                ..Default::default()
            });
        }
        if mounts.iter().any(|m| !m.block_serial.is_empty()) {
            self.check_vm_disks(pod, &mounts).await?;
        }
        Ok(mounts)
    }

    /// Every block mount is a disk the pod's VM has, writable if the mount is.
    async fn check_vm_disks(&self, pod: &PodRecord, mounts: &[VolumeMount]) -> Result<()> {
        let vm_id = pod
            .vm_id
            .as_deref()
            .ok_or_else(|| Error::Invalid(format!("pod {}: has no vm", pod.id)))?;
        let shim = self.vms.shim(vm_id)?;
        let info = shim
            .client
            .clone()
            .info(Empty {})
            .await
            .map_err(|s| shim.error(s))?
            .into_inner();
        for m in mounts.iter().filter(|m| !m.block_serial.is_empty()) {
            let disk = pod
                .spec
                .containers
                .iter()
                .flat_map(|c| c.volumes.iter())
                .filter_map(|r| resolve(&pod.spec, r))
                .find(|v| is_block(v) && disk_serial(&v.source) == m.block_serial)
                .map(|v| v.source)
                .unwrap_or_default();
            match info.disks.iter().find(|d| d.serial == m.block_serial) {
                None => {
                    return Err(Error::Invalid(format!(
                        "volume at {}: vm {vm_id} has no disk for {disk:?}: block volumes are given to a vm when it boots for its pod (name them in the pod spec before it starts)",
                        m.destination
                    )));
                }
                Some(d) if d.read_only && !m.read_only => {
                    return Err(Error::Invalid(format!(
                        "volume at {}: vm {vm_id} has {disk:?} read-only (every container mounted it read-only when the pod started)",
                        m.destination
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The pod's block volumes, given to its VM at boot. The sources are checked again (a
    /// path swapped for a symlink since create is refused here).
    pub(super) fn pod_disks(&self, pod: &UserPod) -> Result<Vec<DiskSpec>> {
        check_volumes(pod)?;
        Ok(block_disks(pod))
    }

    /// A pod with block volumes cannot start in an idle VM from `/vm/create`: that VM was
    /// booted without its disks (QEMU's microvm has no hotplug).
    pub(super) fn refuse_disks_in_idle_vm(&self, pod: &UserPod, vm_id: &str) -> Result<()> {
        let disks = self.pod_disks(pod)?;
        if let Some(d) = disks.first() {
            return Err(Error::Invalid(format!(
                "pod {}: vm {vm_id} has no disk for block volume {:?}: a pod with raw or qcow2 volumes starts in a vm booted for it (start it without vm)",
                pod.id, d.path
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hyper_proto::rest::UserContainer;

    use super::*;
    use crate::store::Store;

    fn vol(name: &str, source: &str, format: &str) -> UserVolume {
        UserVolume {
            name: name.into(),
            source: source.into(),
            format: format.into(),
            ..Default::default()
        }
    }

    fn reference(volume: &str, path: &str, read_only: bool) -> UserVolumeReference {
        UserVolumeReference {
            volume: volume.into(),
            path: path.into(),
            read_only,
            detail: None,
        }
    }

    fn pod(volumes: Vec<UserVolume>, refs: Vec<Vec<UserVolumeReference>>) -> UserPod {
        UserPod {
            id: "p".into(),
            volumes,
            containers: refs
                .into_iter()
                .enumerate()
                .map(|(i, volumes)| UserContainer {
                    name: format!("c{i}"),
                    image: "busybox".into(),
                    volumes,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn err(p: &UserPod) -> String {
        check_volumes(p).unwrap_err().to_string()
    }

    #[test]
    fn host_sources_must_be_absolute_existing_and_free_of_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(tmp.path()).unwrap();
        let dir = real.join("dir");
        std::fs::create_dir(&dir).unwrap();
        let link = real.join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let d = dir.to_str().unwrap();
        let refs = || vec![vec![reference("v", "/data", false)]];

        check_volumes(&pod(vec![vol("v", d, "vfs")], refs())).unwrap();
        check_volumes(&pod(vec![vol("v", d, "")], refs())).unwrap();
        let e = err(&pod(vec![vol("v", "rel/dir", "vfs")], refs()));
        assert_eq!(
            e,
            "volumes[0].source: \"rel/dir\": must be an absolute path"
        );
        let dotdot = format!("{d}/../dir");
        let e = err(&pod(vec![vol("v", &dotdot, "vfs")], refs()));
        assert_eq!(
            e,
            format!("volumes[0].source: {dotdot:?}: must not contain ..")
        );
        let missing = format!("{d}/missing");
        let e = err(&pod(vec![vol("v", &missing, "vfs")], refs()));
        assert_eq!(
            e,
            format!("volumes[0].source: {missing:?}: no such file or directory")
        );
        let e = err(&pod(vec![vol("v", link.to_str().unwrap(), "vfs")], refs()));
        assert!(e.starts_with("volumes[0].source: "), "{e}");
        assert!(
            e.contains("symlink") && e.contains(&format!("use {d:?}")),
            "{e}"
        );
        // A symlink higher up the path counts too.
        let through = link.join("x");
        std::fs::write(dir.join("x"), "").unwrap();
        let e = err(&pod(
            vec![vol("v", through.to_str().unwrap(), "vfs")],
            refs(),
        ));
        assert!(e.contains("symlink"), "{e}");
        // Inline volumes are checked alike and named by their place.
        let mut inline = reference("scratch", "/scratch", false);
        inline.detail = Some(vol("", "relative", "vfs"));
        let e = err(&pod(vec![], vec![vec![inline]]));
        assert_eq!(
            e,
            "containers[0].volumes[0].detail.source: \"relative\": must be an absolute path"
        );
    }

    #[test]
    fn formats_hyperd_cannot_mount_are_refused_with_the_reason() {
        let refs = || vec![vec![reference("v", "/data", false)]];
        let e = err(&pod(vec![vol("v", "10.0.0.5:/export", "nas")], refs()));
        assert_eq!(
            e,
            "volumes[0].format: nas: not supported: the guest has no NFS client"
        );
        let e = err(&pod(vec![vol("v", "pool/img", "rbd")], refs()));
        assert!(
            e.starts_with("volumes[0].format: rbd: not supported"),
            "{e}"
        );
        let e = err(&pod(vec![vol("v", "/x.vdi", "vdi")], refs()));
        assert!(
            e.starts_with("volumes[0].format: vdi: not supported"),
            "{e}"
        );
        let e = err(&pod(vec![vol("v", "", "raw")], refs()));
        assert_eq!(e, "volumes[0].source: required for a raw volume");

        let tmp = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(tmp.path()).unwrap();
        let img = real.join("disk.img");
        std::fs::write(&img, "").unwrap();
        let img = img.to_str().unwrap();
        check_volumes(&pod(vec![vol("v", img, "raw")], refs())).unwrap();
        let mut xfs = vol("v", img, "raw");
        xfs.fstype = "xfs".into();
        let e = err(&pod(vec![xfs], refs()));
        assert!(
            e.starts_with("volumes[0].fstype: \"xfs\": not supported"),
            "{e}"
        );
        // A directory is no block image; a block image is no shared directory's fstype.
        let e = err(&pod(
            vec![vol("v", real.to_str().unwrap(), "qcow2")],
            refs(),
        ));
        assert!(e.ends_with("not a regular file or block device"), "{e}");
        let mut ext4 = vol("v", real.to_str().unwrap(), "vfs");
        ext4.fstype = "ext4".into();
        assert!(err(&pod(vec![ext4], refs())).starts_with("volumes[0].fstype:"));
        let mut cache = vol("v", real.to_str().unwrap(), "vfs");
        cache.cache = "none".into();
        assert!(err(&pod(vec![cache], refs())).starts_with("volumes[0].cache:"));
        // A named volume's name is a Docker volume name.
        let e = err(&pod(
            vec![vol("a", "", "")],
            vec![vec![reference("a", "/d", false)]],
        ));
        assert!(e.starts_with("volumes[0].name: \"a\""), "{e}");
    }

    #[test]
    fn mount_paths_are_absolute_not_root_and_used_once_per_container() {
        let v = || vec![vol("a1", "", ""), vol("b1", "", "")];
        let e = err(&pod(
            v(),
            vec![vec![
                reference("a1", "/d", false),
                reference("b1", "/d/", true),
            ]],
        ));
        assert_eq!(
            e,
            "containers[0].volumes[1].path: \"/d/\": containers[0].volumes[0] is mounted there too"
        );
        let e = err(&pod(v(), vec![vec![reference("a1", "/", false)]]));
        assert_eq!(
            e,
            "containers[0].volumes[0].path: \"/\": cannot mount a volume on /"
        );
        let e = err(&pod(v(), vec![vec![reference("a1", "/x/../etc", false)]]));
        assert!(e.ends_with("must not contain .."), "{e}");
        // Two containers may mount the same place.
        check_volumes(&pod(
            v(),
            vec![
                vec![reference("a1", "/d", false)],
                vec![reference("a1", "/d", false)],
            ],
        ))
        .unwrap();
    }

    #[test]
    fn a_block_source_is_one_disk_read_only_only_if_every_use_is() {
        let p = pod(
            vec![
                vol("db", "/img/db.img", "raw"),
                vol("logs", "/img/logs.qcow2", "qcow2"),
                vol("unused", "/img/unused.img", "raw"),
                vol("html", "/srv", "vfs"),
            ],
            vec![
                vec![
                    reference("db", "/data", true),
                    reference("logs", "/logs", true),
                    reference("html", "/html", false),
                ],
                vec![reference("db", "/data", false), {
                    let mut r = reference("logs2", "/l", true);
                    r.detail = Some(UserVolume {
                        cache: "none".into(),
                        ..vol("logs2", "/img/logs.qcow2", "qcow2")
                    });
                    r
                }],
            ],
        );
        let disks = block_disks(&p);
        assert_eq!(disks.len(), 2, "{disks:?}");
        assert_eq!(disks[0].path, "/img/db.img");
        assert_eq!(disks[0].format, "raw");
        assert!(!disks[0].read_only);
        assert_eq!(disks[1].path, "/img/logs.qcow2");
        assert!(disks[1].read_only);
        for d in &disks {
            assert!(d.serial.len() <= 20, "{}", d.serial);
            assert!(
                d.serial
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            );
        }
        assert_ne!(disks[0].serial, disks[1].serial);
        assert_eq!(disks[0].serial, disk_serial("/img/db.img"));
    }

    #[test]
    fn mounts_translate_host_paths_named_volumes_and_disks() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        let store = Arc::new(Store::open(&root.join("db")).unwrap());
        let volumes = Volumes::new(&root, store);
        let host = root.join("host");
        std::fs::create_dir(&host).unwrap();
        let host = host.to_str().unwrap();
        let mut cached = vol("db", "/img/db.img", "raw");
        cached.fstype = "ext3".into();
        let p = pod(
            vec![vol("html", host, "vfs"), vol("cache", "", ""), cached],
            vec![vec![
                reference("html", "/html", true),
                reference("cache", "/var/cache", false),
                reference("db", "/data", false),
            ]],
        );
        let mounts = spec_mounts(&p, &p.containers[0], &volumes).unwrap();
        let data = root.join("volumes/cache/_data");
        assert_eq!(
            mounts,
            vec![
                VolumeMount {
                    destination: "/html".into(),
                    read_only: true,
                    source: host.into(),
                    ..Default::default()
                },
                VolumeMount {
                    destination: "/var/cache".into(),
                    source: data.to_string_lossy().into_owned(),
                    populate: true,
                    ..Default::default()
                },
                VolumeMount {
                    destination: "/data".into(),
                    block_serial: disk_serial("/img/db.img"),
                    fstype: "ext3".into(),
                    ..Default::default()
                },
            ]
        );
        // The named volume was made on first use and is kept.
        assert!(data.is_dir());
        assert_eq!(volumes.get("cache").unwrap().pod_id, None);
        assert_eq!(named_volumes(&p), ["cache"]);
    }
}
