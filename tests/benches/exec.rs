//! Exec benchmark: the median latency of `hyperctl exec <pod> true` over 20 runs, and the
//! throughput of 100 MB through `cat` on a hijacked exec (stdin in, stdcopy frames out),
//! beside the same 100 MB through a local `cat` on pipes in the same run.
//!
//! `scripts/bench.sh exec` (release builds). BENCH_RUNS sets the number of execs (default
//! 20), BENCH_MB the volume (default 100).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hyper_tests::daemon::TestDaemon;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes `total` bytes to `w` from one thread while `r` is drained here; the bytes read and
/// the wall time.
fn pump(mut w: impl Write + Send + 'static, mut r: impl Read, total: usize) -> (usize, Duration) {
    let started = Instant::now();
    let writer = std::thread::spawn(move || {
        let block = vec![b'x'; 1 << 20];
        let mut left = total;
        while left > 0 {
            let n = left.min(block.len());
            w.write_all(&block[..n]).unwrap();
            left -= n;
        }
        // Dropped here: the reader's side sees the end of its input.
        drop(w);
    });
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0;
    loop {
        match r.read(&mut buf).unwrap() {
            0 => break,
            n => got += n,
        }
    }
    writer.join().unwrap();
    (got, started.elapsed())
}

fn mb_per_s(bytes: usize, took: Duration) -> String {
    format!("{:.1} MB/s", bytes as f64 / 1e6 / took.as_secs_f64())
}

fn main() {
    let runs = env("BENCH_RUNS", 20);
    let total = env("BENCH_MB", 100) * 1_000_000;
    let d = TestDaemon::start();
    d.import_busybox();
    d.ok(&["run", "-d", "--name", "bench", "busybox", "sleep", "100000"]);

    let latencies: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            let out = d.hyperctl(&["exec", "bench", "true"]);
            assert_eq!(out.code, 0, "{out:?}");
            started.elapsed()
        })
        .collect();

    // 100 MB through cat in the guest, on a hijacked exec.
    let r = d.curl(
        "POST",
        "/exec/create?container=bench&command=%5B%22cat%22%5D",
        None,
    );
    let exec: String = serde_json::from_str(&r.body).unwrap();
    let h = d
        .hijack(&format!("/exec/start?container=bench&exec={exec}"))
        .unwrap();
    let reader = h.stream.try_clone().unwrap();
    struct HalfClose(std::os::unix::net::UnixStream);
    impl Write for HalfClose {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.0.flush()
        }
    }
    impl Drop for HalfClose {
        fn drop(&mut self) {
            let _closed = self.0.shutdown(std::net::Shutdown::Write);
        }
    }
    let (framed, remote) = pump(HalfClose(h.stream), reader, total);
    // Frames carry 8 bytes of header each; what counts is the payload.
    let remote_bytes = total.min(framed);

    // The same through a local cat.
    let mut cat = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (local_bytes, local) = pump(cat.stdin.take().unwrap(), cat.stdout.take().unwrap(), total);
    cat.wait().unwrap();

    println!(
        "hyperctl exec bench true ({runs} runs, median): {:.0} ms",
        median(latencies).as_secs_f64() * 1000.0
    );
    println!(
        "{} MB through cat: hijacked exec {} ({:.1} s), local pipe {} ({:.2} s)",
        total / 1_000_000,
        mb_per_s(remote_bytes, remote),
        remote.as_secs_f64(),
        mb_per_s(local_bytes, local),
        local.as_secs_f64()
    );
}
