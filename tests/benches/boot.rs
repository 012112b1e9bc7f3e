//! Boot benchmark: the median time from starting a shim to a ready guest agent, next to the
//! time the bare QEMU command line needs to boot the same kernel + initramfs to /init.
//!
//! `scripts/bench.sh boot` (or `cargo bench -p hyper-tests --bench boot` after building the
//! release shim). BENCH_RUNS sets the number of runs (default 7).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hyper_proto::shim::ShutdownRequest;
use hyper_tests::{ShimHandle, guest_dir};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// QEMU alone, no devices: from exec to the agent's first console line.
fn bare_qemu_to_init() -> Duration {
    let guest = guest_dir();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let khz = cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))
        .and_then(|l| l.split(':').nth(1))
        .map(|v| (v.trim().parse::<f64>().unwrap() * 1000.0) as u64)
        .unwrap();
    let started = Instant::now();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args([
            "-M",
            "microvm,x-option-roms=off,rtc=on",
            "-accel",
            "tcg,thread=multi",
        ])
        .args([
            "-cpu",
            "max",
            "-m",
            "256M",
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
        ])
        .args(["-display", "none", "-serial", "stdio", "-no-reboot"])
        .arg("-kernel")
        .arg(guest.join("vmlinux"))
        .arg("-initrd")
        .arg(guest.join("initramfs.img"))
        .arg("-append")
        .arg(format!(
            "console=ttyS0 quiet panic=-1 reboot=t tsc_early_khz={khz} tsc=reliable"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64");
    let reader = BufReader::new(qemu.stdout.take().unwrap());
    let mut reached = None;
    for line in reader.lines() {
        if line.unwrap().contains("hyper-agent: /init started") {
            reached = Some(started.elapsed());
            break;
        }
    }
    qemu.kill().unwrap();
    qemu.wait().unwrap();
    reached.expect("the guest never reached /init")
}

async fn shim_to_agent_ready() -> (Duration, Duration) {
    let started = Instant::now();
    let mut shim = ShimHandle::start("bench").await;
    let info = shim.boot().await;
    let total = started.elapsed();
    shim.client
        .shutdown(ShutdownRequest::default())
        .await
        .unwrap();
    shim.wait_exit(Duration::from_secs(30)).await;
    (total, Duration::from_millis(info.boot_ms))
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut shim_total, mut create_vm, mut bare) = (vec![], vec![], vec![]);
    for i in 0..runs {
        let (total, boot) = rt.block_on(shim_to_agent_ready());
        let q = bare_qemu_to_init();
        eprintln!(
            "run {}: shim start -> agent ready {}, CreateVm {}, bare qemu -> /init {}",
            i + 1,
            ms(total),
            ms(boot),
            ms(q)
        );
        shim_total.push(total);
        create_vm.push(boot);
        bare.push(q);
    }
    println!("boot benchmark ({runs} runs, medians, accel tcg unless KVM is usable):");
    println!(
        "  shim start -> agent ready:        {}",
        ms(median(shim_total))
    );
    println!(
        "  CreateVm call -> agent ready:     {}",
        ms(median(create_vm))
    );
    println!("  bare QEMU command line -> /init:  {}", ms(median(bare)));
}
