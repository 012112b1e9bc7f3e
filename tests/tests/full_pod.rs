//! The realistic full pod of the hyperd 1.1 reference (§2.11), adapted to local images, as a
//! user sees it: it is created and started as written, and every field shows in the guest (or
//! on the host where that is where it acts). What the adaptation changes, and why:
//!
//! - images: `nginx:1.15` and `example/app:2.3` are the test's busybox image under those names,
//!   so each container gets a command (busybox httpd stands in for nginx, `nc` for the app);
//! - host paths live under the test's temp dir; `dbdisk` is an ext4 image made with mkfs.ext4;
//! - the `shared` volume (`nas`, an NFS export) and `portmappingWhiteLists` are left out: hyperd
//!   refuses both with a 400 naming them (no NFS client in the guest, no in-guest firewall), as
//!   `tests/tests/spec_fields.rs` shows;
//! - `additionalGroups` names `staff`, a group the test image has (it has no `adm`);
//! - the service's backend at 192.168.123.20:6379 is a second pod given that address.
//!
//! One VM serves every check (a TCG boot is the expensive part); each check names its field, and
//! the test fails listing every field whose check failed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hyper_tests::daemon::TestDaemon;
use hyper_tests::netns::NetNs;

/// hyperd in a network namespace of its own. Fields drop in order: hyperd (and its shims)
/// first, then the namespace.
struct Net {
    d: TestDaemon,
    ns: NetNs,
}

/// The outcome of each field's check, in order.
#[derive(Default)]
struct Checks {
    failed: Vec<String>,
    passed: Vec<&'static str>,
}

impl Checks {
    fn check(&mut self, field: &'static str, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => self.passed.push(field),
            Err(why) => self.failed.push(format!("{field}: {why}")),
        }
    }

    fn expect_eq(&mut self, field: &'static str, got: &str, want: &str) {
        let outcome = if got.trim() == want {
            Ok(())
        } else {
            Err(format!("got {got:?}, want {want:?}"))
        };
        self.check(field, outcome);
    }

    fn expect_contains(&mut self, field: &'static str, got: &str, wants: &[&str]) {
        let missing: Vec<&&str> = wants.iter().filter(|w| !got.contains(**w)).collect();
        let outcome = if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("{got:?} lacks {missing:?}"))
        };
        self.check(field, outcome);
    }
}

impl Net {
    /// `hyperctl exec CONTAINER sh -c SCRIPT`: exit code, stdout and stderr together.
    fn sh(&self, container: &str, script: &str) -> (i32, String) {
        let out = self.d.hyperctl(&["exec", container, "sh", "-c", script]);
        (out.code, format!("{}{}", out.stdout, out.stderr))
    }

    /// Stdout of a script that must succeed (its failure is the check's failure).
    fn out(&self, container: &str, script: &str) -> Result<String, String> {
        match self.sh(container, script) {
            (0, out) => Ok(out.trim().to_string()),
            (code, out) => Err(format!("`{script}` in {container} exited {code}: {out}")),
        }
    }

    /// What a TCP server at `addr` (seen from the namespace) sends to a client that sends
    /// `request`, retried until it holds `want` or 30 s passed.
    fn read_from(
        &self,
        addr: SocketAddr,
        request: &'static [u8],
        want: &str,
    ) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.ns.run(move || {
                let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
                    .map_err(|e| format!("connect {addr}: {e}"))?;
                conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                conn.write_all(request).map_err(|e| format!("send: {e}"))?;
                let mut answer = String::new();
                // A server that closes first (nc -e) may reset the connection: keep what came.
                let _ = conn.read_to_string(&mut answer);
                Ok::<_, String>(answer)
            });
            match got {
                Ok(answer) if answer.contains(want) => return Ok(()),
                _ if Instant::now() > deadline => return Err(format!("last answer: {got:?}")),
                _ => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn the_pod(dir: &Path, nginx_script: &str, app_script: &str) -> serde_json::Value {
    serde_json::json!({
      "id": "web-1",
      "hostname": "web-1",
      "labels": { "app": "shop", "tier": "frontend" },
      "resource": { "vcpu": 2, "memory": 512 },
      "tty": false,
      "restartPolicy": "never",
      "log": { "type": "json-file", "config": { "max-size": "10m", "max-file": "3" } },
      "dns": ["8.8.8.8", "1.1.1.1"],
      "dnsSearch": ["svc.local"],
      "dnsOptions": ["ndots:2"],
      "portmappings": [
        { "containerPort": "80",        "hostPort": "8080",       "protocol": "tcp" },
        { "containerPort": "9000-9009", "hostPort": "19000-19009", "protocol": "tcp" }
      ],
      "interfaces": [ { "mtu": 1450 } ],
      "services": [
        { "serviceIP": "10.254.0.10", "protocol": "tcp", "servicePort": 6379,
          "hosts": [ { "hostIP": "192.168.123.20", "hostPort": 6379 } ] }
      ],
      "volumes": [
        { "name": "html",   "source": dir.join("srv/www/html"), "format": "vfs" },
        { "name": "cache",  "source": "",                      "format": "" },
        { "name": "dbdisk", "source": dir.join("db.img"), "format": "raw", "fstype": "ext4",
          "cache": "none" }
      ],
      "files": [
        { "name": "nginx.conf", "encoding": "raw",
          "content": "server { listen 80; root /usr/share/nginx/html; }\n" },
        { "name": "token", "encoding": "base64", "content": "c2VjcmV0LXRva2VuCg==" }
      ],
      "containers": [
        {
          "name": "nginx",
          "image": "nginx:1.15",
          "command": ["sh", "-c", nginx_script],
          "workdir": "/",
          "envs": [ { "env": "TZ", "value": "UTC" } ],
          "readOnly": false,
          "StopSignal": "SIGQUIT",
          "ulimits": [ { "Name": "nofile", "Hard": 65536, "Soft": 65536 } ],
          "labels": { "role": "proxy" },
          "volumes": [
            { "volume": "html",  "path": "/usr/share/nginx/html", "readOnly": true },
            { "volume": "cache", "path": "/var/cache/nginx" }
          ],
          "files": [
            { "path": "/etc/nginx/conf.d/default.conf", "filename": "nginx.conf", "perm": "0644" }
          ]
        },
        {
          "name": "app",
          "image": "example/app:2.3",
          "entrypoint": ["/bin/sh", "-c"],
          "command": [app_script],
          "user": { "name": "app", "group": "app", "additionalGroups": ["staff"] },
          "volumes": [
            { "volume": "dbdisk", "path": "/data" },
            { "volume": "scratch", "path": "/scratch",
              "detail": { "name": "scratch", "source": dir.join("scratch-web-1"),
                          "format": "vfs" } }
          ],
          "files": [
            { "path": "/run/secrets/", "filename": "token", "perm": "0600", "user": "1000",
              "group": "1000" }
          ]
        }
      ]
    })
}

#[test]
fn the_full_pod_of_the_reference_does_what_each_field_says() {
    let ns = NetNs::new("fullpod");
    let d = TestDaemon::start_in(&ns, &[]);
    let net = Net { d, ns };
    let d = &net.d;
    d.import_busybox();
    for (repo, tag) in [("nginx", "1.15"), ("example/app", "2.3")] {
        let r = d.curl(
            "POST",
            &format!("/image/tag?imageId=busybox:latest&repo={repo}&tag={tag}"),
            None,
        );
        assert_eq!(r.status, 201, "tag {repo}:{tag}: {r:?}");
    }

    // The host side of the volumes.
    let dir = d.dir.path().join("host");
    std::fs::create_dir_all(dir.join("srv/www/html")).unwrap();
    std::fs::write(dir.join("srv/www/html/index.html"), "shop front page\n").unwrap();
    std::fs::create_dir_all(dir.join("scratch-web-1")).unwrap();
    run(Command::new("chown")
        .arg("1000:1000")
        .arg(dir.join("scratch-web-1")));
    let image = dir.join("db.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "root_owner=1000:1000"])
        .arg(&image));

    // The service's backend: a pod at the address the spec names.
    let backend = r#"{"id":"redis","interfaces":[{"ip":"192.168.123.20/24"}],
        "containers":[{"name":"redis","image":"busybox",
                       "command":["nc","-ll","-p","6379","-e","echo","PONG"]}]}"#;
    let r = d.curl_body("POST", "/pod/create", backend);
    assert!(r.status < 300, "create redis: {r:?}\n{}", d.log());
    let r = d.curl("POST", "/pod/start?podId=redis", None);
    assert_eq!(r.status, 200, "start redis: {r:?}\n{}", d.log());

    let nginx = "echo nginx-started; \
        trap 'echo got-QUIT > /var/cache/nginx/stopped; exit 0' QUIT; \
        httpd -f -p 80 -h /usr/share/nginx/html & wait; wait";
    let app = "trap 'exit 0' TERM; nc -ll -p 9000 -e echo app-9000 & \
        while :; do sleep 3600 & wait; done";
    let pod = the_pod(&dir, nginx, app).to_string();
    let r = d.curl_body("POST", "/pod/create", &pod);
    assert!(r.status < 300, "create web-1: {r:?}\n{}", d.log());
    let r = d.curl("POST", "/pod/start?podId=web-1", None);
    assert_eq!(r.status, 200, "start web-1: {r:?}\n{}", d.log());

    let mut c = Checks::default();

    // Pod level.
    c.expect_eq(
        "hostname",
        &net.out("nginx", "hostname").unwrap_or_default(),
        "web-1",
    );
    let listed = |query: &str| {
        let r = d.curl("GET", &format!("/list?item=pod&{query}"), None);
        r.body
    };
    c.check(
        "labels",
        match (listed("label=app=shop"), listed("label=app=other")) {
            (hit, miss) if hit.contains("web-1") && !miss.contains("web-1") => Ok(()),
            (hit, miss) => Err(format!("label=app=shop: {hit}; label=app=other: {miss}")),
        },
    );
    c.expect_eq(
        "resource.vcpu",
        &net.out("nginx", "nproc").unwrap_or_default(),
        "2",
    );
    c.check(
        "resource.memory",
        net.out("nginx", "awk '/MemTotal/ {print $2}' /proc/meminfo")
            .and_then(|kb| kb.parse::<u64>().map_err(|e| format!("{kb:?}: {e}")))
            .and_then(|kb| match kb {
                400_000..=524_288 => Ok(()),
                other => Err(format!("MemTotal {other} kB for 512 MiB")),
            }),
    );
    let logs = d.hyperctl(&["logs", "nginx"]);
    c.expect_contains("log", &logs.stdout, &["nginx-started"]);
    let resolv = net.out("nginx", "cat /etc/resolv.conf").unwrap_or_default();
    c.expect_contains(
        "dns",
        &resolv,
        &["nameserver 8.8.8.8", "nameserver 1.1.1.1"],
    );
    c.expect_contains("dnsSearch", &resolv, &["search svc.local"]);
    c.expect_contains("dnsOptions", &resolv, &["options ndots:2"]);
    c.check(
        "portmappings[0] (8080→80)",
        net.read_from(
            "127.0.0.1:8080".parse().unwrap(),
            b"GET /index.html HTTP/1.0\r\n\r\n",
            "shop front page",
        ),
    );
    c.check(
        "portmappings[1] (19000-19009→9000-9009)",
        net.read_from("127.0.0.1:19000".parse().unwrap(), b"", "app-9000"),
    );
    c.expect_eq(
        "interfaces[0].mtu",
        &net.out("nginx", "cat /sys/class/net/eth0/mtu")
            .unwrap_or_default(),
        "1450",
    );
    c.check("services", {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match net.out("nginx", "nc -w 3 10.254.0.10 6379 </dev/null") {
                Ok(out) if out == "PONG" => break Ok(()),
                got if Instant::now() > deadline => break Err(format!("last: {got:?}")),
                _ => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    });

    // Volumes.
    c.check(
        "volumes[html] readOnly",
        match net.sh("nginx", "touch /usr/share/nginx/html/x") {
            (0, _) => Err("a write succeeded".into()),
            (_, out) if out.contains("Read-only file system") => Ok(()),
            (code, out) => Err(format!("exit {code}: {out}")),
        },
    );
    c.check(
        "volumes[cache] (named)",
        net.out("nginx", "echo cached > /var/cache/nginx/f")
            .and_then(|_| {
                let f = d.root.join("volumes/cache/_data/f");
                match std::fs::read_to_string(&f) {
                    Ok(s) if s == "cached\n" => Ok(()),
                    other => Err(format!("{}: {other:?}", f.display())),
                }
            }),
    );
    c.expect_contains(
        "volumes[dbdisk] (raw ext4)",
        &net.out("app", "echo kept > /data/f && grep ' /data ' /proc/mounts")
            .unwrap_or_else(|e| e),
        &["ext4"],
    );
    c.check(
        "volumes[scratch] (inline detail)",
        net.out("app", "echo scratched > /scratch/f").and_then(|_| {
            match std::fs::read_to_string(dir.join("scratch-web-1/f")) {
                Ok(s) if s == "scratched\n" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }),
    );

    // Files.
    c.expect_eq(
        "files[nginx.conf] (raw, 0644)",
        &net.out(
            "nginx",
            "stat -c '%a %u:%g' /etc/nginx/conf.d/default.conf && cat /etc/nginx/conf.d/default.conf",
        )
        .unwrap_or_else(|e| e),
        "644 0:0\nserver { listen 80; root /usr/share/nginx/html; }",
    );
    c.expect_eq(
        "files[token] (base64, 0600, 1000:1000, into a directory)",
        &net.out(
            "app",
            "stat -c '%a %u:%g' /run/secrets/token && cat /run/secrets/token",
        )
        .unwrap_or_else(|e| e),
        "600 1000:1000\nsecret-token",
    );

    // Container level. An exec runs as the container's main process would (its user,
    // directory, environment and limits); PID 1 in a container is the agent's small init,
    // which runs the main process as its child.
    c.expect_eq(
        "containers[nginx].workdir",
        &net.out("nginx", "pwd").unwrap_or_default(),
        "/",
    );
    c.expect_contains(
        "containers[nginx].envs",
        &net.out("nginx", "env").unwrap_or_default(),
        &["TZ=UTC"],
    );
    c.check(
        "containers[nginx].readOnly false",
        net.out("nginx", "touch /written && echo ok").map(|_| ()),
    );
    c.expect_contains(
        "containers[nginx].ulimits",
        &net.out("nginx", "grep 'Max open files' /proc/1/limits")
            .unwrap_or_default(),
        &["65536                65536"],
    );
    let info = d.curl("GET", "/container/info?container=nginx", None);
    let by_label = d.curl("GET", "/list?item=container&label=role=proxy", None);
    c.check(
        "containers[nginx].labels",
        if info.body.contains(r#""role":"proxy""#)
            && by_label.body.contains("nginx")
            && !by_label.body.contains("app")
        {
            Ok(())
        } else {
            Err(format!("info: {}; list: {}", info.body, by_label.body))
        },
    );
    c.expect_contains(
        "containers[app].entrypoint+command",
        &net.out(
            "app",
            "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done",
        )
        .unwrap_or_default(),
        &["/bin/sh -c trap 'exit 0' TERM; nc -ll -p 9000"],
    );
    let status = net
        .out("app", "grep -E '^(Uid|Gid|Groups)' /proc/1/status")
        .unwrap_or_default();
    let ids: Vec<Vec<&str>> = status
        .lines()
        .map(|l| l.split_whitespace().skip(1).collect())
        .collect();
    c.check(
        "containers[app].user (app:app + staff)",
        match ids.as_slice() {
            [uid, gid, groups]
                if uid[0] == "1000" && gid[0] == "1000" && groups.contains(&"50") =>
            {
                Ok(())
            }
            _ => Err(status.clone()),
        },
    );

    // StopSignal shows when the pod stops: the trap writes into the named volume.
    let r = d.curl("POST", "/pod/stop?podId=web-1", None);
    assert_eq!(r.status, 200, "stop web-1: {r:?}\n{}", d.log());
    c.check(
        "containers[nginx].StopSignal",
        match std::fs::read_to_string(d.root.join("volumes/cache/_data/stopped")) {
            Ok(s) if s == "got-QUIT\n" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    // The disk's data stays in the image once the VM is gone.
    let cat = Command::new("debugfs")
        .args(["-R", "cat /f"])
        .arg(&image)
        .output()
        .unwrap();
    c.expect_eq(
        "volumes[dbdisk] keeps data",
        &String::from_utf8_lossy(&cat.stdout),
        "kept",
    );

    for pod in ["web-1", "redis"] {
        let r = d.curl("DELETE", &format!("/pod?podId={pod}"), None);
        assert!(r.status < 300, "remove {pod}: {r:?}");
    }
    eprintln!("fields shown: {}", c.passed.join(", "));
    assert!(
        c.failed.is_empty(),
        "{} field(s) not honoured:\n{}\n{}",
        c.failed.len(),
        c.failed.join("\n"),
        d.log()
    );
}
