//! The spec rule against a real daemon (no VM boots): every field of the pod spec either does
//! what it says or, set alone to a non-default value, is a 400 naming it. The fields are
//! walked from `UserPod::every_field()` serialised to JSON, so a field added to the spec is
//! walked without touching this file; it fails until the field is honoured (and listed in
//! [`HONOURED`]) or refused. Also: YAML bodies and keys in any case (reference §2.10, §2.11),
//! files fetched at create, and `/list`'s `label` filter.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use hyper_proto::rest::UserPod;
use hyper_tests::daemon::{Http, TestDaemon};
use hyper_tests::netns::NetNs;

/// Fields that do what they say, each with the test that shows it. Volume and restart fields
/// are honoured by their own pieces (their checks may ask for more than this file sets up).
const HONOURED: &[(&str, &str)] = &[
    (
        "id",
        "pods.rs::hyperctl_import_images_create_info_version_without_booting",
    ),
    ("hostname", "shim_net.rs (the guest's hostname)"),
    ("restartPolicy", "restart.rs"),
    ("tty", "attach.rs::tty_sessions_detach_resize_and_execvm"),
    ("labels", "spec_fields.rs::list_filters_by_label"),
    ("resource.vcpu", "pods.rs (VM size)"),
    ("resource.memory", "pods.rs (VM size)"),
    ("log.type", "logs.rs"),
    ("log.config", "logs.rs::rotation_keeps_max_file_files"),
    (
        "dns",
        "network.rs::etc_hosts_and_resolv_conf_in_every_container",
    ),
    (
        "dnsOptions",
        "network.rs::etc_hosts_and_resolv_conf_in_every_container",
    ),
    (
        "dnsSearch",
        "network.rs::etc_hosts_and_resolv_conf_in_every_container",
    ),
    (
        "network",
        "network.rs::a_pod_without_network_has_only_loopback",
    ),
    (
        "portmappings[0].containerPort",
        "network.rs::a_port_mapping_serves_httpd_until_it_is_deleted",
    ),
    (
        "portmappings[0].hostPort",
        "network.rs::a_port_mapping_serves_httpd_until_it_is_deleted",
    ),
    (
        "portmappings[0].protocol",
        "network.rs::a_port_mapping_serves_httpd_until_it_is_deleted",
    ),
    (
        "interfaces[0].bridge",
        "network.rs::bad_network_specs_are_refused_by_name",
    ),
    (
        "interfaces[0].ip",
        "network.rs::addresses_never_repeat_across_restarts_and_nothing_is_left",
    ),
    ("interfaces[0].mtu", "network.rs"),
    ("interfaces[0].gateway", "network.rs"),
    (
        "files[0].name",
        "pod_options.rs::files_reach_the_container_as_specified",
    ),
    (
        "files[0].encoding",
        "pod_options.rs::files_reach_the_container_as_specified",
    ),
    (
        "files[0].uri",
        "pod_options.rs::files_reach_the_container_as_specified",
    ),
    (
        "files[0].content",
        "pod_options.rs::files_reach_the_container_as_specified",
    ),
    ("volumes[0].name", "volumes.rs"),
    ("volumes[0].source", "volumes.rs"),
    ("volumes[0].format", "volumes.rs"),
    ("volumes[0].fstype", "shim_volumes.rs"),
    ("volumes[0].cache", "shim_volumes.rs"),
    ("containers[0].name", "pods.rs"),
    ("containers[0].image", "pods.rs"),
    (
        "containers[0].command",
        "pods.rs::run_prints_the_output_and_propagates_the_exit_code",
    ),
    ("containers[0].entrypoint", "shim.rs"),
    (
        "containers[0].workdir",
        "shim.rs::exit_codes_are_dockers_and_a_missing_workdir_is_created",
    ),
    ("containers[0].envs[0].env", "shim.rs"),
    ("containers[0].envs[0].value", "shim.rs"),
    (
        "containers[0].tty",
        "containers.rs::run_it_under_a_real_terminal",
    ),
    (
        "containers[0].stdin",
        "attach.rs::a_main_process_takes_stdin_without_a_tty",
    ),
    (
        "containers[0].readOnly",
        "pod_options.rs::read_only_rootfs_ulimits_and_sysctls",
    ),
    (
        "containers[0].user.name",
        "pod_options.rs::files_reach_the_container_as_specified",
    ),
    (
        "containers[0].user.group",
        "pod_options.rs::files_reach_the_container_as_specified",
    ),
    (
        "containers[0].user.additionalGroups",
        "full_pod.rs::the_full_pod_of_the_reference_does_what_each_field_says",
    ),
    (
        "services[0].serviceIP",
        "services.rs::a_service_ip_leads_to_its_backends_and_follows_changes_live",
    ),
    (
        "services[0].protocol",
        "services.rs::a_service_ip_leads_to_its_backends_and_follows_changes_live",
    ),
    (
        "services[0].servicePort",
        "services.rs::a_service_ip_leads_to_its_backends_and_follows_changes_live",
    ),
    (
        "services[0].hosts[0].hostIP",
        "services.rs::a_service_ip_leads_to_its_backends_and_follows_changes_live",
    ),
    (
        "services[0].hosts[0].hostPort",
        "services.rs::a_service_ip_leads_to_its_backends_and_follows_changes_live",
    ),
    ("containers[0].volumes[0].volume", "volumes.rs"),
    ("containers[0].volumes[0].path", "volumes.rs"),
    ("containers[0].volumes[0].readOnly", "volumes.rs"),
    ("containers[0].volumes[0].detail.name", "volumes.rs"),
    ("containers[0].volumes[0].detail.source", "volumes.rs"),
    ("containers[0].volumes[0].detail.format", "volumes.rs"),
    ("containers[0].volumes[0].detail.fstype", "shim_volumes.rs"),
    ("containers[0].volumes[0].detail.cache", "shim_volumes.rs"),
    (
        "containers[0].files[0].path",
        "pod_options.rs::files_reach_the_container_as_specified",
    ),
    (
        "containers[0].files[0].filename",
        "pod_options.rs::files_reach_the_container_as_specified",
    ),
    (
        "containers[0].files[0].perm",
        "pod_options.rs::files_reach_the_container_as_specified",
    ),
    (
        "containers[0].files[0].user",
        "pod_options.rs::files_reach_the_container_as_specified",
    ),
    (
        "containers[0].files[0].group",
        "pod_options.rs::files_reach_the_container_as_specified",
    ),
    (
        "containers[0].files[0].detail.name",
        "pod_options.rs::files_reach_the_container_as_specified",
    ),
    (
        "containers[0].files[0].detail.encoding",
        "pod_options.rs::files_reach_the_container_as_specified",
    ),
    (
        "containers[0].files[0].detail.content",
        "pod_options.rs::files_reach_the_container_as_specified",
    ),
    (
        "containers[0].ports[0].hostPort",
        "spec_fields.rs::container_ports_become_portmappings",
    ),
    (
        "containers[0].ports[0].containerPort",
        "spec_fields.rs::container_ports_become_portmappings",
    ),
    (
        "containers[0].ports[0].protocol",
        "spec_fields.rs::container_ports_become_portmappings",
    ),
    (
        "containers[0].labels",
        "spec_fields.rs::list_filters_by_label",
    ),
    (
        "containers[0].sysctl",
        "pod_options.rs::read_only_rootfs_ulimits_and_sysctls",
    ),
    ("containers[0].restartPolicy", "restart.rs"),
    (
        "containers[0].StopSignal",
        "pod_options.rs::stop_signal_comes_from_the_image",
    ),
    (
        "containers[0].ulimits[0].Name",
        "pod_options.rs::read_only_rootfs_ulimits_and_sysctls",
    ),
    (
        "containers[0].ulimits[0].Hard",
        "pod_options.rs::read_only_rootfs_ulimits_and_sysctls",
    ),
    (
        "containers[0].ulimits[0].Soft",
        "pod_options.rs::read_only_rootfs_ulimits_and_sysctls",
    ),
];

/// The leaf paths of `v`: objects are descended (`a.b`), arrays of objects by their first
/// element (`a[0].b`); scalars, arrays of scalars and maps of strings (labels, sysctl,
/// log.config) are leaves.
fn leaves(v: &Value, path: &str, out: &mut Vec<String>) {
    let is_map = ["labels", "sysctl", "config"]
        .iter()
        .any(|m| path == *m || path.ends_with(&format!(".{m}")));
    match v {
        Value::Object(m) if !is_map => {
            for (k, child) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                leaves(child, &p, out);
            }
        }
        Value::Array(items) if items.first().is_some_and(Value::is_object) => {
            leaves(&items[0], &format!("{path}[0]"), out);
        }
        _ => out.push(path.to_string()),
    }
}

/// The value at `path` (`a[0].b`) in `v`.
fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    segments(path).iter().fold(v, |v, s| match s {
        Seg::Key(k) => &v[k.as_str()],
        Seg::Index(i) => &v[*i],
    })
}

/// Sets `path` in `v` to `value`, creating objects and arrays on the way.
fn set(v: &mut Value, path: &str, value: Value) {
    let segs = segments(path);
    let mut cur = v;
    for s in &segs {
        cur = match s {
            Seg::Key(k) => {
                if !cur.is_object() {
                    *cur = json!({});
                }
                cur.as_object_mut()
                    .unwrap()
                    .entry(k.clone())
                    .or_insert(Value::Null)
            }
            Seg::Index(i) => {
                if !cur.is_array() {
                    *cur = json!([]);
                }
                let a = cur.as_array_mut().unwrap();
                while a.len() <= *i {
                    a.push(Value::Null);
                }
                &mut a[*i]
            }
        };
    }
    *cur = value;
}

enum Seg {
    Key(String),
    Index(usize),
}

fn segments(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, rest) = part.split_once('[').unwrap_or((part, ""));
        out.push(Seg::Key(key.to_string()));
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            out.push(Seg::Index(idx.trim_end_matches(']').parse().unwrap()));
        }
    }
    out
}

/// `path` and its ancestors: `a[0].b`, `a[0]`, `a`.
fn ancestors(path: &str) -> Vec<String> {
    let mut out = vec![path.to_string()];
    let mut p = path.to_string();
    while let Some(cut) = p.rfind(['.', '[']) {
        p.truncate(cut);
        out.push(p.clone());
    }
    out
}

/// What a lone field needs around it to be a valid pod: the complete object it sits in.
/// `dir` is a host directory volumes may use.
fn context_for(path: &str, dir: &Path) -> Value {
    let dir = dir.display().to_string();
    let image = format!("{dir}/disk.img");
    let mut pod = json!({"containers": [{"image": "busybox", "command": ["true"]}]});
    let mut put = |p: &str, v: Value| set(&mut pod, p, v);
    if path.starts_with("files[0]") {
        put("files[0]", json!({"name": "f"}));
    } else if path.starts_with("portmappings[0]") {
        put(
            "portmappings[0]",
            json!({"containerPort": "80", "hostPort": "18080", "protocol": "tcp"}),
        );
    } else if path.starts_with("services[0]") {
        put(
            "services[0]",
            json!({"serviceIP": "10.254.0.10", "protocol": "tcp", "servicePort": 6379,
                   "hosts": [{"hostIP": "192.168.123.20", "hostPort": 6379}]}),
        );
    } else if path.starts_with("interfaces[0]") {
        put("interfaces[0]", json!({}));
    } else if path.starts_with("volumes[0]") {
        let volume = if path.ends_with("fstype") || path.ends_with("cache") {
            json!({"name": "v", "source": image, "format": "raw", "fstype": "ext4"})
        } else {
            json!({"name": "v", "source": dir, "format": "vfs"})
        };
        put("volumes[0]", volume);
        put(
            "containers[0].volumes[0]",
            json!({"volume": "v", "path": "/data"}),
        );
    } else if path.starts_with("containers[0].volumes[0]") {
        let detail = if path.ends_with("fstype") || path.ends_with("cache") {
            json!({"name": "v", "source": image, "format": "raw", "fstype": "ext4"})
        } else {
            json!({"name": "v", "source": dir, "format": "vfs"})
        };
        put(
            "containers[0].volumes[0]",
            json!({"volume": "v", "path": "/data", "detail": detail}),
        );
    } else if path.starts_with("containers[0].files[0]") {
        put("files[0]", json!({"name": "f", "content": "x"}));
        put(
            "containers[0].files[0]",
            if path.contains(".detail.") {
                json!({"path": "/etc/f", "detail": {"name": "d"}})
            } else {
                json!({"path": "/etc/f", "filename": "f"})
            },
        );
    } else if path.starts_with("containers[0].ports[0]") {
        put(
            "containers[0].ports[0]",
            json!({"hostPort": 18081, "containerPort": 80}),
        );
    } else if path.starts_with("containers[0].ulimits[0]") {
        put(
            "containers[0].ulimits[0]",
            json!({"Name": "nofile", "Hard": 2048, "Soft": 1024}),
        );
    } else if path.starts_with("containers[0].envs[0]") {
        put("containers[0].envs[0]", json!({"env": "A", "value": "1"}));
    } else if path == "containers[0].user.group" {
        put("containers[0].user", json!({"name": "1000"}));
    }
    pod
}

fn post_pod(d: &TestDaemon, pod: &Value) -> Http {
    d.curl_body("POST", "/pod/create", &pod.to_string())
}

fn remove_pod(d: &TestDaemon, id: &str) {
    let r = d.curl("DELETE", &format!("/pod?podId={id}"), None);
    assert_eq!(r.status, 200, "remove {id}: {r:?}");
}

fn created_id(r: &Http) -> String {
    serde_json::from_str::<Value>(&r.body).unwrap()["ID"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A daemon with networking on (in a namespace of its own), so the network fields can be
/// honoured, with busybox imported.
fn networked(tag: &str) -> (TestDaemon, NetNs) {
    let ns = NetNs::new(tag);
    let d = TestDaemon::start_in(&ns, &[]);
    d.import_busybox();
    (d, ns)
}

#[test]
fn every_field_is_honoured_or_refused_by_name() {
    let (d, _ns) = networked("fields");
    let dir = tempfile::tempdir().unwrap();
    let img = std::fs::File::create(dir.path().join("disk.img")).unwrap();
    img.set_len(1 << 20).unwrap();
    let full = serde_json::to_value(UserPod::every_field()).unwrap();
    let mut paths = Vec::new();
    leaves(&full, "", &mut paths);
    assert!(paths.len() > 60, "{paths:?}");
    let mut failures = Vec::new();
    for path in &paths {
        let mut pod = context_for(path, dir.path());
        set(&mut pod, path, get(&full, path).clone());
        let r = post_pod(&d, &pod);
        match HONOURED.iter().find(|(p, _)| p == path) {
            Some((_, shown_by)) => {
                if r.status == 201 {
                    remove_pod(&d, &created_id(&r));
                } else {
                    failures.push(format!(
                        "{path} (honoured, {shown_by}): {} {}\n  sent {pod}",
                        r.status, r.body
                    ));
                }
            }
            None => {
                let named = ancestors(path).iter().any(|a| r.body.contains(a.as_str()));
                if r.status != 400 || !named || !r.body.contains("not supported") {
                    if r.status == 201 {
                        remove_pod(&d, &created_id(&r));
                    }
                    failures.push(format!(
                        "{path} (not honoured): want a 400 naming it as not supported, got {} {}\n  sent {pod}",
                        r.status, r.body
                    ));
                }
            }
        }
    }
    // Every honoured entry is a field of the spec (no stale names).
    for (p, _) in HONOURED {
        assert!(
            paths.iter().any(|x| x == p),
            "HONOURED lists {p}, not a field"
        );
    }
    assert!(failures.is_empty(), "{}\n{}", failures.join("\n"), d.log());
}

#[test]
fn container_ports_become_portmappings() {
    let (d, _ns) = networked("ports");
    let r = post_pod(
        &d,
        &json!({"id": "pp", "containers": [{"image": "busybox", "command": ["true"],
            "ports": [{"hostPort": 18090, "containerPort": 80, "protocol": "udp"}]}]}),
    );
    assert_eq!(r.status, 201, "{r:?}\n{}", d.log());
    let r = d.curl("GET", "/pod/pp/portmappings", None);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        v["portMappings"],
        json!([{"containerPort": "80", "hostPort": "18090", "protocol": "udp"}])
    );
}

/// The full pod of reference §2.11 with local images: as it is, a field hyperd does not honour
/// (`portmappingWhiteLists`, the NFS volume) is named; without those it is created with every
/// other field as given. (`full_pod.rs` starts it and checks each field in the guest.)
#[test]
fn the_full_pod_of_the_reference_is_taken_as_it_is() {
    let (d, _ns) = networked("full");
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("html");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&html).unwrap();
    std::fs::create_dir_all(&scratch).unwrap();
    let disk = dir.path().join("db.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let mut pod = json!({
      "id": "web-1", "hostname": "web-1",
      "labels": {"app": "shop", "tier": "frontend"},
      "resource": {"vcpu": 2, "memory": 512},
      "tty": false, "restartPolicy": "never",
      "log": {"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}},
      "dns": ["8.8.8.8", "1.1.1.1"], "dnsSearch": ["svc.local"], "dnsOptions": ["ndots:2"],
      "portmappings": [
        {"containerPort": "80", "hostPort": "18080", "protocol": "tcp"},
        {"containerPort": "9000-9009", "hostPort": "19000-19009", "protocol": "tcp"}],
      "portmappingWhiteLists": {"internalNetworks": ["192.168.123.0/24"], "externalNetworks": ["0.0.0.0/0"]},
      "interfaces": [{"mtu": 1450}],
      "services": [{"serviceIP": "10.254.0.10", "protocol": "tcp", "servicePort": 6379,
          "hosts": [{"hostIP": "192.168.123.20", "hostPort": 6379}]}],
      "volumes": [
        {"name": "html", "source": html, "format": "vfs"},
        {"name": "cache", "source": "", "format": ""},
        {"name": "dbdisk", "source": disk, "format": "raw", "fstype": "ext4", "cache": "none"},
        {"name": "shared", "source": "10.0.0.5:/export", "format": "nas", "fstype": "nfs"}],
      "files": [
        {"name": "nginx.conf", "encoding": "raw", "content": "server { listen 80; }\n"},
        {"name": "token", "encoding": "base64", "content": "c2VjcmV0LXRva2VuCg=="}],
      "containers": [
        {"name": "nginx", "image": "busybox", "workdir": "/",
         "command": ["httpd", "-f"],
         "envs": [{"env": "TZ", "value": "UTC"}], "readOnly": false, "StopSignal": "SIGQUIT",
         "ulimits": [{"Name": "nofile", "Hard": 65536, "Soft": 65536}],
         "labels": {"role": "proxy"},
         "volumes": [{"volume": "html", "path": "/usr/share/nginx/html", "readOnly": true},
                     {"volume": "cache", "path": "/var/cache/nginx"}],
         "files": [{"path": "/etc/nginx/conf.d/default.conf", "filename": "nginx.conf", "perm": "0644"}]},
        {"name": "app", "image": "busybox",
         "entrypoint": ["/bin/sh"], "command": ["-c", "sleep 600"],
         "user": {"name": "app", "group": "app", "additionalGroups": ["adm"]},
         "volumes": [{"volume": "dbdisk", "path": "/data"},
                     {"volume": "shared", "path": "/mnt/shared", "readOnly": true},
                     {"volume": "scratch", "path": "/scratch",
                      "detail": {"name": "scratch", "source": scratch, "format": "vfs"}}],
         "files": [{"path": "/run/secrets/", "filename": "token", "perm": "0600", "user": "1000", "group": "1000"}]}]
    });
    let r = post_pod(&d, &pod);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.body.contains("not supported")
            && (r.body.contains("portmappingWhiteLists") || r.body.contains("volumes[3]")),
        "{r:?}"
    );
    let m = pod.as_object_mut().unwrap();
    m.remove("portmappingWhiteLists");
    let r = post_pod(&d, &pod);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.body.contains("volumes[3]") && r.body.contains("not supported"),
        "{r:?}"
    );
    let m = pod.as_object_mut().unwrap();
    m["volumes"].as_array_mut().unwrap().pop();
    m["containers"][1]["volumes"]
        .as_array_mut()
        .unwrap()
        .remove(1);
    let r = post_pod(&d, &pod);
    assert_eq!(r.status, 201, "{r:?}\n{}", d.log());
    let info: Value =
        serde_json::from_str(&d.curl("GET", "/pod/info?podName=web-1", None).body).unwrap();
    assert_eq!(
        info["spec"]["labels"],
        json!({"app": "shop", "tier": "frontend"})
    );
    assert_eq!(
        (info["spec"]["vcpu"].clone(), info["spec"]["memory"].clone()),
        (json!(2), json!(512))
    );
}

/// hyperd 1.1's YAML pod files (`hyperctl -y`, §2.10): lower-cased Go names, numbers where
/// the spec has strings; sent by `hyperctl create --podfile FILE.yaml` and by curl.
#[test]
fn yaml_pod_files_with_lower_cased_keys() {
    let (d, _ns) = networked("yaml");
    let file = d.dir.path().join("pod.yaml");
    std::fs::write(
        &file,
        "id: yml\nrestartpolicy: never\nlabels: {app: y, version: 2}\ncontainers:\n  - image: busybox\n    command: [sleep, '600']\n    stopsignal: INT\n    readonly: true\n    ulimits:\n      - {name: nofile, hard: 4096, soft: 2048}\nportmappings:\n  - {containerport: 80, hostport: 18070, protocol: tcp}\n",
    )
    .unwrap();
    let out = d.hyperctl(&["create", "--podfile", file.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}\n{}", d.log());
    assert_eq!(out.stdout.trim().rsplit(' ').next(), Some("yml"), "{out:?}");
    let r = d.curl("GET", "/pod/yml/portmappings", None);
    assert!(r.body.contains(r#""hostPort":"18070""#), "{r:?}");
    let rows = d.curl("GET", "/list?item=pod&label=version=2", None);
    assert!(rows.body.contains("yml:"), "{rows:?}");
    // The same body with curl and a YAML content type; a bad key case twice is refused.
    let twice = "containers:\n  - image: busybox\n    readonly: true\n    readOnly: false\n";
    let out = std::process::Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--unix-socket"])
        .arg(&d.socket)
        .args([
            "-H",
            "Content-Type: application/x-yaml",
            "--data-binary",
            twice,
        ])
        .arg("http://hyperd/pod/create")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("400"), "{text}");
    assert!(
        text.contains("containers[0].readOnly: given twice"),
        "{text}"
    );
}

#[test]
fn list_filters_by_label() {
    let d = TestDaemon::start();
    d.import_busybox();
    for (id, labels, clabels) in [
        (
            "a1",
            json!({"app": "web", "tier": "front"}),
            json!({"role": "proxy"}),
        ),
        ("a2", json!({"app": "web"}), json!({})),
        ("b1", json!({"app": "db"}), json!({"role": "proxy"})),
    ] {
        let r = post_pod(
            &d,
            &json!({"id": id, "labels": labels,
                "containers": [{"name": format!("{id}-c"), "image": "busybox", "command": ["true"], "labels": clabels}]}),
        );
        assert_eq!(r.status, 201, "{r:?}");
    }
    let ids = |q: &str, key: &str| -> Vec<String> {
        let r = d.curl("GET", &format!("/list?{q}"), None);
        assert_eq!(r.status, 201, "{q}: {r:?}");
        let v: Value = serde_json::from_str(&r.body).unwrap();
        let mut ids: Vec<String> = v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                let cells: Vec<&str> = row.as_str().unwrap().split(':').collect();
                if key == "podData" { cells[0] } else { cells[1] }.to_string()
            })
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids("item=pod&label=app=web", "podData"), ["a1", "a2"]);
    assert_eq!(ids("item=pod&label=app=web,tier", "podData"), ["a1"]);
    assert_eq!(ids("item=pod&label=tier", "podData"), ["a1"]);
    assert!(ids("item=pod&label=app=nope", "podData").is_empty());
    assert_eq!(ids("item=pod", "podData"), ["a1", "a2", "b1"]);
    assert_eq!(
        ids("item=container&label=role=proxy", "cData"),
        ["a1-c", "b1-c"]
    );
    let r = d.curl("GET", "/list?item=vm&label=app", None);
    assert_eq!(r.status, 400, "{r:?}");
    let r = d.curl("GET", "/list?item=pod&label==x", None);
    assert_eq!(r.status, 400, "{r:?}");
    // hyperctl's -l.
    let out = d.ok(&["list", "pod", "-l", "app=web", "-l", "tier=front", "-q"]);
    assert_eq!(out.trim(), "a1");
}

/// A tiny HTTP server on 127.0.0.1 answering every request with `status` and `body` (after
/// `delay`), for as long as the test runs.
fn serve(status: &'static str, body: Vec<u8>, delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let body = body.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                std::thread::sleep(delay);
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(&body);
            });
        }
    });
    format!("http://{addr}/file")
}

fn file_pod(id: &str, uri: &str) -> Value {
    json!({"id": id, "files": [{"name": "f", "uri": uri}],
        "containers": [{"image": "busybox", "command": ["true"],
            "files": [{"path": "/etc/f", "filename": "f", "perm": "0600"}]}]})
}

#[test]
fn files_are_fetched_at_create_and_kept_with_the_pod() {
    let d = TestDaemon::start();
    d.import_busybox();
    let ok = serve("200 OK", b"from http\n".to_vec(), Duration::ZERO);
    let r = post_pod(&d, &file_pod("h1", &ok));
    assert_eq!(r.status, 201, "{r:?}\n{}", d.log());
    let kept = d.root.join("pod-files/h1/0");
    assert_eq!(std::fs::read(&kept).unwrap(), b"from http\n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let host = d.dir.path().join("host-file");
    std::fs::write(&host, "from the host\n").unwrap();
    let r = post_pod(&d, &file_pod("h2", &format!("file://{}", host.display())));
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        std::fs::read(d.root.join("pod-files/h2/0")).unwrap(),
        b"from the host\n"
    );
    remove_pod(&d, "h1");
    assert!(!d.root.join("pod-files/h1").exists());

    let missing = serve("404 Not Found", Vec::new(), Duration::ZERO);
    let big = serve("200 OK", vec![b'x'; (1 << 20) + 1], Duration::ZERO);
    let slow = serve("200 OK", b"late".to_vec(), Duration::from_secs(15));
    // A FIFO nobody writes to: refused at once, not waited on.
    let fifo = d.dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let fifo = format!("file://{}", fifo.display());
    for (id, uri, why) in [
        ("e6", fifo.as_str(), "not a regular file"),
        ("e1", missing.as_str(), "404"),
        ("e2", big.as_str(), "larger than"),
        ("e3", "file:///nonexistent/file", "No such file"),
        ("e4", "file:///etc", "not a regular file"),
    ] {
        let r = post_pod(&d, &file_pod(id, uri));
        assert_eq!(r.status, 400, "{id}: {r:?}");
        assert!(
            r.body.contains("files[0].uri") && r.body.contains(why),
            "{id}: {r:?}"
        );
    }
    let started = Instant::now();
    let r = post_pod(&d, &file_pod("e5", &slow));
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("files[0].uri"), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(14),
        "{:?}",
        started.elapsed()
    );
    // Nothing of the refused pods is left: no record, no file, no staging directory.
    let left: Vec<_> = std::fs::read_dir(d.root.join("pod-files"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["h2"]);
    let r = d.curl("GET", "/list?item=pod", None);
    assert!(!r.body.contains("e1"), "{r:?}");
}
