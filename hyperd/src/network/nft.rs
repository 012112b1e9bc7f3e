//! hyperd's nftables table (`ip hyperd`): rendered whole from the pods' state by a pure
//! function and applied atomically with one `nft -f -` (the table is created, deleted and
//! written again in one transaction, so no packet sees half a ruleset).

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use tokio::io::AsyncWriteExt as _;

use super::Error;
use super::ports::PortRule;

pub const TABLE: &str = "hyperd";

/// What the ruleset is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatState {
    pub bridge: String,
    /// The pods' subnet (its network address).
    pub subnet: Ipv4Net,
    /// Addresses held by pods: with none, there is nothing to NAT.
    pub leases: Vec<Ipv4Addr>,
    /// Port mappings of pods that hold an address, with that address.
    pub mappings: Vec<(Ipv4Addr, PortRule)>,
}

/// The `nft -f` script for `state`: `None` when there is nothing to NAT or map (the table is
/// then deleted, see [`delete_script`]).
///
/// - `localnet` (prerouting, raw priority): drop packets arriving on the bridge for
///   127.0.0.0/8. `route_localnet` (set on the bridge for 127.0.0.1 port mappings) would
///   otherwise let a pod reach host services bound to loopback (as Kubernetes CVE-2020-8558).
/// - `forward` (as Docker's bridge network): established/related and DNATed (published)
///   connections pass; pod to pod passes; anything else routed into the bridge (an outside
///   host routing the subnet via this host) is dropped. Pod egress is not filtered.
/// - `postrouting`: masquerade the subnet leaving by another interface (egress); masquerade
///   DNATed connections entering the bridge from loopback (127.0.0.1 needs `route_localnet`
///   on the bridge) or from the subnet itself (a pod reaching a pod through a host port).
/// - `prerouting` (other hosts) and `output` (the host itself) send packets for a local
///   address to the `ports` chain, which DNATs each mapped host port to the pod's port; a
///   range keeps the offset (host port `H1 + i` → container port `C1 + i`).
pub fn ruleset(state: &NatState) -> Option<String> {
    if state.leases.is_empty() {
        return None;
    }
    let bridge = &state.bridge;
    let subnet = state.subnet.trunc();
    let mut s = String::new();
    // Creating then deleting makes the delete succeed when the table is absent.
    let _ = writeln!(s, "add table ip {TABLE}");
    let _ = writeln!(s, "delete table ip {TABLE}");
    let _ = writeln!(s, "table ip {TABLE} {{");
    // Raw priority: before DNAT, so a reply to the host's own 127.0.0.1 → pod connection
    // (addressed to the gateway until conntrack de-NATs it) is not caught.
    let _ = writeln!(s, "\tchain localnet {{");
    let _ = writeln!(
        s,
        "\t\ttype filter hook prerouting priority raw; policy accept;"
    );
    let _ = writeln!(s, "\t\tiifname \"{bridge}\" ip daddr 127.0.0.0/8 drop");
    let _ = writeln!(s, "\t}}");
    let _ = writeln!(s, "\tchain forward {{");
    let _ = writeln!(
        s,
        "\t\ttype filter hook forward priority filter; policy accept;"
    );
    let _ = writeln!(s, "\t\tct state established,related accept");
    let _ = writeln!(s, "\t\tct status dnat accept");
    let _ = writeln!(s, "\t\tiifname \"{bridge}\" oifname \"{bridge}\" accept");
    let _ = writeln!(s, "\t\toifname \"{bridge}\" drop");
    let _ = writeln!(s, "\t}}");
    let _ = writeln!(s, "\tchain prerouting {{");
    let _ = writeln!(
        s,
        "\t\ttype nat hook prerouting priority dstnat; policy accept;"
    );
    let _ = writeln!(s, "\t\tfib daddr type local jump ports");
    let _ = writeln!(s, "\t}}");
    let _ = writeln!(s, "\tchain output {{");
    // nft 1.0.6 accepts the name `dstnat` only in prerouting; -100 is its value.
    let _ = writeln!(s, "\t\ttype nat hook output priority -100; policy accept;");
    let _ = writeln!(s, "\t\tfib daddr type local jump ports");
    let _ = writeln!(s, "\t}}");
    let _ = writeln!(s, "\tchain ports {{");
    for (addr, rule) in &state.mappings {
        let proto = rule.protocol;
        let (h, c) = (rule.host, rule.container);
        if h.is_single() {
            let _ = writeln!(
                s,
                "\t\t{proto} dport {} dnat to {addr}:{}",
                h.first, c.first
            );
        } else if h == c {
            // Same ports on both sides: no port rewrite, one rule for the range.
            let _ = writeln!(s, "\t\t{proto} dport {h} dnat to {addr}");
        } else {
            // Shifted range: a map keeps each port's offset.
            let pairs: Vec<String> = (0..h.count() as u16)
                .map(|i| format!("{} : {}", h.first + i, c.first + i))
                .collect();
            let _ = writeln!(
                s,
                "\t\t{proto} dport {h} dnat to {addr}:{proto} dport map {{ {} }}",
                pairs.join(", ")
            );
        }
    }
    let _ = writeln!(s, "\t}}");
    let _ = writeln!(s, "\tchain postrouting {{");
    let _ = writeln!(
        s,
        "\t\ttype nat hook postrouting priority srcnat; policy accept;"
    );
    let _ = writeln!(
        s,
        "\t\tip saddr {subnet} oifname != \"{bridge}\" masquerade"
    );
    let _ = writeln!(
        s,
        "\t\tct status dnat ip saddr {{ 127.0.0.0/8, {subnet} }} oifname \"{bridge}\" masquerade"
    );
    let _ = writeln!(s, "\t}}");
    let _ = writeln!(s, "}}");
    Some(s)
}

/// Deletes the table if it is there.
pub fn delete_script() -> String {
    format!("add table ip {TABLE}\ndelete table ip {TABLE}\n")
}

/// Whether the table `ip hyperd` exists (`nft list table`); false too when nft cannot run.
pub async fn table_exists() -> bool {
    tokio::process::Command::new("nft")
        .args(["list", "table", "ip", TABLE])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// Runs `nft -f -` with `script` on stdin; nft's stderr is the error.
pub async fn run_nft(script: &str) -> Result<(), Error> {
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Nft(format!("run nft (is the nftables package installed?): {e}")))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin
        .write_all(script.as_bytes())
        .await
        .map_err(|e| Error::Nft(format!("write to nft: {e}")))?;
    drop(stdin);
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| Error::Nft(format!("wait for nft: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Nft(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::ports::{PortRange, Protocol};

    fn rule(p: Protocol, h: (u16, u16), c: (u16, u16)) -> PortRule {
        PortRule {
            protocol: p,
            host: PortRange {
                first: h.0,
                last: h.1,
            },
            container: PortRange {
                first: c.0,
                last: c.1,
            },
        }
    }

    fn state() -> NatState {
        NatState {
            bridge: "hyper0".into(),
            subnet: "192.168.123.0/24".parse().unwrap(),
            leases: vec!["192.168.123.2".parse().unwrap()],
            mappings: vec![],
        }
    }

    #[test]
    fn nothing_held_means_no_table() {
        let mut s = state();
        s.leases.clear();
        assert_eq!(ruleset(&s), None);
        assert_eq!(
            delete_script(),
            "add table ip hyperd\ndelete table ip hyperd\n"
        );
    }

    #[test]
    fn a_lease_alone_gives_egress_masquerade_and_no_dnat() {
        let text = ruleset(&state()).unwrap();
        assert!(text.starts_with("add table ip hyperd\ndelete table ip hyperd\ntable ip hyperd {"));
        assert!(text.contains("\t\tip saddr 192.168.123.0/24 oifname != \"hyper0\" masquerade\n"));
        assert!(text.contains(
            "ct status dnat ip saddr { 127.0.0.0/8, 192.168.123.0/24 } oifname \"hyper0\" masquerade"
        ));
        assert!(!text.contains("dnat to"), "{text}");
        for hook in ["prerouting priority dstnat", "output priority -100"] {
            assert!(text.contains(hook), "{text}");
        }
        assert_eq!(text.matches("fib daddr type local jump ports").count(), 2);
    }

    /// The rules of chain `name`, trimmed, hook line first.
    fn chain<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.split(&format!("chain {name} {{\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("no chain {name} in {text}"))
            .split("\t}")
            .next()
            .unwrap()
            .lines()
            .map(str::trim)
            .collect()
    }

    #[test]
    fn loopback_addresses_arriving_on_the_bridge_are_dropped_before_dnat() {
        let text = ruleset(&state()).unwrap();
        assert_eq!(
            chain(&text, "localnet"),
            vec![
                "type filter hook prerouting priority raw; policy accept;",
                "iifname \"hyper0\" ip daddr 127.0.0.0/8 drop",
            ]
        );
    }

    #[test]
    fn only_published_ports_and_pods_are_forwarded_into_the_bridge() {
        let text = ruleset(&state()).unwrap();
        assert_eq!(
            chain(&text, "forward"),
            vec![
                "type filter hook forward priority filter; policy accept;",
                "ct state established,related accept",
                "ct status dnat accept",
                "iifname \"hyper0\" oifname \"hyper0\" accept",
                "oifname \"hyper0\" drop",
            ]
        );
    }

    #[test]
    fn mappings_become_dnat_rules_per_protocol_and_range() {
        let mut s = state();
        let pod: Ipv4Addr = "192.168.123.2".parse().unwrap();
        s.mappings = vec![
            (pod, rule(Protocol::Tcp, (8080, 8080), (80, 80))),
            (pod, rule(Protocol::Tcp, (9000, 9002), (9000, 9002))),
            (pod, rule(Protocol::Tcp, (19000, 19001), (9100, 9101))),
            (pod, rule(Protocol::Udp, (5353, 5353), (53, 53))),
        ];
        let text = ruleset(&s).unwrap();
        let ports: Vec<&str> = text
            .split("chain ports {\n")
            .nth(1)
            .unwrap()
            .split("\t}")
            .next()
            .unwrap()
            .lines()
            .map(str::trim)
            .collect();
        assert_eq!(
            ports,
            vec![
                "tcp dport 8080 dnat to 192.168.123.2:80",
                "tcp dport 9000-9002 dnat to 192.168.123.2",
                "tcp dport 19000-19001 dnat to 192.168.123.2:tcp dport map { 19000 : 9100, 19001 : 9101 }",
                "udp dport 5353 dnat to 192.168.123.2:53",
            ]
        );
    }
}
