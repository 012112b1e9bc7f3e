//! hyperd's configuration: flags, then the optional config file (JSON), then defaults. Built and
//! validated once in [`Config::load`]; the rest of the daemon only reads the result.

use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};
use serde::Deserialize;

use hyper_proto::rest::PodLogConfig;

use crate::container::stdio::LogConfig;
use crate::network::NetworkConfig;

pub const DEFAULT_HOST: &str = "unix:///var/run/hyper.sock";
pub const DEFAULT_ROOT: &str = "/var/lib/hyper";
pub const DEFAULT_RUN_DIR: &str = "/run/hyper";
pub const DEFAULT_LOG: &str = "info";
/// Docker's place for registry CA certificates: `<dir>/<host[:port]>/ca.crt`.
pub const DEFAULT_CERTS_DIR: &str = "/etc/docker/certs.d";
/// Docker Hub's registry API.
pub const DEFAULT_DOCKER_HUB_HOST: &str = "registry-1.docker.io";
/// Unix socket paths must fit sun_path (108 bytes with the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum VmmChoice {
    #[default]
    Auto,
    Qemu,
    CloudHypervisor,
}

impl VmmChoice {
    /// The shim's `--vmm` value.
    pub fn as_arg(self) -> &'static str {
        match self {
            VmmChoice::Auto => "auto",
            VmmChoice::Qemu => "qemu",
            VmmChoice::CloudHypervisor => "cloud-hypervisor",
        }
    }
}

/// hyperd: runs pods, each in its own lightweight VM, behind a Docker-style REST API.
#[derive(Debug, Parser, Default)]
#[command(version)]
pub struct Args {
    /// Where to listen: unix:///path or tcp://127.0.0.1:PORT (repeatable)
    /// [default: unix:///var/run/hyper.sock].
    #[arg(short = 'H', long = "host")]
    pub hosts: Vec<String>,
    /// State directory: database, images, container dirs [default: /var/lib/hyper].
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Runtime directory: shim sockets, VM run dirs [default: /run/hyper].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Which VMM the shims drive; auto lets each shim pick (Cloud Hypervisor when it can boot
    /// the guest here, else QEMU) [default: auto].
    #[arg(long, value_enum)]
    pub vmm: Option<VmmChoice>,
    /// A JSON config file with the same keys as the flags (hosts, root, runDir, vmm, log,
    /// shim, guestDir, insecureRegistries, registryMirrors, certsDir, dockerHubHost, logOpts:
    /// an object such as {"max-size": "10m"}, bridge, bip, iptables: a boolean, mtu).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Log filter (tracing syntax, e.g. info or hyperd=debug) [default: info].
    #[arg(long)]
    pub log: Option<String>,
    /// The hyper-shim binary [default: next to hyperd, else on PATH].
    #[arg(long)]
    pub shim: Option<PathBuf>,
    /// Directory with the guest kernel and initramfs, passed to every shim [default: the
    /// shim's own default].
    #[arg(long)]
    pub guest_dir: Option<PathBuf>,
    /// A registry (host[:port]) reached over plain HTTP, or HTTPS without verifying its
    /// certificate (repeatable). localhost and 127.0.0.0/8 are always insecure.
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// A mirror of Docker Hub (http[s]://host[:port]) tried before it (repeatable).
    #[arg(long = "registry-mirror")]
    pub registry_mirrors: Vec<String>,
    /// Registry CA certificates, laid out as <dir>/<host[:port]>/ca.crt
    /// [default: /etc/docker/certs.d].
    #[arg(long)]
    pub certs_dir: Option<PathBuf>,
    /// Where names without a registry (busybox, docker.io/...) are pulled from and pushed to
    /// [default: registry-1.docker.io]. Tests point it at a closed loopback port so that nothing
    /// they do can reach the internet.
    #[arg(long)]
    pub docker_hub_host: Option<String>,
    /// Default container log options, Docker's json-file keys: max-size=SIZE (k/m/g),
    /// max-file=N (repeatable); a pod's own `log.config` wins.
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    pub log_opts: Vec<String>,
    /// The host bridge pods join (created with --bip if missing, left alone if it exists), or
    /// none: VMs get no network card, pods only loopback [default: hyper0].
    #[arg(long, value_name = "NAME|none")]
    pub bridge: Option<String>,
    /// The bridge's address and the pods' subnet, as the gateway's CIDR
    /// [default: 192.168.123.1/24].
    #[arg(long, value_name = "CIDR")]
    pub bip: Option<String>,
    /// Whether hyperd manages NAT, port mappings and the forwarding sysctls (nftables table
    /// `ip hyperd`); false leaves the host firewall and sysctls alone [default: true].
    #[arg(long, value_name = "BOOL", require_equals = true, num_args = 0..=1, default_missing_value = "true")]
    pub iptables: Option<bool>,
    /// MTU of the bridge, the VMs' network cards and the pods' interfaces [default: 1500].
    #[arg(long)]
    pub mtu: Option<u32>,
}

/// The config file: every key optional; unknown keys are an error (a typo must not pass).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct FileConfig {
    hosts: Vec<String>,
    root: Option<PathBuf>,
    run_dir: Option<PathBuf>,
    vmm: Option<VmmChoice>,
    log: Option<String>,
    shim: Option<PathBuf>,
    guest_dir: Option<PathBuf>,
    insecure_registries: Vec<String>,
    registry_mirrors: Vec<String>,
    certs_dir: Option<PathBuf>,
    docker_hub_host: Option<String>,
    log_opts: std::collections::BTreeMap<String, String>,
    bridge: Option<String>,
    bip: Option<String>,
    iptables: Option<bool>,
    mtu: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Unix(PathBuf),
    Tcp(std::net::SocketAddr),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Unix(p) => write!(f, "unix://{}", p.display()),
            Listen::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<Listen>,
    pub root: PathBuf,
    pub run_dir: PathBuf,
    pub vmm: VmmChoice,
    pub log: String,
    pub shim: PathBuf,
    pub guest_dir: Option<PathBuf>,
    pub insecure_registries: Vec<String>,
    pub registry_mirrors: Vec<String>,
    pub certs_dir: PathBuf,
    pub docker_hub_host: String,
    /// Container logs' rotation unless a pod says otherwise.
    pub log_default: LogConfig,
    pub network: NetworkConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("host {0:?}: expected unix:///path or tcp://IP:PORT")]
    BadHost(String),
    #[error("socket path {0} is longer than {MAX_SOCKET_PATH} bytes")]
    SocketTooLong(PathBuf),
    #[error("hyper-shim not found next to hyperd nor on PATH; give --shim")]
    NoShim,
    #[error("--log-opt: {0}")]
    LogOpt(String),
    /// A network flag (or its config-file key): the flag and what is wrong.
    #[error("{flag}: {message}")]
    Network { flag: &'static str, message: String },
}

/// `--bridge`, `--bip`, `--iptables`, `--mtu` (flag, else file, else default) checked.
fn network_config(
    bridge: Option<String>,
    bip: Option<String>,
    iptables: Option<bool>,
    mtu: Option<u32>,
) -> Result<NetworkConfig, ConfigError> {
    let bad = |flag, message: String| ConfigError::Network { flag, message };
    let defaults = NetworkConfig::default();
    let bridge = match bridge {
        None => defaults.bridge,
        Some(b) if b == "none" => None,
        Some(b) => {
            // IFNAMSIZ is 16 with the NUL; the kernel refuses '/', ':' and whitespace.
            if b.is_empty()
                || b.len() > 15
                || b.contains(|c: char| c == '/' || c == ':' || c.is_whitespace())
            {
                return Err(bad(
                    "--bridge",
                    format!(
                        "{b:?}: an interface name of 1 to 15 characters without '/', ':' or spaces, or none"
                    ),
                ));
            }
            Some(b)
        }
    };
    let bip = match bip {
        None => defaults.bip,
        Some(text) => {
            let net: ipnet::Ipv4Net = text.parse().map_err(|_| {
                bad(
                    "--bip",
                    format!("{text:?}: expected the gateway's IPv4 CIDR, e.g. 192.168.123.1/24"),
                )
            })?;
            if net.prefix_len() > 30 {
                return Err(bad(
                    "--bip",
                    format!("{text:?}: the subnet needs a prefix of at most /30 to hold pods"),
                ));
            }
            if net.addr() == net.network() || net.addr() == net.broadcast() {
                return Err(bad(
                    "--bip",
                    format!(
                        "{text:?}: the gateway cannot be the subnet's network or broadcast address"
                    ),
                ));
            }
            net
        }
    };
    let mtu = mtu.unwrap_or(defaults.mtu);
    if !(68..=65535).contains(&mtu) {
        return Err(bad("--mtu", format!("{mtu}: must be 68 to 65535")));
    }
    Ok(NetworkConfig {
        bridge,
        bip,
        iptables: iptables.unwrap_or(defaults.iptables),
        mtu,
    })
}

pub fn parse_host(s: &str) -> Result<Listen, ConfigError> {
    if let Some(path) = s.strip_prefix("unix://") {
        if !path.starts_with('/') {
            return Err(ConfigError::BadHost(s.into()));
        }
        let path = PathBuf::from(path);
        if path.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(ConfigError::SocketTooLong(path));
        }
        return Ok(Listen::Unix(path));
    }
    let addr = s.strip_prefix("tcp://").unwrap_or(s);
    addr.parse()
        .map(Listen::Tcp)
        .map_err(|_| ConfigError::BadHost(s.into()))
}

fn find_shim(given: Option<PathBuf>) -> Result<PathBuf, ConfigError> {
    if let Some(p) = given {
        return Ok(p);
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("hyper-shim")));
    if let Some(p) = beside.filter(|p| p.is_file()) {
        return Ok(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("hyper-shim"))
        .find(|p| p.is_file())
        .ok_or(ConfigError::NoShim)
}

impl Config {
    /// Flags win over the file; the file wins over defaults.
    pub fn load(args: Args) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let hosts = if !args.hosts.is_empty() {
            args.hosts
        } else if !file.hosts.is_empty() {
            file.hosts
        } else {
            vec![DEFAULT_HOST.to_string()]
        };
        let listen = hosts
            .iter()
            .map(|h| parse_host(h))
            .collect::<Result<Vec<_>, _>>()?;
        let vmm = args.vmm.or(file.vmm).unwrap_or_default();
        let mut log_opts = file.log_opts;
        for opt in &args.log_opts {
            let (k, v) = opt
                .split_once('=')
                .ok_or_else(|| ConfigError::LogOpt(format!("{opt:?}: expected KEY=VALUE")))?;
            log_opts.insert(k.to_string(), v.to_string());
        }
        let log_default = LogConfig::from_spec(
            &PodLogConfig {
                kind: String::new(),
                config: log_opts,
            },
            LogConfig::default(),
        )
        .map_err(|e| ConfigError::LogOpt(e.replacen("log.config.", "", 1)))?;
        let network = network_config(
            args.bridge.or(file.bridge),
            args.bip.or(file.bip),
            args.iptables.or(file.iptables),
            args.mtu.or(file.mtu),
        )?;
        Ok(Self {
            listen,
            root: args
                .root
                .or(file.root)
                .unwrap_or_else(|| DEFAULT_ROOT.into()),
            run_dir: args
                .run_dir
                .or(file.run_dir)
                .unwrap_or_else(|| DEFAULT_RUN_DIR.into()),
            vmm,
            log: args.log.or(file.log).unwrap_or_else(|| DEFAULT_LOG.into()),
            shim: find_shim(args.shim.or(file.shim))?,
            guest_dir: args.guest_dir.or(file.guest_dir),
            insecure_registries: first_non_empty(
                args.insecure_registries,
                file.insecure_registries,
            ),
            registry_mirrors: first_non_empty(args.registry_mirrors, file.registry_mirrors),
            certs_dir: args
                .certs_dir
                .or(file.certs_dir)
                .unwrap_or_else(|| DEFAULT_CERTS_DIR.into()),
            docker_hub_host: args
                .docker_hub_host
                .or(file.docker_hub_host)
                .unwrap_or_else(|| DEFAULT_DOCKER_HUB_HOST.into()),
            log_default,
            network,
        })
    }

    pub fn db_path(&self) -> PathBuf {
        self.root.join("hyperd.db")
    }
}

/// The flag's list when given, else the file's.
fn first_non_empty(flag: Vec<String>, file: Vec<String>) -> Vec<String> {
    if flag.is_empty() { file } else { flag }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let err = |message: String| ConfigError::File {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse_unix_and_tcp_and_refuse_the_rest() {
        assert_eq!(
            parse_host("unix:///tmp/h.sock").unwrap(),
            Listen::Unix("/tmp/h.sock".into())
        );
        assert_eq!(
            parse_host("tcp://127.0.0.1:2375").unwrap(),
            Listen::Tcp("127.0.0.1:2375".parse().unwrap())
        );
        assert!(matches!(
            parse_host("unix://relative"),
            Err(ConfigError::BadHost(_))
        ));
        assert!(matches!(
            parse_host(&format!("unix:///{}", "x".repeat(120))),
            Err(ConfigError::SocketTooLong(_))
        ));
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.json");
        std::fs::write(&file, r#"{"root":"/from/file","runDir":"/run/file"}"#).unwrap();
        let c = Config::load(Args {
            config: Some(file),
            root: Some("/from/flag".into()),
            shim: Some("/bin/true".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.root, PathBuf::from("/from/flag"));
        assert_eq!(c.run_dir, PathBuf::from("/run/file"));
        assert_eq!(c.listen, vec![Listen::Unix("/var/run/hyper.sock".into())]);
    }

    #[test]
    fn log_opts_from_the_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.json");
        std::fs::write(&file, r#"{"logOpts":{"max-size":"1m","max-file":"2"}}"#).unwrap();
        let c = Config::load(Args {
            config: Some(file.clone()),
            shim: Some("/bin/true".into()),
            log_opts: vec!["max-file=4".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            (c.log_default.max_size, c.log_default.max_file),
            (1 << 20, 4)
        );
        for bad in ["max-file", "max-size=big", "compress=true"] {
            let err = Config::load(Args {
                shim: Some("/bin/true".into()),
                log_opts: vec![bad.into()],
                ..Default::default()
            })
            .unwrap_err();
            assert!(err.to_string().starts_with("--log-opt: "), "{bad}: {err}");
        }
    }

    #[test]
    fn network_flags_use_dockerd_spellings_and_name_the_bad_one() {
        let c = Config::load(Args {
            shim: Some("/bin/true".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.network, NetworkConfig::default());
        assert_eq!(c.network.bridge.as_deref(), Some("hyper0"));
        assert_eq!(c.network.bip.to_string(), "192.168.123.1/24");
        assert!(c.network.iptables);
        let args = Args::try_parse_from([
            "hyperd",
            "--bridge",
            "none",
            "--bip",
            "10.9.0.1/16",
            "--iptables=false",
            "--mtu",
            "1400",
            "--shim",
            "/bin/true",
        ])
        .unwrap();
        let c = Config::load(args).unwrap();
        assert_eq!(c.network.bridge, None);
        assert_eq!(c.network.bip.to_string(), "10.9.0.1/16");
        assert!(!c.network.iptables);
        assert_eq!(c.network.mtu, 1400);
        assert_eq!(
            Args::try_parse_from(["hyperd", "--iptables"])
                .unwrap()
                .iptables,
            Some(true)
        );
        for (flag, value) in [
            ("--bip", "192.168.123.0/24"),
            ("--bip", "10.0.0.1/31"),
            ("--bip", "banana"),
            ("--bridge", "a-very-long-bridge-name"),
            ("--bridge", "br/0"),
            ("--mtu", "20"),
        ] {
            let args =
                Args::try_parse_from(["hyperd", flag, value, "--shim", "/bin/true"]).unwrap();
            let err = Config::load(args).unwrap_err();
            assert!(
                err.to_string().starts_with(&format!("{flag}: ")),
                "{value}: {err}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.json");
        std::fs::write(
            &file,
            r#"{"bridge":"br7","bip":"172.30.0.1/24","iptables":false,"mtu":9000}"#,
        )
        .unwrap();
        let c = Config::load(Args {
            config: Some(file),
            shim: Some("/bin/true".into()),
            mtu: Some(1450),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.network.bridge.as_deref(), Some("br7"));
        assert_eq!(c.network.bip.to_string(), "172.30.0.1/24");
        assert!(!c.network.iptables);
        assert_eq!(c.network.mtu, 1450);
    }

    #[test]
    fn unknown_config_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.json");
        std::fs::write(&file, r#"{"rooot":"/x"}"#).unwrap();
        let err = Config::load(Args {
            config: Some(file),
            shim: Some("/bin/true".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("rooot"), "{err}");
    }
}
