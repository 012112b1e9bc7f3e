//! `TestDaemon`: a real `hyperd` on a temporary root, run dir and socket (short paths under
//! /tmp), driven with the real `hyperctl` and with curl, exactly as a user would. Dropping it
//! kills hyperd and every process whose command line mentions its temporary directory (the
//! shims are detached, not hyperd's children), and waits until they are gone.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::NetNs;
use crate::{
    busybox_rootfs, guest_dir, processes_mentioning, profile_dir, test_vmm,
    wait_no_process_mentions,
};

/// What a command printed and how it exited.
#[derive(Debug)]
pub struct CmdOutput {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

/// An HTTP answer: status and body.
#[derive(Debug)]
pub struct Http {
    pub status: u16,
    pub body: String,
}

pub struct TestDaemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub root: PathBuf,
    pub run_dir: PathBuf,
    /// Extra hyperd arguments, given again on every (re)start.
    args: Vec<String>,
    /// The network namespace hyperd runs in (`/run/netns/<name>`); `None`: the host's, with
    /// `--bridge none` so the host's network is never touched.
    netns: Option<String>,
    process: Option<Child>,
}

pub fn hyperd_binary() -> PathBuf {
    profile_dir().join("hyperd")
}

pub fn hyperctl_binary() -> PathBuf {
    profile_dir().join("hyperctl")
}

impl TestDaemon {
    /// Starts hyperd and waits until it answers `/_ping`.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts hyperd with extra command-line arguments after the harness's own (e.g.
    /// `["--insecure-registry", "127.0.0.1:5000"]`), kept for [`TestDaemon::restart`].
    pub fn start_with(args: &[&str]) -> Self {
        Self::start_on(None, args)
    }

    /// Starts hyperd inside `ns` (its bridge, taps and nftables live there; its unix socket is
    /// still reachable from the host), with extra arguments as [`TestDaemon::start_with`] and
    /// networking on (hyperd's defaults unless `args` say otherwise). Restarts stay in `ns`;
    /// the pid is hyperd's own, so `kill9` and `terminate` work as on the host.
    pub fn start_in(ns: &NetNs, args: &[&str]) -> Self {
        Self::start_on(Some(ns.name().to_string()), args)
    }

    fn start_on(netns: Option<String>, args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hyd-")
            .tempdir_in("/tmp")
            .unwrap();
        let mut d = Self {
            socket: dir.path().join("h.sock"),
            root: dir.path().join("root"),
            run_dir: dir.path().join("run"),
            dir,
            args: args.iter().map(|a| a.to_string()).collect(),
            netns,
            process: None,
        };
        d.spawn();
        d
    }

    /// The command line of this daemon's hyperd.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(hyperd_binary());
        crate::dies_with_test(&mut cmd);
        cmd.arg("--host")
            .arg(format!("unix://{}", self.socket.display()))
            .arg("--root")
            .arg(&self.root)
            .arg("--run-dir")
            .arg(&self.run_dir)
            .arg("--guest-dir")
            .arg(guest_dir())
            .arg("--vmm")
            .arg(test_vmm())
            .arg("--log")
            .arg("hyperd=debug,info")
            // Names without a registry (busybox) must never reach Docker Hub from a test.
            .arg("--docker-hub-host")
            .arg("127.0.0.1:1");
        match &self.netns {
            Some(name) => crate::netns::enter_on_exec_named(name, &mut cmd),
            // Tests outside a namespace of their own never touch the host's network.
            None => {
                cmd.args(["--bridge", "none"]);
            }
        }
        cmd.args(&self.args)
            // The shims' Cloud Hypervisor probe cache stays in the build tree.
            .env("HYPER_CACHE_DIR", profile_dir().join("hyper-test-cache"));
        cmd
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start hyperd");
        self.process = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.curl("GET", "/_ping", None).status == 200 {
                return;
            }
            if let Some(status) = self.process.as_mut().unwrap().try_wait().unwrap() {
                panic!("hyperd exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "hyperd did not answer /_ping:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("hyperd.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.process.as_ref().expect("hyperd runs").id()
    }

    /// SIGKILL to hyperd (its shims live on).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.process.take() {
            // SAFETY: signalling our own unreaped child.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            child.wait().unwrap();
        }
    }

    /// SIGTERM to hyperd; returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.process.take().expect("hyperd runs");
        // SAFETY: signalling our own unreaped child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap()
    }

    /// Starts hyperd again on the same root, run dir and socket.
    pub fn restart(&mut self) {
        assert!(self.process.is_none(), "stop hyperd first");
        self.spawn();
    }

    pub fn hyperctl(&self, args: &[&str]) -> CmdOutput {
        self.hyperctl_with_stdin(args, None)
    }

    /// hyperctl with `input` as its stdin (then end of file); `None`: /dev/null.
    pub fn hyperctl_with_stdin(&self, args: &[&str], input: Option<&[u8]>) -> CmdOutput {
        let mut child = Command::new(hyperctl_binary())
            .args(args)
            .env("HYPER_HOST", format!("unix://{}", self.socket.display()))
            // Registry logins of this test stay in its own dir, never in ~/.docker.
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run hyperctl");
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            // A hyperctl that stops reading early is not this helper's failure to report.
            let _ = std::io::Write::write_all(&mut stdin, input);
        }
        let out = child.wait_with_output().expect("wait for hyperctl");
        CmdOutput {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            code: out.status.code().unwrap_or(-1),
        }
    }

    /// hyperctl that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.hyperctl(args);
        assert_eq!(
            out.code,
            0,
            "hyperctl {args:?}: {out:?}\nhyperd log:\n{}",
            self.log()
        );
        out.stdout
    }

    /// curl over the socket; `path` is sent as given (query included).
    pub fn curl(&self, method: &str, path: &str, body: Option<&Path>) -> Http {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", "--unix-socket"])
            .arg(&self.socket)
            .args(["-X", method]);
        if let Some(file) = body {
            cmd.arg("--data-binary").arg(format!("@{}", file.display()));
        }
        cmd.arg(format!("http://hyperd{path}"));
        let out = cmd.output().expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
        Http {
            status: status.trim().parse().unwrap_or(0),
            body: body.to_string(),
        }
    }

    /// A hijacked request over this daemon's socket.
    pub fn hijack(&self, path: &str) -> Result<crate::hijack::Hijacked, Http> {
        crate::hijack::hijack(&self.socket, path)
    }

    /// Waits until hyperd's record of `container` says it no longer runs.
    pub fn exit_code(&self, container: &str) -> i32 {
        let r = self.curl("GET", &format!("/exitcode?container={container}"), None);
        assert_eq!(
            r.status,
            200,
            "{r:?}
{}",
            self.log()
        );
        r.body.trim().parse().unwrap()
    }

    /// curl with a body given as a string.
    pub fn curl_body(&self, method: &str, path: &str, body: &str) -> Http {
        let file = self.dir.path().join("body.json");
        std::fs::write(&file, body).unwrap();
        self.curl(method, path, Some(&file))
    }

    /// Imports the busybox rootfs as `busybox:latest`, as a user would with a tarball.
    pub fn import_busybox(&self) {
        let tarball = self.dir.path().join("busybox.tar");
        if !tarball.exists() {
            let rootfs = busybox_rootfs(&self.dir.path().join("image"));
            let tar = Command::new("tar")
                .arg("-C")
                .arg(&rootfs)
                .args(["-cf"])
                .arg(&tarball)
                .arg(".")
                .status()
                .unwrap();
            assert!(tar.success());
        }
        let resp = self.curl(
            "POST",
            "/image/create?fromSrc=-&repo=busybox&tag=latest",
            Some(&tarball),
        );
        assert_eq!(resp.status, 200, "import: {resp:?}\n{}", self.log());
    }

    /// The rows of `/list?item=…` as hyperctl would split them.
    pub fn list(&self, item: &str) -> Vec<Vec<String>> {
        let out = self.ok(&["list", item]);
        out.lines()
            .skip(1)
            .map(|l| l.split_whitespace().map(String::from).collect())
            .collect()
    }

    /// Waits until `check` holds, up to `timeout`.
    pub fn wait_until(&self, timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !check() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.kill9();
        // Retried boots pass the test but are worth seeing (with --no-capture).
        for line in self.log().lines().filter(|l| l.contains("boot failed")) {
            eprintln!("hyperd: {line}");
        }
        for (pid, _) in processes_mentioning(self.dir.path()) {
            // SAFETY: plain kill(2) of processes this test started (they name its temp dir).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let left = wait_no_process_mentions(self.dir.path(), Duration::from_secs(15));
        if !left.is_empty() {
            eprintln!("processes left behind: {left:?}");
        }
    }
}
