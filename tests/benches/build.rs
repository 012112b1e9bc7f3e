//! Build benchmark: a 5-step Dockerfile (`FROM scratch`, `ADD` of a busybox rootfs tar, `COPY`,
//! `RUN`, `CMD`) built by hyperd (every RUN in a VM) cold (empty cache), fully cached, and with
//! the COPY's file changed; beside `buildah bud --isolation chroot --layers` of the same context
//! in the same run (its storage under a temp dir, only local files: no registry).
//!
//! `scripts/bench.sh build` (release builds; needs buildah). BENCH_RUNS sets the runs of each
//! figure (default 3; the cold figure is one run per fresh cache).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hyper_tests::busybox_rootfs;
use hyper_tests::daemon::TestDaemon;

const DOCKERFILE: &str = "FROM scratch\nADD rootfs.tar /\nCOPY a.txt /a.txt\n\
                          RUN cat /a.txt > /b.txt\nCMD [\"cat\", \"/b.txt\"]\n";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run a tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One hyperd build of `ctx` (tarred beforehand, outside the timing).
fn hyperd_build(d: &TestDaemon, ctx: &Path, tag: &str) -> Duration {
    let tar = ctx.with_extension("tar");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(ctx)
        .arg("."));
    let started = Instant::now();
    let resp = d.curl("POST", &format!("/image/build?t={tag}"), Some(&tar));
    let took = started.elapsed();
    assert!(
        resp.status == 200 && resp.body.contains("Successfully built"),
        "{resp:?}\n{}",
        d.log()
    );
    took
}

fn buildah_build(storage: &Path, ctx: &Path, tag: &str) -> Duration {
    let started = Instant::now();
    run(Command::new("buildah")
        .arg("--root")
        .arg(storage.join("root"))
        .arg("--runroot")
        .arg(storage.join("runroot"))
        .args([
            "bud",
            "--isolation",
            "chroot",
            "--layers",
            "--quiet",
            "-t",
            tag,
        ])
        .arg(ctx));
    started.elapsed()
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let work = tempfile::Builder::new()
        .prefix("hyb-")
        .tempdir_in("/tmp")
        .unwrap();
    let rootfs = busybox_rootfs(&work.path().join("bb"));
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    run(Command::new("tar")
        .arg("-cf")
        .arg(ctx.join("rootfs.tar"))
        .arg("-C")
        .arg(&rootfs)
        .arg("."));
    std::fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();

    let mut figures: Vec<(&str, Vec<Duration>, Vec<Duration>)> = Vec::new();
    let (mut cold_h, mut cold_b, mut cached_h, mut cached_b, mut changed_h, mut changed_b) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for i in 0..runs {
        // A fresh daemon and buildah store each round: the cold build has an empty cache.
        let d = TestDaemon::start();
        let storage = tempfile::Builder::new()
            .prefix("hyb-buildah-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::write(ctx.join("a.txt"), format!("round {i}\n")).unwrap();
        cold_h.push(hyperd_build(&d, &ctx, "bench:1"));
        cold_b.push(buildah_build(storage.path(), &ctx, "bench:1"));
        cached_h.push(hyperd_build(&d, &ctx, "bench:1"));
        cached_b.push(buildah_build(storage.path(), &ctx, "bench:1"));
        std::fs::write(ctx.join("a.txt"), format!("round {i} changed\n")).unwrap();
        changed_h.push(hyperd_build(&d, &ctx, "bench:2"));
        changed_b.push(buildah_build(storage.path(), &ctx, "bench:2"));
        // buildah's overlay mounts go with its store.
        let _ = Command::new("buildah")
            .arg("--root")
            .arg(storage.path().join("root"))
            .arg("--runroot")
            .arg(storage.path().join("runroot"))
            .args(["rm", "--all"])
            .output();
        let _ = Command::new("umount")
            .arg("-R")
            .arg(storage.path().join("root/overlay"))
            .output();
    }
    figures.push(("cold (empty cache)", cold_h, cold_b));
    figures.push(("fully cached", cached_h, cached_b));
    figures.push(("one COPY source changed", changed_h, changed_b));
    println!("5-step build (FROM scratch, ADD rootfs.tar, COPY, RUN, CMD), {runs} runs, median:");
    println!(
        "  {:<26} {:>14} {:>28}",
        "", "hyperd (VM)", "buildah bud (chroot)"
    );
    for (name, h, b) in figures {
        println!("  {:<26} {:>14} {:>28}", name, ms(median(h)), ms(median(b)));
    }
}
