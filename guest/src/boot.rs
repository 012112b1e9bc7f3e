//! Guest boot as PID 1: the base mounts, kernel modules, and the shared filesystem.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::mount::{MsFlags, mount};

use crate::error::{Error, Result};

/// A mount the agent makes at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootMount {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: MsFlags,
    pub data: Option<&'static str>,
}

/// The mounts every guest needs before modules and containers, in order.
pub fn base_mounts() -> Vec<BootMount> {
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let m = |source, target, fstype, flags, data| BootMount {
        source,
        target,
        fstype,
        flags,
        data,
    };
    vec![
        m("proc", "/proc", "proc", nodev, None),
        m("sysfs", "/sys", "sysfs", nodev, None),
        m(
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
        ),
        m(
            "devpts",
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620"),
        ),
        m("shm", "/dev/shm", "tmpfs", nodev, Some("mode=1777")),
        m(
            "tmpfs",
            "/run",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755"),
        ),
        m("cgroup2", "/sys/fs/cgroup", "cgroup2", nodev, None),
    ]
}

fn apply(m: &BootMount) -> Result<()> {
    std::fs::create_dir_all(m.target).map_err(|e| Error::io(format!("mkdir {}", m.target), e))?;
    mount(Some(m.source), m.target, Some(m.fstype), m.flags, m.data)
        .map_err(|e| Error::io(format!("mount {} on {}", m.fstype, m.target), e.into()))
}

/// Everything PID 1 does before it serves: mounts, modules, the shared directory.
pub fn init_system() -> Result<()> {
    for m in base_mounts() {
        apply(&m)?;
    }
    let report = crate::modules::load_dir(Path::new(crate::MODULE_DIR))?;
    tracing::info!(loaded = report.loaded.len(), "kernel modules loaded");
    for dir in [crate::STATE_DIR, crate::BUNDLE_DIR, crate::SHARE_DIR] {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("mkdir {dir}"), e))?;
    }
    mount_share()?;
    crate::etc_files::write(Path::new(crate::ETC_DIR), &crate::etc_files::defaults())?;
    Ok(())
}

/// Mounts the VM's virtio-fs share. The device may still be probing right after the module
/// loaded, so a missing device is retried for a short while.
fn mount_share() -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match mount(
            Some(crate::SHARE_TAG),
            crate::SHARE_DIR,
            Some("virtiofs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            None::<&str>,
        ) {
            Ok(()) => return Ok(()),
            // A tag whose device has not been probed yet reads as an unknown tag (EINVAL).
            Err(
                nix::errno::Errno::ENOENT | nix::errno::Errno::ENODEV | nix::errno::Errno::EINVAL,
            ) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                return Err(Error::io(
                    format!(
                        "mount virtiofs {} on {}",
                        crate::SHARE_TAG,
                        crate::SHARE_DIR
                    ),
                    e.into(),
                ));
            }
        }
    }
}

/// Guest uptime in milliseconds, from /proc/uptime (0 before /proc is mounted).
pub fn uptime_ms() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map(|secs| (secs * 1000.0) as u64)
        .unwrap_or(0)
}

/// Ends every process, leaves the disks clean, flushes filesystems and powers the VM off.
/// Never returns.
pub fn power_off() -> ! {
    if std::process::id() == 1 {
        // kill(-1) from PID 1 reaches every other process of the guest (and from anything
        // else, every process of the host: hence the check).
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(-1),
            nix::sys::signal::Signal::SIGKILL,
        );
        crate::volumes::settle_disks();
    }
    nix::unistd::sync();
    let err = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // Only reached when not PID 1 or without CAP_SYS_BOOT.
    eprintln!("hyper-agent: power off failed: {err:?}");
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_and_dev_come_before_what_lives_under_them() {
        let targets: Vec<_> = base_mounts().iter().map(|m| m.target).collect();
        let pos = |t: &str| targets.iter().position(|x| *x == t).unwrap();
        assert!(pos("/dev") < pos("/dev/pts"));
        assert!(pos("/dev") < pos("/dev/shm"));
        assert!(pos("/sys") < pos("/sys/fs/cgroup"));
    }
}
