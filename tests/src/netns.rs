//! Network namespaces for the network tests: [`NetNs`], a namespace of the test's own with only
//! `lo` up and no route anywhere, and [`Outside`], a second namespace joined to the first by a
//! veth pair, standing in for "the outside world" (neither has a default route, so nothing a
//! test does can leave them). Both are deleted when their handle drops, even on panic; they kill
//! nothing themselves (a [`crate::daemon::TestDaemon`] started in one kills its own processes).

use std::ffi::CString;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::daemon::CmdOutput;
use crate::run_tool;

/// Namespaces made by this test process so far: the `<n>` of their names.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace named `hyt-<tag>-<pid>-<n>` (`ip netns add`), `lo` up.
/// The bridge of [`NetNs::with_bridge`].
pub const BRIDGE: &str = "br-hyt";
/// [`BRIDGE`]'s address (a /24): the VMs' gateway in shim tests.
pub const GATEWAY: &str = "192.168.77.1";

pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Makes the namespace; panics (with `ip`'s message) if it cannot.
    pub fn new(tag: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("hyt-{tag}-{}-{n}", std::process::id());
        run_tool(Command::new("ip").args(["netns", "add", &name]));
        // From here Drop removes it, whatever fails next.
        let ns = Self { name };
        run_tool(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]));
        ns
    }

    /// A namespace with a bridge [`BRIDGE`] holding [`GATEWAY`]/24, for shim tests that give a
    /// VM a tap without a hyperd to make the bridge.
    pub fn with_bridge(tag: &str) -> Self {
        let ns = Self::new(tag);
        ns.ip(&["link", "add", BRIDGE, "type", "bridge"]);
        ns.ip(&["addr", "add", &format!("{GATEWAY}/24"), "dev", BRIDGE]);
        ns.ip(&["link", "set", BRIDGE, "up"]);
        ns
    }

    /// `ip -n <ns> args...`, which must succeed; its stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let out = run_tool(Command::new("ip").args(["-n", &self.name]).args(args));
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The name `ip netns` knows it by (`ip -n NAME …`, `ip netns exec NAME …`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`: the bind mount `setns(2)` opens.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// An open handle on the namespace, for `setns(2)`.
    pub fn open(&self) -> OwnedFd {
        std::fs::File::open(self.path())
            .unwrap_or_else(|e| panic!("open {}: {e}", self.path().display()))
            .into()
    }

    /// Runs `args` inside the namespace (`ip netns exec NAME args…`) and returns what it printed
    /// and its exit status (not checked).
    pub fn exec(&self, args: &[&str]) -> CmdOutput {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {} {args:?}: {e}", self.name));
        CmdOutput {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            code: out.status.code().unwrap_or(-1),
        }
    }

    /// [`NetNs::exec`] that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        assert_eq!(out.code, 0, "in {}: {args:?}: {out:?}", self.name);
        out.stdout
    }

    /// Runs `f` on a new thread that first joins this namespace (`setns(CLONE_NEWNET)`, which
    /// moves only that thread), so sockets it makes live in the namespace: a `TcpListener`
    /// bound there, a `TcpStream` connecting from there.
    pub fn thread<T, F>(&self, f: F) -> std::thread::JoinHandle<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let fd = self.open();
        let name = self.name.clone();
        std::thread::spawn(move || {
            // SAFETY: fd is an open nsfs file; setns changes only this thread's namespace.
            if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                panic!("setns {name}: {}", std::io::Error::last_os_error());
            }
            drop(fd);
            f()
        })
    }

    /// [`NetNs::thread`] and wait for its result (a panic in `f` is re-raised here).
    pub fn run<T, F>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        match self.thread(f).join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Makes `cmd` run inside this namespace; see [`enter_on_exec_named`].
    pub fn enter_on_exec(&self, cmd: &mut Command) {
        enter_on_exec_named(&self.name, cmd);
    }

    /// Interface names in the namespace (`ip -o link`), e.g. `["lo", "hyper0", "hyt1a2b"]`.
    pub fn links(&self) -> Vec<String> {
        let out = run_tool(Command::new("ip").args(["-n", &self.name, "-o", "link", "show"]));
        String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect()
    }

    /// `nft list tables` inside the namespace, one table per line (`table inet hyperd`).
    pub fn nft_tables(&self) -> Vec<String> {
        self.ok(&["nft", "list", "tables"])
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Processes still inside keep the namespace itself alive, but not its name.
        let out = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "ip netns del {}: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("ip netns del {}: {e}", self.name),
        }
    }
}

/// Makes `cmd` run inside the namespace `ip netns` calls `name` (network only: the child
/// `setns`es between fork and exec, so its pid is the command's own, unlike a wrapper, and its
/// mounts stay the host's, unlike `ip netns exec`, which unshares the mount namespace).
pub fn enter_on_exec_named(name: &str, cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let path = CString::new(format!("/run/netns/{name}")).expect("namespace name without NUL");
    // SAFETY: open, setns and close are async-signal-safe; `path` was allocated before fork.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let r = libc::setns(fd, libc::CLONE_NEWNET);
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            if r != 0 {
                return Err(err);
            }
            Ok(())
        });
    }
}

/// A second namespace joined to a [`NetNs`] by a veth pair: `10.<x>.0.1/24` on the first
/// namespace's side ([`Outside::inner_ip`], interface [`Outside::INNER_IF`]), `10.<x>.0.2/24`
/// here ([`Outside::ip`]). No default route on either side: the only reachable addresses are
/// those of the /24 itself (and whatever the first namespace NATs into it).
pub struct Outside {
    pub ns: NetNs,
    /// The first namespace's end of the veth.
    pub inner_ip: Ipv4Addr,
    /// This namespace's end of the veth.
    pub ip: Ipv4Addr,
}

impl Outside {
    /// The veth end in the first namespace.
    pub const INNER_IF: &'static str = "veth-out";
    /// The veth end in the outside namespace.
    pub const OUTER_IF: &'static str = "eth0";

    pub fn new(inner: &NetNs) -> Self {
        let ns = NetNs::new("out");
        // Any /24 works (the namespaces are private); vary it so logs tell tests apart.
        let x = 100 + NEXT.load(Ordering::Relaxed) % 100;
        let inner_ip = Ipv4Addr::new(10, x as u8, 0, 1);
        let ip = Ipv4Addr::new(10, x as u8, 0, 2);
        // Both ends are made inside the namespaces: the host's own links are never touched.
        run_tool(Command::new("ip").args([
            "-n",
            inner.name(),
            "link",
            "add",
            Self::INNER_IF,
            "type",
            "veth",
            "peer",
            "name",
            Self::OUTER_IF,
            "netns",
            ns.name(),
        ]));
        for (side, ifname, addr) in [
            (inner.name(), Self::INNER_IF, inner_ip),
            (ns.name(), Self::OUTER_IF, ip),
        ] {
            run_tool(Command::new("ip").args([
                "-n",
                side,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                ifname,
            ]));
            run_tool(Command::new("ip").args(["-n", side, "link", "set", ifname, "up"]));
        }
        Self { ns, inner_ip, ip }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::time::Duration;

    use super::*;

    fn exists(name: &str) -> bool {
        PathBuf::from("/run/netns").join(name).exists()
    }

    #[test]
    fn a_namespace_has_only_loopback_up_and_goes_with_its_handle() {
        let ns = NetNs::new("self");
        let name = ns.name().to_string();
        assert!(name.starts_with("hyt-self-"), "{name}");
        assert!(exists(&name));
        assert_eq!(ns.links(), ["lo"]);
        assert!(ns.ok(&["ip", "link", "show", "lo"]).contains("UP"));
        assert_eq!(ns.ok(&["ip", "route", "show"]), "");
        drop(ns);
        assert!(!exists(&name), "{name} left behind");
    }

    #[test]
    fn a_panicking_test_still_deletes_its_namespace() {
        let (tx, rx) = std::sync::mpsc::channel();
        let r = std::thread::spawn(move || {
            let ns = NetNs::new("panic");
            tx.send(ns.name().to_string()).unwrap();
            panic!("test failure");
        })
        .join();
        assert!(r.is_err());
        let name = rx.recv().unwrap();
        assert!(!exists(&name), "{name} left behind");
    }

    #[test]
    fn a_thread_binds_in_the_outside_and_the_inner_namespace_reaches_it() {
        let ns = NetNs::new("thr");
        let out = Outside::new(&ns);
        let ip = out.ip;
        let listener = out.ns.run(move || TcpListener::bind((ip, 0)).unwrap());
        let addr = listener.local_addr().unwrap();
        // From the first namespace, over the veth: the server sees the veth's inner address.
        let server = std::thread::spawn(move || {
            let (mut conn, peer) = listener.accept().unwrap();
            conn.write_all(b"hi").unwrap();
            peer
        });
        let got = ns.run(move || {
            let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
            let mut s = String::new();
            c.read_to_string(&mut s).unwrap();
            s
        });
        assert_eq!(got, "hi");
        let peer: SocketAddr = server.join().unwrap();
        assert_eq!(peer.ip(), std::net::IpAddr::V4(out.inner_ip));
        // No default route on either side: nothing can leave.
        assert_eq!(ns.ok(&["ip", "route", "show", "default"]), "");
        assert_eq!(out.ns.ok(&["ip", "route", "show", "default"]), "");
        assert!(ns.links().contains(&Outside::INNER_IF.to_string()));
    }

    #[test]
    fn a_command_entered_on_exec_sees_the_namespace() {
        let ns = NetNs::new("exec");
        let _out = Outside::new(&ns);
        let mut cmd = Command::new("ip");
        cmd.args(["-o", "link", "show"]);
        ns.enter_on_exec(&mut cmd);
        let links = String::from_utf8(run_tool(&mut cmd)).unwrap();
        assert!(links.contains(Outside::INNER_IF), "{links}");
        assert_eq!(links.lines().count(), 2, "{links}");
    }
}
