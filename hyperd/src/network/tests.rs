//! Tests of [`Network`] against a real SQLite file, and (for the bridge, sysctls and nftables)
//! inside a network namespace each test makes and deletes: never the host's own.

use std::io::{Read as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::process::Command;

use hyper_proto::rest::UserInterface;

use super::*;

fn store_in(dir: &tempfile::TempDir) -> Arc<Store> {
    Arc::new(Store::open(&dir.path().join("hyperd.db")).unwrap())
}

/// A `Network` over `store` without touching the host (no bridge, no nft).
fn offline(store: Arc<Store>, bip: &str) -> Network {
    let config = NetworkConfig {
        bridge: Some("hyt-test".into()),
        bip: bip.parse().unwrap(),
        iptables: false,
        mtu: 1500,
    };
    Arc::into_inner(Network::detached(config, store)).unwrap()
}

fn pm(c: &str, h: &str, p: &str) -> PortMapping {
    PortMapping {
        container_port: c.into(),
        host_port: h.into(),
        protocol: p.into(),
    }
}

fn reserve(store: &Store, pod: &str, m: &[PortMapping]) -> Result<(), Error> {
    store
        .write(|tx| Network::reserve_ports(tx, pod, m))
        .unwrap()
}

// ---- the database ----------------------------------------------------------------------------

#[test]
fn no_address_is_given_twice_over_20_pods_with_releases_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut ever: Vec<Ipv4Addr> = Vec::new();
    let mut live: Vec<(String, Ipv4Addr)> = Vec::new();
    for i in 0..20 {
        // A fresh store each round: what matters is on disk.
        let net = offline(store_in(&dir), "10.50.0.1/24");
        // Earlier leases survived the reopen.
        for (pod, addr) in &live {
            assert_eq!(net.address_of(pod).unwrap().unwrap().addr(), *addr);
        }
        let pod = format!("pod{i}");
        let got = net.allocate(&pod, None).unwrap();
        assert_eq!(got.prefix_len(), 24);
        assert!(
            !ever.contains(&got.addr()),
            "{} handed out again",
            got.addr()
        );
        assert_eq!(net.allocate(&pod, None).unwrap(), got, "not idempotent");
        ever.push(got.addr());
        live.push((pod, got.addr()));
        if i % 3 == 2 {
            let (gone, _) = live.remove(0);
            net.release(&gone).unwrap();
            assert_eq!(net.address_of(&gone).unwrap(), None);
        }
    }
    assert_eq!(ever.len(), 20);
    assert_eq!(ever[0], "10.50.0.2".parse::<Ipv4Addr>().unwrap());
}

#[test]
fn the_cursor_wraps_past_held_addresses_and_exhaustion_is_clear() {
    let dir = tempfile::tempdir().unwrap();
    // /29 with gateway .1: pods get .2 to .6.
    let net = offline(store_in(&dir), "10.60.0.1/29");
    let addrs: Vec<Ipv4Addr> = (0..5)
        .map(|i| net.allocate(&format!("p{i}"), None).unwrap().addr())
        .collect();
    assert_eq!(addrs.last().unwrap().to_string(), "10.60.0.6");
    let e = net.allocate("p5", None).unwrap_err();
    assert!(matches!(e, Error::Exhausted { .. }), "{e}");
    assert_eq!(e.to_string(), "no free address left in 10.60.0.0/29");
    assert_eq!(e.kind(), Kind::Conflict);
    net.release("p2").unwrap(); // frees .4
    let again = net.allocate("p5", None).unwrap();
    assert_eq!(again.addr().to_string(), "10.60.0.4");
}

#[test]
fn fixed_addresses_conflict_with_holders_and_must_be_in_the_subnet() {
    let dir = tempfile::tempdir().unwrap();
    let net = offline(store_in(&dir), "192.168.123.1/24");
    let want: Ipv4Addr = "192.168.123.50".parse().unwrap();
    assert_eq!(net.allocate("a", Some(want)).unwrap().addr(), want);
    let e = net.allocate("b", Some(want)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "address 192.168.123.50 is already held by pod a"
    );
    assert_eq!(e.kind(), Kind::Conflict);
    for bad in ["10.0.0.5", "192.168.123.1", "192.168.123.255"] {
        let e = net.allocate("b", Some(bad.parse().unwrap())).unwrap_err();
        assert_eq!(e.kind(), Kind::InvalidInput, "{bad}: {e}");
    }
    // The pool skips the fixed address later on.
    for i in 0..60 {
        assert_ne!(net.allocate(&format!("n{i}"), None).unwrap().addr(), want);
    }
    // Nothing half-written: b still has nothing.
    assert_eq!(net.address_of("b").unwrap(), None);
}

#[test]
fn host_ports_are_held_by_one_pod_and_a_conflict_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    let net = offline(store.clone(), "192.168.123.1/24");
    reserve(
        &store,
        "a",
        &[pm("80", "8080", "tcp"), pm("9000-9009", "19000-19009", "")],
    )
    .unwrap();
    // Idempotent for the same pod and mapping.
    reserve(&store, "a", &[pm("80", "8080", "tcp")]).unwrap();
    // b asks for a free port and a taken one: 409 naming the port, and neither is kept.
    let e = reserve(
        &store,
        "b",
        &[pm("81", "8081", "tcp"), pm("1", "19005", "tcp")],
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "host port tcp/19005 is already mapped by pod a"
    );
    assert_eq!(e.kind(), Kind::Conflict);
    assert_eq!(net.port_mappings("b").unwrap(), vec![]);
    // Udp is another space.
    reserve(&store, "b", &[pm("53", "8080", "udp")]).unwrap();
    // Overlap inside one request: 400 before anything is written.
    let e = reserve(
        &store,
        "c",
        &[pm("1", "7000", "tcp"), pm("2", "7000", "tcp")],
    )
    .unwrap_err();
    assert_eq!(e.kind(), Kind::InvalidInput, "{e}");
    assert_eq!(
        net.port_mappings("a").unwrap(),
        vec![
            pm("80", "8080", "tcp"),
            pm("9000-9009", "19000-19009", "tcp")
        ]
    );
    // Delete matches protocol and container port; the host port is then free for b.
    let gone = store
        .write(|tx| Network::release_ports(tx, "a", Some(&[pm("9000-9009", "", "tcp")])))
        .unwrap()
        .unwrap();
    assert_eq!(gone, 1);
    reserve(&store, "b", &[pm("1", "19005", "tcp")]).unwrap();
    // Reopen: reservations are on disk.
    drop(net);
    drop(store);
    let store = store_in(&dir);
    let net = offline(store.clone(), "192.168.123.1/24");
    assert_eq!(
        net.port_mappings("b").unwrap(),
        vec![pm("1", "19005", "tcp"), pm("53", "8080", "udp")]
    );
    let gone = store
        .write(|tx| Network::release_ports(tx, "b", None))
        .unwrap()
        .unwrap();
    assert_eq!(gone, 2);
    assert_eq!(net.port_mappings("b").unwrap(), vec![]);
}

#[test]
fn the_nat_state_maps_only_pods_that_hold_an_address() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    let net = offline(store.clone(), "192.168.123.1/24");
    reserve(&store, "a", &[pm("80", "8080", "tcp")]).unwrap();
    reserve(&store, "b", &[pm("80", "8081", "tcp")]).unwrap();
    let addr = net.allocate("a", None).unwrap().addr();
    let state = net.nat_state().unwrap().unwrap();
    assert_eq!(state.leases, vec![addr]);
    assert_eq!(state.mappings.len(), 1);
    assert_eq!(state.mappings[0].0, addr);
    assert_eq!(state.mappings[0].1.host, PortRange::single(8080));
    assert_eq!(state.subnet.to_string(), "192.168.123.0/24");
    // Removing the pod drops its lease and ports in the remover's transaction.
    store.write(|tx| Network::forget_pod(tx, "a")).unwrap();
    assert_eq!(net.address_of("a").unwrap(), None);
    assert_eq!(net.port_mappings("a").unwrap(), vec![]);
    assert_eq!(net.port_mappings("b").unwrap().len(), 1);
}

// ---- spec checks and what goes to the guest ----------------------------------------------

fn pod(json: &str) -> UserPod {
    serde_json::from_str(json).unwrap()
}

#[test]
fn spec_checks_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = offline(store_in(&dir), "192.168.123.1/24");
    // check_spec touches nothing: with iptables on, port mappings are accepted.
    net.config.iptables = true;
    let ok = [
        r#"{}"#,
        r#"{"network":"bridge","interfaces":[{"ip":"192.168.123.9/24","bridge":"hyt-test","mtu":9000}]}"#,
        r#"{"interfaces":[{"ip":"192.168.123.9","gateway":"192.168.123.254"}]}"#,
        r#"{"network":"none"}"#,
        r#"{"portmappings":[{"containerPort":"80","hostPort":"8080"}]}"#,
    ];
    for j in ok {
        net.check_spec(&pod(j))
            .unwrap_or_else(|e| panic!("{j}: {e}"));
    }
    let bad = [
        (r#"{"network":"host"}"#, "network"),
        (
            r#"{"portmappingWhiteLists":{"internalNetworks":["10.0.0.0/8"]}}"#,
            "portmappingWhiteLists",
        ),
        (r#"{"interfaces":[{},{}]}"#, "interfaces"),
        (
            r#"{"interfaces":[{"ip":"10.0.0.2/24"}]}"#,
            "interfaces[0].ip",
        ),
        (
            r#"{"interfaces":[{"ip":"192.168.123.9/16"}]}"#,
            "interfaces[0].ip",
        ),
        (
            r#"{"interfaces":[{"ip":"192.168.123.1"}]}"#,
            "interfaces[0].ip",
        ),
        (r#"{"interfaces":[{"ip":"nope"}]}"#, "interfaces[0].ip"),
        (
            r#"{"interfaces":[{"bridge":"br9"}]}"#,
            "interfaces[0].bridge",
        ),
        (
            r#"{"interfaces":[{"ifname":"eth1"}]}"#,
            "interfaces[0].ifname",
        ),
        (
            r#"{"interfaces":[{"mac":"52:54:00:00:00:01"}]}"#,
            "interfaces[0].mac",
        ),
        (r#"{"interfaces":[{"mtu":70000}]}"#, "interfaces[0].mtu"),
        (
            r#"{"interfaces":[{"gateway":"10.1.1.1"}]}"#,
            "interfaces[0].gateway",
        ),
        (
            r#"{"network":"none","portmappings":[{"containerPort":"80","hostPort":"80"}]}"#,
            "portmappings",
        ),
        (r#"{"network":"none","interfaces":[{}]}"#, "interfaces"),
        (
            r#"{"portmappings":[{"containerPort":"80","hostPort":"80-81"}]}"#,
            "portmappings[0].hostPort",
        ),
        (
            r#"{"portmappings":[{"containerPort":"80","hostPort":"99999"}]}"#,
            "portmappings[0].hostPort",
        ),
    ];
    for (j, field) in bad {
        let e = net.check_spec(&pod(j)).expect_err(j);
        assert_eq!(e.field, field, "{j}: {e}");
    }
    let mut disabled = offline(store_in(&dir), "192.168.123.1/24");
    disabled.config.bridge = None;
    let e = disabled
        .check_spec(&pod(
            r#"{"portmappings":[{"containerPort":"80","hostPort":"80"}]}"#,
        ))
        .unwrap_err();
    assert_eq!(e.field, "portmappings");
    assert!(e.message.contains("--bridge none"), "{e}");
    assert!(disabled.nic_for("abc").is_none());
    assert_eq!(disabled.gateway(), None);
    assert!(matches!(disabled.allocate("x", None), Err(Error::Disabled)));
}

#[test]
fn the_nic_is_named_after_the_vm_with_a_local_mac() {
    let dir = tempfile::tempdir().unwrap();
    let net = offline(store_in(&dir), "192.168.123.1/24");
    let a = net.nic_for("0123456789abcdef0123").unwrap();
    assert_eq!(a.tap, "hyt0123456789ab");
    assert_eq!(a.tap.len(), 15);
    assert_eq!((a.bridge.as_str(), a.mtu), ("hyt-test", 1500));
    assert!(
        a.mac.starts_with("52:54:") && a.mac.len() == 17,
        "{}",
        a.mac
    );
    let b = net.nic_for("0123456789abcdef0123").unwrap();
    assert_ne!(a.mac, b.mac, "MACs are random");
    assert_eq!(net.gateway(), Some("192.168.123.1".parse().unwrap()));
}

#[test]
fn the_guest_gets_its_address_route_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let net = offline(store_in(&dir), "192.168.123.1/24");
    let addr: Ipv4Net = "192.168.123.7/24".parse().unwrap();
    let plain = UserPod {
        id: "web".into(),
        hostname: "webhost".into(),
        ..Default::default()
    };
    let got = net.pod_network(addr, "52:54:00:aa:bb:cc", &plain);
    assert_eq!(got.interfaces.len(), 1);
    assert_eq!(got.interfaces[0].address, "192.168.123.7/24");
    assert_eq!(got.interfaces[0].mac, "52:54:00:aa:bb:cc");
    assert_eq!(got.interfaces[0].mtu, 1500);
    assert_eq!(got.routes[0].destination, "");
    assert_eq!(got.routes[0].gateway, "192.168.123.1");
    let custom = UserPod {
        interfaces: vec![UserInterface {
            gateway: "192.168.123.254".into(),
            mtu: 1400,
            ..Default::default()
        }],
        ..plain.clone()
    };
    let got = net.pod_network(addr, "52:54:00:aa:bb:cc", &custom);
    assert_eq!(got.routes[0].gateway, "192.168.123.254");
    assert_eq!(got.interfaces[0].mtu, 1400);

    let files = etc_files_with(
        &plain,
        Some(addr.addr()),
        &["nginx".into()],
        "nameserver 127.0.0.53\n",
    );
    assert_eq!(files.hostname, "webhost\n");
    assert!(
        files.hosts.ends_with("192.168.123.7\twebhost nginx\n"),
        "{}",
        files.hosts
    );
    assert_eq!(
        files.resolv_conf,
        "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    );
    let nameless = UserPod {
        id: "p1".into(),
        ..Default::default()
    };
    assert_eq!(etc_files_with(&nameless, None, &[], "").hostname, "p1\n");
    // The real reader works on this host's file too.
    assert!(
        net.etc_files(&plain, None, &[])
            .resolv_conf
            .starts_with("nameserver ")
    );
}

// ---- inside a network namespace ------------------------------------------------------------

/// A network namespace made with `ip netns add`, deleted on drop (also when a test panics).
struct NetNs {
    name: String,
}

impl NetNs {
    fn new(tag: &str) -> Self {
        let name = format!("hyt-{tag}-{}", std::process::id());
        run("ip", &["netns", "add", &name]);
        run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        Self { name }
    }

    /// Runs `f` on a thread that has entered the namespace, with a current-thread runtime (so
    /// netlink sockets and child processes are made in the namespace).
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            // SAFETY: setns on a namespace fd we hold; affects only this new thread.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }

    fn exec(&self, args: &[&str]) -> std::process::Output {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        Command::new("ip").args(full).output().unwrap()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn config(bridge: &str, bip: &str) -> NetworkConfig {
    NetworkConfig {
        bridge: Some(bridge.into()),
        bip: bip.parse().unwrap(),
        iptables: true,
        mtu: 1500,
    }
}

#[test]
fn start_creates_the_bridge_once_and_leaves_an_operators_bridge_alone() {
    let ns = NetNs::new("br");
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    let s = store.clone();
    ns.run(move || {
        block_on(async move {
            Network::start(config("hytbr0", "10.77.0.1/24"), s.clone())
                .await
                .unwrap();
            assert_eq!(
                link::addresses("hytbr0").await.unwrap(),
                vec![("10.77.0.1".parse().unwrap(), 24)]
            );
            // The namespace's own sysctls, set because iptables is on.
            let fwd = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
            assert_eq!(fwd.trim(), "1");
            let rl =
                std::fs::read_to_string("/proc/sys/net/ipv4/conf/hytbr0/route_localnet").unwrap();
            assert_eq!(rl.trim(), "1");
            // Again: the bridge is left as it is.
            Network::start(config("hytbr0", "10.77.0.1/24"), s.clone())
                .await
                .unwrap();
            assert_eq!(link::addresses("hytbr0").await.unwrap().len(), 1);
            // The operator's bridge without our gateway: a clear refusal, nothing changed.
            let e = Network::start(config("hytbr0", "10.88.0.1/24"), s.clone())
                .await
                .err()
                .unwrap();
            assert!(
                e.to_string()
                    .contains("does not have the address 10.88.0.1/24"),
                "{e}"
            );
            assert_eq!(link::addresses("hytbr0").await.unwrap().len(), 1);
            link::delete_link("hytbr0").await.unwrap();
            assert_eq!(link::addresses("hytbr0").await.unwrap(), vec![]);
        })
    });
    // An operator-made bridge with its own MTU keeps it.
    run(
        "ip",
        &[
            "-n", &ns.name, "link", "add", "hytop0", "mtu", "1400", "type", "bridge",
        ],
    );
    run(
        "ip",
        &[
            "-n",
            &ns.name,
            "addr",
            "add",
            "10.78.0.1/24",
            "dev",
            "hytop0",
        ],
    );
    ns.run(move || {
        block_on(async move {
            let mut c = config("hytop0", "10.78.0.1/24");
            c.iptables = false;
            Network::start(c, store).await.unwrap();
        })
    });
    let out = ns.exec(&["ip", "link", "show", "hytop0"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("mtu 1400"));
    // iptables=false: no table, and the sysctl on this bridge untouched.
    let out = ns.exec(&["nft", "list", "tables"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "");
    let rl = ns.exec(&["cat", "/proc/sys/net/ipv4/conf/hytop0/route_localnet"]);
    assert_eq!(String::from_utf8_lossy(&rl.stdout).trim(), "0");
}

#[test]
fn apply_writes_the_table_and_removes_it_when_no_pod_is_left() {
    let ns = NetNs::new("nft");
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    let net = {
        let s = store.clone();
        ns.run(move || block_on(Network::start(config("hytbr1", "10.79.0.1/24"), s)).unwrap())
    };
    // Nothing held: no table.
    let out = ns.exec(&["nft", "list", "table", "ip", "hyperd"]);
    assert!(!out.status.success());
    let addr = net.allocate("web", None).unwrap().addr();
    reserve(
        &store,
        "web",
        &[pm("80", "8080", "tcp"), pm("53", "5353", "udp")],
    )
    .unwrap();
    let n = net.clone();
    ns.run(move || block_on(n.apply())).unwrap();
    let out = ns.exec(&["nft", "list", "table", "ip", "hyperd"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("tcp dport 8080 dnat to {addr}:80")),
        "{text}"
    );
    assert!(
        text.contains(&format!("udp dport 5353 dnat to {addr}:53")),
        "{text}"
    );
    assert!(
        text.contains("ip saddr 10.79.0.0/24 oifname != \"hytbr1\" masquerade"),
        "{text}"
    );
    // Restart (a new Network over the same file) renders the same table.
    let s = store.clone();
    let again = ns
        .run(move || block_on(Network::start(config("hytbr1", "10.79.0.1/24"), s)))
        .err();
    // Start drops rows of pods missing from the pods table: "web" is not a real pod here.
    assert!(again.is_none());
    let out = ns.exec(&["nft", "list", "table", "ip", "hyperd"]);
    assert!(!out.status.success(), "orphans were not dropped");
    assert_eq!(net.address_of("web").unwrap(), None);
    // The pod comes back, then everything is released: the table goes.
    net.allocate("web", None).unwrap();
    let n = net.clone();
    ns.run(move || block_on(n.apply())).unwrap();
    assert!(
        ns.exec(&["nft", "list", "table", "ip", "hyperd"])
            .status
            .success()
    );
    net.release("web").unwrap();
    let n = net.clone();
    ns.run(move || block_on(n.apply())).unwrap();
    let out = ns.exec(&["nft", "list", "tables"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "");
}

#[test]
fn a_mapped_port_reaches_the_pod_from_loopback_and_a_busy_port_is_refused() {
    let ns = NetNs::new("dnat");
    // The "pod": a second namespace on a veth joined to the bridge.
    let pod_ns = NetNs::new("pod");
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    let net = {
        let s = store.clone();
        ns.run(move || block_on(Network::start(config("hytbr2", "10.80.0.1/24"), s)).unwrap())
    };
    let addr = net.allocate("web", None).unwrap();
    reserve(&store, "web", &[pm("80", "8080", "tcp")]).unwrap();
    let n = net.clone();
    ns.run(move || block_on(n.apply())).unwrap();
    run(
        "ip",
        &[
            "-n",
            &ns.name,
            "link",
            "add",
            "hytv0",
            "type",
            "veth",
            "peer",
            "name",
            "hytv1",
            "netns",
            &pod_ns.name,
        ],
    );
    run(
        "ip",
        &[
            "-n", &ns.name, "link", "set", "hytv0", "master", "hytbr2", "up",
        ],
    );
    run(
        "ip",
        &[
            "-n",
            &pod_ns.name,
            "addr",
            "add",
            &addr.to_string(),
            "dev",
            "hytv1",
        ],
    );
    run("ip", &["-n", &pod_ns.name, "link", "set", "hytv1", "up"]);
    run(
        "ip",
        &[
            "-n",
            &pod_ns.name,
            "route",
            "add",
            "default",
            "via",
            "10.80.0.1",
        ],
    );
    // A server in the pod that says who connected.
    let listener = pod_ns.run(|| std::net::TcpListener::bind("0.0.0.0:80").unwrap());
    let server = std::thread::spawn(move || {
        let (mut conn, peer) = listener.accept().unwrap();
        conn.write_all(format!("hello {}", peer.ip()).as_bytes())
            .unwrap();
    });
    let got = ns.run(|| {
        let mut conn = std::net::TcpStream::connect_timeout(
            &"127.0.0.1:8080".parse().unwrap(),
            std::time::Duration::from_secs(10),
        )
        .unwrap();
        let mut s = String::new();
        conn.read_to_string(&mut s).unwrap();
        s
    });
    server.join().unwrap();
    // Masqueraded to the gateway: the pod answers the bridge, not 127.0.0.1.
    assert_eq!(got, "hello 10.80.0.1");
    // A host process on a port: the probe refuses it, and accepts it once it is gone.
    let n = net.clone();
    ns.run(move || {
        let held = std::net::TcpListener::bind("127.0.0.1:9090").unwrap();
        let e = n.probe_host_ports(&[pm("90", "9090", "tcp")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("host port tcp/9090 is in use by a host process"),
            "{e}"
        );
        assert_eq!(e.kind(), Kind::Conflict);
        drop(held);
        n.probe_host_ports(&[pm("90", "9090", "tcp"), pm("53", "5353", "udp")])
            .unwrap();
    });
}

// ---- the firewall, with real traffic ------------------------------------------------------

/// A TCP server in a namespace answering each connection with `hello <peer> from <name>`,
/// until dropped.
struct Server {
    port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `0.0.0.0:port` (0: any) in `ns` before returning.
    fn start(ns: &NetNs, port: u16, name: &str) -> Server {
        let listener = ns.run(move || std::net::TcpListener::bind(("0.0.0.0", port)).unwrap());
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, name) = (stop.clone(), name.to_string());
        let thread = std::thread::spawn(move || {
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, peer)) => {
                        let _ =
                            conn.write_all(format!("hello {} from {name}", peer.ip()).as_bytes());
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
        });
        Server {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects from inside `ns` (2 s to connect) and reads the greeting, or says why not.
fn fetch(ns: &NetNs, addr: &str) -> Result<String, String> {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    ns.run(move || {
        let mut conn =
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))
                .map_err(|e| format!("connect {addr}: {e}"))?;
        conn.set_read_timeout(Some(std::time::Duration::from_secs(3)))
            .unwrap();
        let mut s = String::new();
        conn.read_to_string(&mut s)
            .map_err(|e| format!("read {addr}: {e}"))?;
        Ok(s)
    })
}

/// hyperd's side (a namespace with the bridge and a started [`Network`]) and pods: each a
/// namespace joined to the bridge by a veth (`eth0` inside), with its leased address, its port
/// mappings and a default route via the gateway; the ruleset applied.
struct Lab {
    gateway: Ipv4Addr,
    /// Per pod: its namespace and address.
    pods: Vec<(NetNs, Ipv4Addr)>,
    ns: NetNs,
    _dir: tempfile::TempDir,
}

impl Lab {
    fn new(tag: &str, bridge: &str, bip: &str, pods: &[&[PortMapping]]) -> Lab {
        let ns = NetNs::new(tag);
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let net = {
            let (s, c) = (store.clone(), config(bridge, bip));
            ns.run(move || block_on(Network::start(c, s)).unwrap())
        };
        let gateway = net.gateway().unwrap();
        let mut made = Vec::new();
        for (i, mappings) in pods.iter().enumerate() {
            let pod_ns = NetNs::new(&format!("{tag}{i}"));
            let name = format!("pod{i}");
            let addr = net.allocate(&name, None).unwrap();
            reserve(&store, &name, mappings).unwrap();
            let veth = format!("hytv{i}");
            run(
                "ip",
                &[
                    "-n",
                    &ns.name,
                    "link",
                    "add",
                    &veth,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    &pod_ns.name,
                ],
            );
            run(
                "ip",
                &["-n", &ns.name, "link", "set", &veth, "master", bridge, "up"],
            );
            let at = addr.to_string();
            run(
                "ip",
                &["-n", &pod_ns.name, "addr", "add", &at, "dev", "eth0"],
            );
            run("ip", &["-n", &pod_ns.name, "link", "set", "eth0", "up"]);
            let gw = gateway.to_string();
            run(
                "ip",
                &["-n", &pod_ns.name, "route", "add", "default", "via", &gw],
            );
            made.push((pod_ns, addr.addr()));
        }
        let n = net.clone();
        ns.run(move || block_on(n.apply())).unwrap();
        Lab {
            gateway,
            pods: made,
            ns,
            _dir: dir,
        }
    }
}

#[test]
fn a_pod_cannot_reach_the_hosts_loopback_through_the_bridge() {
    let lab = Lab::new(
        "lnet",
        "hytbr3",
        "10.81.0.1/24",
        &[&[pm("80", "8080", "tcp")]],
    );
    let (pod, _) = &lab.pods[0];
    // Host services bound to 127.0.0.1 only, TCP and UDP on the same port.
    let tcp = lab
        .ns
        .run(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let port = tcp.local_addr().unwrap().port();
    let udp = lab
        .ns
        .run(move || std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap());
    // A root pod sends 127.0.0.1 to the gateway: a policy route ahead of the local table, and
    // route_localnet on its own NIC so its kernel lets the packet out.
    let gw = lab.gateway.to_string();
    let out = pod.exec(&[
        "sh",
        "-c",
        "echo 1 > /proc/sys/net/ipv4/conf/eth0/route_localnet",
    ]);
    assert!(out.status.success(), "{out:?}");
    for args in [
        vec![
            "rule",
            "add",
            "pref",
            "10",
            "to",
            "127.0.0.1",
            "lookup",
            "100",
        ],
        vec![
            "route",
            "add",
            "127.0.0.1",
            "via",
            &gw,
            "dev",
            "eth0",
            "table",
            "100",
        ],
        vec!["rule", "del", "pref", "0", "lookup", "local"],
        vec!["rule", "add", "pref", "20", "lookup", "local"],
    ] {
        let mut full = vec!["-n", pod.name.as_str()];
        full.extend(args);
        run("ip", &full);
    }
    let route = pod.exec(&["ip", "route", "get", "127.0.0.1"]);
    assert!(
        String::from_utf8_lossy(&route.stdout).contains(&format!("via {gw} dev eth0")),
        "{route:?}"
    );
    let sent = pod.run(move || {
        let u = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        u.send_to(b"udp from the pod", ("127.0.0.1", port)).unwrap();
        std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            std::time::Duration::from_secs(2),
        )
        .map(drop)
    });
    assert!(
        sent.is_err(),
        "the pod connected to the host's 127.0.0.1:{port}"
    );
    tcp.set_nonblocking(true).unwrap();
    assert!(
        tcp.accept().is_err(),
        "a connection reached 127.0.0.1:{port}"
    );
    udp.set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        udp.recv_from(&mut buf).is_err(),
        "a datagram reached 127.0.0.1:{port}"
    );
    // The host's own 127.0.0.1 → pod mapping still works (its replies come back addressed to
    // the gateway and are de-NATed after the raw hook).
    let _web = Server::start(pod, 80, "web");
    assert_eq!(
        fetch(&lab.ns, "127.0.0.1:8080"),
        Ok(format!("hello {gw} from web"))
    );
}

#[test]
fn an_outside_host_routing_the_subnet_reaches_published_ports_only() {
    let lab = Lab::new(
        "fwd",
        "hytbr4",
        "10.82.0.1/24",
        &[&[pm("80", "8080", "tcp")], &[]],
    );
    let ((a, a_ip), (b, _)) = (&lab.pods[0], &lab.pods[1]);
    // The outside: a veth to hyperd's namespace, and a route to the pods' subnet through it.
    let outside = NetNs::new("fwdout");
    run(
        "ip",
        &[
            "-n",
            &lab.ns.name,
            "link",
            "add",
            "hytvo",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &outside.name,
        ],
    );
    for (ns, ifname, addr) in [
        (&lab.ns, "hytvo", "10.82.9.1/24"),
        (&outside, "eth0", "10.82.9.2/24"),
    ] {
        run("ip", &["-n", &ns.name, "addr", "add", addr, "dev", ifname]);
        run("ip", &["-n", &ns.name, "link", "set", ifname, "up"]);
    }
    run(
        "ip",
        &[
            "-n",
            &outside.name,
            "route",
            "add",
            "10.82.0.0/24",
            "via",
            "10.82.9.1",
        ],
    );
    let _web = Server::start(a, 80, "a");
    let _other = Server::start(a, 81, "a");
    // Unpublished ports, and the published one at the pod's own address: not reachable.
    for port in [80, 81] {
        let got = fetch(&outside, &format!("{a_ip}:{port}"));
        assert!(got.is_err(), "the outside reached {a_ip}:{port}: {got:?}");
    }
    // The published port at the host's address: reached, the client's address kept.
    assert_eq!(
        fetch(&outside, "10.82.9.1:8080"),
        Ok("hello 10.82.9.2 from a".to_string())
    );
    // Pod to pod, and pod egress (masqueraded) still pass.
    let b_ip = lab.pods[1].1;
    assert_eq!(
        fetch(b, &format!("{a_ip}:81")),
        Ok(format!("hello {b_ip} from a"))
    );
    let far = Server::start(&outside, 0, "outside");
    assert_eq!(
        fetch(b, &format!("10.82.9.2:{}", far.port)),
        Ok("hello 10.82.9.1 from outside".to_string())
    );
}

#[test]
fn a_pod_reaches_published_ports_through_the_gateway_including_its_own() {
    let lab = Lab::new(
        "hpin",
        "hytbr5",
        "10.83.0.1/24",
        &[&[pm("80", "8080", "tcp")], &[pm("80", "8081", "tcp")]],
    );
    let _a = Server::start(&lab.pods[0].0, 80, "a");
    let _b = Server::start(&lab.pods[1].0, 80, "b");
    let gw = lab.gateway;
    let a = &lab.pods[0].0;
    // Another pod's published port: masqueraded to the gateway, so b answers by the gateway
    // (not straight to a, which would drop an answer from an address it never called).
    assert_eq!(
        fetch(a, &format!("{gw}:8081")),
        Ok(format!("hello {gw} from b"))
    );
    // Its own: with br_netfilter (bridge-nf-call-iptables=1, the default once the module is
    // loaded) the DNATed frame is bridged back out of the port it came in by, which a bridge
    // does only in hairpin mode: the mode the VM's tap port needs (Docker without the
    // userland proxy and kubelet's hairpin-veth set it too). Masquerade makes the rest work.
    run(
        "ip",
        &[
            "-n",
            &lab.ns.name,
            "link",
            "set",
            "hytv0",
            "type",
            "bridge_slave",
            "hairpin",
            "on",
        ],
    );
    assert_eq!(
        fetch(a, &format!("{gw}:8080")),
        Ok(format!("hello {gw} from a"))
    );
}

#[test]
fn a_bridge_name_that_is_not_a_bridge_is_refused() {
    let ns = NetNs::new("nobr");
    run(
        "ip",
        &[
            "-n", &ns.name, "link", "add", "hytve0", "type", "veth", "peer", "name", "hytve1",
        ],
    );
    run(
        "ip",
        &[
            "-n",
            &ns.name,
            "addr",
            "add",
            "10.84.0.1/24",
            "dev",
            "hytve0",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    for (name, kind) in [("hytve0", "a veth"), ("lo", "a device without a link kind")] {
        let s = store.clone();
        let e = ns
            .run(move || block_on(Network::start(config(name, "10.84.0.1/24"), s)))
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .contains(&format!("{name} is not a bridge (it is {kind})")),
            "{e}"
        );
        assert_eq!(e.kind(), Kind::Internal);
    }
    // Nothing was set up on the way.
    let out = ns.exec(&["nft", "list", "tables"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "");
    let rl = ns.exec(&["cat", "/proc/sys/net/ipv4/conf/hytve0/route_localnet"]);
    assert_eq!(String::from_utf8_lossy(&rl.stdout).trim(), "0");
}

/// The log lines written while `f` runs on this thread.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let w = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || w.clone())
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned();
    (out, text)
}

#[test]
fn iptables_off_refuses_port_mappings_and_warns_of_a_stale_table() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = offline(store_in(&dir), "192.168.123.1/24");
    let spec = pod(r#"{"portmappings":[{"containerPort":"80","hostPort":"8080"}]}"#);
    let e = net.check_spec(&spec).unwrap_err();
    assert_eq!(e.field, "portmappings");
    assert_eq!(e.message, "not available with --iptables=false");
    net.check_spec(&pod(r#"{"portmappings":[]}"#)).unwrap();
    net.config.iptables = true;
    net.check_spec(&spec).unwrap();

    // A table left by a run with iptables on: named in a warning, and left in place.
    let lab = Lab::new("stale", "hytbr6", "10.85.0.1/24", &[&[]]);
    let ns = &lab.ns;
    assert!(
        ns.exec(&["nft", "list", "table", "ip", "hyperd"])
            .status
            .success()
    );
    let store = store_in(&dir);
    let (started, log) = ns.run(move || {
        logged(|| {
            let mut c = config("hytbr6", "10.85.0.1/24");
            c.iptables = false;
            block_on(Network::start(c, store)).map(drop)
        })
    });
    started.unwrap();
    assert!(log.contains("WARN"), "{log}");
    assert!(log.contains("nftables table ip hyperd"), "{log}");
    assert!(
        ns.exec(&["nft", "list", "table", "ip", "hyperd"])
            .status
            .success()
    );
    // No table: no warning.
    let (_, quiet) = NetNs::new("nostale").run(|| {
        logged(|| {
            let mut c = config("hytbr7", "10.86.0.1/24");
            c.iptables = false;
            let dir = tempfile::tempdir().unwrap();
            block_on(Network::start(c, store_in(&dir))).map(drop)
        })
    });
    assert!(!quiet.contains("WARN"), "{quiet}");
}
