//! Pod services as a user sees them (hyperd 1.1's UserService and `/service` routes, issue #10):
//! a pod reaches another pod's server through a service IP (IPVS in its VM), and the routes
//! change where it leads while the pod runs. hyperd runs in a network namespace of its own (no
//! route out), so no packet leaves the test's namespaces.

use std::time::{Duration, Instant};

use hyper_tests::daemon::{Http, TestDaemon};
use hyper_tests::netns::NetNs;

/// hyperd in a namespace of its own. Fields drop in order: hyperd (and its shims) first, then
/// the namespace.
struct Net {
    d: TestDaemon,
    _ns: NetNs,
}

impl Net {
    fn start(tag: &str) -> Self {
        let ns = NetNs::new(tag);
        let d = TestDaemon::start_in(&ns, &[]);
        d.import_busybox();
        Self { d, _ns: ns }
    }

    /// The pod's one address, without its prefix length.
    fn pod_ip(&self, pod: &str) -> String {
        let r = self
            .d
            .curl("GET", &format!("/pod/info?podName={pod}"), None);
        assert_eq!(r.status, 200, "pod info {pod}: {r:?}\n{}", self.d.log());
        let info: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let cidr = info["status"]["podIP"][0]
            .as_str()
            .unwrap_or_else(|| panic!("no podIP in {info}"));
        cidr.split_once('/').unwrap().0.to_string()
    }

    /// `hyperctl exec POD sh -c SCRIPT`: its exit code and stdout.
    fn sh(&self, pod: &str, script: &str) -> (i32, String) {
        let out = self.d.hyperctl(&["exec", pod, "sh", "-c", script]);
        (out.code, out.stdout)
    }

    /// What `nc` in `pod` reads from `addr` (empty if it could not connect).
    fn fetch(&self, pod: &str, addr: &str) -> String {
        let (host, port) = addr.split_once(':').unwrap();
        let (_, out) = self.sh(pod, &format!("nc -w 3 {host} {port} </dev/null"));
        out.trim().to_string()
    }

    /// Retries [`Net::fetch`] until it reads `want` (a server may still be starting, a change
    /// is applied before the route answers, but a connection may still be in flight).
    fn wait_fetch(&self, pod: &str, addr: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.fetch(pod, addr);
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{pod} → {addr}: read {got:?}, want {want:?}\n{}",
                self.d.log()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn services(&self, method: &str, route: &str, pod: &str, services: &str) -> Http {
        services_call(&self.d, method, route, pod, services)
    }

    fn list(&self, pod: &str) -> serde_json::Value {
        let r = self
            .d
            .curl("GET", &format!("/service/list?podId={pod}"), None);
        assert_eq!(r.status, 200, "{r:?}\n{}", self.d.log());
        serde_json::from_str(&r.body).unwrap()
    }
}

/// `services` percent-encoded for the query string.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn services_call(d: &TestDaemon, method: &str, route: &str, pod: &str, services: &str) -> Http {
    d.curl(
        method,
        &format!("{route}?podId={pod}&services={}", encode(services)),
        None,
    )
}

fn service(ip: &str, port: u16, host: &str, host_port: u16) -> String {
    format!(
        r#"{{"serviceIP":"{ip}","protocol":"tcp","servicePort":{port},"hosts":[{{"hostIP":"{host}","hostPort":{host_port}}}]}}"#
    )
}

/// The change routes' answer, as hyperd 1.1 gave it.
fn assert_success(r: &Http, d: &TestDaemon) {
    assert_eq!(r.status, 200, "{r:?}\n{}", d.log());
    assert_eq!(r.body.trim(), r#"["Result=success"]"#);
}

#[test]
fn a_service_ip_leads_to_its_backends_and_follows_changes_live() {
    let net = Net::start("svc");
    // The backend pod: two servers, each answering one line and closing (busybox nc: -ll
    // keeps listening).
    net.d.ok(&[
        "run",
        "-d",
        "--name",
        "backend",
        "busybox",
        "sh",
        "-c",
        "nc -ll -p 6379 -e echo one & nc -ll -p 6380 -e echo two",
    ]);
    let backend = net.pod_ip("backend");

    let spec = format!(
        r#"{{"id":"client","containers":[{{"name":"client","image":"busybox","command":["sleep","600"]}}],"services":[{}]}}"#,
        service("10.254.0.10", 6379, &backend, 6379).replace(r#""protocol":"tcp","#, "")
    );
    let r = net.d.curl_body("POST", "/pod/create", &spec);
    assert_eq!(r.status, 201, "{r:?}\n{}", net.d.log());
    net.d.ok(&["start", "client"]);
    // The backend is there, and the service IP leads to it.
    net.wait_fetch("client", &format!("{backend}:6379"), "one");
    net.wait_fetch("client", "10.254.0.10:6379", "one");
    let list = net.list("client");
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["serviceIP"], "10.254.0.10");
    assert_eq!(
        list[0]["protocol"], "tcp",
        "the default protocol is recorded"
    );
    assert_eq!(list[0]["hosts"][0]["hostIP"], backend.as_str());
    // IPVS is loaded where a pod has services, and only there (boot time matters).
    let (_, modules) = net.sh("client", "cat /proc/modules");
    assert!(modules.contains("ip_vs_rr "), "{modules}");
    let (_, modules) = net.sh("backend", "cat /proc/modules");
    assert!(!modules.contains("ip_vs"), "{modules}");

    // update replaces the whole list: the service now leads to the other server.
    let r = net.services(
        "POST",
        "/service/update",
        "client",
        &format!("[{}]", service("10.254.0.10", 6379, &backend, 6380)),
    );
    assert_success(&r, &net.d);
    net.wait_fetch("client", "10.254.0.10:6379", "two");
    assert_eq!(net.list("client")[0]["hosts"][0]["hostPort"], 6380);
    // Two hosts take turns (round robin).
    let both = service("10.254.0.10", 6379, &backend, 6379).replace(
        "}]}",
        &format!(r#"}},{{"hostIP":"{backend}","hostPort":6380}}]}}"#),
    );
    let r = net.services("POST", "/service/update", "client", &format!("[{both}]"));
    assert_success(&r, &net.d);
    let mut got: Vec<String> = (0..4)
        .map(|_| net.fetch("client", "10.254.0.10:6379"))
        .collect();
    assert_eq!(
        got[..2].iter().filter(|g| *g == "one").count(),
        1,
        "{got:?}"
    );
    got.sort();
    assert_eq!(got, ["one", "one", "two", "two"]);
    let r = net.services(
        "POST",
        "/service/update",
        "client",
        &format!("[{}]", service("10.254.0.10", 6379, &backend, 6380)),
    );
    assert_success(&r, &net.d);

    // add: a second service beside the first.
    let r = net.services(
        "POST",
        "/service/add",
        "client",
        &format!("[{}]", service("10.254.0.11", 80, &backend, 6379)),
    );
    assert_success(&r, &net.d);
    net.wait_fetch("client", "10.254.0.11:80", "one");
    net.wait_fetch("client", "10.254.0.10:6379", "two");
    assert_eq!(net.list("client").as_array().unwrap().len(), 2);
    // Adding one the pod has already is a 400 naming it; nothing changes.
    let r = net.services(
        "POST",
        "/service/add",
        "client",
        &format!("[{}]", service("10.254.0.11", 80, &backend, 6380)),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("10.254.0.11:80@tcp"), "{r:?}");
    net.wait_fetch("client", "10.254.0.11:80", "one");

    // delete: the removed service leads nowhere any more; the other stays.
    let r = net.services(
        "DELETE",
        "/service",
        "client",
        &format!("[{}]", service("10.254.0.10", 6379, &backend, 6380)),
    );
    assert_success(&r, &net.d);
    net.wait_fetch("client", "10.254.0.10:6379", "");
    net.wait_fetch("client", "10.254.0.11:80", "one");
    let list = net.list("client");
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["serviceIP"], "10.254.0.11");
    // Deleting one the pod does not have is a 400 naming it.
    let r = net.services(
        "DELETE",
        "/service",
        "client",
        &format!("[{}]", service("10.254.0.10", 6379, &backend, 6380)),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("no service 10.254.0.10:6379@tcp"), "{r:?}");

    // A stopped pod's services change in its record only, and its next start applies them.
    net.d.ok(&["stop", "client"]);
    let r = net.services("POST", "/service/update", "client", "[]");
    assert_success(&r, &net.d);
    let r = net.services(
        "POST",
        "/service/add",
        "client",
        &format!("[{}]", service("10.254.0.12", 7000, &backend, 6380)),
    );
    assert_success(&r, &net.d);
    net.d.ok(&["start", "client"]);
    net.wait_fetch("client", "10.254.0.12:7000", "two");
    assert_eq!(net.fetch("client", "10.254.0.11:80"), "");
}

#[test]
fn bad_services_are_400s_naming_the_field() {
    // Networking on (services need it), in a namespace of the test's own; no VM boots.
    let net = Net::start("svc-bad");
    let d = &net.d;
    let pod = |services: &str| {
        format!(
            r#"{{"id":"bad","containers":[{{"name":"bad","image":"busybox","command":["true"]}}],"services":{services}}}"#
        )
    };
    let good = service("10.254.0.10", 6379, "192.168.123.20", 6379);
    let cases = [
        (
            good.replace("10.254.0.10", "10.254.0"),
            "services[0].serviceIP",
        ),
        (
            good.replace(r#""tcp""#, r#""sctp""#),
            "services[0].protocol",
        ),
        (
            good.replace("6379,\"hosts\"", "0,\"hosts\""),
            "services[0].servicePort",
        ),
        (
            good.replace(r#""hostPort":6379"#, r#""hostPort":65536"#),
            "services[0].hosts[0].hostPort",
        ),
        (
            good.replace("192.168.123.20", "fe80::1"),
            "services[0].hosts[0].hostIP",
        ),
        (
            r#"{"serviceIP":"10.254.0.10","servicePort":53,"hosts":[]}"#.to_string(),
            "services[0].hosts",
        ),
    ];
    for (bad, field) in &cases {
        let r = d.curl_body("POST", "/pod/create", &pod(&format!("[{bad}]")));
        assert_eq!(r.status, 400, "{bad}: {r:?}");
        assert!(r.body.contains(field), "{bad}: {r:?} does not name {field}");
    }
    // The same service twice (tcp by default) is refused at create.
    let twice = format!("[{good},{}]", good.replace(r#""protocol":"tcp","#, ""));
    let r = d.curl_body("POST", "/pod/create", &pod(&twice));
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("services[1]"), "{r:?}");
    assert!(d.list("pod").is_empty(), "nothing was recorded");

    // The routes check the same way, for a pod that exists.
    let r = d.curl_body("POST", "/pod/create", &pod(&format!("[{good}]")));
    assert_eq!(r.status, 201, "{r:?}\n{}", d.log());
    for (bad, field) in &cases {
        for route in ["/service/add", "/service/update"] {
            let r = services_call(d, "POST", route, "bad", &format!("[{bad}]"));
            assert_eq!(r.status, 400, "{route} {bad}: {r:?}");
            assert!(
                r.body.contains(field),
                "{route} {bad}: {r:?} does not name {field}"
            );
        }
    }
    let r = services_call(d, "POST", "/service/add", "bad", "{not json");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("services"), "{r:?}");
    let r = services_call(d, "POST", "/service/add", "bad", r#"[{"servicePort":"x"}]"#);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("[0].servicePort"), "{r:?}");
    let r = d.curl("POST", "/service/add?podId=bad", None);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("services"), "{r:?}");
    let r = services_call(d, "POST", "/service/add", "nosuchpod", &format!("[{good}]"));
    assert_eq!(r.status, 404, "{r:?}");
    let r = d.curl("GET", "/service/list?podId=nosuchpod", None);
    assert_eq!(r.status, 404, "{r:?}");
    // Nothing changed.
    let r = d.curl("GET", "/service/list?podId=bad", None);
    let list: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["hosts"][0]["hostPort"], 6379);
}

#[test]
fn hyperctl_service_lists_adds_replaces_and_removes() {
    // Networking on (services need it), in a namespace of the test's own; no VM boots.
    let net = Net::start("svc-ctl");
    let d = &net.d;
    let r = d.curl_body(
        "POST",
        "/pod/create",
        r#"{"id":"web","containers":[{"name":"web","image":"busybox","command":["true"]}]}"#,
    );
    assert_eq!(r.status, 201, "{r:?}\n{}", d.log());
    d.ok(&[
        "service",
        "add",
        "web",
        "10.254.0.10:6379=192.168.123.20:6379,192.168.123.21:6379",
        "10.254.0.10:53/udp=192.168.123.22:5353",
    ]);
    let out = d.ok(&["service", "ls", "web"]);
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 3, "{out}");
    assert!(
        rows[1].contains("10.254.0.10:6379")
            && rows[1].contains("tcp")
            && rows[1].contains("192.168.123.20:6379,192.168.123.21:6379"),
        "{out}"
    );
    assert!(
        rows[2].contains("udp") && rows[2].contains("192.168.123.22:5353"),
        "{out}"
    );

    d.ok(&["service", "rm", "web", "10.254.0.10:53/udp"]);
    let out = d.ok(&["service", "ls", "web"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    // Removing it again names it.
    let out = d.hyperctl(&["service", "rm", "web", "10.254.0.10:53/udp"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("10.254.0.10:53@udp"), "{out:?}");

    d.ok(&[
        "service",
        "update",
        "web",
        "10.254.0.11:80=192.168.123.30:8080",
    ]);
    let out = d.ok(&["service", "ls", "web"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.contains("10.254.0.11:80") && !out.contains("6379"),
        "{out}"
    );
    d.ok(&["service", "update", "web"]);
    assert_eq!(d.ok(&["service", "ls", "web"]).lines().count(), 1);
    // A malformed argument is refused before any call, naming it.
    let out = d.hyperctl(&["service", "add", "web", "10.254.0.10:80"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("10.254.0.10:80"), "{out:?}");
}

#[test]
fn a_pod_without_a_network_cannot_have_services() {
    let d = TestDaemon::start();
    d.import_busybox();
    let spec = |services: &str| {
        format!(
            r#"{{"id":"lonely","network":"none","containers":[{{"name":"lonely","image":"busybox","command":["true"]}}],"services":{services}}}"#
        )
    };
    let one = format!("[{}]", service("10.254.0.10", 80, "192.168.123.20", 80));
    let r = d.curl_body("POST", "/pod/create", &spec(&one));
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.body.contains("services") && r.body.contains("no network"),
        "{r:?}"
    );
    let r = d.curl_body("POST", "/pod/create", &spec("[]"));
    assert_eq!(r.status, 201, "{r:?}\n{}", d.log());
    let r = services_call(&d, "POST", "/service/add", "lonely", &one);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("no network"), "{r:?}");
}
