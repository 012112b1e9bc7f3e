//! Pod networking benchmark, in a network namespace of its own (nothing leaves it):
//! - 100 MB host → pod over TCP through a port mapping (8080 → busybox `nc -l -p 80 >
//!   /dev/null` in the pod; timed from connect to the pod's close), beside the same transfer
//!   host → host over loopback in the same run: MB/s of both and their ratio;
//! - what networking adds to a pod start: the median of `hyperctl run --rm --net bridge
//!   busybox true` and of the same with `--net none` (runs interleaved), and the difference.
//!
//! `scripts/bench.sh net` (release builds). BENCH_RUNS sets the number of pod starts of each
//! kind (default 5); BENCH_NET_MB the transfer size (default 100).

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use hyper_tests::daemon::TestDaemon;
use hyper_tests::netns::NetNs;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Sends `bytes` zero bytes to `addr`, half-closes, and waits for the peer to close: the time
/// from connect to that close. `None` when the connection is refused (nobody listens yet).
fn send(addr: SocketAddr, bytes: usize) -> Option<Duration> {
    let started = Instant::now();
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    let chunk = vec![0u8; 1 << 16];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        conn.write_all(&chunk[..n])
            .unwrap_or_else(|e| panic!("send to {addr}: {e}"));
        left -= n;
    }
    conn.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    conn.read_to_end(&mut rest)
        .unwrap_or_else(|e| panic!("wait for {addr} to close: {e}"));
    Some(started.elapsed())
}

/// A sink on loopback: reads one connection to its end, then closes it.
fn loopback_sink() -> (SocketAddr, std::thread::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let sink = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        std::io::copy(&mut conn, &mut std::io::sink()).unwrap() as usize
    });
    (addr, sink)
}

fn timed_run(d: &TestDaemon, net: &str) -> Duration {
    let args = ["run", "--rm", "--net", net, "busybox", "true"];
    let started = Instant::now();
    let out = d.hyperctl(&args);
    let took = started.elapsed();
    assert_eq!(out.code, 0, "hyperctl {args:?}: {out:?}\n{}", d.log());
    took
}

fn main() {
    let runs = env_or("BENCH_RUNS", 5);
    let mb = env_or("BENCH_NET_MB", 100);
    let bytes = mb << 20;
    let ns = NetNs::new("bench");
    let d = TestDaemon::start_in(&ns, &[]);
    d.import_busybox();

    // Host → pod through the mapping; the pod's nc listens again after each transfer.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "sink",
        "-p",
        "8080:80",
        "busybox",
        "sh",
        "-c",
        "while true; do nc -l -p 80 > /dev/null; done",
    ]);
    let info = d.curl("GET", "/pod/info?podName=sink", None);
    let info: serde_json::Value = serde_json::from_str(&info.body).unwrap();
    let host_ip = info["status"]["hostIP"]
        .as_str()
        .unwrap_or_else(|| panic!("no hostIP: {info}"))
        .to_string();
    let to_pod: SocketAddr = format!("{host_ip}:8080").parse().unwrap();
    let (pod_time, loop_time, loop_bytes) = ns.run(move || {
        // Warm up (and wait for nc) with a small transfer.
        let deadline = Instant::now() + Duration::from_secs(60);
        while send(to_pod, 1 << 20).is_none() {
            assert!(Instant::now() < deadline, "{to_pod} never accepted");
            std::thread::sleep(Duration::from_millis(200));
        }
        let pod_time = loop {
            // nc may still be between two listens.
            if let Some(t) = send(to_pod, bytes) {
                break t;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let (addr, sink) = loopback_sink();
        let loop_time = send(addr, bytes).expect("loopback sink");
        (pod_time, loop_time, sink.join().unwrap())
    });
    assert_eq!(loop_bytes, bytes);
    d.ok(&["rm", "sink"]);

    let mut bridge = Vec::new();
    let mut none = Vec::new();
    for _ in 0..runs {
        bridge.push(timed_run(&d, "bridge"));
        none.push(timed_run(&d, "none"));
    }

    let rate = |t: Duration| mb as f64 / t.as_secs_f64();
    let (pod_rate, loop_rate) = (rate(pod_time), rate(loop_time));
    let (bridge, none) = (median(bridge), median(none));
    println!("{mb} MB over TCP, connect to peer's close:");
    println!("  host -> pod via port mapping {to_pod} -> :80  {pod_rate:8.1} MB/s");
    println!("  host -> host over loopback                 {loop_rate:8.1} MB/s");
    println!(
        "  pod / loopback                             {:8.3}",
        pod_rate / loop_rate
    );
    println!("hyperctl run --rm busybox true ({runs} runs each, median):");
    println!("  --net bridge   {:7.0} ms", ms(bridge));
    println!("  --net none     {:7.0} ms", ms(none));
    println!("  networking     {:+7.0} ms", ms(bridge) - ms(none));
}
