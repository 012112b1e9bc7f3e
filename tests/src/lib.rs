//! The end-to-end harness: real shims booting real VMs (QEMU; TCG on machines without usable
//! KVM). Every test gets its own temporary directory, socket and run dir, and everything it
//! started is killed when its handle drops, even when the test panics.

pub mod daemon;
pub mod hijack;
pub mod netns;
pub mod oci;
pub mod proxy;
pub mod registry;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint, Uri};

use hyper_proto::shim::shim_client::ShimClient;
use hyper_proto::shim::{AddContainerRequest, ContainerRef, CreateVmRequest, VmInfo};
use hyper_proto::types::{AttachInput, OutputStream, Process, ProcessRef, attach_input};

/// How long one step of a test (an exec, a wait) may take before the test fails.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `f`, failing the test if it takes longer than [`STEP_TIMEOUT`].
pub async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| panic!("step did not finish within {STEP_TIMEOUT:?}"))
}

/// A guest boot under TCG on a loaded 2-core machine can take many seconds.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// Makes a child the test starts die with the test's thread, even when the test process is
/// killed (a nextest timeout) and no Drop runs.
pub fn dies_with_test(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// target/<profile>/ of the running test binary.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test>
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir layout")
        .to_path_buf()
}

pub fn shim_binary() -> PathBuf {
    profile_dir().join("hyper-shim")
}

/// Where guest/build.sh puts vmlinux and initramfs.img.
pub fn guest_dir() -> PathBuf {
    let dir = profile_dir().parent().expect("target dir").join("guest");
    assert!(
        dir.join("vmlinux").exists() && dir.join("initramfs.img").exists(),
        "no guest image in {}: run guest/build.sh (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// A busybox rootfs built from Debian's busybox-static, as a container image would provide.
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in [
        "bin", "etc", "proc", "sys", "dev", "tmp", "root", "home/app",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is installed (scripts/install-deps.sh)");
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    let list = Command::new(busybox).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            symlink("/bin/busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\napp:x:1000:\nstaff:x:50:app\n",
    )
    .unwrap();
    root
}

/// A running hyper-shim on its own socket and run dir.
pub struct ShimHandle {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub run_dir: PathBuf,
    process: std::process::Child,
    pub client: ShimClient<Channel>,
}

/// The VMM the suite runs on: `HYPER_TEST_VMM` (qemu | cloud-hypervisor | auto), default qemu.
pub fn test_vmm() -> String {
    std::env::var("HYPER_TEST_VMM")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "qemu".into())
}

impl ShimHandle {
    pub async fn start(name: &str) -> Self {
        Self::start_with(name, &[format!("--vmm={}", test_vmm())]).await
    }

    /// Starts a shim with extra command-line arguments (and no `--vmm` unless given).
    pub async fn start_with(name: &str, args: &[String]) -> Self {
        Self::start_wrapped(name, &[], args).await
    }

    /// Starts a shim (with `--vmm` as [`ShimHandle::start`]) inside the network namespace
    /// `netns` (`ip netns exec`, which execs the shim: the handle's pid is the shim's).
    pub async fn start_in_netns(name: &str, netns: &str) -> Self {
        Self::start_in_netns_with(name, netns, &[format!("--vmm={}", test_vmm())]).await
    }

    /// As [`ShimHandle::start_in_netns`], with these arguments instead of `--vmm`.
    pub async fn start_in_netns_with(name: &str, netns: &str, args: &[String]) -> Self {
        let wrapper = ["ip", "netns", "exec", netns].map(String::from);
        Self::start_wrapped(name, &wrapper, args).await
    }

    /// Starts the shim as `wrapper... <shim> <args>` (no wrapper: the shim itself).
    async fn start_wrapped(name: &str, wrapper: &[String], args: &[String]) -> Self {
        // Short paths: unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("hyt-")
            .tempdir_in("/tmp")
            .unwrap();
        let socket = dir.path().join("shim.sock");
        let run_dir = dir.path().join("run");
        let log = std::fs::File::create(dir.path().join("shim.log")).unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(shim_binary());
                cmd
            }
            None => Command::new(shim_binary()),
        };
        let process = dies_with_test(&mut cmd)
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--run-dir={}", run_dir.display()))
            .arg(format!("--id={name}"))
            .arg(format!("--guest-dir={}", guest_dir().display()))
            .arg("--log=info")
            .args(args)
            // The Cloud Hypervisor probe's cache stays in the build tree, not in $HOME.
            .env("HYPER_CACHE_DIR", profile_dir().join("hyper-test-cache"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start hyper-shim");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "shim did not create its socket");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let client = ShimClient::new(unix_channel(&socket).await);
        Self {
            dir,
            socket,
            run_dir,
            process,
            client,
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// The shim's own log, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("shim.log")).unwrap_or_default()
    }

    pub async fn boot(&mut self) -> VmInfo {
        self.boot_with(CreateVmRequest::default()).await
    }

    pub async fn boot_with(&mut self, req: CreateVmRequest) -> VmInfo {
        let req = CreateVmRequest {
            boot_timeout_ms: BOOT_TIMEOUT.as_millis() as u32,
            ..req
        };
        match self.client.create_vm(req).await {
            Ok(info) => info.into_inner(),
            Err(e) => panic!("create vm: {e}\nshim log:\n{}", self.log()),
        }
    }

    pub fn kill(&mut self) {
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(self.process.id() as i32, libc::SIGKILL) };
        let _ = self.process.wait();
    }

    /// Shuts the VM down over gRPC and checks that the shim then exits cleanly and takes its
    /// run dir with it.
    pub async fn shutdown_cleanly(&mut self) {
        let run_dir = self.run_dir.clone();
        self.client
            .shutdown(hyper_proto::shim::ShutdownRequest::default())
            .await
            .unwrap();
        let status = self.wait_exit(Duration::from_secs(30)).await;
        assert!(status.success(), "shim exit: {status}\n{}", self.log());
        assert!(!run_dir.exists(), "run dir left behind");
    }

    /// Waits for the shim to exit by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.process.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "shim did not exit in {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ShimHandle {
    fn drop(&mut self) {
        self.kill();
        // HYPER_TEST_KEEP=1 keeps the temp dir (logs, console) of a failed test to read.
        if std::thread::panicking() && std::env::var_os("HYPER_TEST_KEEP").is_some() {
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap()).keep();
            eprintln!("kept {}", kept.display());
        }
        // The VMM and helpers die with the shim (PDEATHSIG); wait so the next test starts on
        // a quiet machine and the temp dir is not in use.
        let _ = wait_no_process_mentions(self.dir.path(), Duration::from_secs(10));
    }
}

/// A gRPC channel over a unix socket. The socket file appears at bind(), a moment before the
/// server listens, so refused connections are retried for a while.
pub async fn unix_channel(socket: &Path) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let path = socket.to_path_buf();
        let connected = Endpoint::from_static("http://shim.local")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    tokio::net::UnixStream::connect(path)
                        .await
                        .map(TokioIo::new)
                }
            }))
            .await;
        match connected {
            Ok(channel) => return channel,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("connect to {}: {e}", socket.display()),
        }
    }
}

/// Pids of live processes whose command line mentions `needle` (our temp dirs are unique).
pub fn processes_mentioning(needle: &Path) -> Vec<(u32, String)> {
    let needle = needle.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Waits until no process mentions `needle`; returns what is still left at the deadline.
pub fn wait_no_process_mentions(needle: &Path, timeout: Duration) -> Vec<(u32, String)> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = processes_mentioning(needle);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn process(args: &[&str]) -> Process {
    Process {
        args: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// What a process printed and how it ended.
#[derive(Debug, Default)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
}

/// Attaches to a process and collects its output until it closes stdout and stderr.
pub async fn collect_output(client: &mut ShimClient<Channel>, target: ProcessRef) -> Output {
    let open = AttachInput {
        input: Some(attach_input::Input::Open(target.clone())),
    };
    let mut stream = client
        .attach(tokio_stream::iter(vec![open]))
        .await
        .expect("attach")
        .into_inner();
    let mut out = Output::default();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("attach stream");
        let text = String::from_utf8_lossy(&chunk.data);
        match OutputStream::try_from(chunk.stream) {
            Ok(OutputStream::Stderr) => out.stderr.push_str(&text),
            _ => out.stdout.push_str(&text),
        }
    }
    out.exit_code = client
        .wait(target)
        .await
        .expect("wait")
        .into_inner()
        .exit_code;
    out
}

/// Creates a container from `rootfs`, starts it and returns its output and exit code.
pub async fn run_container(
    client: &mut ShimClient<Channel>,
    id: &str,
    rootfs: &Path,
    proc_: Process,
) -> Output {
    client
        .add_container(AddContainerRequest {
            id: id.into(),
            rootfs: rootfs.to_string_lossy().into_owned(),
            process: Some(proc_),
            ..Default::default()
        })
        .await
        .expect("add container");
    client
        .start_container(ContainerRef { id: id.into() })
        .await
        .expect("start container");
    collect_output(
        client,
        ProcessRef {
            container_id: id.into(),
            exec_id: String::new(),
        },
    )
    .await
}

/// An initramfs whose /init never starts the agent: the guest boots but never answers.
pub fn silent_initrd(dir: &Path) -> PathBuf {
    let tree = dir.join("silent");
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::create_dir_all(tree.join("dev")).unwrap();
    std::fs::copy(
        ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap(),
        tree.join("bin/busybox"),
    )
    .unwrap();
    std::fs::write(
        tree.join("init"),
        "#!/bin/busybox sh\nexec /bin/busybox sleep 100000\n",
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(tree.join("init"))
        .status()
        .unwrap();
    let img = dir.join("silent.img");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {} && find . | cpio -o -H newc --quiet > {}",
            tree.display(),
            img.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    img
}

/// Boots a guest whose /init never starts the agent and checks that CreateVm fails with a
/// deadline error naming the agent, well before the test's own timeout.
pub async fn assert_silent_guest_times_out(shim: &mut ShimHandle) {
    let initrd = silent_initrd(shim.dir.path());
    let started = Instant::now();
    let e = shim
        .client
        .create_vm(CreateVmRequest {
            initrd: initrd.to_string_lossy().into(),
            boot_timeout_ms: 8_000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e}");
    assert!(
        e.message().starts_with("guest agent: no answer after"),
        "{}",
        e.message()
    );
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "took {:?}",
        started.elapsed()
    );
}

/// Runs a tool the harness needs; its stdout, or a panic carrying its stderr.
pub fn run_tool(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Percent-encodes a query value (RFC 3986: everything but unreserved characters).
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
