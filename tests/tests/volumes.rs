//! Volumes end to end, through hyperctl and the REST API of a real hyperd: host directories
//! shared into the VM (written in the container, read on the host; `:ro` refused with EROFS),
//! named volumes that outlive their pod, an image `VOLUME` populated from the image and removed
//! with its pod, a raw ext4 image as a disk across two pods, `hyperctl volume`, and bad input
//! that is a 400 naming the field and leaves nothing behind. Each VM test boots one VM at a
//! time.

use std::path::{Path, PathBuf};
use std::process::Command;

use hyper_tests::daemon::TestDaemon;

/// A directory of the test's own, by its real path (the check refuses symlinked paths, and
/// /tmp may be one).
fn host_dir(d: &TestDaemon, name: &str) -> PathBuf {
    let dir = d.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::canonicalize(dir).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Nothing under the root that volumes would make, and no pod record.
fn assert_nothing_created(d: &TestDaemon) {
    assert!(!d.root.join("volumes").exists(), "a volume dir was made");
    assert!(d.list("pod").is_empty(), "a pod was recorded");
}

fn pod_json(volumes: serde_json::Value, refs: serde_json::Value) -> String {
    serde_json::json!({
        "id": "vols",
        "containers": [{"image": "busybox", "command": ["true"], "volumes": refs}],
        "volumes": volumes,
    })
    .to_string()
}

#[test]
fn bad_volumes_are_a_400_naming_the_field_and_create_nothing() {
    let d = TestDaemon::start();
    d.import_busybox();
    let data = host_dir(&d, "data");
    let link = d.dir.path().join("link");
    std::os::unix::fs::symlink(&data, &link).unwrap();
    let missing = data.join("missing");
    let dotdot = format!("{}/../data", s(&data));
    let one = |v: serde_json::Value| {
        pod_json(
            serde_json::json!([v]),
            serde_json::json!([{"volume": "v", "path": "/data"}]),
        )
    };
    let cases = [
        (
            one(serde_json::json!({"name": "v", "source": s(&missing), "format": "vfs"})),
            "volumes[0].source",
            "no such file or directory",
        ),
        (
            one(serde_json::json!({"name": "v", "source": "relative/dir", "format": "vfs"})),
            "volumes[0].source",
            "must be an absolute path",
        ),
        (
            one(serde_json::json!({"name": "v", "source": dotdot, "format": "vfs"})),
            "volumes[0].source",
            "must not contain ..",
        ),
        (
            one(serde_json::json!({"name": "v", "source": s(&link), "format": "vfs"})),
            "volumes[0].source",
            "symlink",
        ),
        (
            one(
                serde_json::json!({"name": "v", "source": "10.0.0.5:/export", "format": "nas", "fstype": "nfs"}),
            ),
            "volumes[0].format",
            "not supported: the guest has no NFS client",
        ),
        (
            pod_json(
                serde_json::json!([
                    {"name": "a1", "source": s(&data), "format": "vfs"},
                    {"name": "b1", "source": "", "format": ""}
                ]),
                serde_json::json!([
                    {"volume": "a1", "path": "/data"},
                    {"volume": "b1", "path": "/data"}
                ]),
            ),
            "containers[0].volumes[1].path",
            "is mounted there too",
        ),
        (
            serde_json::json!({
                "id": "vols",
                "files": [{"name": "f", "content": "x"}],
                "containers": [{"image": "busybox", "command": ["true"],
                    "files": [{"path": "/etc/f", "filename": "f", "perm": "0999"}]}],
            })
            .to_string(),
            "containers[0].files[0].perm",
            "must be octal",
        ),
    ];
    for (body, field, message) in cases {
        let r = d.curl_body("POST", "/pod/create", &body);
        assert_eq!(r.status, 400, "{body}: {r:?}");
        assert!(
            r.body.contains(&format!("{field}: ")) && r.body.contains(message),
            "{body}: {r:?}"
        );
        assert_nothing_created(&d);
    }
    assert!(!missing.exists());
    // The symlink's message names the real path to use instead.
    let r = d.curl_body(
        "POST",
        "/pod/create",
        &one(serde_json::json!({"name": "v", "source": s(&link), "format": "vfs"})),
    );
    assert!(r.body.contains(s(&data)), "{r:?}");

    // hyperctl's -v: its own mistakes name the flag; the daemon's name the field.
    let out = d.hyperctl(&["create", "-v", "/data", "busybox"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("--volume \"/data\""), "{out:?}");
    let flag = format!("{}:/data", s(&missing));
    let out = d.hyperctl(&["create", "-v", &flag, "busybox"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("containers[0].volumes[0].detail.source")
            && out.stderr.contains("no such file or directory"),
        "{out:?}"
    );
    assert_nothing_created(&d);
    assert!(!missing.exists());
}

#[test]
fn hyperctl_volume_round_trip_and_a_used_volume_stays() {
    let d = TestDaemon::start();
    d.import_busybox();
    assert_eq!(
        d.ok(&["volume", "create", "--label", "team=web", "cache"]),
        "cache\n"
    );
    let ls = d.ok(&["volume", "ls"]);
    let rows: Vec<Vec<&str>> = ls.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows,
        vec![vec!["DRIVER", "VOLUME", "NAME"], vec!["local", "cache"]]
    );
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "cache\n");
    let inspect: serde_json::Value =
        serde_json::from_str(&d.ok(&["volume", "inspect", "cache"])).unwrap();
    let v = &inspect[0];
    assert_eq!(v["Name"], "cache");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"]["team"], "web");
    let mountpoint = d.root.join("volumes/cache/_data");
    assert_eq!(v["Mountpoint"], s(&mountpoint));
    assert!(mountpoint.is_dir());
    assert!(v["CreatedAt"].as_str().unwrap().ends_with('Z'), "{v}");

    // Docker's routes directly: filters, another driver, an unknown filter, a missing volume.
    let r = d.curl(
        "GET",
        "/volumes?filters=%7B%22label%22%3A%5B%22team%3Dweb%22%5D%7D",
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("\"cache\""), "{r:?}");
    let r = d.curl(
        "GET",
        "/volumes?filters=%7B%22label%22%3A%5B%22team%3Ddb%22%5D%7D",
        None,
    );
    assert_eq!(r.body, r#"{"Volumes":[],"Warnings":[]}"#);
    let r = d.curl(
        "GET",
        "/volumes?filters=%7B%22until%22%3A%5B%221h%22%5D%7D",
        None,
    );
    assert_eq!(r.status, 400, "{r:?}");
    let r = d.curl_body("POST", "/volumes/create", r#"{"Name":"x1","Driver":"nfs"}"#);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("Driver"), "{r:?}");
    let r = d.curl_body(
        "POST",
        "/volumes/create",
        r#"{"Name":"x1","DriverOpts":{"o":"bind"}}"#,
    );
    assert_eq!(r.status, 400, "{r:?}");
    let r = d.curl_body("POST", "/volumes/create", r#"{"Name":"../x"}"#);
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(d.curl("GET", "/volumes/nosuch", None).status, 404);

    // A pod that names the volume holds it, even before it starts.
    d.ok(&[
        "create",
        "--name",
        "user",
        "-v",
        "cache:/cache",
        "busybox",
        "true",
    ]);
    let out = d.hyperctl(&["volume", "rm", "cache"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("in use by pod user"), "{out:?}");
    let r = d.curl("DELETE", "/volumes/cache", None);
    assert_eq!(r.status, 409, "{r:?}");
    assert!(mountpoint.is_dir());
    d.ok(&["rm", "user"]);
    assert_eq!(d.ok(&["volume", "rm", "cache"]), "cache\n");
    assert!(!d.root.join("volumes/cache").exists());
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "");
    let out = d.hyperctl(&["volume", "inspect", "cache"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("no such volume: cache"), "{out:?}");
}

#[test]
fn a_symlink_swapped_in_after_create_is_refused_at_start() {
    let d = TestDaemon::start();
    d.import_busybox();
    let data = host_dir(&d, "data");
    let elsewhere = host_dir(&d, "elsewhere");
    let flag = format!("{}:/data", s(&data));
    d.ok(&[
        "create", "--name", "swapped", "-v", &flag, "busybox", "true",
    ]);
    std::fs::remove_dir(&data).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &data).unwrap();
    let out = d.hyperctl(&["start", "swapped"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("containers[0].volumes[0].detail.source")
            && out.stderr.contains("symlink"),
        "{out:?}"
    );
    // Refused before any VM booted.
    assert!(d.list("vm").is_empty());
    assert!(!d.log().contains("vm booted"));
    d.ok(&["rm", "swapped"]);
}

#[test]
fn a_host_dir_is_shared_and_read_only_is_enforced() {
    let d = TestDaemon::start();
    d.import_busybox();
    let data = host_dir(&d, "data");
    std::fs::write(data.join("from-host"), "host\n").unwrap();
    let flag = format!("{}:/data", s(&data));
    let out = d.hyperctl(&[
        "run",
        "-d",
        "--name",
        "rw",
        "-v",
        &flag,
        "busybox",
        "sh",
        "-c",
        "cat /data/from-host; echo guest > /data/from-guest; sleep 600",
    ]);
    assert_eq!(out.code, 0, "{out:?}\n{}", d.log());
    d.wait_until(
        std::time::Duration::from_secs(60),
        "the guest's write",
        || std::fs::read_to_string(data.join("from-guest")).is_ok_and(|s| s == "guest\n"),
    );
    assert_eq!(d.ok(&["logs", "rw"]), "host\n");

    // A container added to the running pod may not use a disk the VM did not boot with.
    let img = data.join("late.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    let body = serde_json::json!({
        "image": "busybox",
        "command": ["true"],
        "volumes": [{"volume": "late", "path": "/late",
                     "detail": {"name": "late", "source": s(&img), "format": "raw"}}],
    })
    .to_string();
    let r = d.curl_body("POST", "/container/create?podId=rw", &body);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("has no disk"), "{r:?}");
    d.ok(&["rm", "rw"]);

    let ro = format!("{}:/data:ro", s(&data));
    let out = d.hyperctl(&[
        "run",
        "--rm",
        "-v",
        &ro,
        "busybox",
        "sh",
        "-c",
        "cat /data/from-guest && echo no > /data/denied",
    ]);
    assert_ne!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "guest\n", "{out:?}");
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
    assert!(!data.join("denied").exists());
}

#[test]
fn a_named_volume_keeps_its_data_across_pod_remove_and_recreate() {
    let d = TestDaemon::start();
    d.import_busybox();
    let out = d.hyperctl(&[
        "run",
        "--rm",
        "-v",
        "keep:/keep",
        "busybox",
        "sh",
        "-c",
        "echo kept > /keep/f",
    ]);
    assert_eq!(out.code, 0, "{out:?}\n{}", d.log());
    assert!(d.list("pod").is_empty());
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "keep\n");
    assert_eq!(
        std::fs::read_to_string(d.root.join("volumes/keep/_data/f")).unwrap(),
        "kept\n"
    );
    let out = d.hyperctl(&[
        "run",
        "--rm",
        "-v",
        "keep:/other",
        "busybox",
        "cat",
        "/other/f",
    ]);
    assert_eq!((out.stdout.as_str(), out.code), ("kept\n", 0), "{out:?}");
    d.ok(&["volume", "rm", "keep"]);
    assert!(!d.root.join("volumes/keep").exists());
}

#[test]
fn an_image_volume_is_populated_from_the_image_and_goes_with_its_pod() {
    let d = TestDaemon::start();
    d.import_busybox();
    let ctx = host_dir(&d, "ctx");
    std::fs::write(ctx.join("seed.txt"), "seed\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY seed.txt /vol/seed.txt\nVOLUME /vol\n",
    )
    .unwrap();
    d.ok(&["build", "-t", "withvol:1", s(&ctx)]);
    let out = d.hyperctl(&[
        "run",
        "--name",
        "img",
        "withvol:1",
        "sh",
        "-c",
        "cat /vol/seed.txt && echo more > /vol/more",
    ]);
    assert_eq!(
        (out.stdout.as_str(), out.code),
        ("seed\n", 0),
        "{out:?}\n{}",
        d.log()
    );
    let names = d.ok(&["volume", "ls", "-q"]);
    let name = names.trim();
    assert!(
        name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit()),
        "{names:?}"
    );
    let data = d.root.join("volumes").join(name).join("_data");
    assert_eq!(
        std::fs::read_to_string(data.join("seed.txt")).unwrap(),
        "seed\n"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("more")).unwrap(),
        "more\n"
    );
    // Held by its pod; removed with it.
    let r = d.curl("DELETE", &format!("/volumes/{name}"), None);
    assert_eq!(r.status, 409, "{r:?}");
    d.ok(&["rm", "img"]);
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "");
    assert!(!d.root.join("volumes").join(name).exists());
}

#[test]
fn a_raw_ext4_image_is_a_disk_that_keeps_data_across_two_pods() {
    let d = TestDaemon::start();
    d.import_busybox();
    let dir = host_dir(&d, "disks");
    let img = dir.join("data.img");
    std::fs::write(&img, vec![0u8; 16 << 20]).unwrap();
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&img)
        .status()
        .expect("run mkfs.ext4");
    assert!(mkfs.success());
    let podfile = |id: &str, script: &str| {
        let file = dir.join(format!("{id}.json"));
        std::fs::write(
            &file,
            serde_json::json!({
                "id": id,
                "containers": [{"image": "busybox", "command": ["sh", "-c", script],
                                "volumes": [{"volume": "disk", "path": "/data"}]}],
                "volumes": [{"name": "disk", "source": s(&img), "format": "raw", "fstype": "ext4"}],
            })
            .to_string(),
        )
        .unwrap();
        file
    };
    let first = podfile(
        "first",
        "echo on-disk > /data/f && grep -q ' /data ext4 ' /proc/mounts",
    );
    let out = d.hyperctl(&["run", "--rm", "--podfile", s(&first)]);
    assert_eq!(out.code, 0, "{out:?}\n{}", d.log());
    let second = podfile("second", "cat /data/f");
    let out = d.hyperctl(&["run", "--rm", "--podfile", s(&second)]);
    assert_eq!(
        (out.stdout.as_str(), out.code),
        ("on-disk\n", 0),
        "{out:?}\n{}",
        d.log()
    );

    // A VM from /vm/create has no disks: such a pod is refused there, the VM left idle.
    let third = podfile("third", "true");
    d.ok(&["create", "--podfile", s(&third)]);
    let vm_id = d.ok(&["vm", "create"]).trim().to_string();
    let out = d.hyperctl(&["start", "--vm", &vm_id, "third"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("has no disk for block volume"),
        "{out:?}"
    );
    assert_eq!(d.list("vm"), vec![vec![vm_id.clone(), "idle".to_string()]]);
    d.ok(&["rm", "third"]);
    d.ok(&["vm", "rm", &vm_id]);
}
