//! Restart policies: hyperd starts an exited container again in its VM by the pod's or the
//! container's `restartPolicy` (Docker's back-off), counts the restarts in `/container/info`
//! and `/pod/info`, keeps doing so after it is itself restarted, and never restarts what the
//! user stopped.

use std::time::Duration;

use hyper_tests::daemon::TestDaemon;
use hyper_tests::wait_no_process_mentions;
use serde_json::Value;

fn container_info(d: &TestDaemon, container: &str) -> Value {
    let r = d.curl(
        "GET",
        &format!("/container/info?container={container}"),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}\n{}", d.log());
    serde_json::from_str(&r.body).unwrap()
}

fn restart_count(d: &TestDaemon, container: &str) -> u64 {
    container_info(d, container)["status"]["restartCount"]
        .as_u64()
        .unwrap_or_else(|| panic!("no restartCount for {container}"))
}

fn pod_status(d: &TestDaemon, pod: &str) -> String {
    d.list("pod")
        .into_iter()
        .find(|row| row[0] == pod)
        .and_then(|row| row.last().cloned())
        .unwrap_or_else(|| panic!("pod {pod} is not listed"))
}

fn runs_logged(d: &TestDaemon, container: &str, line: &str) -> usize {
    d.hyperctl(&["logs", container])
        .stdout
        .lines()
        .filter(|l| *l == line)
        .count()
}

#[test]
fn always_restarts_across_a_hyperd_restart_until_the_pod_is_stopped() {
    let mut d = TestDaemon::start();
    d.import_busybox();
    d.ok(&[
        "run",
        "-d",
        "--restart",
        "always",
        "--name",
        "again",
        "busybox",
        "sh",
        "-c",
        "echo run; sleep 1; exit 3",
    ]);
    d.wait_until(Duration::from_secs(90), "two restarts", || {
        restart_count(&d, "again") >= 2
    });
    assert_eq!(pod_status(&d, "again"), "running");
    assert!(runs_logged(&d, "again", "run") >= 2, "{}", d.log());
    // /pod/info shows the same count in its container statuses.
    let r = d.curl("GET", "/pod/info?podName=again", None);
    assert_eq!(r.status, 200, "{r:?}");
    let info: Value = serde_json::from_str(&r.body).unwrap();
    assert!(
        info["status"]["containerStatus"][0]["restartCount"]
            .as_u64()
            .is_some_and(|n| n >= 2),
        "{info}"
    );

    // hyperd dies while the container runs and comes back after it exited (the guest keeps
    // its exit): the count survives and restarts go on.
    d.wait_until(Duration::from_secs(30), "a run", || {
        container_info(&d, "again")["status"]["phase"] == "running"
    });
    d.kill9();
    std::thread::sleep(Duration::from_secs(3));
    d.restart();
    let before = restart_count(&d, "again");
    assert!(before >= 2, "the count survives: {before}");
    d.wait_until(
        Duration::from_secs(90),
        "restarts after hyperd's restart",
        || restart_count(&d, "again") >= before + 2,
    );
    assert_eq!(pod_status(&d, "again"), "running");

    // /pod/stop stops it for good: no restart brings it back.
    let vm = d
        .list("pod")
        .into_iter()
        .find(|r| r[0] == "again")
        .map(|r| r[2].clone())
        .unwrap();
    let r = d.curl("POST", "/pod/stop?podId=again", None);
    assert_eq!(r.status, 200, "{r:?}\n{}", d.log());
    let stopped_at = restart_count(&d, "again");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(pod_status(&d, "again"), "stopped", "{}", d.log());
    assert_eq!(restart_count(&d, "again"), stopped_at);
    let left = wait_no_process_mentions(&d.run_dir.join("vms").join(&vm), Duration::from_secs(15));
    assert_eq!(left, vec![], "processes of the stopped pod's vm");
}

#[test]
fn on_failure_restarts_only_failures_and_at_most_n_times() {
    let d = TestDaemon::start();
    d.import_busybox();
    // `zero` succeeds at once; `once` fails on its first run only (its rootfs keeps the
    // mark across a restart); `twice` takes the pod's on-failure:2 and always fails.
    let spec = r#"{
        "id": "flaky",
        "restartPolicy": "on-failure:2",
        "containers": [
            {"name": "zero", "image": "busybox", "restartPolicy": "onFailure",
             "command": ["sh", "-c", "echo zero; exit 0"]},
            {"name": "once", "image": "busybox", "restartPolicy": "onFailure",
             "command": ["sh", "-c",
                "if [ -e /ran ]; then echo second; exit 0; fi; touch /ran; echo first; exit 1"]},
            {"name": "twice", "image": "busybox",
             "command": ["sh", "-c", "echo run; exit 1"]}
        ]
    }"#;
    let r = d.curl_body("POST", "/pod/create", spec);
    assert_eq!(r.status, 201, "{r:?}\n{}", d.log());
    let r = d.curl("POST", "/pod/start?podId=flaky", None);
    assert_eq!(r.status, 200, "{r:?}\n{}", d.log());

    // Once nothing runs or is due to restart, the pod stops by itself.
    d.wait_until(Duration::from_secs(120), "the pod to stop", || {
        pod_status(&d, "flaky") == "stopped"
    });
    assert_eq!(restart_count(&d, "zero"), 0);
    assert_eq!(restart_count(&d, "once"), 1);
    assert_eq!(restart_count(&d, "twice"), 2);
    assert_eq!(
        container_info(&d, "once")["status"]["terminated"]["exitCode"],
        0
    );
    assert_eq!(
        container_info(&d, "twice")["status"]["terminated"]["exitCode"],
        1
    );
    assert_eq!(d.hyperctl(&["logs", "zero"]).stdout, "zero\n");
    assert_eq!(d.hyperctl(&["logs", "once"]).stdout, "first\nsecond\n");
    assert_eq!(runs_logged(&d, "twice", "run"), 3, "{}", d.log());
}

#[test]
fn a_container_stopped_through_the_api_is_not_restarted() {
    let d = TestDaemon::start();
    d.import_busybox();
    // `loop` would be restarted after any exit; `stay` keeps the pod running meanwhile.
    let spec = r#"{
        "id": "manual",
        "restartPolicy": "always",
        "containers": [
            {"name": "loop", "image": "busybox", "command": ["sleep", "600"]},
            {"name": "stay", "image": "busybox", "command": ["sleep", "600"]}
        ]
    }"#;
    let r = d.curl_body("POST", "/pod/create", spec);
    assert_eq!(r.status, 201, "{r:?}\n{}", d.log());
    let r = d.curl("POST", "/pod/start?podId=manual", None);
    assert_eq!(r.status, 200, "{r:?}\n{}", d.log());

    let r = d.curl("POST", "/container/stop?container=loop&t=1", None);
    assert_eq!(r.status, 200, "{r:?}\n{}", d.log());
    let r = d.curl("POST", "/container/kill?container=stay&signal=9", None);
    assert!(r.status < 300, "{r:?}\n{}", d.log());
    // Neither comes back: nothing runs, so the pod stops.
    d.wait_until(Duration::from_secs(30), "the pod to stop", || {
        pod_status(&d, "manual") == "stopped"
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(restart_count(&d, "loop"), 0);
    assert_eq!(restart_count(&d, "stay"), 0);
}

#[test]
fn a_bad_policy_is_a_400_naming_the_field() {
    let d = TestDaemon::start();
    d.import_busybox();
    for (spec, field) in [
        (
            r#"{"id": "bad1", "restartPolicy": "sometimes",
                "containers": [{"image": "busybox"}]}"#,
            "restartPolicy",
        ),
        (
            r#"{"id": "bad2", "containers": [{"image": "busybox"},
                {"image": "busybox", "restartPolicy": "on-failure:x"}]}"#,
            "containers[1].restartPolicy",
        ),
    ] {
        let r = d.curl_body("POST", "/pod/create", spec);
        assert_eq!(r.status, 400, "{r:?}");
        assert!(r.body.contains(field), "{field}: {r:?}");
    }
    let out = d.hyperctl(&[
        "create",
        "--restart",
        "maybe",
        "--name",
        "bad3",
        "busybox",
        "true",
    ]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("restartPolicy"), "{out:?}");
    // Nothing was created.
    assert!(d.list("pod").is_empty(), "{:?}", d.list("pod"));
}
