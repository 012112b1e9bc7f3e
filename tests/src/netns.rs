//! A network namespace per test for pod networking: a bridge with an address, so a VM's tap
//! has something to join and its traffic never leaves the namespace.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::run_tool;

/// The bridge every [`NetNs`] has.
pub const BRIDGE: &str = "br-hyt";
/// The bridge's address (a /24): the pods' gateway.
pub const GATEWAY: &str = "192.168.77.1";

/// A network namespace with a bridge holding [`GATEWAY`]/24; deleted on drop, even when the
/// test panics (its taps go with it, if the VMMs have not already taken them away).
pub struct NetNs {
    pub name: String,
}

static NEXT_NS: AtomicU32 = AtomicU32::new(0);

impl NetNs {
    pub fn create() -> Self {
        let name = format!(
            "hyt-{}-{}",
            std::process::id(),
            NEXT_NS.fetch_add(1, Ordering::SeqCst)
        );
        run_tool(Command::new("ip").args(["netns", "add", &name]));
        let ns = Self { name };
        ns.ip(&["link", "add", BRIDGE, "type", "bridge"]);
        ns.ip(&["addr", "add", &format!("{GATEWAY}/24"), "dev", BRIDGE]);
        ns.ip(&["link", "set", BRIDGE, "up"]);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> args...`; its stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let out = run_tool(Command::new("ip").args(["-n", &self.name]).args(args));
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The names of the namespace's links.
    pub fn links(&self) -> Vec<String> {
        self.ip(&["-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
            .collect()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let deleted = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
        if !deleted.is_ok_and(|s| s.success()) {
            eprintln!("could not delete network namespace {}", self.name);
        }
    }
}
