//! The pod's /etc/hostname, /etc/hosts and /etc/resolv.conf, as Docker writes them for a
//! container on its default bridge. Pure renderers; the caller reads the host's resolv.conf.

use std::net::IpAddr;

use hyper_proto::rest::UserPod;

/// Docker's public resolvers, used when the host has only loopback ones (which a pod cannot
/// reach: they are the host's own).
pub const FALLBACK_NAMESERVERS: &[&str] = &["8.8.8.8", "8.8.4.4"];

/// `/etc/hosts`: localhost and Docker's IPv6 lines, then the pod's address (or 127.0.1.1 when
/// it has none, as Debian does for the machine's own name) → the hostname and every container
/// name.
pub fn hosts(hostname: &str, addr: Option<std::net::Ipv4Addr>, names: &[String]) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\n\
         ff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    let mut aliases: Vec<&str> = vec![hostname];
    for n in names {
        if !aliases.contains(&n.as_str()) {
            aliases.push(n);
        }
    }
    let ip = addr.map_or_else(|| "127.0.1.1".to_string(), |a| a.to_string());
    out.push_str(&format!("{ip}\t{}\n", aliases.join(" ")));
    out
}

/// `/etc/hosts` lines for the other pods on the bridge: each pod's address and its names
/// (hostname, container names), so pods reach each other by name. Pods without a name are
/// left out.
pub fn peer_hosts(peers: &[(std::net::Ipv4Addr, Vec<String>)]) -> String {
    peers
        .iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(addr, names)| format!("{addr}\t{}\n", names.join(" ")))
        .collect()
}

/// `/etc/resolv.conf`: the pod's `dns`, `dnsSearch`, `dnsOptions` where given; the rest from
/// the host's file (`host`), whose loopback nameservers are dropped; [`FALLBACK_NAMESERVERS`]
/// when no nameserver remains.
pub fn resolv_conf(pod: &UserPod, host: &str) -> String {
    let mut servers = Vec::new();
    let mut search = Vec::new();
    let mut options = Vec::new();
    for line in host.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(ns) = words.next()
                    && ns.parse::<IpAddr>().is_ok_and(|ip| !ip.is_loopback())
                {
                    servers.push(ns.to_string());
                }
            }
            // The last search or domain line wins, as in resolv.conf(5).
            Some("search") | Some("domain") => search = words.map(String::from).collect(),
            Some("options") => options.extend(words.map(String::from)),
            _ => {}
        }
    }
    if !pod.dns.is_empty() {
        servers = pod.dns.clone();
    } else if servers.is_empty() {
        servers = FALLBACK_NAMESERVERS.iter().map(|s| s.to_string()).collect();
    }
    if !pod.dns_search.is_empty() {
        // Docker: a lone "." means no search domains at all.
        search = pod
            .dns_search
            .iter()
            .filter(|s| s.as_str() != ".")
            .cloned()
            .collect();
    }
    if !pod.dns_options.is_empty() {
        options = pod.dns_options.clone();
    }
    let mut out = String::new();
    for ns in &servers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_names_the_pod_and_its_containers() {
        let text = hosts(
            "web",
            Some("192.168.123.7".parse().unwrap()),
            &["nginx".into(), "web".into(), "sidecar".into()],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "127.0.0.1\tlocalhost");
        assert_eq!(lines[1], "::1\tlocalhost ip6-localhost ip6-loopback");
        assert_eq!(lines.last().unwrap(), &"192.168.123.7\tweb nginx sidecar");
        assert_eq!(lines.len(), 7);
        let text = hosts("solo", None, &["c1".into()]);
        assert!(text.ends_with("127.0.1.1\tsolo c1\n"), "{text}");
    }

    #[test]
    fn peers_are_one_line_each() {
        let text = peer_hosts(&[
            (
                "192.168.123.8".parse().unwrap(),
                vec!["db".into(), "db-main".into()],
            ),
            ("192.168.123.9".parse().unwrap(), vec![]),
        ]);
        assert_eq!(text, "192.168.123.8\tdb db-main\n");
    }

    #[test]
    fn resolv_conf_drops_loopback_servers_and_falls_back() {
        let pod = UserPod::default();
        let host =
            "# generated\nnameserver 127.0.0.53\nnameserver ::1\nsearch lan corp\noptions edns0\n";
        assert_eq!(
            resolv_conf(&pod, host),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\nsearch lan corp\noptions edns0\n"
        );
        let host = "nameserver 10.0.0.2\nnameserver 127.0.0.1\nnameserver fd00::1\n";
        assert_eq!(
            resolv_conf(&pod, host),
            "nameserver 10.0.0.2\nnameserver fd00::1\n"
        );
        assert_eq!(
            resolv_conf(&pod, ""),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }

    #[test]
    fn the_pod_spec_wins_field_by_field() {
        let pod = UserPod {
            dns: vec!["1.1.1.1".into()],
            dns_options: vec!["ndots:2".into(), "timeout:1".into()],
            ..Default::default()
        };
        let host = "nameserver 10.0.0.2\nsearch lan\noptions edns0\n";
        assert_eq!(
            resolv_conf(&pod, host),
            "nameserver 1.1.1.1\nsearch lan\noptions ndots:2 timeout:1\n"
        );
        let pod = UserPod {
            dns_search: vec![".".into()],
            ..Default::default()
        };
        assert_eq!(
            resolv_conf(&pod, host),
            "nameserver 10.0.0.2\noptions edns0\n"
        );
    }
}
