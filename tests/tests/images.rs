//! Images end to end, as a user meets them: a real registry (Debian's `docker-registry` on
//! 127.0.0.1, plain and TLS with basic auth), skopeo as the oracle on the other side, pull and
//! push by tag and digest, the image config applied in a real VM, layers with whiteouts and
//! owners as overlayfs shows them, archives in and out, and faults that leave nothing behind.

use std::path::Path;

use hyper_tests::busybox_rootfs;
use hyper_tests::daemon::{CmdOutput, TestDaemon};
use hyper_tests::oci::{TestImage, TestLayer};
use hyper_tests::proxy::CuttingProxy;
use hyper_tests::registry::TestRegistry;

/// The busybox rootfs as one layer.
fn busybox_layer(dir: &Path) -> TestLayer {
    TestLayer::from_dir(&busybox_rootfs(dir))
}

/// An image whose config sets every default a container takes from it.
fn configured_image(dir: &Path) -> TestImage {
    let app = TestLayer::new()
        .dir("srv", 0o755, 0, 0)
        .dir("srv/app", 0o755, 1000, 1000)
        .file("srv/app/hello", b"from the layer\n", 0o644, 0, 0);
    TestImage::new(vec![busybox_layer(dir), app])
        .entrypoint(&["/bin/sh", "-c"])
        .cmd(&["echo \"$GREETING\"; pwd; id -u; cat hello"])
        .env(&["PATH=/bin", "GREETING=hi from the config"])
        .workdir("/srv/app")
        .user("1000:1000")
        .stop_signal("SIGINT")
        .expose("8080/tcp")
}

fn inspect(d: &TestDaemon, image: &str) -> serde_json::Value {
    let out = d.ok(&["inspect", image]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0].clone()
}

fn assert_fails(out: &CmdOutput, needle: &str) {
    assert_eq!(out.code, 255, "{out:?}");
    assert!(out.stderr.contains(needle), "want {needle:?} in {out:?}");
}

#[test]
fn a_pushed_image_pulls_by_tag_and_digest_and_runs_with_its_config() {
    let reg = TestRegistry::start_plain();
    let d = TestDaemon::start();
    let image = configured_image(d.dir.path());
    let name = format!("{}/app:1", reg.host());
    reg.push_image(&image, "app:1");

    let out = d.ok(&["pull", &name]);
    assert!(out.contains("Pull complete"), "{out}");
    let info = inspect(&d, &name);
    assert_eq!(info["Id"], image.config_digest());
    assert_eq!(
        info["Config"]["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c"])
    );
    assert_eq!(info["Config"]["StopSignal"], "SIGINT");
    assert_eq!(
        info["RootFS"]["Layers"],
        serde_json::json!(image.diff_ids())
    );
    assert_eq!(
        info["RepoDigests"][0],
        format!("{}/app@{}", reg.host(), image.manifest_digest())
    );

    // No command: the image's ENTRYPOINT, CMD, ENV, WORKDIR and USER apply.
    let out = d.hyperctl(&["run", "--rm", &name]);
    assert_eq!(
        (out.stdout.as_str(), out.code),
        ("hi from the config\n/srv/app\n1000\nfrom the layer\n", 0),
        "{out:?}\n{}",
        d.log()
    );

    // The pod spec overrides each as Docker does: a command replaces CMD (the ENTRYPOINT
    // stays), envs win by name, workdir and user replace the image's.
    let pod = d.dir.path().join("pod.json");
    std::fs::write(
        &pod,
        format!(
            r#"{{"id":"over","containers":[{{"image":"{name}","command":["echo $GREETING; pwd; id -u"],
            "envs":[{{"env":"GREETING","value":"from the spec"}}],"workdir":"/tmp","user":{{"name":"0"}}}}]}}"#
        ),
    )
    .unwrap();
    let out = d.hyperctl(&["run", "--rm", "--podfile", pod.to_str().unwrap()]);
    assert_eq!(
        (out.stdout.as_str(), out.code),
        ("from the spec\n/tmp\n0\n", 0),
        "{out:?}\n{}",
        d.log()
    );

    // Our push, read back by skopeo: the same manifest, so the same digest.
    let copy = format!("{}/copy:2", reg.host());
    d.ok(&["tag", &name, &copy]);
    let out = d.ok(&["push", &copy]);
    assert!(
        out.contains(&format!("2: digest: {}", image.manifest_digest())),
        "{out}"
    );
    assert_eq!(reg.inspect_raw("copy:2"), image.manifest());
    // A second push finds every layer there already.
    let out = d.ok(&["push", &copy]);
    assert!(out.contains("Layer already exists"), "{out}");

    // Removed, then pulled back by digest: the same image.
    d.ok(&["rmi", &name, &copy]);
    assert!(d.ok(&["images", "-q"]).trim().is_empty());
    let by_digest = format!("{}/app@{}", reg.host(), image.manifest_digest());
    d.ok(&["pull", &by_digest]);
    assert_eq!(inspect(&d, &by_digest)["Id"], image.config_digest());
}

#[test]
fn a_tls_registry_with_basic_auth_wants_a_login() {
    let reg = TestRegistry::start_tls_auth("alice", "s3cret");
    let certs = reg.certs_dir();
    let d = TestDaemon::start_with(&["--certs-dir", certs.to_str().unwrap()]);
    let image = TestImage::new(vec![TestLayer::new().file("hello", b"hi\n", 0o644, 0, 0)]);
    reg.push_image(&image, "private:1");
    let name = format!("{}/private:1", reg.host());

    // /auth checks the credentials against the registry.
    let body = |password: &str| {
        format!(
            r#"{{"username":"alice","password":"{password}","serveraddress":"{}"}}"#,
            reg.host()
        )
    };
    let resp = d.curl_body("POST", "/auth", &body("wrong"));
    assert_eq!(resp.status, 401, "{resp:?}");
    assert!(
        resp.body.to_lowercase().contains("unauthorized"),
        "{resp:?}"
    );
    let resp = d.curl_body("POST", "/auth", &body("s3cret"));
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(resp.body.contains("Login Succeeded"), "{resp:?}");

    // Anonymous pull: refused, with the registry's reason, and nothing listed.
    assert_fails(&d.hyperctl(&["pull", &name]), "unauthorized");
    assert!(d.ok(&["images", "-q"]).trim().is_empty());

    let out = d.hyperctl(&["login", "-u", "alice", "-p", "wrong", &reg.host()]);
    assert_fails(&out, "unauthorized");
    d.ok(&["login", "-u", "alice", "-p", "s3cret", &reg.host()]);
    d.ok(&["pull", &name]);
    assert_eq!(inspect(&d, &name)["Id"], image.config_digest());
    let pushed = format!("{}/mine:1", reg.host());
    d.ok(&["tag", &name, &pushed]);
    d.ok(&["push", &pushed]);
    assert_eq!(reg.inspect_raw("mine:1"), image.manifest());
    d.ok(&["logout", &reg.host()]);
    assert_fails(&d.hyperctl(&["push", &pushed]), "unauthorized");
}

#[test]
fn a_multi_platform_index_pulls_linux_amd64_and_other_platforms_only_are_refused() {
    let reg = TestRegistry::start_plain();
    let d = TestDaemon::start();
    let layer = |s: &str| TestLayer::new().file("platform", s.as_bytes(), 0o644, 0, 0);
    let amd64 = TestImage::new(vec![layer("amd64")]).platform("linux", "amd64");
    let arm64 = TestImage::new(vec![layer("arm64")])
        .platform("linux", "arm64")
        .variant("v8");
    reg.push_images(&[arm64.clone(), amd64.clone()], "multi:1");
    reg.push_images(std::slice::from_ref(&arm64), "armonly:1");

    let name = format!("{}/multi:1", reg.host());
    d.ok(&["pull", &name]);
    let info = inspect(&d, &name);
    assert_eq!(info["Id"], amd64.config_digest());
    assert_eq!(info["Architecture"], "amd64");
    // The index digest is what the user asked for by tag, as Docker reports it.
    assert_eq!(
        info["RepoDigests"][0],
        format!(
            "{}/multi@{}",
            reg.host(),
            TestImage::index_digest(&[arm64.clone(), amd64])
        )
    );

    let out = d.hyperctl(&["pull", &format!("{}/armonly:1", reg.host())]);
    assert_fails(&out, "linux/arm64");
    assert_eq!(d.ok(&["images", "-q"]).lines().count(), 1);
}

#[test]
fn registry_faults_leave_no_partial_image_and_a_retry_succeeds() {
    let mut reg = TestRegistry::start_plain();
    let d = TestDaemon::start();
    let image = TestImage::new(vec![
        TestLayer::new().file("a", &[7u8; 300_000], 0o644, 0, 0),
        TestLayer::new().file("b", &[9u8; 300_000], 0o644, 0, 0),
    ]);
    reg.push_image(&image, "faulty:1");
    let name = format!("{}/faulty:1", reg.host());
    let layer = image.layer_digests()[1].clone();
    let blob = reg.blob_path(&layer);
    let good = std::fs::read(&blob).unwrap();
    let nothing_listed = |d: &TestDaemon| assert!(d.ok(&["images", "-q", "-a"]).trim().is_empty());

    // A blob whose content does not match its digest.
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    std::fs::write(&blob, &bad).unwrap();
    assert_fails(&d.hyperctl(&["pull", &name]), "digest");
    nothing_listed(&d);

    // A truncated layer.
    std::fs::write(&blob, &good[..good.len() / 2]).unwrap();
    let out = d.hyperctl(&["pull", &name]);
    assert_eq!(out.code, 255, "{out:?}");
    nothing_listed(&d);

    // More bytes than the manifest gives: cut off there, never stored.
    let mut long = good.clone();
    long.extend_from_slice(&[0u8; 4096]);
    std::fs::write(&blob, &long).unwrap();
    assert_fails(&d.hyperctl(&["pull", &name]), "more than");
    nothing_listed(&d);

    // The registry gone.
    std::fs::write(&blob, &good).unwrap();
    reg.stop();
    let out = d.hyperctl(&["pull", &name]);
    assert_fails(&out, &reg.host());
    nothing_listed(&d);
    assert_eq!(d.curl("GET", "/_ping", None).status, 200);

    // Back: the same pull works, and reuses what the failed ones stored.
    reg.resume();
    let out = d.ok(&["pull", &name]);
    assert!(out.contains("Already exists"), "{out}");
    assert_eq!(inspect(&d, &name)["Id"], image.config_digest());
}

#[test]
fn a_transfer_cut_halfway_is_an_error_and_the_next_pull_completes() {
    let reg = TestRegistry::start_plain();
    // The proxy's port is another host to hyperd: plain HTTP is fine, it is loopback.
    let proxy = CuttingProxy::start(&reg.host(), 1_000_000);
    let d = TestDaemon::start();
    // 3 MB of data no compressor can shrink, so the cut falls inside the layer blob.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..3_000_000)
        .map(|_| {
            // xorshift64: bytes gzip cannot shrink.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let image = TestImage::new(vec![TestLayer::new().file("noise", &noise, 0o644, 0, 0)]);
    reg.push_image(&image, "big:1");
    let name = format!("{}/big:1", proxy.host());

    let out = d.hyperctl(&["pull", &name]);
    assert_eq!(out.code, 255, "{out:?}");
    assert!(proxy.cuts() > 0, "the proxy never cut a transfer");
    assert!(d.ok(&["images", "-q", "-a"]).trim().is_empty());
    assert_eq!(d.curl("GET", "/_ping", None).status, 200);

    proxy.heal();
    d.ok(&["pull", &name]);
    assert_eq!(inspect(&d, &name)["Id"], image.config_digest());
}

#[test]
fn layers_unpack_as_overlayfs_shows_them_and_archives_round_trip() {
    let d = TestDaemon::start();
    let dir = d.dir.path();
    // Layer 1: a base with files to delete, a dir to replace by a file, a dir to make opaque,
    // and owners and modes a container must keep.
    let base = busybox_layer(dir)
        .dir("data", 0o755, 0, 0)
        .file("data/keep", b"keep\n", 0o644, 0, 0)
        .file("data/gone", b"gone\n", 0o644, 0, 0)
        .dir("dir-to-file", 0o755, 0, 0)
        .file("dir-to-file/inside", b"x\n", 0o644, 0, 0)
        .dir("opq", 0o755, 0, 0)
        .file("opq/old", b"old\n", 0o644, 0, 0)
        .file("owned", b"#!/bin/sh\n", 0o4755, 1000, 1000)
        .dir("shared", 0o2775, 0, 50);
    // Layer 2: deletes, replaces, and makes opq opaque while adding to it.
    let changes = TestLayer::new()
        .whiteout("data/gone")
        .whiteout("dir-to-file")
        .file("dir-to-file", b"now a file\n", 0o644, 0, 0)
        .file("opq/new", b"new\n", 0o644, 0, 0)
        .opaque("opq")
        .symlink("link", "/data/keep")
        .hardlink("hard-to-link", "link")
        .symlink("dangling", "/no/such/file")
        .hardlink("hard-to-dangling", "dangling");
    let top = TestLayer::new().file("data/late", b"late\n", 0o600, 1000, 1000);
    let image = TestImage::new(vec![base, changes, top]);
    let archive = dir.join("layers.tar");
    image.write_docker_archive(&archive, "layers:1");
    let out = d.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(out.contains("Loaded image: layers:1"), "{out}");
    assert_eq!(inspect(&d, "layers:1")["Id"], image.config_digest());

    let script = "ls /data; cat /dir-to-file; ls /opq; stat -c '%n %u:%g %a' /owned /shared /data/late; \
                  readlink /hard-to-link; readlink /hard-to-dangling";
    let out = d.hyperctl(&["run", "--rm", "layers:1", "sh", "-c", script]);
    assert_eq!(
        out.stdout,
        "keep\nlate\nnow a file\nnew\n/owned 1000:1000 4755\n/shared 0:50 2775\n/data/late 1000:1000 600\n\
         /data/keep\n/no/such/file\n",
        "{out:?}\n{}",
        d.log()
    );
    assert_eq!(out.code, 0);

    // save | load: the same id and diff ids, in both formats; skopeo reads the OCI one.
    for format in ["docker", "oci"] {
        let saved = dir.join(format!("saved-{format}.tar"));
        d.ok(&[
            "save",
            "-f",
            format,
            "-o",
            saved.to_str().unwrap(),
            "layers:1",
        ]);
        if format == "oci" {
            let out = std::process::Command::new("skopeo")
                .arg("inspect")
                .arg(format!("oci-archive:{}", saved.display()))
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
        d.ok(&["rmi", "layers:1"]);
        d.ok(&["load", "-i", saved.to_str().unwrap()]);
        let info = inspect(&d, "layers:1");
        assert_eq!(info["Id"], image.config_digest(), "{format}");
        assert_eq!(
            info["RootFS"]["Layers"],
            serde_json::json!(image.diff_ids())
        );
    }
}

#[test]
fn an_archive_written_by_skopeo_loads_and_runs() {
    let reg = TestRegistry::start_plain();
    let d = TestDaemon::start();
    let image = configured_image(d.dir.path()).cmd(&["echo loaded by skopeo"]);
    reg.push_image(&image, "sk:1");
    let archive = d.dir.path().join("skopeo.tar");
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--insecure-policy", "--src-tls-verify=false"])
        .arg(format!("docker://{}/sk:1", reg.host()))
        .arg(format!("docker-archive:{}:sk:1", archive.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // Compressed on the way in: load detects it.
    let gz = d.dir.path().join("skopeo.tar.gz");
    let status = std::process::Command::new("gzip")
        .arg("-k")
        .arg(&archive)
        .status()
        .unwrap();
    assert!(status.success());
    let out = d.ok(&["load", "-i", gz.to_str().unwrap()]);
    assert!(out.contains("Loaded image: sk:1"), "{out}");
    assert_eq!(inspect(&d, "sk:1")["Id"], image.config_digest());
    let out = d.hyperctl(&["run", "--rm", "sk:1"]);
    assert_eq!(
        (out.stdout.as_str(), out.code),
        ("loaded by skopeo\n", 0),
        "{out:?}"
    );
}

#[test]
fn bad_image_requests_are_4xx_and_leave_nothing() {
    let d = TestDaemon::start();
    // The state dir and the database are the owner's only.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&d.root), 0o700);
    assert_eq!(mode(&d.root.join("hyperd.db")), 0o600);

    let reference = d.curl("POST", "/image/create?imageName=Not/Valid", None);
    assert_eq!(reference.status, 400, "{reference:?}");
    assert!(reference.body.contains("Not/Valid"), "{reference:?}");
    let auth = "garbage%%";
    let out = std::process::Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--unix-socket"])
        .arg(&d.socket)
        .args(["-X", "POST", "-H", &format!("X-Registry-Auth: {auth}")])
        .arg("http://hyperd/image/create?imageName=127.0.0.1:1/x")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("400"), "{text}");
    assert!(text.contains("X-Registry-Auth"), "{text}");

    // A tarball with an entry escaping the layer: refused by name, nothing written.
    let evil = d.dir.path().join("evil.tar");
    let status = std::process::Command::new("tar")
        .args(["-cf"])
        .arg(&evil)
        .args(["-P", "--transform", "s,^,../,", "-C", "/etc", "hostname"])
        .status()
        .unwrap();
    assert!(status.success());
    let resp = d.curl("POST", "/image/create?fromSrc=-&repo=evil", Some(&evil));
    assert_eq!(resp.status, 400, "{resp:?}");
    assert!(resp.body.contains("../hostname"), "{resp:?}");
    assert!(!d.root.parent().unwrap().join("hostname").exists());

    // Garbage as an archive: the error in the stream, hyperctl exits 255.
    let junk = d.dir.path().join("junk.tar");
    std::fs::write(&junk, b"not an archive".repeat(100)).unwrap();
    let out = d.hyperctl(&["load", "-i", junk.to_str().unwrap()]);
    assert_eq!(out.code, 255, "{out:?}");
    assert!(d.ok(&["images", "-q", "-a"]).trim().is_empty());

    // Unknown images: 404; an image a container uses: 409 until the pod is gone.
    assert_eq!(d.curl("DELETE", "/image?imageId=nosuch", None).status, 404);
    assert_eq!(d.curl("GET", "/images/save?names=nosuch", None).status, 404);
    d.import_busybox();
    d.ok(&["create", "--name", "user", "busybox", "true"]);
    let resp = d.curl("DELETE", "/image?imageId=busybox", None);
    assert_eq!(resp.status, 409, "{resp:?}");
    assert!(resp.body.contains("user"), "{resp:?}");
    // With force the name goes but the image stays for its container; then there is
    // nothing left to untag, and force or not the answer says who uses it.
    let id = inspect(&d, "busybox")["Id"].as_str().unwrap().to_string();
    d.ok(&["rmi", "-f", "busybox"]);
    let resp = d.curl("DELETE", &format!("/image?imageId={id}&force=1"), None);
    assert_eq!(resp.status, 409, "{resp:?}");
    assert!(resp.body.contains("user"), "{resp:?}");
    d.ok(&["rm", "user"]);
    assert_eq!(
        d.curl("DELETE", &format!("/image?imageId={id}"), None)
            .status,
        200
    );
    // Nothing of the image remains on disk.
    for sub in ["snapshots", "content/blobs/sha256", "tmp"] {
        let left: Vec<_> = std::fs::read_dir(d.root.join(sub)).unwrap().collect();
        assert!(left.is_empty(), "{sub}: {left:?}");
    }
}
