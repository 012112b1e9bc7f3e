//! The guest's containers: created and started with libcontainer, their processes tracked
//! until removal; and processes run in the VM itself, outside every container (execvm).

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use hyper_proto::agent::CreateContainerRequest;
use hyper_proto::types::{ContainerStats, ExecRequest, Process, ProcessRef};

use crate::error::{Error, Result};
use crate::process::{AgentStdio, ChildStdio, ConsoleSocket, ProcessHandle, stdio};
use crate::reaper::Reaper;
use crate::spec::{self, SpecInput};
use crate::workload::Workload;

/// How long a removed container's processes get to die after SIGKILL.
const KILL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

struct Entry {
    container: Container,
    init: Arc<ProcessHandle>,
    execs: HashMap<String, Arc<ProcessHandle>>,
    rootfs: PathBuf,
    hostname: String,
    home: String,
}

pub struct Containers {
    share: PathBuf,
    state: PathBuf,
    bundles: PathBuf,
    reaper: Reaper,
    /// The VM's virtio-blk disks, mounted once for every container using them.
    disks: crate::volumes::Disks,
    entries: Mutex<HashMap<String, Entry>>,
    /// Processes run in the VM itself, by exec id.
    vm_execs: Mutex<HashMap<String, Arc<ProcessHandle>>>,
}

/// Container and exec ids: what Docker accepts, and safe as a path component.
pub fn validate_id(what: &str, id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{what} {id:?}: use 1-128 letters, digits, '_', '.' or '-'"
        )))
    }
}

/// The rootfs path from the request must stay inside the shared directory.
pub fn rootfs_path(share: &Path, relative: &str) -> Result<PathBuf> {
    let rel = Path::new(relative);
    let clean = !relative.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !clean {
        return Err(Error::InvalidArgument(format!(
            "rootfs {relative:?}: must be a relative path inside the shared directory"
        )));
    }
    Ok(share.join(rel))
}

fn read_optional(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
    }
}

/// Sets a sysctl of the VM itself (its network namespace is the pod's). Errors:
/// [`Error::InvalidArgument`] naming the key when the kernel has no such key or refuses the
/// value.
fn write_vm_sysctl(key: &str, value: &str) -> Result<()> {
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    std::fs::write(&path, value).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::InvalidArgument(format!("sysctl {key}: no such key in the guest kernel"))
        }
        std::io::ErrorKind::InvalidInput => {
            Error::InvalidArgument(format!("sysctl {key}: the kernel refuses {value:?}"))
        }
        _ => Error::io(format!("sysctl {key}"), e),
    })
}

/// The process's user and groups, resolved in the container's /etc/passwd and /etc/group.
fn resolve_user(rootfs: &Path, process: &Process) -> Result<crate::user::ResolvedUser> {
    let passwd = read_optional(&rootfs.join("etc/passwd"))?;
    let group = read_optional(&rootfs.join("etc/group"))?;
    let mut user = crate::user::resolve(&process.user, &passwd, &group)?;
    crate::user::add_groups(&mut user, &process.additional_groups, &group)?;
    Ok(user)
}

impl Containers {
    pub fn new(share: &Path, state: &Path, bundles: &Path, reaper: Reaper) -> Self {
        Self {
            share: share.to_path_buf(),
            state: state.to_path_buf(),
            bundles: bundles.to_path_buf(),
            reaper,
            disks: crate::volumes::Disks::default(),
            entries: Mutex::new(HashMap::new()),
            vm_execs: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().expect("containers lock")
    }

    /// Creates a container whose init waits for [`Containers::start`].
    pub fn create(&self, req: &CreateContainerRequest) -> Result<()> {
        validate_id("container id", &req.id)?;
        if self.entries().contains_key(&req.id) {
            return Err(Error::Conflict(format!(
                "container {} already exists",
                req.id
            )));
        }
        let rootfs = rootfs_path(&self.share, &req.rootfs)?;
        if !rootfs.is_dir() {
            return Err(Error::NotFound(format!(
                "rootfs of container {}: {} is not a directory in the guest",
                req.id, req.rootfs
            )));
        }
        let process = req
            .process
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("process: missing".into()))?;
        if process.args.is_empty() {
            return Err(Error::InvalidArgument("no command given".into()));
        }
        let hostname = if req.hostname.is_empty() {
            req.id.chars().take(12).collect()
        } else {
            req.hostname.clone()
        };
        let user = resolve_user(&rootfs, process)?;
        let env = spec::process_env(&process.env, &user.home, &hostname);
        // A missing command is not checked here: it starts, and ends with 127 (Docker's run).
        crate::rootfs::ensure_dir("cwd", &rootfs, spec::cwd(process), user.uid, user.gid)?;
        let resources = req.resources.unwrap_or_default();
        let options = req.options.clone().unwrap_or_default();
        // Checked before anything is written into the rootfs.
        let rlimits = spec::rlimits(&options.rlimits)?;
        for key in options.sysctls.keys() {
            spec::check_sysctl(key)?;
        }
        let (vm_sysctls, sysctls) = spec::split_sysctls(&options.sysctls);
        for (key, value) in &vm_sysctls {
            write_vm_sysctl(key, value)?;
        }
        if !options.files.is_empty() {
            let passwd = read_optional(&rootfs.join("etc/passwd"))?;
            let group = read_optional(&rootfs.join("etc/group"))?;
            crate::files::write_all(&rootfs, &options.files, &passwd, &group)?;
        }
        let volumes = crate::volumes::prepare(&self.share, &rootfs, &req.mounts, &self.disks)?;
        let config = spec::container_spec(&SpecInput {
            id: &req.id,
            rootfs: &rootfs,
            hostname: &hostname,
            process,
            env: &env,
            user: &user,
            resources: &resources,
            etc_dir: Path::new(crate::ETC_DIR),
            volumes: &volumes,
            read_only_rootfs: options.read_only_rootfs,
            rlimits,
            sysctls: &sysctls,
        });

        let bundle = self.bundles.join(&req.id);
        std::fs::create_dir_all(&bundle).map_err(|e| Error::io("create bundle", e))?;
        let written = serde_json::to_vec_pretty(&config)
            .map_err(std::io::Error::other)
            .and_then(|json| std::fs::write(bundle.join("config.json"), json));
        if let Err(e) = written {
            self.remove_bundle(&req.id);
            return Err(Error::io("write config.json", e));
        }

        let workload = Workload {
            init: true,
            terminal: process.terminal,
        };
        let built =
            ContainerStdio::new(process.terminal, process.stdin, &self.bundles).and_then(|stdio| {
                let context = || format!("create container {}", req.id);
                let builder = ContainerBuilder::new(req.id.clone(), SyscallType::default())
                    .with_root_path(&self.state)
                    .map_err(|e| Error::container(context(), e))?;
                let (builder, agent) = stdio.attach(builder);
                let mut container = builder
                    .with_executor(workload)
                    .as_init(&bundle)
                    .with_systemd(false)
                    .with_detach(true)
                    // The guest root is the initramfs, where pivot_root cannot work.
                    .with_no_pivot(true)
                    .build()
                    .map_err(|e| Error::container(context(), e))?;
                match agent.collect() {
                    Ok(agent) => Ok((container, agent)),
                    Err(e) => {
                        // Nothing half-made stays: the created init goes with its state.
                        let _ = container.delete(true);
                        Err(e)
                    }
                }
            });
        let (container, agent) = match built {
            Ok(built) => built,
            Err(e) => {
                self.remove_bundle(&req.id);
                return Err(e);
            }
        };
        let pid = container
            .pid()
            .ok_or_else(|| Error::Conflict(format!("container {} has no init pid", req.id)))?
            .as_raw();
        let init = ProcessHandle::new(pid, self.reaper.register(pid), agent)?;
        self.entries().insert(
            req.id.clone(),
            Entry {
                container,
                init,
                execs: HashMap::new(),
                rootfs,
                hostname,
                home: user.home,
            },
        );
        tracing::info!(container_id = %req.id, pid, "container created");
        Ok(())
    }

    pub fn start(&self, id: &str) -> Result<i32> {
        let mut entries = self.entries();
        let entry = entries
            .get_mut(id)
            .ok_or_else(|| Error::NotFound(format!("no such container: {id}")))?;
        if !entry.container.can_start() {
            return Err(Error::Conflict(format!(
                "container {id} cannot start: it is {:?}",
                entry.container.status()
            )));
        }
        entry
            .container
            .start()
            .map_err(|e| Error::container(format!("start container {id}"), e))?;
        tracing::info!(container_id = %id, pid = entry.init.pid, "container started");
        Ok(entry.init.pid)
    }

    /// Runs a new process in a running container's namespaces and cgroup; with an empty
    /// container id, in the VM itself ([`Containers::exec_vm`]).
    pub fn exec(&self, req: &ExecRequest) -> Result<i32> {
        validate_id("exec id", &req.exec_id)?;
        let process = req
            .process
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("process: missing".into()))?;
        if process.args.is_empty() {
            return Err(Error::InvalidArgument("no command given".into()));
        }
        if req.container_id.is_empty() {
            return self.exec_vm(&req.exec_id, process);
        }
        let mut entries = self.entries();
        let entry = entries
            .get_mut(&req.container_id)
            .ok_or_else(|| Error::NotFound(format!("no such container: {}", req.container_id)))?;
        if entry.execs.contains_key(&req.exec_id) {
            return Err(Error::Conflict(format!(
                "exec {} already exists",
                req.exec_id
            )));
        }
        if entry.init.exit_code().is_some() || !entry.container.can_exec() {
            return Err(Error::Conflict(format!(
                "container {} is not running",
                req.container_id
            )));
        }
        let user = resolve_user(&entry.rootfs, process)?;
        let home = if process.user.is_empty() {
            entry.home.clone()
        } else {
            user.home.clone()
        };
        let env = spec::process_env(&process.env, &home, &entry.hostname);
        let cwd = spec::cwd(process);
        if crate::rootfs::resolve(&entry.rootfs, cwd).is_none_or(|p| !p.is_dir()) {
            return Err(Error::InvalidArgument(format!(
                "cwd {cwd}: no such directory in container {}",
                req.container_id
            )));
        }
        // A whole OCI process (process.json), the init's with the exec's command: libcontainer
        // takes a terminal only from one, and its builder alone would drop the init's rlimits.
        let process_file = self.write_exec_process(
            &req.container_id,
            &req.exec_id,
            &spec::ExecInput {
                args: &process.args,
                env: &env,
                cwd,
                user: &user,
                terminal: process.terminal,
            },
        )?;

        let stdio = ContainerStdio::new(process.terminal, process.stdin, &self.bundles);
        let workload = Workload {
            init: false,
            terminal: process.terminal,
        };
        let built = stdio.and_then(|stdio| {
            let (b, agent) = stdio.attach(
                ContainerBuilder::new(req.container_id.clone(), SyscallType::default())
                    .with_root_path(&self.state)
                    .map_err(|e| {
                        Error::container(format!("exec in container {}", req.container_id), e)
                    })?,
            );
            let b = b.with_executor(workload).as_tenant().with_detach(true);
            let b = b.with_process(Some(process_file.path()));
            let pid = b.build().map_err(|e| {
                Error::container(format!("exec in container {}", req.container_id), e)
            })?;
            Ok((pid.as_raw(), agent.collect()?))
        });
        drop(process_file);
        let (pid, agent) = built?;
        let handle = ProcessHandle::new(pid, self.reaper.register(pid), agent)?;
        entry.execs.insert(req.exec_id.clone(), handle);
        tracing::info!(container_id = %req.container_id, exec_id = %req.exec_id, pid, "exec started");
        Ok(pid)
    }

    /// Runs a command in the VM itself: the agent's namespaces, root, [`spec::DEFAULT_PATH`].
    /// A command that cannot be executed still gets a process that ended with 127 or 126 and
    /// said why on stderr, as in a container.
    pub fn exec_vm(&self, exec_id: &str, process: &Process) -> Result<i32> {
        if !process.user.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "user {}: a process in the vm runs as root",
                process.user
            )));
        }
        let mut vm_execs = self.vm_execs.lock().expect("vm execs lock");
        if vm_execs.contains_key(exec_id) {
            return Err(Error::Conflict(format!("exec {exec_id} already exists")));
        }
        let cwd = spec::cwd(process);
        if !Path::new(cwd).is_dir() {
            return Err(Error::InvalidArgument(format!(
                "cwd {cwd}: no such directory in the vm"
            )));
        }
        let env = spec::process_env(&process.env, "/root", "");
        let (child, agent) = stdio(process.terminal, process.stdin)?;
        let mut command = std::process::Command::new(&process.args[0]);
        command
            .args(&process.args[1..])
            .env_clear()
            .envs(env.iter().filter_map(|e| e.split_once('=')))
            .current_dir(cwd)
            .stdin(child.stdin)
            .stdout(child.stdout)
            .stderr(child.stderr);
        let terminal = process.terminal;
        // SAFETY: only async-signal-safe calls (setsid, ioctl) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                nix::unistd::setsid()?;
                if terminal && libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // The agent is single-threaded: the reaper cannot collect the child before `spawn`
        // returns, and it never waits for it afterwards (dropping a `Child` does not wait).
        let handle = match command.spawn() {
            Ok(spawned) => {
                let pid = spawned.id() as i32;
                ProcessHandle::new(pid, self.reaper.register(pid), agent)?
            }
            Err(e) => {
                let errno = nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::ENOENT));
                let (code, message) = crate::workload::exec_failure(&process.args[0], errno);
                ProcessHandle::failed(code, message)
            }
        };
        let pid = handle.pid;
        vm_execs.insert(exec_id.to_string(), handle);
        tracing::info!(exec_id, pid, "exec in the vm started");
        Ok(pid)
    }

    pub fn process(&self, r: &ProcessRef) -> Result<Arc<ProcessHandle>> {
        if r.container_id.is_empty() {
            return self
                .vm_execs
                .lock()
                .expect("vm execs lock")
                .get(&r.exec_id)
                .cloned()
                .ok_or_else(|| Error::NotFound(format!("no such exec in the vm: {}", r.exec_id)));
        }
        let entries = self.entries();
        let entry = entries
            .get(&r.container_id)
            .ok_or_else(|| Error::NotFound(format!("no such container: {}", r.container_id)))?;
        if r.exec_id.is_empty() {
            return Ok(entry.init.clone());
        }
        entry
            .execs
            .get(&r.exec_id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("no such exec: {}", r.exec_id)))
    }

    pub fn signal(&self, r: &ProcessRef, signal: i32) -> Result<()> {
        let signal = Signal::try_from(signal)
            .map_err(|_| Error::InvalidArgument(format!("signal {signal}: unknown")))?;
        let process = self.process(r)?;
        if process.exit_code().is_some() {
            return Err(Error::Conflict(format!(
                "process {} has exited",
                process.pid
            )));
        }
        kill(Pid::from_raw(process.pid), signal)
            .map_err(|e| Error::io(format!("signal process {}", process.pid), e.into()))
    }

    /// Sets the window size of a process started with a terminal.
    pub fn resize(&self, r: &ProcessRef, rows: u32, cols: u32) -> Result<()> {
        self.process(r)?.resize(rows, cols)
    }

    /// The container's resource use, from its cgroup and the guest's totals.
    pub fn stats(&self, id: &str) -> Result<ContainerStats> {
        if !self.entries().contains_key(id) {
            return Err(Error::NotFound(format!("no such container: {id}")));
        }
        crate::stats::read(&Path::new(crate::CGROUP_ROOT).join(id))
    }

    /// Kills whatever still runs in the container, then deletes its cgroup and state.
    pub async fn remove(&self, id: &str) -> Result<()> {
        let (init, execs) = {
            let entries = self.entries();
            let entry = entries
                .get(id)
                .ok_or_else(|| Error::NotFound(format!("no such container: {id}")))?;
            (
                entry.init.clone(),
                entry.execs.values().cloned().collect::<Vec<_>>(),
            )
        };
        for p in execs.iter().chain(std::iter::once(&init)) {
            if p.exit_code().is_none() {
                // Killing the pid namespace's init takes every process of the container.
                if let Err(e) = kill(Pid::from_raw(p.pid), Signal::SIGKILL) {
                    tracing::warn!(pid = p.pid, "kill: {e}");
                }
            }
        }
        for p in execs.iter().chain(std::iter::once(&init)) {
            if tokio::time::timeout(KILL_WAIT, p.wait()).await.is_err() {
                return Err(Error::Conflict(format!(
                    "container {id}: process {} did not die after SIGKILL",
                    p.pid
                )));
            }
        }
        let Some(mut entry) = self.entries().remove(id) else {
            return Err(Error::NotFound(format!("no such container: {id}")));
        };
        let deleted = entry.container.delete(true);
        self.remove_bundle(id);
        deleted.map_err(|e| Error::container(format!("delete container {id}"), e))?;
        tracing::info!(container_id = %id, "container removed");
        Ok(())
    }

    /// Writes an exec's OCI process (the init's, see [`spec::exec_process`]) next to the
    /// container's config.json; the file goes when the returned guard drops.
    fn write_exec_process(
        &self,
        container_id: &str,
        exec_id: &str,
        exec: &spec::ExecInput<'_>,
    ) -> Result<RemovedOnDrop> {
        let bundle = self.bundles.join(container_id);
        let config: serde_json::Value = std::fs::read(bundle.join("config.json"))
            .and_then(|b| serde_json::from_slice(&b).map_err(std::io::Error::other))
            .map_err(|e| Error::io(format!("read config.json of container {container_id}"), e))?;
        let process = spec::exec_process(&config["process"], exec);
        let file = RemovedOnDrop(bundle.join(format!("exec-{exec_id}.json")));
        serde_json::to_vec(&process)
            .map_err(std::io::Error::other)
            .and_then(|json| std::fs::write(&file.0, json))
            .map_err(|e| Error::io(format!("write the process of exec {exec_id}"), e))?;
        Ok(file)
    }

    fn remove_bundle(&self, id: &str) {
        let dir = self.bundles.join(id);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("remove {}: {e}", dir.display());
        }
    }
}

/// A file removed when this drops.
struct RemovedOnDrop(PathBuf);

impl RemovedOnDrop {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A container process's stdio before libcontainer has it: pipes, or a console socket on
/// which libcontainer sends the terminal it makes in the container.
enum ContainerStdio {
    Pipes(ChildStdio, AgentStdio),
    Console(ConsoleSocket),
}

/// The agent's ends once the process is built.
enum PendingStdio {
    Ready(AgentStdio),
    Console(ConsoleSocket),
}

impl ContainerStdio {
    /// Pipes (stdin from /dev/null unless `open_stdin`), or with `terminal` a console socket
    /// in `socket_dir`.
    fn new(terminal: bool, open_stdin: bool, socket_dir: &Path) -> Result<Self> {
        if terminal {
            Ok(Self::Console(ConsoleSocket::bind(socket_dir)?))
        } else {
            let (child, agent) = stdio(false, open_stdin)?;
            Ok(Self::Pipes(child, agent))
        }
    }

    /// Hands the process's ends to libcontainer.
    fn attach(self, b: ContainerBuilder) -> (ContainerBuilder, PendingStdio) {
        match self {
            Self::Pipes(child, agent) => (
                b.with_stdin(child.stdin)
                    .with_stdout(child.stdout)
                    .with_stderr(child.stderr),
                PendingStdio::Ready(agent),
            ),
            Self::Console(console) => (
                b.with_console_socket(Some(console.path())),
                PendingStdio::Console(console),
            ),
        }
    }
}

impl PendingStdio {
    /// The agent's ends; call once libcontainer's build returned (the terminal master has
    /// been sent by then).
    fn collect(self) -> Result<AgentStdio> {
        match self {
            Self::Ready(agent) => Ok(agent),
            Self::Console(console) => Ok(AgentStdio::Pty(console.receive_master()?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        validate_id("container id", "web-1_a.b").unwrap();
        for bad in ["", ".hidden", "a/b", "a b", &"x".repeat(129)] {
            assert!(validate_id("container id", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rootfs_cannot_escape_the_share() {
        let share = Path::new("/run/hyper/share");
        assert_eq!(
            rootfs_path(share, "c1/rootfs").unwrap(),
            Path::new("/run/hyper/share/c1/rootfs")
        );
        for bad in ["", "/etc", "../x", "c1/../../x", "./c1"] {
            let e = rootfs_path(share, bad).unwrap_err().to_string();
            assert!(e.contains("rootfs"), "{bad:?}: {e}");
        }
    }
}
