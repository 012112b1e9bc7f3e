//! The OCI runtime spec (config.json) of a container, as a pure function of the request.

use std::path::Path;

use serde_json::{Value, json};

use hyper_proto::types::{Process, Resources, Rlimit};

use crate::error::{Error, Result};

use crate::user::ResolvedUser;

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const CPU_PERIOD_US: u64 = 100_000;
/// The open-files limit a container gets unless its rlimits name `nofile`.
pub const DEFAULT_NOFILE: u64 = 1_048_576;

pub use hyper_proto::RLIMIT_NAMES;

/// OCI `process.rlimits`: the requested ones (`RLIMIT_<NAME>`), plus the default nofile
/// unless it is named. Errors: [`Error::InvalidArgument`] for an unknown name, a name given
/// twice, or soft above hard.
pub fn rlimits(requested: &[Rlimit]) -> Result<Value> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in requested {
        if !RLIMIT_NAMES.contains(&r.name.as_str()) {
            return Err(Error::InvalidArgument(format!(
                "rlimit {:?}: unknown (one of {})",
                r.name,
                RLIMIT_NAMES.join(", ")
            )));
        }
        if !seen.insert(r.name.as_str()) {
            return Err(Error::InvalidArgument(format!(
                "rlimit {}: given twice",
                r.name
            )));
        }
        if r.soft > r.hard {
            return Err(Error::InvalidArgument(format!(
                "rlimit {}: soft limit {} is above the hard limit {}",
                r.name, r.soft, r.hard
            )));
        }
        out.push(json!({
            "type": format!("RLIMIT_{}", r.name.to_uppercase()),
            "soft": r.soft,
            "hard": r.hard,
        }));
    }
    if !seen.contains("nofile") {
        out.push(
            json!({ "type": "RLIMIT_NOFILE", "soft": DEFAULT_NOFILE, "hard": DEFAULT_NOFILE }),
        );
    }
    Ok(Value::Array(out))
}

/// A sysctl key is dotted words (`net.ipv4.ip_forward`); anything that could name another
/// path under /proc/sys is refused. Which keys are namespaced is hyperd's rule; the kernel
/// refuses the rest. Errors: [`Error::InvalidArgument`] naming the key.
pub fn check_sysctl(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.split('.').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "sysctl {key:?}: invalid key"
        )))
    }
}

/// Splits sysctls into those of the VM's network namespace (`net.*`), which the pod's
/// containers share and the agent sets itself (libcontainer refuses them in a namespace the
/// container did not create), and the rest, for OCI `linux.sysctl`.
pub fn split_sysctls(
    all: &std::collections::HashMap<String, String>,
) -> (
    Vec<(String, String)>,
    std::collections::HashMap<String, String>,
) {
    let (net, rest): (Vec<_>, Vec<_>) = all
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .partition(|(k, _)| k.starts_with("net."));
    let mut net = net;
    net.sort();
    (net, rest.into_iter().collect())
}

/// A volume as the OCI spec mounts it: a guest path bind-mounted at `destination`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// A path in the guest (under the share, or a mounted disk).
    pub source: std::path::PathBuf,
    /// Absolute in the container, free of symlinks (resolved against the rootfs).
    pub destination: String,
    pub read_only: bool,
}

/// Docker's default capability set.
const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The environment a process starts with: the request's, plus PATH, HOME and HOSTNAME unless
/// the request set them.
pub fn process_env(requested: &[String], home: &str, hostname: &str) -> Vec<String> {
    let has = |key: &str| requested.iter().any(|e| e.split('=').next() == Some(key));
    let mut env = Vec::new();
    if !has("PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has("HOSTNAME") && !hostname.is_empty() {
        env.push(format!("HOSTNAME={hostname}"));
    }
    if !has("HOME") {
        env.push(format!("HOME={home}"));
    }
    env.extend(requested.iter().cloned());
    env
}

/// The value of `key` in a KEY=VALUE list.
pub fn env_value<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter()
        .filter_map(|e| e.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

pub fn cwd(process: &Process) -> &str {
    if process.cwd.is_empty() {
        "/"
    } else {
        &process.cwd
    }
}

fn resources(r: &Resources) -> Value {
    let mut out = serde_json::Map::new();
    if r.memory_bytes > 0 {
        out.insert("memory".into(), json!({ "limit": r.memory_bytes }));
    }
    if r.cpu_millis > 0 {
        let quota = u64::from(r.cpu_millis) * CPU_PERIOD_US / 1000;
        out.insert(
            "cpu".into(),
            json!({ "quota": quota, "period": CPU_PERIOD_US }),
        );
    }
    if r.pids_limit > 0 {
        out.insert("pids".into(), json!({ "limit": r.pids_limit }));
    }
    Value::Object(out)
}

/// What an exec runs, for libcontainer's tenant `process.json`.
pub struct ExecInput<'a> {
    pub args: &'a [String],
    /// KEY=VALUE; each key replaces the init's.
    pub env: &'a [String],
    pub cwd: &'a str,
    pub user: &'a ResolvedUser,
    pub terminal: bool,
}

/// The OCI `process` of an exec: the container init's (capabilities, rlimits, privileges)
/// with the exec's command, user, directory and terminal, and the init's environment
/// overridden by the exec's (as `docker exec -e` does). `init` is the init's `process`
/// object of config.json.
pub fn exec_process(init: &Value, exec: &ExecInput<'_>) -> Value {
    let key = |e: &str| e.split('=').next().unwrap_or("").to_string();
    let overridden: std::collections::HashSet<String> = exec.env.iter().map(|e| key(e)).collect();
    let mut env: Vec<String> = init["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|e| !overridden.contains(&key(e)))
        .map(str::to_string)
        .collect();
    env.extend(exec.env.iter().cloned());
    let mut process = init.clone();
    process["args"] = json!(exec.args);
    process["env"] = json!(env);
    process["cwd"] = json!(exec.cwd);
    process["terminal"] = json!(exec.terminal);
    process["user"] = json!({
        "uid": exec.user.uid,
        "gid": exec.user.gid,
        "additionalGids": exec.user.additional_gids,
    });
    process
}

pub struct SpecInput<'a> {
    pub id: &'a str,
    pub rootfs: &'a Path,
    pub hostname: &'a str,
    pub process: &'a Process,
    pub env: &'a [String],
    pub user: &'a ResolvedUser,
    pub resources: &'a Resources,
    /// The pod's etc files ([`crate::etc_files`]), bind-mounted at /etc/<name>.
    pub etc_dir: &'a Path,
    /// Volumes, mounted in this order after the standard mounts and before the etc files.
    pub volumes: &'a [BindMount],
    pub read_only_rootfs: bool,
    /// OCI `process.rlimits`, from [`rlimits`].
    pub rlimits: Value,
    /// OCI `linux.sysctl`.
    pub sysctls: &'a std::collections::HashMap<String, String>,
}

/// config.json for an init container: new pid, ipc, uts, mount and cgroup namespaces (the
/// network is the VM's, shared by the pod), cgroup v2 limits under /hyper/<id>.
pub fn container_spec(input: &SpecInput<'_>) -> Value {
    let mut mounts = json!([
        { "destination": "/proc", "type": "proc", "source": "proc" },
        { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
          "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
        { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
          "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
        { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
          "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
        { "destination": "/sys", "type": "sysfs", "source": "sysfs",
          "options": ["nosuid", "noexec", "nodev", "ro"] },
        { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
          "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] },
    ]);
    for v in input.volumes {
        mounts.as_array_mut().expect("a list").push(json!({
            "destination": v.destination,
            "type": "bind",
            "source": v.source,
            "options": ["rbind", if v.read_only { "ro" } else { "rw" }],
        }));
    }
    // Shared and writable, as Docker's: libcontainer creates /etc and the file in the rootfs
    // when the image lacks them.
    for name in crate::etc_files::NAMES {
        mounts.as_array_mut().expect("a list").push(json!({
            "destination": format!("/etc/{name}"),
            "type": "bind",
            "source": crate::etc_files::path(input.etc_dir, name),
            "options": ["rbind", "rw"],
        }));
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            // With a terminal, libcontainer makes it in the container (see ConsoleSocket).
            "terminal": input.process.terminal,
            "user": {
                "uid": input.user.uid,
                "gid": input.user.gid,
                "additionalGids": input.user.additional_gids,
            },
            "args": input.process.args,
            "env": input.env,
            "cwd": cwd(input.process),
            "capabilities": {
                "bounding": CAPABILITIES,
                "effective": CAPABILITIES,
                "permitted": CAPABILITIES,
            },
            "rlimits": input.rlimits,
            "noNewPrivileges": false,
        },
        "root": { "path": input.rootfs, "readonly": input.read_only_rootfs },
        "hostname": input.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": [
                { "type": "pid" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" },
                // The container sees its own cgroup as /sys/fs/cgroup, as with Docker on v2.
                { "type": "cgroup" },
            ],
            "cgroupsPath": format!("/hyper/{}", input.id),
            "resources": resources(input.resources),
            "sysctl": input.sysctls,
            "maskedPaths": [
                "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                "/proc/sysrq-trigger",
            ],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxNamespaceType, Spec};

    fn user() -> ResolvedUser {
        ResolvedUser {
            uid: 1000,
            gid: 1000,
            additional_gids: vec![10],
            home: "/home/app".into(),
        }
    }

    fn spec(resources: Resources) -> Spec {
        let process = Process {
            args: vec!["echo".into(), "hello".into()],
            cwd: "/tmp".into(),
            ..Default::default()
        };
        let env = process_env(&[], "/home/app", "c1");
        let value = container_spec(&SpecInput {
            id: "c1",
            rootfs: Path::new("/run/hyper/share/c1/rootfs"),
            hostname: "c1",
            process: &process,
            env: &env,
            user: &user(),
            resources: &resources,
            etc_dir: Path::new("/run/hyper/etc"),
            volumes: &[],
            read_only_rootfs: false,
            rlimits: rlimits(&[]).unwrap(),
            sysctls: &Default::default(),
        });
        serde_json::from_value(value).expect("a valid OCI spec")
    }

    #[test]
    fn a_terminal_is_asked_of_the_runtime() {
        assert_eq!(
            spec(Resources::default())
                .process()
                .as_ref()
                .unwrap()
                .terminal(),
            Some(false)
        );
        let process = Process {
            args: vec!["sh".into()],
            terminal: true,
            ..Default::default()
        };
        let value = container_spec(&SpecInput {
            id: "c1",
            rootfs: Path::new("/r"),
            hostname: "c1",
            process: &process,
            env: &[],
            user: &user(),
            etc_dir: Path::new("/e"),
            volumes: &[],
            read_only_rootfs: false,
            rlimits: rlimits(&[]).unwrap(),
            sysctls: &Default::default(),
            resources: &Resources::default(),
        });
        let s: Spec = serde_json::from_value(value).unwrap();
        assert_eq!(s.process().as_ref().unwrap().terminal(), Some(true));
    }

    #[test]
    fn an_exec_process_is_the_inits_with_its_own_command_user_env_and_terminal() {
        let init = container_spec(&SpecInput {
            id: "c1",
            rootfs: Path::new("/r"),
            hostname: "c1",
            process: &Process {
                args: vec!["sleep".into()],
                ..Default::default()
            },
            env: &["PATH=/bin".into(), "A=init".into(), "B=init".into()],
            user: &user(),
            resources: &Resources::default(),
            etc_dir: Path::new("/e"),
            volumes: &[],
            read_only_rootfs: false,
            rlimits: rlimits(&[]).unwrap(),
            sysctls: &Default::default(),
        });
        let root = ResolvedUser {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            home: "/root".into(),
        };
        let value = exec_process(
            &init["process"],
            &ExecInput {
                args: &["sh".into(), "-i".into()],
                env: &["B=exec".into(), "C=exec".into()],
                cwd: "/tmp",
                user: &root,
                terminal: true,
            },
        );
        let p: oci_spec::runtime::Process = serde_json::from_value(value).unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["sh", "-i"]);
        assert_eq!(
            p.env().as_ref().unwrap(),
            &["PATH=/bin", "A=init", "B=exec", "C=exec"]
        );
        assert_eq!(p.cwd().to_str(), Some("/tmp"));
        assert_eq!(p.terminal(), Some(true));
        assert_eq!(p.user().uid(), 0);
        assert!(p.user().additional_gids().as_ref().unwrap().is_empty());
        assert_eq!(
            p.capabilities()
                .as_ref()
                .unwrap()
                .bounding()
                .as_ref()
                .unwrap()
                .len(),
            CAPABILITIES.len()
        );
    }

    #[test]
    fn is_a_valid_oci_spec_without_a_network_namespace() {
        let s = spec(Resources::default());
        let p = s.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["echo", "hello"]);
        assert_eq!(p.cwd().to_str(), Some("/tmp"));
        assert_eq!(p.user().uid(), 1000);
        assert_eq!(p.user().additional_gids().as_ref().unwrap(), &[10]);
        let ns: Vec<_> = s
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect();
        assert!(ns.contains(&LinuxNamespaceType::Pid));
        assert!(ns.contains(&LinuxNamespaceType::Mount));
        assert!(!ns.contains(&LinuxNamespaceType::Network));
        assert_eq!(s.hostname().as_deref(), Some("c1"));
    }

    #[test]
    fn resources_become_cgroup_limits() {
        let s = spec(Resources {
            memory_bytes: 64 << 20,
            cpu_millis: 500,
            pids_limit: 32,
        });
        let r = s.linux().as_ref().unwrap().resources().as_ref().unwrap();
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(64 << 20));
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(50_000));
        assert_eq!(r.cpu().as_ref().unwrap().period(), Some(100_000));
        assert_eq!(r.pids().as_ref().unwrap().limit(), 32);
        let unlimited = spec(Resources::default());
        assert!(
            unlimited
                .linux()
                .as_ref()
                .unwrap()
                .resources()
                .as_ref()
                .unwrap()
                .memory()
                .is_none()
        );
    }

    #[test]
    fn env_gets_defaults_without_overriding_the_request() {
        let env = process_env(&["PATH=/opt/bin".into(), "A=1".into()], "/root", "h");
        assert_eq!(env, ["HOSTNAME=h", "HOME=/root", "PATH=/opt/bin", "A=1"]);
        assert_eq!(env_value(&env, "PATH"), Some("/opt/bin"));
    }

    #[test]
    fn the_pods_etc_files_are_bind_mounted_read_write() {
        let s = spec(Resources::default());
        let mounts = s.mounts().as_ref().unwrap();
        for name in ["hostname", "hosts", "resolv.conf"] {
            let m = mounts
                .iter()
                .find(|m| m.destination() == Path::new(&format!("/etc/{name}")))
                .unwrap_or_else(|| panic!("no mount at /etc/{name}"));
            assert_eq!(m.typ().as_deref(), Some("bind"));
            assert_eq!(
                m.source().as_deref(),
                Some(Path::new(&format!("/run/hyper/etc/{name}")))
            );
            let options = m.options().as_ref().unwrap();
            assert!(options.contains(&"rbind".to_string()) && options.contains(&"rw".to_string()));
        }
    }

    #[test]
    fn volumes_rlimits_sysctls_and_a_read_only_root_reach_the_oci_spec() {
        let process = Process {
            args: vec!["sh".into()],
            ..Default::default()
        };
        let sysctls = [("kernel.shmmax".to_string(), "1000000".to_string())].into();
        let value = container_spec(&SpecInput {
            id: "c1",
            rootfs: Path::new("/r"),
            hostname: "c1",
            process: &process,
            env: &[],
            user: &user(),
            resources: &Resources::default(),
            etc_dir: Path::new("/e"),
            volumes: &[
                BindMount {
                    source: "/run/hyper/share/c1/volumes/0".into(),
                    destination: "/data".into(),
                    read_only: false,
                },
                BindMount {
                    source: "/run/hyper/disks/d1".into(),
                    destination: "/ro".into(),
                    read_only: true,
                },
            ],
            read_only_rootfs: true,
            rlimits: rlimits(&[Rlimit {
                name: "core".into(),
                soft: 0,
                hard: 1024,
            }])
            .unwrap(),
            sysctls: &sysctls,
        });
        let s: Spec = serde_json::from_value(value).unwrap();
        assert_eq!(s.root().as_ref().unwrap().readonly(), Some(true));
        let mounts = s.mounts().as_ref().unwrap();
        let at = |d: &str| {
            mounts
                .iter()
                .position(|m| m.destination() == Path::new(d))
                .unwrap()
        };
        // After the standard mounts, in order, and before the etc files.
        assert!(at("/sys/fs/cgroup") < at("/data") && at("/data") < at("/ro"));
        assert!(at("/ro") < at("/etc/hosts"));
        let ro = &mounts[at("/ro")];
        assert_eq!(ro.options().as_ref().unwrap(), &["rbind", "ro"]);
        assert_eq!(
            ro.source().as_deref(),
            Some(Path::new("/run/hyper/disks/d1"))
        );
        assert_eq!(
            mounts[at("/data")].options().as_ref().unwrap(),
            &["rbind", "rw"]
        );
        let limits: Vec<_> = s
            .process()
            .as_ref()
            .unwrap()
            .rlimits()
            .as_ref()
            .unwrap()
            .iter()
            .map(|r| (format!("{:?}", r.typ()), r.soft(), r.hard()))
            .collect();
        assert_eq!(
            limits,
            [
                ("RlimitCore".to_string(), 0, 1024),
                ("RlimitNofile".to_string(), DEFAULT_NOFILE, DEFAULT_NOFILE)
            ]
        );
        let sysctl = s.linux().as_ref().unwrap().sysctl().clone().unwrap();
        assert_eq!(sysctl["kernel.shmmax"], "1000000");
    }

    #[test]
    fn a_named_nofile_replaces_the_default_and_bad_rlimits_are_refused() {
        let r = |name: &str, soft, hard| Rlimit {
            name: name.into(),
            soft,
            hard,
        };
        let v = rlimits(&[r("nofile", 100, 200)]).unwrap();
        assert_eq!(
            v,
            json!([{ "type": "RLIMIT_NOFILE", "soft": 100, "hard": 200 }])
        );
        let e = rlimits(&[r("bogus", 1, 1)]).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)));
        assert!(
            e.to_string().starts_with("rlimit \"bogus\": unknown"),
            "{e}"
        );
        let e = rlimits(&[r("core", 2, 1)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "rlimit core: soft limit 2 is above the hard limit 1"
        );
        assert!(rlimits(&[r("nproc", 1, 1), r("nproc", 1, 1)]).is_err());
    }

    #[test]
    fn net_sysctls_are_the_vms_and_the_rest_go_to_the_container() {
        let all = [
            ("net.ipv4.ip_forward".to_string(), "1".to_string()),
            ("kernel.shmmax".to_string(), "1".to_string()),
        ]
        .into();
        let (net, rest) = split_sysctls(&all);
        assert_eq!(net, [("net.ipv4.ip_forward".to_string(), "1".to_string())]);
        assert_eq!(rest.keys().collect::<Vec<_>>(), ["kernel.shmmax"]);
        assert!(check_sysctl("kernel.shmmax").is_ok());
        for bad in ["", "a..b", "a/b", "../x", "a.b."] {
            assert!(check_sysctl(bad).is_err(), "{bad}");
        }
    }
}
