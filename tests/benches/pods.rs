//! Pod start benchmark: the median wall time of `hyperctl run --rm busybox true`, cold (the
//! pod boots its VM) and warm (the pod starts in a VM booted beforehand with `/vm/create`).
//!
//! `scripts/bench.sh pods` (release builds). BENCH_RUNS sets the number of runs (default 5).

use std::time::{Duration, Instant};

use hyper_tests::daemon::TestDaemon;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn timed(d: &TestDaemon, args: &[&str]) -> Duration {
    let started = Instant::now();
    let out = d.hyperctl(args);
    let took = started.elapsed();
    assert_eq!(out.code, 0, "hyperctl {args:?}: {out:?}\n{}", d.log());
    took
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let d = TestDaemon::start();
    d.import_busybox();

    let cold: Vec<Duration> = (0..runs)
        .map(|_| timed(&d, &["run", "--rm", "busybox", "true"]))
        .collect();

    let mut boots = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let vm = d.ok(&["vm", "create"]).trim().to_string();
        boots.push(started.elapsed());
        warm.push(timed(&d, &["run", "--rm", "--vm", &vm, "busybox", "true"]));
    }

    println!("hyperctl run --rm busybox true ({runs} runs each, median):");
    println!("  cold (boots its VM):            {}", ms(median(cold)));
    println!("  warm (VM from /vm/create):      {}", ms(median(warm)));
    println!("  /vm/create itself (not in warm): {}", ms(median(boots)));
}
