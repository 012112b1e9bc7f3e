//! The OCI runtime spec (config.json) of a container, as a pure function of the request.

use std::path::Path;

use serde_json::{Value, json};

use hyper_proto::types::{Process, Resources};

use crate::user::ResolvedUser;

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const CPU_PERIOD_US: u64 = 100_000;

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
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576 }],
            "noNewPrivileges": false,
        },
        "root": { "path": input.rootfs, "readonly": false },
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
}
