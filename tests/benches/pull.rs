//! Pull benchmark: the median wall time of `hyperctl pull` of a ~100 MiB image (5 gzip layers
//! of random, so incompressible, data) from a local plain-HTTP registry on 127.0.0.1, against
//! `skopeo copy` of the same image from the same registry into an OCI layout. hyperd's figure
//! includes unpacking the layers (a pull ends with the snapshots in place); skopeo only writes
//! the blobs. Every run pulls into a fresh daemon and a fresh directory: nothing is cached.
//!
//! `scripts/bench.sh pull` (release builds; needs skopeo and docker-registry). BENCH_RUNS sets
//! the number of runs (default 3).

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hyper_tests::daemon::TestDaemon;
use hyper_tests::oci::{PushOptions, TestImage, TestLayer, skopeo_push};
use hyper_tests::registry::TestRegistry;

const LAYERS: usize = 5;
const FILES_PER_LAYER: usize = 4;
const FILE_SIZE: usize = 5 << 20;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn random(len: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(len);
    std::fs::File::open("/dev/urandom")
        .and_then(|f| f.take(len as u64).read_to_end(&mut data))
        .expect("read /dev/urandom");
    data
}

/// `FILES_PER_LAYER` random files of `FILE_SIZE` bytes in `/layer<i>/` of each layer.
fn bench_image() -> TestImage {
    let layers = (0..LAYERS)
        .map(|i| {
            let dir = format!("layer{i}");
            (0..FILES_PER_LAYER).fold(TestLayer::new().dir(&dir, 0o755, 0, 0), |l, f| {
                l.file(&format!("{dir}/blob{f}"), &random(FILE_SIZE), 0o644, 0, 0)
            })
        })
        .collect();
    TestImage::new(layers).cmd(&["/bin/true"])
}

/// `skopeo copy` of `reference` into a new OCI layout; the time it took.
fn skopeo_pull(reference: &str) -> Duration {
    let dest = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
        ])
        .arg(format!("docker://{reference}"))
        .arg(format!("oci:{}:bench", dest.path().display()))
        .stdin(Stdio::null())
        .output()
        .expect("run skopeo");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "skopeo copy {reference}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);

    let image = bench_image();
    let layout = tempfile::tempdir().unwrap();
    image.write_oci_layout(layout.path(), "1");
    let size: u64 = std::fs::read_dir(layout.path().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let registry = TestRegistry::start_plain();
    let reference = format!("{}/bench:1", registry.host());
    skopeo_push(layout.path(), "1", &reference, PushOptions::default());

    let mut hyperd = Vec::new();
    let mut skopeo = Vec::new();
    for run in 0..runs {
        let d = TestDaemon::start_with(&["--insecure-registry", &registry.host()]);
        let started = Instant::now();
        let out = d.hyperctl(&["pull", &reference]);
        hyperd.push(started.elapsed());
        assert_eq!(
            out.code,
            0,
            "hyperctl pull {reference}: {out:?}\n{}",
            d.log()
        );
        if run == 0 {
            let inspect = d.ok(&["inspect", &reference]);
            assert!(
                inspect.contains(&image.config_digest()),
                "hyperd pulled another image than {}:\n{inspect}",
                image.config_digest()
            );
        }
        drop(d);
        skopeo.push(skopeo_pull(&reference));
    }

    let (hyperd, skopeo) = (median(hyperd), median(skopeo));
    let mib = size as f64 / f64::from(1 << 20);
    let rate = |d: Duration| format!("{:.0} MiB/s", mib / d.as_secs_f64());
    println!(
        "pull of {mib:.0} MiB in {LAYERS} gzip layers from 127.0.0.1 ({runs} runs each, median):"
    );
    println!(
        "  hyperctl pull (with unpacking): {} ({})",
        ms(hyperd),
        rate(hyperd)
    );
    println!(
        "  skopeo copy to an OCI layout:   {} ({})",
        ms(skopeo),
        rate(skopeo)
    );
    println!(
        "  hyperctl / skopeo:              {:.2}",
        hyperd.as_secs_f64() / skopeo.as_secs_f64()
    );
}
