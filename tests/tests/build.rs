//! `POST /image/build` end to end, with no registry: a `FROM scratch` base from a busybox
//! rootfs tar, images built on it with every RUN in a real build VM and then run in pods; the
//! cache (the same context in four compressions is one image id, an unchanged rebuild boots no
//! VM); and bad input that fails in the stream leaving no image, VM, mount or temp dir.

use std::path::{Path, PathBuf};
use std::process::Command;

use hyper_tests::daemon::TestDaemon;
use hyper_tests::oci::{RawEntry, raw_tar};
use hyper_tests::{busybox_rootfs, processes_mentioning};

/// A build's answer: the HTTP status and the stream's messages.
struct Built {
    status: u16,
    messages: Vec<serde_json::Value>,
}

impl Built {
    /// Every `stream` text, joined.
    fn text(&self) -> String {
        self.messages
            .iter()
            .filter_map(|m| m["stream"].as_str())
            .collect()
    }

    fn id(&self) -> Option<String> {
        self.messages
            .iter()
            .find_map(|m| m["aux"]["ID"].as_str().map(String::from))
    }

    fn error(&self) -> Option<&serde_json::Value> {
        self.messages.iter().find(|m| m.get("error").is_some())
    }

    fn expect_ok(&self, d: &TestDaemon) -> String {
        assert_eq!(self.status, 200, "{}", self.text());
        match (self.error(), self.id()) {
            (None, Some(id)) => id,
            _ => panic!(
                "build failed: {:?}\n{}\nhyperd log:\n{}",
                self.error(),
                self.text(),
                d.log()
            ),
        }
    }
}

/// Writes `files` (path → contents) into a fresh context dir.
fn context(d: &TestDaemon, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = d.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for (path, contents) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
    }
    dir
}

/// Tars `dir` with GNU tar: `flag` "" (plain), "z", "j" or "J".
fn tar(dir: &Path, flag: &str) -> PathBuf {
    let out = dir.with_extension(format!("tar{flag}"));
    let status = Command::new("tar")
        .arg(format!("-c{flag}f"))
        .arg(&out)
        .arg("-C")
        .arg(dir)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    out
}

fn build(d: &TestDaemon, body: &Path, query: &str) -> Built {
    let resp = d.curl("POST", &format!("/image/build?{query}"), Some(body));
    let messages = if resp.status == 200 {
        resp.body
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect()
    } else {
        vec![serde_json::json!({ "http": resp.body })]
    };
    Built {
        status: resp.status,
        messages,
    }
}

/// `FROM scratch` + `ADD` of a busybox rootfs tar, tagged `base:1`.
/// Posts the context `ctx` as a build tagged `tag` with curl (streaming), and reads its answer
/// until a line contains `marker` (a RUN's output): the build is then inside its VM. Returns
/// curl, to kill as a client that goes away, and whether the marker came.
fn build_until(d: &TestDaemon, ctx: &Path, tag: &str, marker: &str) -> (std::process::Child, bool) {
    use std::io::BufRead as _;
    let body = tar(ctx, "");
    let mut curl = Command::new("curl")
        .args(["-sN", "--unix-socket"])
        .arg(&d.socket)
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .arg(format!("http://hyperd/image/build?t={tag}"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read through a borrow: curl keeps its stdout pipe, so it lives on until killed.
    let lines = std::io::BufReader::new(curl.stdout.as_mut().unwrap()).lines();
    let seen = lines.map_while(Result::ok).any(|l| l.contains(marker));
    (curl, seen)
}

fn base_image(d: &TestDaemon) -> String {
    let rootfs = busybox_rootfs(&d.dir.path().join("bb"));
    let ctx = d.dir.path().join("base-ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let status = Command::new("tar")
        .arg("-cf")
        .arg(ctx.join("rootfs.tar"))
        .arg("-C")
        .arg(&rootfs)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nADD rootfs.tar /\nCMD [\"sh\"]\n",
    )
    .unwrap();
    build(d, &tar(&ctx, ""), "t=base:1").expect_ok(d)
}

/// How many VMs hyperd booted so far (its log says so once per boot).
fn boots(d: &TestDaemon) -> usize {
    d.log().matches("vm booted").count()
}

/// Nothing of a build is left: no VM process or record, no work dir, no mount.
fn assert_nothing_left(d: &TestDaemon) {
    let vms = d.run_dir.join("vms");
    assert_eq!(processes_mentioning(&vms), vec![], "a VM is left");
    assert!(d.list("vm").is_empty(), "a VM record is left");
    let tmp: Vec<_> = std::fs::read_dir(d.root.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(tmp.is_empty(), "left in the work dir: {tmp:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = d.dir.path().to_string_lossy().into_owned();
    assert!(!mounts.contains(&dir), "a mount is left:\n{mounts}");
}

#[test]
fn a_dockerfile_builds_in_a_vm_and_the_image_runs_as_built() {
    let d = TestDaemon::start();
    base_image(&d);
    d.import_busybox();
    let ctx = context(
        &d,
        "app",
        &[
            ("hello.txt", "hello from the context\n"),
            (
                "Dockerfile",
                r#"FROM base:1
ARG GREETING=hello
ENV WHO=world
ENV MSG="${GREETING} ${WHO}"
WORKDIR /app
RUN echo made > made && echo gone > /etc/gone && rm /etc/gone && rm /bin/vi && \
    echo "kernel $(uname -r)"
COPY --chown=app:staff hello.txt /app/
USER app
CMD ["sh", "-c", "cat /app/hello.txt; echo $MSG; id -u; pwd; cat made"]
"#,
            ),
        ],
    );
    let built = build(
        &d,
        &tar(&ctx, ""),
        "t=app:1&buildargs=%7B%22GREETING%22%3A%22hi%22%7D",
    );
    let id = built.expect_ok(&d);
    let text = built.text();
    assert!(text.contains("Step 1/9 : FROM base:1"), "{text}");
    assert!(text.contains("Step 6/9 : RUN echo made"), "{text}");
    assert!(text.contains("Successfully tagged app:1"), "{text}");
    assert!(
        text.contains(&format!("Successfully built {}", &id[7..19])),
        "{text}"
    );

    // RUN ran in the guest: its kernel, not the host's.
    let guest = d.ok(&["run", "--rm", "busybox", "uname", "-r"]);
    let host = String::from_utf8(Command::new("uname").arg("-r").output().unwrap().stdout).unwrap();
    assert!(
        text.contains(&format!("kernel {}", guest.trim())),
        "{text}\nguest: {guest}"
    );
    if guest.trim() != host.trim() {
        assert!(!text.contains(&format!("kernel {}", host.trim())), "{text}");
    }

    // The image: default command, env, user, workdir and the files RUN and COPY made.
    let out = d.ok(&["run", "--rm", "app:1"]);
    assert_eq!(
        out,
        "hello from the context\nhi world\n1000\n/app\nmade\n",
        "{}",
        d.log()
    );
    let out = d.ok(&[
        "run",
        "--rm",
        "app:1",
        "stat",
        "-c",
        "%u:%g %a",
        "/app/hello.txt",
    ]);
    assert_eq!(out, "1000:50 644\n");
    // RUN's deletions are whiteouts in its layer.
    let out = d.hyperctl(&["run", "--rm", "app:1", "ls", "/bin/vi", "/etc/gone"]);
    assert_ne!(out.code, 0, "{out:?}");
    let out = d.ok(&["run", "--rm", "app:1", "ls", "/bin/sh"]);
    assert_eq!(out, "/bin/sh\n");
    let inspect = d.curl("GET", "/image/inspect?imageId=app:1", None);
    let inspect: serde_json::Value = serde_json::from_str(&inspect.body).unwrap();
    assert_eq!(inspect["Config"]["User"], "app");
    assert_eq!(inspect["Config"]["WorkingDir"], "/app");

    // A multi-stage build copies one file from stage one.
    let ctx = context(
        &d,
        "multi",
        &[(
            "Dockerfile",
            "FROM base:1 AS one\nRUN echo from-one > /one.txt && echo other > /two.txt\n\
             FROM base:1\nCOPY --from=one /one.txt /copied.txt\nCMD [\"cat\", \"/copied.txt\"]\n",
        )],
    );
    build(&d, &tar(&ctx, ""), "t=multi:1").expect_ok(&d);
    assert_eq!(d.ok(&["run", "--rm", "multi:1"]), "from-one\n");
    let out = d.hyperctl(&["run", "--rm", "multi:1", "ls", "/two.txt"]);
    assert_ne!(out.code, 0, "only the one file is copied: {out:?}");
    assert_nothing_left(&d);
}

#[test]
fn the_same_context_in_any_compression_is_one_image_and_a_rebuild_boots_no_vm() {
    let d = TestDaemon::start();
    base_image(&d);
    let ctx = context(
        &d,
        "cached",
        &[
            ("a.txt", "alpha\n"),
            (
                "Dockerfile",
                "FROM base:1\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\nCMD [\"cat\", \"/b.txt\"]\n",
            ),
        ],
    );
    let first = build(&d, &tar(&ctx, ""), "t=cached:1");
    let id = first.expect_ok(&d);
    assert!(
        first.text().contains(" ---> Running in"),
        "{}",
        first.text()
    );
    let booted = boots(&d);
    for flag in ["z", "j", "J", ""] {
        let again = build(&d, &tar(&ctx, flag), "t=cached:1");
        assert_eq!(again.expect_ok(&d), id, "compression {flag:?}");
        let text = again.text();
        assert_eq!(text.matches(" ---> Using cache").count(), 3, "{text}");
        assert!(!text.contains("Running in"), "{text}");
    }
    assert_eq!(boots(&d), booted, "a cached rebuild booted a VM");

    // nocache runs every step again; a changed COPY source misses from there on.
    let fresh = build(&d, &tar(&ctx, "z"), "t=cached:2&nocache=1");
    fresh.expect_ok(&d);
    assert!(!fresh.text().contains("Using cache"), "{}", fresh.text());
    std::fs::write(ctx.join("a.txt"), "beta\n").unwrap();
    let changed = build(&d, &tar(&ctx, ""), "t=cached:3");
    assert_ne!(changed.expect_ok(&d), id);
    assert_eq!(
        changed.text().matches("Using cache").count(),
        0,
        "{}",
        changed.text()
    );
    assert_eq!(d.ok(&["run", "--rm", "cached:3"]), "beta\n");
    assert_nothing_left(&d);
}

#[test]
fn bad_input_fails_in_the_stream_and_leaves_nothing() {
    let d = TestDaemon::start();
    base_image(&d);
    let images = || d.curl("GET", "/images/get?all=1", None).body;
    let images_before = images();
    let expect_error = |body: &Path, query: &str, wanted: &str| -> serde_json::Value {
        let b = build(&d, body, query);
        assert_eq!(b.status, 200);
        let err = b
            .error()
            .unwrap_or_else(|| panic!("no error for {wanted}: {}", b.text()))
            .clone();
        let msg = err["error"].as_str().unwrap();
        assert!(msg.contains(wanted), "want {wanted:?} in {msg:?}");
        assert!(b.id().is_none());
        assert_nothing_left(&d);
        err
    };

    // `..` in the context.
    let evil = d.dir.path().join("evil.tar");
    let entry = |path: &str, data: &[u8]| RawEntry {
        kind: tar::EntryType::Regular,
        path: path.into(),
        link: String::new(),
        data: data.to_vec(),
        mode: 0o644,
    };
    std::fs::write(
        &evil,
        raw_tar(&[
            entry("Dockerfile", b"FROM base:1\n"),
            entry("../escape", b"x"),
        ]),
    )
    .unwrap();
    expect_error(&evil, "", "../escape");
    assert!(!d.dir.path().join("root/escape").exists());

    // A symlink out of the context used by COPY.
    let ctx = context(
        &d,
        "link",
        &[("Dockerfile", "FROM base:1\nCOPY out /out\n")],
    );
    std::os::unix::fs::symlink("/etc/hostname", ctx.join("out")).unwrap();
    expect_error(&tar(&ctx, ""), "", "out");

    // No Dockerfile; an unknown instruction (with its line).
    let ctx = context(&d, "nodf", &[("a", "a")]);
    expect_error(&tar(&ctx, ""), "", "Dockerfile");
    let ctx = context(
        &d,
        "unknown",
        &[("Dockerfile", "FROM base:1\nFROBNICATE now\n")],
    );
    let err = expect_error(&tar(&ctx, ""), "", "FROBNICATE");
    assert!(err["error"].as_str().unwrap().contains("line 2"), "{err}");

    // A failing RUN: Docker's message, with the exit code.
    let ctx = context(
        &d,
        "fails",
        &[("Dockerfile", "FROM base:1\nRUN echo before\nRUN exit 3\n")],
    );
    let err = expect_error(
        &tar(&ctx, ""),
        "t=never:1",
        "The command '/bin/sh -c exit 3' returned a non-zero code: 3",
    );
    assert_eq!(err["errorDetail"]["code"], 3, "{err}");

    assert_eq!(images(), images_before, "a partial image was recorded");
    // Parameters we do not honour are a 400 naming them.
    let ctx = context(&d, "fine", &[("Dockerfile", "FROM base:1\n")]);
    let b = build(&d, &tar(&ctx, ""), "target=x");
    assert_eq!(b.status, 400);
    assert!(b.messages[0]["http"].as_str().unwrap().contains("target"));
    let b = build(
        &d,
        &tar(&ctx, ""),
        "remote=https%3A%2F%2Fexample.com%2Fx.git",
    );
    assert_eq!(b.status, 400);
    assert!(b.messages[0]["http"].as_str().unwrap().contains("remote"));
}

#[test]
fn a_committed_container_is_an_image_with_its_changes() {
    let d = TestDaemon::start();
    base_image(&d);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "c1",
        "base:1",
        "sh",
        "-c",
        "echo changed > /x; rm /bin/vi; sleep 600",
    ]);
    d.wait_until(
        std::time::Duration::from_secs(60),
        "the container to write /x",
        || d.hyperctl(&["exec", "c1", "cat", "/x"]).stdout == "changed\n",
    );
    // The seed's example body, and a change that wins over its Cmd; the VM is paused (the
    // default) while the changes are read, and runs on afterwards.
    let body = r#"{"Hostname":"","Domainname":"","User":"","Memory":0,"MemorySwap":0,
        "CpuShares":512,"Cpuset":"0,1","AttachStdin":false,"AttachStdout":true,
        "AttachStderr":true,"PortSpecs":null,"Tty":false,"OpenStdin":false,"StdinOnce":false,
        "Env":null,"Cmd":["date"],"Volumes":{"/tmp":{}},"WorkingDir":"",
        "NetworkDisabled":false,"ExposedPorts":{"22/tcp":{}}}"#;
    let resp = d.curl_body(
        "POST",
        "/container/commit?container=c1&repo=committed&tag=1&comment=snap&author=me\
         &changes=CMD%20%5B%22cat%22%2C%22%2Fx%22%5D",
        body,
    );
    assert_eq!(resp.status, 200, "{resp:?}\n{}", d.log());
    let id: serde_json::Value = serde_json::from_str(&resp.body).unwrap();
    assert!(
        id["ID"].as_str().unwrap().starts_with("sha256:"),
        "{resp:?}"
    );
    assert_eq!(
        d.ok(&["exec", "c1", "cat", "/x"]),
        "changed\n",
        "c1 runs on after the commit"
    );
    assert_eq!(d.ok(&["run", "--rm", "committed:1"]), "changed\n");
    // hyperctl commit (pause by default), with -c and a name.
    let out = d.ok(&[
        "commit",
        "-m",
        "again",
        "-c",
        "ENV K=v",
        "c1",
        "committed:2",
    ]);
    assert!(out.starts_with("sha256:"), "{out}");
    assert_eq!(
        d.ok(&["run", "--rm", "committed:2", "sh", "-c", "echo $K; cat /x"]),
        "v\nchanged\n"
    );
    let out = d.hyperctl(&["run", "--rm", "committed:1", "ls", "/bin/vi"]);
    assert_ne!(out.code, 0, "the deletion is in the layer: {out:?}");
    let inspect = d.curl("GET", "/image/inspect?imageId=committed:1", None);
    let inspect: serde_json::Value = serde_json::from_str(&inspect.body).unwrap();
    assert_eq!(inspect["Config"]["Cmd"], serde_json::json!(["cat", "/x"]));
    assert!(
        inspect["Config"]["Volumes"]["/tmp"].is_object(),
        "{inspect}"
    );
    assert_eq!(inspect["Author"], "me");
    // hyperctl history shows the commit on top, with its comment.
    let history = d.ok(&["history", "committed:1"]);
    let top = history.lines().nth(1).unwrap();
    assert!(
        top.starts_with(&id["ID"].as_str().unwrap()[7..19]) && top.ends_with("snap"),
        "{history}"
    );
    // Bad input is a 400 naming it, and leaves no image.
    for (query, named) in [
        ("container=c1&changes=RUN%20true", "RUN"),
        ("container=c1&bogus=1", "bogus"),
        ("container=nosuch", "nosuch"),
    ] {
        let r = d.curl("POST", &format!("/container/commit?{query}&pause=0"), None);
        assert!(r.status == 400 || r.status == 404, "{query}: {r:?}");
        assert!(r.body.contains(named), "{query}: {r:?}");
    }
    let r = d.curl_body(
        "POST",
        "/container/commit?container=c1&pause=0",
        r#"{"Cmdd":["x"]}"#,
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("Cmdd"), "{r:?}");
    d.ok(&["rm", "c1"]);
}

#[test]
fn parser_cases_build_through_hyperctl_and_onbuild_triggers_run() {
    let d = TestDaemon::start();
    base_image(&d);
    // A BOM, the backtick escape, a RUN continued over lines, and .dockerignore with an
    // exception; built from a directory by hyperctl, which leaves excluded files out.
    let ctx = context(
        &d,
        "parser",
        &[
            (
                "Dockerfile",
                "\u{feff}# escape=`\nFROM base:1\nRUN echo one `\n    two `\n    > /cont.txt\n\
                 COPY . /ctx/\nONBUILD RUN echo triggered > /trig.txt\n",
            ),
            (".dockerignore", "*.log\n!keep.log\n"),
            ("drop.log", "no"),
            ("keep.log", "yes"),
            ("b.txt", "b"),
        ],
    );
    let out = d.ok(&["build", "-t", "parsed:1", ctx.to_str().unwrap()]);
    assert!(out.contains("Step 2/4 : RUN echo one"), "{out}");
    assert!(out.contains("Successfully tagged parsed:1"), "{out}");
    assert_eq!(
        d.ok(&["run", "--rm", "parsed:1", "cat", "/cont.txt"]),
        "one two\n"
    );
    let ls = d.ok(&["run", "--rm", "parsed:1", "ls", "/ctx"]);
    assert!(ls.contains("keep.log") && ls.contains("b.txt"), "{ls}");
    assert!(!ls.contains("drop.log"), "{ls}");
    // The ONBUILD trigger is stored, and runs when a build starts FROM the image.
    let out = d.hyperctl(&["run", "--rm", "parsed:1", "ls", "/trig.txt"]);
    assert_ne!(out.code, 0, "{out:?}");
    let child = context(
        &d,
        "child",
        &[(
            "Dockerfile",
            "FROM parsed:1\nCMD [\"cat\", \"/trig.txt\"]\n",
        )],
    );
    let out = d.ok(&["build", "-t", "child:1", child.to_str().unwrap()]);
    assert!(out.contains("# Executing 1 build trigger"), "{out}");
    assert_eq!(d.ok(&["run", "--rm", "child:1"]), "triggered\n");
    assert_nothing_left(&d);
}

#[test]
fn a_client_that_goes_away_stops_the_build_and_its_vm() {
    let d = TestDaemon::start();
    base_image(&d);
    let ctx = context(
        &d,
        "slow",
        &[("Dockerfile", "FROM base:1\nRUN echo started; sleep 300\n")],
    );
    let (mut curl, started) = build_until(&d, &ctx, "slow:1", "started");
    assert!(started, "the RUN never printed\n{}", d.log());
    assert!(!processes_mentioning(&d.run_dir.join("vms")).is_empty());
    curl.kill().unwrap();
    curl.wait().unwrap();
    d.wait_until(
        std::time::Duration::from_secs(60),
        "the build VM to go",
        || processes_mentioning(&d.run_dir.join("vms")).is_empty(),
    );
    d.wait_until(
        std::time::Duration::from_secs(30),
        "the work dir to go",
        || {
            std::fs::read_dir(d.root.join("tmp"))
                .unwrap()
                .next()
                .is_none()
        },
    );
    assert_nothing_left(&d);
    let images = d.curl("GET", "/images/get?all=1", None).body;
    assert!(!images.contains("slow"), "{images}");
}

/// A build VM is no pod's: hidden from `list vm`, refused by `--vm` and `/vm/kill`; when
/// hyperd dies mid-build, the next hyperd destroys it (and the build's work dir) instead of
/// re-adopting it. Its RUN also shows that `SHELL` applies to later `RUN`s.
#[test]
fn a_build_vm_is_never_a_pod_s_and_a_restart_destroys_one_left_by_a_killed_hyperd() {
    let mut d = TestDaemon::start();
    base_image(&d);
    let ctx = context(
        &d,
        "killed",
        &[(
            "Dockerfile",
            "FROM base:1\nSHELL [\"/bin/busybox\", \"env\", \"VIA_SHELL=yes\", \"/bin/sh\", \"-c\"]\n\
             RUN echo started $VIA_SHELL; sleep 300\n",
        )],
    );
    let (mut curl, started) = build_until(&d, &ctx, "killed:1", "started yes");
    assert!(
        started,
        "the RUN never printed (through SHELL)\n{}",
        d.log()
    );
    let vms = d.run_dir.join("vms");
    let vm_id = std::fs::read_dir(&vms)
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.file_type().unwrap().is_dir())
        .expect("the build VM's run dir")
        .file_name()
        .into_string()
        .unwrap();

    assert!(d.list("vm").is_empty(), "the build VM is listed");
    let out = d.hyperctl(&["run", "--vm", &vm_id, "base:1", "true"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(format!("{out:?}").contains("is a build's vm"), "{out:?}");
    let kill = d.curl("POST", &format!("/vm/kill?vm={vm_id}"), None);
    assert_eq!(kill.status, 409, "{kill:?}");

    d.kill9();
    curl.wait().unwrap();
    assert!(
        !processes_mentioning(&vms).is_empty(),
        "the VM died with hyperd"
    );
    d.restart();
    assert!(
        d.log()
            .contains("build vm of a build that died with hyperd destroyed"),
        "{}",
        d.log()
    );
    assert!(!d.log().contains("vm re-adopted"), "{}", d.log());
    assert!(!vms.join(&vm_id).exists(), "its run dir is left");
    assert_nothing_left(&d);
    let images = d.curl("GET", "/images/get?all=1", None).body;
    assert!(!images.contains("killed"), "{images}");
}

#[test]
fn a_missing_base_is_pulled_with_the_credentials_of_x_registry_config() {
    use base64::Engine as _;
    let reg = hyper_tests::registry::TestRegistry::start_token_auth("alice", "s3cret");
    let bb = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(bb.path());
    let image =
        hyper_tests::oci::TestImage::new(vec![hyper_tests::oci::TestLayer::from_dir(&rootfs)])
            .cmd(&["sh"]);
    reg.push_image(&image, "base:1");
    let d = TestDaemon::start();
    let base = format!("{}/base:1", reg.host());
    let ctx = context(
        &d,
        "pulled",
        &[("Dockerfile", &format!("FROM {base}\nRUN echo built > /x\n"))],
    );
    let body = tar(&ctx, "");
    let post = |header: Option<String>| -> Vec<serde_json::Value> {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "--unix-socket"]).arg(&d.socket);
        if let Some(h) = header {
            cmd.arg("-H").arg(format!("X-Registry-Config: {h}"));
        }
        let out = cmd
            .arg("--data-binary")
            .arg(format!("@{}", body.display()))
            .arg("http://hyperd/image/build?t=pulled:1")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect()
    };
    // Without credentials the registry refuses the pull: an error in the stream, no image.
    let refused = post(None);
    assert!(
        refused.iter().any(|m| m.get("error").is_some()),
        "{refused:?}"
    );
    let config = serde_json::json!({ reg.host(): { "username": "alice", "password": "s3cret" } });
    let header = base64::engine::general_purpose::URL_SAFE.encode(config.to_string());
    let built = post(Some(header));
    assert!(
        built.iter().any(|m| m["aux"]["ID"].is_string()),
        "{built:?}\n{}",
        d.log()
    );
    assert_eq!(d.ok(&["run", "--rm", "pulled:1", "cat", "/x"]), "built\n");
    assert_nothing_left(&d);
}
