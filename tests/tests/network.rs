//! Pod networking as a user sees it (issue #8): every test runs hyperd in a network namespace of
//! its own (no route out; "the outside" is a second namespace joined by a veth pair), so no
//! packet leaves the test's namespaces or loopback. Pods reach each other and, through NAT, the
//! outside; port mappings publish busybox httpd and close when deleted; host ports and fixed
//! addresses are given once (409); addresses never repeat across restarts and kill -9; nothing
//! is left when the pods are gone; /etc/hosts and /etc/resolv.conf are right in every container.
//!
//! Written against the REST contract (`network`, `podIP`/`hostIP`, the portmappings routes):
//! they pass once hyperd's network module and the guest's side are in.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use hyper_tests::daemon::{Http, TestDaemon};
use hyper_tests::netns::{NetNs, Outside};

/// hyperd's defaults (`--bridge hyper0 --bip 192.168.123.1/24`).
const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 123, 1);
const BRIDGE: &str = "hyper0";

/// hyperd in a namespace of its own. Fields drop in order: hyperd (and its shims) first, then
/// the namespace.
struct Net {
    d: TestDaemon,
    ns: NetNs,
}

impl Net {
    fn start(tag: &str) -> Self {
        let ns = NetNs::new(tag);
        let d = TestDaemon::start_in(&ns, &[]);
        d.import_busybox();
        Self { d, ns }
    }

    /// `/pod/info` of `pod` as JSON.
    fn info(&self, pod: &str) -> serde_json::Value {
        let r = self
            .d
            .curl("GET", &format!("/pod/info?podName={pod}"), None);
        assert_eq!(r.status, 200, "pod info {pod}: {r:?}\n{}", self.d.log());
        serde_json::from_str(&r.body).unwrap()
    }

    /// The pod's `podIP` list (CIDR strings).
    fn pod_ips(&self, pod: &str) -> Vec<String> {
        let info = self.info(pod);
        info["status"]["podIP"]
            .as_array()
            .unwrap_or_else(|| panic!("no podIP list in {info}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    /// The pod's one address, without its prefix length.
    fn pod_ip(&self, pod: &str) -> Ipv4Addr {
        let ips = self.pod_ips(pod);
        assert_eq!(ips.len(), 1, "{pod}: {ips:?}");
        let (addr, len) = ips[0].split_once('/').expect("podIP is CIDR");
        assert_eq!(len, "24", "{pod}: {ips:?}");
        let addr: Ipv4Addr = addr.parse().unwrap();
        assert!(
            addr.octets()[..3] == GATEWAY.octets()[..3] && addr != GATEWAY,
            "{pod}: {addr} is not a pod address of 192.168.123.0/24"
        );
        addr
    }

    /// `hyperctl run -d --name NAME [extra…] busybox sleep 600`.
    fn sleeper(&self, name: &str, extra: &[&str]) {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["busybox", "sleep", "600"]);
        self.d.ok(&args);
    }

    /// `hyperctl exec POD sh -c SCRIPT` that must succeed; its stdout.
    fn sh(&self, pod: &str, script: &str) -> String {
        let out = self.d.hyperctl(&["exec", pod, "sh", "-c", script]);
        assert_eq!(out.code, 0, "in {pod}: {script}: {out:?}\n{}", self.d.log());
        out.stdout
    }

    fn create(&self, spec: &str) -> Http {
        self.d.curl_body("POST", "/pod/create", spec)
    }

    fn pod_names(&self) -> Vec<String> {
        self.d
            .list("pod")
            .into_iter()
            .map(|r| r[0].clone())
            .collect()
    }
}

/// Accepts one connection within `timeout`; `None` if none came.
fn accept_within(listener: &TcpListener, timeout: Duration) -> Option<(TcpStream, SocketAddr)> {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok((conn, peer)) => {
                conn.set_nonblocking(false).unwrap();
                return Some((conn, peer));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// `GET /` over HTTP/1.0 from inside `ns`: the whole answer, or why there was none.
fn http_get(ns: &NetNs, addr: SocketAddr) -> Result<String, String> {
    ns.run(move || {
        let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        conn.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
            .map_err(|e| format!("send to {addr}: {e}"))?;
        let mut answer = String::new();
        conn.read_to_string(&mut answer)
            .map_err(|e| format!("read from {addr}: {e}"))?;
        Ok(answer)
    })
}

/// Retries [`http_get`] until the answer carries `body` (httpd may still be starting).
fn wait_served(ns: &NetNs, addr: SocketAddr, body: &str, d: &TestDaemon) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = http_get(ns, addr);
        if matches!(&got, Ok(a) if a.starts_with("HTTP/1.") && a.contains(body)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{addr} in {} never served {body:?}; last: {got:?}\n{}",
            ns.name(),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The namespace's whole nftables ruleset, ports as numbers, counters' values left out (traffic
/// changes them, not hyperd).
fn nft_ruleset(ns: &NetNs) -> String {
    let text = ns.ok(&["nft", "-n", "list", "ruleset"]);
    let mut out = String::new();
    for line in text.lines() {
        let mut tokens = line.split_whitespace();
        while let Some(t) = tokens.next() {
            out.push_str(t);
            out.push(' ');
            if t == "packets" || t == "bytes" {
                tokens.next();
            }
        }
        out.push('\n');
    }
    out
}

/// Whether a hosts file maps `addr` to `name` (first field the address, any later one the name).
fn maps(hosts: &str, addr: Ipv4Addr, name: &str) -> bool {
    hosts.lines().any(|l| {
        let mut fields = l.split_whitespace();
        fields.next() == Some(addr.to_string().as_str()) && fields.any(|n| n == name)
    })
}

/// Interface names of a container (`ip -o link` in it).
fn container_links(net: &Net, pod: &str) -> Vec<String> {
    net.sh(pod, "ip -o link")
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// A process's namespace of `kind` as its link reads (`/proc/PID/ns/net` → `net:[inode]`).
fn ns_of(pid: u32, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn hyperd_stays_in_its_namespace_across_restart_and_kill9() {
    use std::os::unix::fs::MetadataExt as _;
    let ns = NetNs::new("home");
    let mut d = TestDaemon::start_in(&ns, &[]);
    let want = format!("net:[{}]", std::fs::metadata(ns.path()).unwrap().ino());
    let ours = ns_of(std::process::id(), "mnt");
    assert_eq!(ns_of(d.pid(), "net"), want);
    // Only the network is hyperd's own: mounts it makes are the host's (and the test's).
    assert_eq!(ns_of(d.pid(), "mnt"), ours);
    assert!(d.terminate().success(), "{}", d.log());
    d.restart();
    assert_eq!(ns_of(d.pid(), "net"), want);
    d.kill9();
    d.restart();
    assert_eq!(ns_of(d.pid(), "net"), want);
    assert_eq!(d.curl("GET", "/_ping", None).status, 200);
}

#[test]
fn pods_reach_each_other_by_address_and_by_name() {
    let net = Net::start("ping");
    net.sleeper("alpha", &[]);
    net.sleeper("beta", &[]);
    let a = net.pod_ip("alpha");
    let b = net.pod_ip("beta");
    assert_ne!(a, b);
    assert_eq!(net.info("alpha")["status"]["hostIP"], GATEWAY.to_string());
    // One tap each, joined to hyperd's bridge in the test's namespace.
    let ports = net.ns.ok(&["ip", "-o", "link", "show", "master", BRIDGE]);
    assert_eq!(ports.lines().count(), 2, "{ports}");

    net.sh("alpha", &format!("ping -c 1 -W 5 {b}"));
    net.sh("beta", &format!("ping -c 1 -W 5 {a}"));
    // The gateway (hyperd's side of the bridge) answers too.
    net.sh("alpha", &format!("ping -c 1 -W 5 {GATEWAY}"));

    // /etc/hosts lists the pod's own containers: a container's name is the pod's address.
    let out = net.sh("alpha", "ping -c 1 -W 5 alpha");
    assert!(out.contains(&format!("({a})")), "{out}");
    let out = net.sh("beta", "ping -c 1 -W 5 beta");
    assert!(out.contains(&format!("({b})")), "{out}");
    // ... and the other pods' names are theirs: pods reach each other by name.
    let out = net.sh("alpha", "ping -c 1 -W 5 beta");
    assert!(out.contains(&format!("({b})")), "{out}");
    let out = net.sh("beta", "ping -c 1 -W 5 alpha");
    assert!(out.contains(&format!("({a})")), "{out}");
    // A pod that starts later is named in the running pods' /etc/hosts at once, and gone
    // from them when it stops.
    net.sleeper("gamma", &[]);
    let g = net.pod_ip("gamma");
    let out = net.sh("alpha", "ping -c 1 -W 5 gamma");
    assert!(out.contains(&format!("({g})")), "{out}");
    net.d.ok(&["stop", "gamma"]);
    let hosts = net.sh("alpha", "cat /etc/hosts");
    assert!(!hosts.contains("gamma"), "{hosts}");

    // The guest's address and route are the ones /pod/info reports.
    let addrs = net.sh("alpha", "ip -4 -o addr show");
    assert!(addrs.contains(&format!("inet {a}/24")), "{addrs}");
    let routes = net.sh("alpha", "ip route");
    assert!(
        routes.contains(&format!("default via {GATEWAY}")),
        "{routes}"
    );
}

#[test]
fn a_pod_reaches_a_server_outside_through_nat() {
    let net = Net::start("nat");
    let out = Outside::new(&net.ns);
    let ip = out.ip;
    let listener = out.ns.run(move || TcpListener::bind((ip, 0)).unwrap());
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (conn, peer) = accept_within(&listener, Duration::from_secs(60))?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // One line, then close: the pod's nc ends when we do.
        let mut got = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(&conn), &mut got);
        Some((peer, got))
    });

    net.sleeper("client", &[]);
    let pod = net.pod_ip("client");
    net.sh(
        "client",
        &format!("echo hello from the pod | nc -w 5 {} {port}", out.ip),
    );
    let (peer, got) = server
        .join()
        .unwrap()
        .unwrap_or_else(|| panic!("no connection reached {}:{port}\n{}", out.ip, net.d.log()));
    assert_eq!(got, "hello from the pod\n");
    // Masqueraded: the outside sees hyperd's side of the veth, never the pod's address.
    assert_eq!(
        peer.ip(),
        std::net::IpAddr::V4(out.inner_ip),
        "pod {pod} was not masqueraded"
    );
}

#[test]
fn a_port_mapping_serves_httpd_until_it_is_deleted() {
    let net = Net::start("pmap");
    let out = Outside::new(&net.ns);
    net.d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "8080:80",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /www && echo served by web > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    let pod = net.pod_ip("web");
    assert_eq!(net.d.ok(&["port", "web"]), "80/tcp -> 0.0.0.0:8080\n");
    assert_eq!(net.d.ok(&["port", "web", "80"]), "0.0.0.0:8080\n");
    let r = net.d.curl("GET", "/pod/web/portmappings", None);
    assert_eq!(r.status, 200, "{r:?}");
    let list: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        list,
        serde_json::json!({"portMappings": [
            {"containerPort": "80", "hostPort": "8080", "protocol": "tcp"}
        ]})
    );
    // `inspect` shows the pod's address where users look.
    let inspect: serde_json::Value = serde_json::from_str(&net.d.ok(&["inspect", "web"])).unwrap();
    assert_eq!(inspect[0]["status"]["podIP"][0], format!("{pod}/24"));

    let at_gateway = SocketAddr::from((GATEWAY, 8080));
    let at_loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 8080));
    let from_outside = SocketAddr::from((out.inner_ip, 8080));
    wait_served(&net.ns, at_gateway, "served by web", &net.d);
    wait_served(&net.ns, at_loopback, "served by web", &net.d);
    wait_served(&out.ns, from_outside, "served by web", &net.d);
    // Hairpin: the pod reaches its own published port through the host's address.
    // (busybox's static wget crashes resolving; nc takes the address as it is)
    let own = net.sh(
        "web",
        &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 {GATEWAY} 8080"),
    );
    assert!(own.ends_with("served by web\n"), "{own}");
    // The pod's own port stays reachable on the bridge too.
    wait_served(
        &net.ns,
        SocketAddr::from((pod, 80)),
        "served by web",
        &net.d,
    );
    // An outside host that routes the pods' subnet via this host reaches the published port
    // only, never the pod's own address (hyperd's forward chain, as Docker's).
    let subnet = format!("{}/24", Ipv4Addr::from(u32::from(GATEWAY) & !0xff));
    out.ns
        .ip(&["route", "add", &subnet, "via", &out.inner_ip.to_string()]);
    let direct = http_get(&out.ns, SocketAddr::from((pod, 80)));
    assert!(
        direct.is_err(),
        "the outside reached {pod}:80 by routing: {direct:?}"
    );
    wait_served(&out.ns, from_outside, "served by web", &net.d);

    net.d.ok(&["portmap", "rm", "web", "8080:80"]);
    let r = net.d.curl("GET", "/pod/web/portmappings", None);
    assert_eq!(r.status, 200, "{r:?}");
    let list: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(list, serde_json::json!({"portMappings": []}), "{r:?}");
    assert_eq!(net.d.ok(&["port", "web"]), "");
    for (ns, addr) in [
        (&net.ns, at_gateway),
        (&net.ns, at_loopback),
        (&out.ns, from_outside),
    ] {
        let got = http_get(ns, addr);
        assert!(
            !matches!(&got, Ok(a) if a.contains("served by web")),
            "{addr} still served after the mapping was deleted: {got:?}"
        );
    }

    // Added back on the running pod, it serves again (on another host port, to be sure the
    // rules follow the change).
    net.d.ok(&["portmap", "add", "web", "9090:80"]);
    wait_served(
        &out.ns,
        SocketAddr::from((out.inner_ip, 9090)),
        "served by web",
        &net.d,
    );
    assert_eq!(net.d.ok(&["port", "web"]), "80/tcp -> 0.0.0.0:9090\n");
    // Unknown pods and actions are refused by name.
    let r = net.d.curl_body("PUT", "/pod/nosuch/portmappings/add", "[]");
    assert_eq!(r.status, 404, "{r:?}");
    let r = net
        .d
        .curl_body("PUT", "/pod/web/portmappings/replace", "[]");
    assert_eq!(r.status, 400, "{r:?}");
    let r = net
        .d
        .curl_body("PUT", "/pod/web/portmappings/add", "{not json");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("must be a JSON array"), "{r:?}");
    let r = net.d.curl_body("PUT", "/pod/web/portmappings/add", "[{");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("malformed JSON"), "{r:?}");
}

#[test]
fn a_host_port_is_given_once() {
    let net = Net::start("hport");
    net.sleeper("one", &["-p", "8081:80"]);
    let ruleset = nft_ruleset(&net.ns);
    assert!(ruleset.contains("8081"), "no rule for pod one:\n{ruleset}");

    // The same host port for another pod: 409 at create, and no trace of it.
    let r = net.create(
        r#"{"id":"two","containers":[{"name":"two","image":"busybox","command":["sleep","600"]}],"portmappings":[{"containerPort":"80","hostPort":"8081","protocol":"tcp"}]}"#,
    );
    assert_eq!(r.status, 409, "{r:?}\n{}", net.d.log());
    assert!(r.body.contains("8081"), "{r:?}");
    assert_eq!(net.pod_names(), ["one"]);
    assert_eq!(nft_ruleset(&net.ns), ruleset);
    let out = net.d.hyperctl(&[
        "run", "-d", "--name", "two", "-p", "8081:80", "busybox", "true",
    ]);
    assert_eq!(out.code, 255, "{out:?}");
    assert!(out.stderr.contains("8081"), "{out:?}");
    assert_eq!(net.pod_names(), ["one"]);

    // A host process holding a port: 409 too, for a new pod and for a running one.
    let held = net
        .ns
        .run(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, 8082)).unwrap());
    let r = net.create(
        r#"{"id":"three","containers":[{"name":"three","image":"busybox","command":["sleep","600"]}],"portmappings":[{"containerPort":"80","hostPort":"8082","protocol":"tcp"}]}"#,
    );
    assert_eq!(r.status, 409, "{r:?}\n{}", net.d.log());
    assert!(r.body.contains("8082"), "{r:?}");
    let r = net.d.curl_body(
        "PUT",
        "/pod/one/portmappings/add",
        r#"[{"containerPort":"81","hostPort":"8082","protocol":"tcp"}]"#,
    );
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(net.pod_names(), ["one"]);
    assert_eq!(nft_ruleset(&net.ns), ruleset);
    drop(held);
    // Freed by its holder, the port can be had.
    let r = net.d.curl_body(
        "PUT",
        "/pod/one/portmappings/add",
        r#"[{"containerPort":"81","hostPort":"8082","protocol":"tcp"}]"#,
    );
    assert_eq!(r.status, 204, "{r:?}\n{}", net.d.log());
    // The same port number over udp is another port.
    net.d.ok(&[
        "create",
        "--name",
        "udp",
        "-p",
        "8081:80/udp",
        "busybox",
        "true",
    ]);
    assert_eq!(net.d.ok(&["port", "udp"]), "80/udp -> 0.0.0.0:8081\n");
}

#[test]
fn addresses_never_repeat_across_restarts_and_nothing_is_left() {
    let mut net = Net::start("ipam");
    let links_before = net.ns.links();
    // One pod runs throughout: its address must never be handed to another.
    net.sleeper("keep", &[]);
    let mut seen = vec![(String::from("keep"), net.pod_ip("keep"))];
    for i in 1..20 {
        let name = format!("p{i}");
        net.d
            .ok(&["run", "-d", "--name", &name, "busybox", "sleep", "600"]);
        let ip = net.pod_ip(&name);
        if let Some((other, _)) = seen.iter().find(|(_, a)| *a == ip) {
            panic!("{ip} given to {name} and {other}: {seen:?}");
        }
        seen.push((name.clone(), ip));
        // One running VM at a time besides `keep`: TCG guests are costly.
        net.d.ok(&["stop", &name]);
        match i % 3 {
            0 => {
                net.d.kill9();
                net.d.restart();
            }
            1 => {
                assert!(net.d.terminate().success(), "{}", net.d.log());
                net.d.restart();
            }
            _ => {}
        }
    }
    assert_eq!(net.pod_ip("keep"), seen[0].1, "keep lost its address");

    for (name, _) in &seen {
        net.d.ok(&["rm", name]);
    }
    assert!(net.pod_names().is_empty());
    // No tap, rule or table left: the namespace is as hyperd found it (its bridge aside).
    let links_after = net.ns.links();
    assert_eq!(
        links_after
            .iter()
            .filter(|l| *l != BRIDGE)
            .collect::<Vec<_>>(),
        links_before
            .iter()
            .filter(|l| *l != BRIDGE)
            .collect::<Vec<_>>(),
    );
    let tables = net.ns.nft_tables();
    assert!(
        !tables.iter().any(|t| t.contains("hyperd")),
        "left: {tables:?}"
    );
    // No allocation is left either: the address `keep` held to the end can be had again.
    let r = net.create(&format!(
        r#"{{"id":"again","containers":[{{"name":"again","image":"busybox","command":["sleep","600"]}}],"interfaces":[{{"ip":"{}/24"}}]}}"#,
        seen[0].1
    ));
    assert_eq!(r.status, 201, "{r:?}\n{}", net.d.log());
    net.d.ok(&["start", "again"]);
    assert_eq!(net.pod_ip("again"), seen[0].1);
    net.d.ok(&["rm", "again"]);
    let tables = net.ns.nft_tables();
    assert!(
        !tables.iter().any(|t| t.contains("hyperd")),
        "left: {tables:?}"
    );
}

#[test]
fn etc_hosts_and_resolv_conf_in_every_container() {
    let net = Net::start("etc");
    let r = net.create(
        r#"{"id":"named","hostname":"web-host","dns":["10.53.0.1","10.53.0.2"],"dnsSearch":["example.test"],"dnsOptions":["ndots:2"],"containers":[{"name":"main","image":"busybox","command":["sleep","600"]}]}"#,
    );
    assert_eq!(r.status, 201, "{r:?}\n{}", net.d.log());
    net.d.ok(&["start", "named"]);
    let ip = net.pod_ip("named");

    let resolv = net.sh("named", "cat /etc/resolv.conf");
    let lines: Vec<&str> = resolv.lines().map(str::trim).collect();
    for want in [
        "nameserver 10.53.0.1",
        "nameserver 10.53.0.2",
        "search example.test",
        "options ndots:2",
    ] {
        assert!(lines.contains(&want), "{want:?} not in:\n{resolv}");
    }
    assert_eq!(net.sh("named", "hostname").trim(), "web-host");
    let hosts = net.sh("named", "cat /etc/hosts");
    assert!(
        hosts
            .lines()
            .any(|l| l.starts_with("127.0.0.1") && l.contains("localhost")),
        "{hosts}"
    );
    let own = |hosts: &str, name: &str| maps(hosts, ip, name);
    assert!(own(&hosts, "web-host") && own(&hosts, "main"), "{hosts}");

    // A container added to the running pod sees the same files, and the others see it.
    let r = net.d.curl_body(
        "POST",
        "/container/create?podId=named",
        r#"{"name":"side","image":"busybox","command":["sleep","600"]}"#,
    );
    assert_eq!(r.status, 201, "{r:?}\n{}", net.d.log());
    let r = net.d.curl("POST", "/container/start?container=side", None);
    assert_eq!(r.status, 200, "{r:?}\n{}", net.d.log());
    let side_hosts = net.sh("side", "cat /etc/hosts");
    assert!(
        own(&side_hosts, "side") && own(&side_hosts, "main"),
        "{side_hosts}"
    );
    assert_eq!(net.sh("side", "cat /etc/resolv.conf"), resolv);
    let main_hosts = net.sh("main", "cat /etc/hosts");
    assert!(
        own(&main_hosts, "side"),
        "main's /etc/hosts is stale:\n{main_hosts}"
    );
    let out = net.sh("main", "ping -c 1 -W 5 side");
    assert!(out.contains(&format!("({ip})")), "{out}");

    // Defaults: the host's resolvers, loopback ones replaced (a pod cannot reach the host's
    // 127.0.0.53); the pod's id as its hostname.
    net.sleeper("plain", &[]);
    let resolv = net.sh("plain", "cat /etc/resolv.conf");
    let servers: Vec<&str> = resolv
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver "))
        .map(str::trim)
        .collect();
    assert!(!servers.is_empty(), "no nameserver:\n{resolv}");
    let loopback = |s: &str| s.starts_with("127.") || s == "::1";
    assert!(
        !servers.iter().any(|s| loopback(s)),
        "a loopback resolver:\n{resolv}"
    );
    // The host's own non-loopback resolvers are kept as they are, as Docker keeps them.
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let host_servers: Vec<&str> = host
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver "))
        .map(str::trim)
        .filter(|s| !loopback(s))
        .collect();
    if !host_servers.is_empty() {
        assert_eq!(servers, host_servers, "{resolv}");
    }
    assert_eq!(net.sh("plain", "hostname").trim(), "plain");
    let plain_ip = net.pod_ip("plain");
    let hosts = net.sh("plain", "cat /etc/hosts");
    assert!(maps(&hosts, plain_ip, "plain"), "{hosts}");
}

#[test]
fn a_pod_without_network_has_only_loopback() {
    let net = Net::start("none");
    let links_before = net.ns.links();
    net.sleeper("alone", &["--net", "none"]);
    assert_eq!(container_links(&net, "alone"), ["lo"]);
    let info = net.info("alone");
    assert!(info["status"].get("podIP").is_none(), "{info}");
    assert!(info["status"].get("hostIP").is_none(), "{info}");
    // Loopback works inside.
    net.sh("alone", "ping -c 1 -W 5 127.0.0.1");
    // No tap was made for it.
    let links = net.ns.links();
    assert_eq!(
        links.iter().filter(|l| *l != BRIDGE).collect::<Vec<_>>(),
        links_before
            .iter()
            .filter(|l| *l != BRIDGE)
            .collect::<Vec<_>>(),
    );
    // A pod of the default network beside it has its NIC.
    net.sleeper("bridged", &["--net", "bridge"]);
    assert_eq!(container_links(&net, "bridged").len(), 2);
    net.pod_ip("bridged");
}

#[test]
fn bad_network_specs_are_refused_by_name() {
    let net = Net::start("bad");
    let pod = |extra: &str| {
        format!(
            r#"{{"id":"bad","containers":[{{"name":"bad","image":"busybox","command":["sleep","600"]}}]{extra}}}"#
        )
    };
    for (extra, names) in [
        (
            r#","portmappings":[{"containerPort":"80","hostPort":"99999","protocol":"tcp"}]"#,
            "99999",
        ),
        (
            r#","portmappings":[{"containerPort":"80","hostPort":"8080","protocol":"sctp"}]"#,
            "sctp",
        ),
        (
            r#","portmappings":[{"containerPort":"80-81","hostPort":"8080","protocol":"tcp"}]"#,
            "80-81",
        ),
        (r#","interfaces":[{"ip":"10.99.0.5/24"}]"#, "10.99.0.5"),
        (r#","network":"host""#, "host"),
    ] {
        let r = net.create(&pod(extra));
        assert_eq!(r.status, 400, "{extra}: {r:?}\n{}", net.d.log());
        assert!(r.body.contains(names), "{extra}: {r:?}");
    }
    assert!(net.pod_names().is_empty(), "{:?}", net.pod_names());

    // A fixed address is given once.
    let fixed = |id: &str| {
        format!(
            r#"{{"id":"{id}","containers":[{{"name":"{id}","image":"busybox","command":["sleep","600"]}}],"interfaces":[{{"ip":"192.168.123.200/24"}}]}}"#
        )
    };
    let r = net.create(&fixed("first"));
    assert_eq!(r.status, 201, "{r:?}\n{}", net.d.log());
    net.d.ok(&["start", "first"]);
    assert_eq!(net.pod_ips("first"), ["192.168.123.200/24"]);
    net.sh(
        "first",
        "ip -4 -o addr show | grep -q 'inet 192.168.123.200/24'",
    );
    // Addresses are taken at start, before the VM boots: the second start is a 409 that
    // boots nothing, and the pod stays startable once the address is free.
    let r = net.create(&fixed("second"));
    assert_eq!(r.status, 201, "{r:?}\n{}", net.d.log());
    let vms_before = net.d.list("vm").len();
    let r = net.d.curl("POST", "/pod/start?podId=second", None);
    assert_eq!(r.status, 409, "{r:?}\n{}", net.d.log());
    assert!(r.body.contains("192.168.123.200"), "{r:?}");
    assert_eq!(
        net.d.list("vm").len(),
        vms_before,
        "a vm was booted for nothing"
    );
    assert_eq!(
        net.d.log().matches("vm booted").count(),
        1,
        "only the first pod's vm boots:\n{}",
        net.d.log()
    );
    assert_eq!(net.pod_ips("first"), ["192.168.123.200/24"]);
}

#[test]
fn port_mappings_are_refused_with_iptables_off() {
    let ns = NetNs::new("noipt");
    let d = TestDaemon::start_in(&ns, &["--iptables=false"]);
    d.import_busybox();
    let spec = r#"{"id":"web","containers":[{"name":"web","image":"busybox","command":["sleep","600"]}],"portmappings":[{"containerPort":"80","hostPort":"8080","protocol":"tcp"}]}"#;
    let r = d.curl_body("POST", "/pod/create", spec);
    assert_eq!(r.status, 400, "{r:?}\n{}", d.log());
    assert!(r.body.contains("portmappings"), "{r:?}");
    assert!(r.body.contains("--iptables=false"), "{r:?}");
    let out = d.hyperctl(&["run", "-d", "--name", "web", "-p", "8080:80", "busybox"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("--iptables=false"), "{out:?}");
    assert!(d.list("pod").is_empty(), "{:?}", d.list("pod"));
    // Hands off the firewall: no table at all.
    assert!(ns.nft_tables().is_empty(), "{:?}", ns.nft_tables());
}
