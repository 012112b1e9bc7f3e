//! Which VMM runs a VM, and why. `--vmm qemu` and `--vmm cloud-hypervisor` are taken as given
//! (Cloud Hypervisor needs /dev/kvm and a binary); `--vmm auto` picks Cloud Hypervisor when
//! its binary exists and a short boot probe of our guest under it reached userspace, else
//! QEMU (with KVM where KVM runs stock guests, else TCG). The decision is a pure function
//! ([`first_step`], [`after_probe`]) that returns the choice and the reason the shim logs and
//! reports; the probe's result is cached per binary, version, host kernel and guest image.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ShimConfig, find_program};
use crate::error::{Error, Result};
use crate::vmm::{self, Accel, Vmm, VmmKind, cloud_hypervisor};

/// The boot probe's deadline: under working KVM our guest reaches userspace in well under a
/// second; a guest that cannot boot (a nested PVM host) hangs silently.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// `cloud-hypervisor --version` must answer within this.
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);
const CACHE_FILE: &str = "vmm-probe.json";

/// The decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub kind: VmmKind,
    pub accel: Accel,
    /// Why this VMM (and acceleration), in words for logs and `VmInfo`.
    pub reason: String,
}

#[derive(Debug, PartialEq)]
pub enum Step {
    Use(Selection),
    /// Auto mode with a Cloud Hypervisor binary: probe it (or read the cached probe).
    Probe(PathBuf),
}

/// What the host offers, gathered by the caller.
#[derive(Debug, Clone)]
pub struct Host {
    pub kvm_device: bool,
    /// [`vmm::choose_accel`]'s answer for QEMU.
    pub qemu_accel: (Accel, String),
    /// The Cloud Hypervisor binary, or why there is none.
    pub cloud_hypervisor: std::result::Result<PathBuf, String>,
}

/// `CreateVmRequest.vmm`: empty means the shim's `--vmm`; `None` is auto.
pub fn requested(s: &str, default: Option<VmmKind>) -> Result<Option<VmmKind>> {
    match s {
        "" => Ok(default),
        "auto" => Ok(None),
        "qemu" => Ok(Some(VmmKind::Qemu)),
        "cloud-hypervisor" => Ok(Some(VmmKind::CloudHypervisor)),
        other => Err(Error::InvalidArgument(format!(
            "vmm {other:?}: must be auto, qemu or cloud-hypervisor"
        ))),
    }
}

fn qemu(host: &Host, why: &str) -> Selection {
    let (accel, accel_why) = &host.qemu_accel;
    Selection {
        kind: VmmKind::Qemu,
        accel: *accel,
        reason: format!("{why}; {accel}: {accel_why}"),
    }
}

pub fn first_step(
    requested: Option<VmmKind>,
    forced_accel: Option<Accel>,
    host: &Host,
) -> Result<Step> {
    match requested {
        Some(VmmKind::Qemu) => Ok(Step::Use(qemu(host, "qemu requested"))),
        Some(VmmKind::CloudHypervisor) => {
            if forced_accel == Some(Accel::Tcg) {
                return Err(Error::InvalidArgument(
                    "cloud-hypervisor cannot use tcg: it runs guests with kvm only".into(),
                ));
            }
            if !host.kvm_device {
                return Err(Error::Unavailable(
                    "cloud-hypervisor needs /dev/kvm, and this host has none".into(),
                ));
            }
            if let Err(why) = &host.cloud_hypervisor {
                return Err(Error::Unavailable(why.clone()));
            }
            let mut reason = "cloud-hypervisor requested".to_string();
            if host.qemu_accel.0 != Accel::Kvm {
                // Told to, we try; the guest may not come up, and the boot deadline says so.
                reason.push_str(&format!(
                    " (warning: {}; the guest may not boot)",
                    host.qemu_accel.1
                ));
            }
            Ok(Step::Use(Selection {
                kind: VmmKind::CloudHypervisor,
                accel: Accel::Kvm,
                reason,
            }))
        }
        None => {
            if forced_accel == Some(Accel::Tcg) {
                return Ok(Step::Use(qemu(
                    host,
                    "auto: tcg forced, and cloud-hypervisor runs guests with kvm only",
                )));
            }
            if !host.kvm_device {
                return Ok(Step::Use(qemu(
                    host,
                    "auto: no /dev/kvm for cloud-hypervisor",
                )));
            }
            match &host.cloud_hypervisor {
                Err(why) => Ok(Step::Use(qemu(host, &format!("auto: {why}")))),
                Ok(binary) => Ok(Step::Probe(binary.clone())),
            }
        }
    }
}

/// A probe's result as cached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeRecord {
    pub booted: bool,
    pub detail: String,
    /// `cloud-hypervisor --version`.
    pub version: String,
}

pub fn after_probe(probe: &ProbeRecord, cached: bool, host: &Host) -> Selection {
    let source = if cached {
        "cached boot probe"
    } else {
        "boot probe"
    };
    if probe.booted {
        Selection {
            kind: VmmKind::CloudHypervisor,
            accel: Accel::Kvm,
            reason: format!("auto: {} booted our guest in a {source}", probe.version),
        }
    } else {
        qemu(
            host,
            &format!(
                "auto: {} failed its {source} ({}), falling back to qemu",
                probe.version, probe.detail
            ),
        )
    }
}

/// What the cached probe result depends on: the binary and its version, the host kernel
/// (KVM's behaviour), and the guest image.
pub fn cache_key(binary: &Path, version: &str, host_kernel: &str, guest: &[&Path]) -> String {
    let mut key = format!("{}|{version}|{host_kernel}", binary.display());
    for file in guest {
        let stamp = std::fs::metadata(file)
            .ok()
            .and_then(|m| Some((m.len(), m.modified().ok()?)))
            .map(|(len, t)| {
                let secs = t
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                format!("{len}@{secs}")
            })
            .unwrap_or_default();
        key.push_str(&format!("|{}:{stamp}", file.display()));
    }
    key
}

/// Probe results on disk: one JSON map from [`cache_key`] to [`ProbeRecord`].
pub struct ProbeCache {
    path: PathBuf,
}

impl ProbeCache {
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join(CACHE_FILE),
        }
    }

    fn read(&self) -> BTreeMap<String, ProbeRecord> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!("{}: unreadable, probing again: {e}", self.path.display());
                BTreeMap::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                tracing::warn!("read {}: {e}", self.path.display());
                BTreeMap::new()
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<ProbeRecord> {
        self.read().remove(key)
    }

    /// Adds a result: written to a temp file, synced, renamed over the old cache.
    pub fn put(&self, key: &str, record: &ProbeRecord) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("mkdir {}", dir.display()), e))?;
        let mut all = self.read();
        all.insert(key.to_string(), record.clone());
        let tmp = self
            .path
            .with_extension(format!("json.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec_pretty(&all).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| Error::io(format!("write {}", self.path.display()), e))
    }
}

/// `cloud-hypervisor --version`, or why it could not be run.
async fn binary_version(binary: &Path) -> std::result::Result<String, String> {
    let run = tokio::process::Command::new(binary)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(VERSION_TIMEOUT, run).await {
        Err(_) => Err(format!("{} --version did not answer", binary.display())),
        Ok(Err(e)) => Err(format!("{} --version: {e}", binary.display())),
        Ok(Ok(out)) if !out.status.success() => Err(format!(
            "{} --version: {}: {}",
            binary.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        // The first line: `cloud-hypervisor v54.0.0` (more lines follow it on newer builds).
        Ok(Ok(out)) => Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string()),
    }
}

/// Looks at the host, probes if auto mode needs it, and builds the chosen driver.
pub async fn select(
    config: &ShimConfig,
    requested_vmm: &str,
    kernel: &Path,
    initrd: &Path,
    cpuinfo: &str,
) -> Result<(Selection, Box<dyn Vmm>)> {
    let requested = requested(requested_vmm, config.vmm)?;
    let kvm_device = Path::new("/dev/kvm").exists();
    let host = Host {
        kvm_device,
        qemu_accel: vmm::choose_accel(kvm_device, cpuinfo, config.accel),
        cloud_hypervisor: find_program(&config.cloud_hypervisor).map_err(|_| {
            format!(
                "no cloud-hypervisor binary ({} not found; set CLOUD_HYPERVISOR or \
                 --cloud-hypervisor)",
                config.cloud_hypervisor.display()
            )
        }),
    };
    let selection = match first_step(requested, config.accel, &host)? {
        Step::Use(selection) => selection,
        Step::Probe(binary) => {
            let (record, cached) = probe_cached(config, &binary, kernel, initrd).await;
            after_probe(&record, cached, &host)
        }
    };
    let driver = vmm::driver(selection.kind, config)?;
    Ok((selection, driver))
}

async fn probe_cached(
    config: &ShimConfig,
    binary: &Path,
    kernel: &Path,
    initrd: &Path,
) -> (ProbeRecord, bool) {
    let version = match binary_version(binary).await {
        Ok(v) => v,
        Err(why) => {
            let record = ProbeRecord {
                booted: false,
                detail: why,
                version: binary.display().to_string(),
            };
            return (record, false);
        }
    };
    let host_kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let key = cache_key(binary, &version, host_kernel.trim(), &[kernel, initrd]);
    let cache = ProbeCache::new(&config.cache_dir);
    if let Some(record) = cache.get(&key) {
        return (record, true);
    }
    tracing::info!(binary = %binary.display(), %version, "probing cloud-hypervisor with a guest boot");
    let outcome = cloud_hypervisor::probe(
        binary,
        kernel,
        initrd,
        &config.run_dir.join("probe"),
        PROBE_TIMEOUT,
    )
    .await;
    let record = ProbeRecord {
        booted: outcome.booted,
        detail: outcome.detail,
        version,
    };
    if let Err(e) = cache.put(&key, &record) {
        tracing::warn!("caching the cloud-hypervisor probe: {e}");
    }
    (record, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(kvm: bool, accel: Accel, ch: bool) -> Host {
        Host {
            kvm_device: kvm,
            qemu_accel: (
                accel,
                match accel {
                    Accel::Kvm => "/dev/kvm with hardware virtualization".into(),
                    Accel::Tcg => "/dev/kvm without vmx/svm".into(),
                },
            ),
            cloud_hypervisor: if ch {
                Ok("/usr/bin/cloud-hypervisor".into())
            } else {
                Err("no cloud-hypervisor binary".into())
            },
        }
    }

    fn used(step: Result<Step>) -> Selection {
        match step.unwrap() {
            Step::Use(s) => s,
            Step::Probe(b) => panic!("probe of {b:?} instead of a choice"),
        }
    }

    #[test]
    fn auto_probes_only_when_cloud_hypervisor_could_run() {
        assert_eq!(
            first_step(None, None, &host(true, Accel::Kvm, true)).unwrap(),
            Step::Probe("/usr/bin/cloud-hypervisor".into())
        );
        // A PVM host without vmx/svm still gets probed: the probe, not a guess, decides.
        assert!(matches!(
            first_step(None, None, &host(true, Accel::Tcg, true)).unwrap(),
            Step::Probe(_)
        ));
        let s = used(first_step(None, None, &host(true, Accel::Kvm, false)));
        assert_eq!((s.kind, s.accel), (VmmKind::Qemu, Accel::Kvm));
        assert_eq!(
            s.reason,
            "auto: no cloud-hypervisor binary; kvm: /dev/kvm with hardware virtualization"
        );
        let s = used(first_step(None, None, &host(false, Accel::Tcg, true)));
        assert_eq!((s.kind, s.accel), (VmmKind::Qemu, Accel::Tcg));
        assert!(s.reason.starts_with("auto: no /dev/kvm"), "{}", s.reason);
        let s = used(first_step(
            None,
            Some(Accel::Tcg),
            &host(true, Accel::Tcg, true),
        ));
        assert_eq!(s.kind, VmmKind::Qemu);
        assert!(s.reason.contains("tcg forced"), "{}", s.reason);
    }

    #[test]
    fn the_probe_decides_and_the_reason_says_so() {
        let h = host(true, Accel::Tcg, true);
        let failed = ProbeRecord {
            booted: false,
            detail: "guest userspace: no answer after 10.0s".into(),
            version: "cloud-hypervisor v54.0.0".into(),
        };
        let s = after_probe(&failed, false, &h);
        assert_eq!((s.kind, s.accel), (VmmKind::Qemu, Accel::Tcg));
        assert_eq!(
            s.reason,
            "auto: cloud-hypervisor v54.0.0 failed its boot probe (guest userspace: no answer \
             after 10.0s), falling back to qemu; tcg: /dev/kvm without vmx/svm"
        );
        let ok = ProbeRecord {
            booted: true,
            ..failed
        };
        let s = after_probe(&ok, true, &h);
        assert_eq!((s.kind, s.accel), (VmmKind::CloudHypervisor, Accel::Kvm));
        assert_eq!(
            s.reason,
            "auto: cloud-hypervisor v54.0.0 booted our guest in a cached boot probe"
        );
    }

    #[test]
    fn explicit_choices_are_honoured_or_refused_clearly() {
        let s = used(first_step(
            Some(VmmKind::Qemu),
            None,
            &host(true, Accel::Kvm, true),
        ));
        assert_eq!((s.kind, s.accel), (VmmKind::Qemu, Accel::Kvm));
        let s = used(first_step(
            Some(VmmKind::CloudHypervisor),
            None,
            &host(true, Accel::Kvm, true),
        ));
        assert_eq!((s.kind, s.accel), (VmmKind::CloudHypervisor, Accel::Kvm));
        assert_eq!(s.reason, "cloud-hypervisor requested");
        let s = used(first_step(
            Some(VmmKind::CloudHypervisor),
            None,
            &host(true, Accel::Tcg, true),
        ));
        assert!(
            s.reason.contains("warning: /dev/kvm without vmx/svm"),
            "{}",
            s.reason
        );

        let e = first_step(
            Some(VmmKind::CloudHypervisor),
            Some(Accel::Tcg),
            &host(true, Accel::Kvm, true),
        )
        .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        let e = first_step(
            Some(VmmKind::CloudHypervisor),
            None,
            &host(false, Accel::Tcg, true),
        )
        .unwrap_err();
        assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
        let e = first_step(
            Some(VmmKind::CloudHypervisor),
            None,
            &host(true, Accel::Kvm, false),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "no cloud-hypervisor binary");
    }

    #[test]
    fn request_strings() {
        assert_eq!(
            requested("", Some(VmmKind::Qemu)).unwrap(),
            Some(VmmKind::Qemu)
        );
        assert_eq!(requested("auto", Some(VmmKind::Qemu)).unwrap(), None);
        assert_eq!(
            requested("cloud-hypervisor", None).unwrap(),
            Some(VmmKind::CloudHypervisor)
        );
        let e = requested("firecracker", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "vmm \"firecracker\": must be auto, qemu or cloud-hypervisor"
        );
    }

    #[test]
    fn the_cache_keeps_results_per_key_and_survives_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ProbeCache::new(&dir.path().join("cache"));
        let rec = ProbeRecord {
            booted: false,
            detail: "d".into(),
            version: "v".into(),
        };
        assert_eq!(cache.get("a"), None);
        cache.put("a", &rec).unwrap();
        cache
            .put(
                "b",
                &ProbeRecord {
                    booted: true,
                    ..rec.clone()
                },
            )
            .unwrap();
        assert_eq!(cache.get("a"), Some(rec.clone()));
        assert!(cache.get("b").unwrap().booted);
        std::fs::write(dir.path().join("cache").join(CACHE_FILE), "{oops").unwrap();
        assert_eq!(cache.get("a"), None);
        cache.put("a", &rec).unwrap();
        assert_eq!(cache.get("a"), Some(rec));
    }

    #[test]
    fn the_key_changes_with_the_version_and_the_guest_image() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("vmlinux");
        std::fs::write(&kernel, b"one").unwrap();
        let bin = Path::new("/usr/bin/cloud-hypervisor");
        let k1 = cache_key(bin, "v54.0.0", "6.18", &[&kernel]);
        assert_eq!(k1, cache_key(bin, "v54.0.0", "6.18", &[&kernel]));
        assert_ne!(k1, cache_key(bin, "v55.0.0", "6.18", &[&kernel]));
        assert_ne!(k1, cache_key(bin, "v54.0.0", "6.19", &[&kernel]));
        std::fs::write(&kernel, b"other").unwrap();
        assert_ne!(k1, cache_key(bin, "v54.0.0", "6.18", &[&kernel]));
    }
}
