//! A container's resource use (Docker's stats figures) from its cgroup v2 files, plus the
//! guest-wide totals Docker's CPU percentage needs (/proc/stat) and the VM's network
//! interfaces (/proc/net/dev). Parsing is pure; [`read`] only gathers the files.

use std::path::Path;

use hyper_proto::types::{ContainerStats, NetworkStats};

use crate::error::{Error, Result};

/// /proc/stat counts in USER_HZ, which is 100 on Linux (sysconf(_SC_CLK_TCK)).
const NS_PER_TICK: u64 = 1_000_000_000 / 100;

/// The value of `key` in a flat-keyed cgroup file (`key value` per line: cpu.stat,
/// memory.stat).
pub fn keyed(text: &str, key: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A single-value file: a number, or `max` (None).
pub fn limit(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// io.stat's read and written bytes, summed over devices.
pub fn io_bytes(text: &str) -> (u64, u64) {
    let mut read = 0;
    let mut written = 0;
    for field in text.split_whitespace() {
        if let Some(v) = field.strip_prefix("rbytes=") {
            read += v.parse::<u64>().unwrap_or(0);
        } else if let Some(v) = field.strip_prefix("wbytes=") {
            written += v.parse::<u64>().unwrap_or(0);
        }
    }
    (read, written)
}

/// All CPUs' time since boot in ns (the first line of /proc/stat, as Docker sums it), and the
/// number of CPUs.
pub fn system_cpu(proc_stat: &str) -> (u64, u32) {
    let total = proc_stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(7)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum::<u64>()
        })
        .unwrap_or(0);
    let cpus = proc_stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    (total * NS_PER_TICK, cpus as u32)
}

/// The interfaces of /proc/net/dev except `lo`.
pub fn networks(net_dev: &str) -> Vec<NetworkStats> {
    net_dev
        .lines()
        .skip(2)
        .filter_map(|l| {
            let (name, counters) = l.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let v: Vec<u64> = counters
                .split_whitespace()
                .map(|c| c.parse().unwrap_or(0))
                .collect();
            let at = |i: usize| v.get(i).copied().unwrap_or(0);
            Some(NetworkStats {
                interface: name.to_string(),
                rx_bytes: at(0),
                rx_packets: at(1),
                rx_errors: at(2),
                rx_dropped: at(3),
                tx_bytes: at(8),
                tx_packets: at(9),
                tx_errors: at(10),
                tx_dropped: at(11),
            })
        })
        .collect()
}

/// MemTotal of /proc/meminfo in bytes.
pub fn mem_total(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Reads the stats of the container whose cgroup is `cgroup`. A controller file that is
/// missing (controller not enabled) counts as 0.
pub fn read(cgroup: &Path) -> Result<ContainerStats> {
    let file = |name: &str| -> Result<String> {
        let path = cgroup.join(name);
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
        }
    };
    let proc_file = |path: &str| {
        std::fs::read_to_string(path).map_err(|e| Error::io(format!("read {path}"), e))
    };
    if !cgroup.is_dir() {
        return Err(Error::NotFound(format!(
            "cgroup {}: no such directory",
            cgroup.display()
        )));
    }
    let cpu = file("cpu.stat")?;
    let (system_cpu_ns, online_cpus) = system_cpu(&proc_file("/proc/stat")?);
    let memory_limit_bytes = match limit(&file("memory.max")?) {
        Some(bytes) => bytes,
        None => mem_total(&proc_file("/proc/meminfo")?),
    };
    let (blk_read_bytes, blk_write_bytes) = io_bytes(&file("io.stat")?);
    Ok(ContainerStats {
        cpu_usage_ns: keyed(&cpu, "usage_usec") * 1000,
        cpu_user_ns: keyed(&cpu, "user_usec") * 1000,
        cpu_system_ns: keyed(&cpu, "system_usec") * 1000,
        system_cpu_ns,
        online_cpus,
        memory_usage_bytes: limit(&file("memory.current")?).unwrap_or(0),
        memory_limit_bytes,
        memory_cache_bytes: keyed(&file("memory.stat")?, "file"),
        pids_current: limit(&file("pids.current")?).unwrap_or(0),
        pids_limit: limit(&file("pids.max")?).unwrap_or(0),
        blk_read_bytes,
        blk_write_bytes,
        networks: networks(&proc_file("/proc/net/dev")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_files_are_parsed() {
        let cpu = "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 0\n";
        assert_eq!(keyed(cpu, "usage_usec"), 2500);
        assert_eq!(keyed(cpu, "system_usec"), 500);
        assert_eq!(limit("max\n"), None);
        assert_eq!(limit("67108864\n"), Some(64 << 20));
        let io = "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2\n254:16 rbytes=1 wbytes=2\n";
        assert_eq!(io_bytes(io), (4097, 8194));
        assert_eq!(io_bytes(""), (0, 0));
    }

    #[test]
    fn proc_files_are_parsed() {
        let stat = "cpu  10 0 5 100 1 0 0 0 0 0\ncpu0 5 0 2 50 0 0 0 0 0 0\ncpu1 5 0 3 50 1 0 0 0 0 0\nintr 1\n";
        assert_eq!(system_cpu(stat), (116 * NS_PER_TICK, 2));
        let dev = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo: 10 1 0 0 0 0 0 0 10 1 0 0 0 0 0 0\n  eth0: 1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0\n";
        let n = networks(dev);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].interface, "eth0");
        assert_eq!((n[0].rx_bytes, n[0].rx_dropped), (1000, 2));
        assert_eq!((n[0].tx_bytes, n[0].tx_errors), (2000, 3));
        assert_eq!(
            mem_total("MemTotal:     245000 kB\nMemFree: 1 kB\n"),
            245000 * 1024
        );
    }
}
