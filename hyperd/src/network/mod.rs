//! Pod networking on the host: the bridge (`link`), address leases (`ipam`), port mappings
//! (`ports`), the NAT ruleset (`nft`) and the pod's /etc files (`etc`). [`Network`] is what the
//! pod lifecycle calls; every choice it makes is persisted in the state database first, and
//! the firewall is always re-rendered from the database, so a restart or kill -9 recovers by
//! running [`Network::apply`] again.

pub mod etc;
pub mod ipam;
pub mod link;
pub mod nft;
pub mod ports;

use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use rusqlite::Transaction;

use hyper_proto::rest::{PortMapping, UserPod};
use hyper_proto::types::{EtcFiles, InterfaceConfig, NicSpec, PodNetwork, RouteConfig};

use crate::error::Kind;
use crate::pod::spec::SpecError;
use crate::store::{self, PortRecord, Store};
pub use ports::{PortRange, PortRule, Protocol, normalize_ports, parse_rules};

pub const DEFAULT_BRIDGE: &str = "hyper0";
pub const DEFAULT_BIP: &str = "192.168.123.1/24";
pub const DEFAULT_MTU: u32 = 1500;
/// Tap names are `hyt` + the first 12 characters of the VM id: 15 bytes, IFNAMSIZ - 1.
pub const TAP_PREFIX: &str = "hyt";
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("host port {protocol}/{port} is already mapped by pod {pod_id}")]
    PortInUse {
        protocol: Protocol,
        port: u16,
        pod_id: String,
    },
    #[error("host port {protocol}/{port} is in use by a host process: {source}")]
    PortBusy {
        protocol: Protocol,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("address {address} is already held by pod {pod_id}")]
    AddressInUse { address: Ipv4Addr, pod_id: String },
    #[error("no free address left in {subnet}")]
    Exhausted { subnet: Ipv4Net },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("pod networking is disabled (hyperd runs with --bridge none)")]
    Disabled,
    #[error("bridge {link}: {message}")]
    Netlink { link: String, message: String },
    #[error("nft: {0}")]
    Nft(String),
    #[error("sysctl {key}: {source}")]
    Sysctl {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl Error {
    pub fn kind(&self) -> Kind {
        match self {
            Error::PortInUse { .. }
            | Error::PortBusy { .. }
            | Error::AddressInUse { .. }
            | Error::Exhausted { .. } => Kind::Conflict,
            Error::Invalid { .. } | Error::Disabled => Kind::InvalidInput,
            Error::Netlink { .. } | Error::Nft(_) | Error::Sysctl { .. } => Kind::Internal,
            Error::Store(e) => e.kind(),
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Store(e.into())
    }
}

/// The daemon's network settings (dockerd's `--bridge`, `--bip`, `--iptables`, `--mtu`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The host bridge; `None` (`--bridge none`): VMs get no NIC, pods only loopback.
    pub bridge: Option<String>,
    /// The gateway (the bridge's address) with the subnet's prefix, e.g. 192.168.123.1/24.
    pub bip: Ipv4Net,
    /// Whether hyperd manages NAT, port mappings and the forwarding sysctls; false leaves the
    /// host's firewall and sysctls entirely alone.
    pub iptables: bool,
    /// MTU of the bridge, taps and guest interfaces (bytes).
    pub mtu: u32,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            bridge: Some(DEFAULT_BRIDGE.into()),
            bip: DEFAULT_BIP.parse().expect("valid default"),
            iptables: true,
            mtu: DEFAULT_MTU,
        }
    }
}

pub struct Network {
    config: NetworkConfig,
    store: Arc<Store>,
    /// One `nft -f` at a time, each rendering the database as it is when it runs.
    applying: tokio::sync::Mutex<()>,
}

fn spec_error(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        message: message.into(),
    }
}

impl Network {
    /// Brings the host side up: the bridge is created (with the gateway address, up, MTU) if
    /// missing and left alone if it exists (it must be a bridge and carry the gateway
    /// address); when `iptables`, `net.ipv4.ip_forward=1` and `route_localnet=1` on the
    /// bridge, else a warning if a stale `ip hyperd` table is found (and left); leases and
    /// host ports of pods that no longer exist are dropped; the nftables table is re-rendered
    /// from the database. Works in the calling thread's network namespace.
    pub async fn start(config: NetworkConfig, store: Arc<Store>) -> Result<Arc<Network>, Error> {
        if let Some(bridge) = &config.bridge {
            if link::ensure_bridge(bridge, config.bip, config.mtu).await? {
                tracing::info!(bridge, bip = %config.bip, "bridge created");
            }
            if config.iptables {
                link::set_sysctl("net/ipv4/ip_forward", "1")?;
                link::set_sysctl(&format!("net/ipv4/conf/{bridge}/route_localnet"), "1")?;
            }
        }
        // The flag means hands off: a table left by an earlier run with iptables on stays,
        // but the operator should know its rules still apply.
        if !config.iptables && nft::table_exists().await {
            tracing::warn!(
                table = format!("ip {}", nft::TABLE),
                "--iptables=false but the nftables table ip {} of an earlier run is still there; \
                 its rules still apply (remove it with `nft delete table ip {}`)",
                nft::TABLE,
                nft::TABLE
            );
        }
        let dropped = store.write(|tx| store::delete_orphan_network_rows(tx))?;
        if dropped > 0 {
            tracing::info!(rows = dropped, "dropped the network rows of removed pods");
        }
        let network = Network::detached(config, store);
        network.apply().await?;
        Ok(network)
    }

    /// A `Network` over the database alone: no bridge, sysctl or nftables work now (nor in
    /// [`apply`](Network::apply) when `config.iptables` is false). For in-process tests of
    /// the API, which must not touch the host.
    pub fn detached(config: NetworkConfig, store: Arc<Store>) -> Arc<Network> {
        Arc::new(Network {
            config,
            store,
            applying: tokio::sync::Mutex::new(()),
        })
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// Whether pods get a NIC at all (false with `--bridge none`).
    pub fn enabled(&self) -> bool {
        self.config.bridge.is_some()
    }

    /// The bridge's address, pods' default gateway; `None` when disabled.
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        self.enabled().then(|| self.config.bip.addr())
    }

    /// The pods' subnet (network address and prefix).
    pub fn subnet(&self) -> Ipv4Net {
        self.config.bip.trunc()
    }

    /// The NIC a new VM boots with (`None` when disabled): tap `hyt` + the first 12 characters
    /// of `vm_id`, a random locally administered unicast MAC `52:54:xx:xx:xx:xx`, our bridge
    /// and MTU.
    pub fn nic_for(&self, vm_id: &str) -> Option<NicSpec> {
        let bridge = self.config.bridge.clone()?;
        let id: String = vm_id.chars().take(12).collect();
        let b: [u8; 4] = rand::random();
        Some(NicSpec {
            bridge,
            tap: format!("{TAP_PREFIX}{id}"),
            mac: format!("52:54:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3]),
            mtu: self.config.mtu,
        })
    }

    /// Whether this pod gets an address and a configured NIC (bridge mode, networking on).
    pub fn wants_address(&self, pod: &UserPod) -> bool {
        self.enabled() && pod.network != "none"
    }

    /// Spec checks that depend on this daemon; errors name the field (400):
    /// `network` is ""/`bridge`/`none`; `interfaces`: at most one, with `ip` empty or an
    /// address (optionally `/prefix`, which must be the subnet's) usable in the subnet,
    /// `bridge` empty or ours, `gateway` empty or an address in the subnet, `mtu` 68..=65535
    /// or 0, and `ifname`/`mac`/`id` unsupported; `interfaces` and `portmappings` need
    /// networking (not `--bridge none`, not `network: none`) and `portmappings` hyperd's
    /// firewall (not `--iptables=false`); port mappings valid ([`parse_rules`]); `portmappingWhiteLists` (hyperd 1.1's in-guest firewall) unsupported.
    pub fn check_spec(&self, pod: &UserPod) -> Result<(), SpecError> {
        let lists = &pod.portmapping_white_lists;
        if !lists.internal_networks.is_empty() || !lists.external_networks.is_empty() {
            return Err(spec_error(
                "portmappingWhiteLists",
                "not supported (hyperd 1.1's in-guest firewall is not built)",
            ));
        }
        match pod.network.as_str() {
            "" | "bridge" | "none" => {}
            other => {
                return Err(spec_error(
                    "network",
                    format!("{other:?}: must be bridge or none"),
                ));
            }
        }
        if !self.wants_address(pod) {
            let why = if self.enabled() {
                "not available with network none"
            } else {
                "not available: hyperd runs with --bridge none"
            };
            if !pod.interfaces.is_empty() {
                return Err(spec_error("interfaces", why));
            }
            if !pod.portmappings.is_empty() {
                return Err(spec_error("portmappings", why));
            }
            return Ok(());
        }
        if pod.interfaces.len() > 1 {
            return Err(spec_error(
                "interfaces",
                format!(
                    "{} given: a pod has at most one interface",
                    pod.interfaces.len()
                ),
            ));
        }
        let subnet = self.subnet();
        let gateway = self.config.bip.addr();
        if let Some(i) = pod.interfaces.first() {
            let at = |f: &str| format!("interfaces[0].{f}");
            fixed_ip(i.ip.as_str(), subnet, gateway).map_err(|m| spec_error(at("ip"), m))?;
            let ours = self.config.bridge.as_deref().unwrap_or_default();
            if !i.bridge.is_empty() && i.bridge != ours {
                return Err(spec_error(
                    at("bridge"),
                    format!(
                        "{:?}: pods can only join hyperd's bridge {ours:?}",
                        i.bridge
                    ),
                ));
            }
            for (field, value) in [("ifname", &i.ifname), ("mac", &i.mac), ("id", &i.id)] {
                if !value.is_empty() {
                    return Err(spec_error(at(field), format!("{value:?}: not supported")));
                }
            }
            if i.mtu != 0 && !(68..=65535).contains(&i.mtu) {
                return Err(spec_error(
                    at("mtu"),
                    format!("{}: must be 68 to 65535", i.mtu),
                ));
            }
            if !i.gateway.is_empty() {
                match i.gateway.parse::<Ipv4Addr>() {
                    Ok(g) if subnet.contains(&g) => {}
                    _ => {
                        return Err(spec_error(
                            at("gateway"),
                            format!("{:?}: must be an IPv4 address in {subnet}", i.gateway),
                        ));
                    }
                }
            }
        }
        // Without our nftables table nothing would forward a host port: refuse, not ignore.
        if !self.config.iptables && !pod.portmappings.is_empty() {
            return Err(spec_error(
                "portmappings",
                "not available with --iptables=false",
            ));
        }
        parse_rules("portmappings", &pod.portmappings)?;
        Ok(())
    }

    /// The address the spec asks for (`interfaces[0].ip`), if any; assumes [`check_spec`]
    /// passed.
    ///
    /// [`check_spec`]: Network::check_spec
    pub fn fixed_address(pod: &UserPod) -> Option<Ipv4Addr> {
        let ip = pod.interfaces.first()?.ip.as_str();
        let addr = ip.split_once('/').map_or(ip, |(a, _)| a);
        addr.parse().ok()
    }

    /// Inside the caller's transaction: records the pod's host ports (one row per port).
    /// `Ok(Err(PortInUse))` when another pod (or this pod, for another container port) holds
    /// one; then nothing of this call is written (a savepoint is rolled back), whatever the
    /// caller does next. A mapping the pod already holds identically is kept as is. Also
    /// refuses overlaps inside `m` (`Invalid`).
    pub fn reserve_ports(
        tx: &Transaction,
        pod_id: &str,
        m: &[PortMapping],
    ) -> store::Result<Result<(), Error>> {
        let rules = match parse_rules("portmappings", m) {
            Ok(r) => r,
            Err(e) => {
                return Ok(Err(Error::Invalid {
                    field: e.field,
                    message: e.message,
                }));
            }
        };
        tx.execute_batch("SAVEPOINT reserve_ports")?;
        let out = reserve_rules(tx, pod_id, &rules);
        match &out {
            Ok(Ok(())) => tx.execute_batch("RELEASE reserve_ports")?,
            _ => tx.execute_batch("ROLLBACK TO reserve_ports; RELEASE reserve_ports")?,
        }
        out
    }

    /// Inside the caller's transaction: frees the pod's mappings that match `m` (same
    /// protocol and container ports; and host ports, when given), or all of the pod's with
    /// `None`. How many mappings went.
    pub fn release_ports(
        tx: &Transaction,
        pod_id: &str,
        m: Option<&[PortMapping]>,
    ) -> store::Result<Result<usize, Error>> {
        let held = store::list_ports(tx, Some(pod_id))?;
        let Some(m) = m else {
            store::delete_pod_ports(tx, pod_id)?;
            return Ok(Ok(held.len()));
        };
        let mut gone = 0;
        for (i, pm) in m.iter().enumerate() {
            let field = format!("portmappings[{i}]");
            let protocol = match pm.protocol.as_str() {
                "" | "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                other => {
                    return Ok(Err(Error::Invalid {
                        field: format!("{field}.protocol"),
                        message: format!("{other:?}: must be tcp or udp"),
                    }));
                }
            };
            let container = match PortRange::parse(&pm.container_port) {
                Ok(r) => r,
                Err(message) => {
                    return Ok(Err(Error::Invalid {
                        field: format!("{field}.containerPort"),
                        message,
                    }));
                }
            };
            let host = if pm.host_port.is_empty() {
                None
            } else {
                match PortRange::parse(&pm.host_port) {
                    Ok(r) => Some(r),
                    Err(message) => {
                        return Ok(Err(Error::Invalid {
                            field: format!("{field}.hostPort"),
                            message,
                        }));
                    }
                }
            };
            for r in &held {
                let rule = rule_of(r);
                if rule.protocol == protocol
                    && rule.container == container
                    && host.is_none_or(|h| h == rule.host)
                    && store::delete_ports(tx, r)? > 0
                {
                    gone += 1;
                }
            }
        }
        Ok(Ok(gone))
    }

    /// The pod's mappings in the stored normal form (tcp first, by host port).
    pub fn port_mappings(&self, pod_id: &str) -> Result<Vec<PortMapping>, Error> {
        let held = self.store.read(|c| store::list_ports(c, Some(pod_id)))?;
        let mut rules: Vec<PortRule> = held.iter().map(rule_of).collect();
        rules.sort();
        Ok(rules.into_iter().map(PortRule::to_mapping).collect())
    }

    /// 409 `PortBusy` when a host process already binds one of the host ports: each is probed
    /// with a bind on 0.0.0.0 of its protocol (closed at once). Ports DNATed to pods are not
    /// bound on the host, so only foreign users show up.
    pub fn probe_host_ports(&self, m: &[PortMapping]) -> Result<(), Error> {
        let rules = parse_rules("portmappings", m).map_err(|e| Error::Invalid {
            field: e.field,
            message: e.message,
        })?;
        for r in rules {
            for port in r.host.first..=r.host.last {
                let addr = (Ipv4Addr::UNSPECIFIED, port);
                let probed = match r.protocol {
                    Protocol::Tcp => std::net::TcpListener::bind(addr).map(drop),
                    Protocol::Udp => std::net::UdpSocket::bind(addr).map(drop),
                };
                probed.map_err(|source| Error::PortBusy {
                    protocol: r.protocol,
                    port,
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// An address for the pod, in one transaction: its current lease if it has one; else
    /// `fixed` (`AddressInUse` 409 when another pod holds it, `Invalid` 400 when it is not a
    /// usable address of the subnet); else the next free address after the persisted cursor,
    /// so a released address is not handed out again soon (`Exhausted` 409 when none is
    /// free). `Disabled` with `--bridge none`.
    pub fn allocate(&self, pod_id: &str, fixed: Option<Ipv4Addr>) -> Result<Ipv4Net, Error> {
        if !self.enabled() {
            return Err(Error::Disabled);
        }
        let (subnet, gateway) = (self.subnet(), self.config.bip.addr());
        self.store
            .write(|tx| ipam::allocate_in(tx, subnet, gateway, pod_id, fixed))?
    }

    /// Frees the pod's address (nothing when it has none).
    pub fn release(&self, pod_id: &str) -> Result<(), Error> {
        self.store.write(|tx| store::delete_lease(tx, pod_id))?;
        Ok(())
    }

    /// Inside the caller's transaction (the one removing the pod): drops the pod's lease and
    /// every host port it holds. Call [`apply`](Network::apply) after the commit.
    pub fn forget_pod(tx: &Transaction, pod_id: &str) -> store::Result<()> {
        store::delete_lease(tx, pod_id)?;
        store::delete_pod_ports(tx, pod_id)?;
        Ok(())
    }

    /// Every pod holding an address, with it: `(pod id, address)`.
    pub fn holders(&self) -> Result<Vec<(String, Ipv4Addr)>, Error> {
        Ok(self
            .store
            .read(store::list_leases)?
            .into_iter()
            .map(|l| (l.pod_id, l.address))
            .collect())
    }

    /// The pod's address with the subnet's prefix, if it holds one.
    pub fn address_of(&self, pod_id: &str) -> Result<Option<Ipv4Net>, Error> {
        let lease = self.store.read(|c| store::lease_of(c, pod_id))?;
        Ok(lease.and_then(|l| Ipv4Net::new(l.address, l.prefix).ok()))
    }

    /// What the agent applies: the NIC (by `mac`) with `addr` and the MTU (the spec
    /// interface's, else ours), and the default route via the spec interface's `gateway`, else
    /// ours.
    pub fn pod_network(&self, addr: Ipv4Net, mac: &str, pod: &UserPod) -> PodNetwork {
        let spec = pod.interfaces.first();
        let mtu = spec
            .map(|i| i.mtu as u32)
            .filter(|m| *m != 0)
            .unwrap_or(self.config.mtu);
        let gateway = spec
            .map(|i| i.gateway.clone())
            .filter(|g| !g.is_empty())
            .unwrap_or_else(|| self.config.bip.addr().to_string());
        PodNetwork {
            interfaces: vec![InterfaceConfig {
                mac: mac.into(),
                address: addr.to_string(),
                mtu,
            }],
            routes: vec![RouteConfig {
                destination: String::new(),
                gateway,
            }],
        }
    }

    /// The pod's /etc/hostname, /etc/hosts and /etc/resolv.conf ([`etc`]): the hostname (the
    /// pod id when the spec has none), every name → `addr`, resolvers from the spec or the
    /// host's /etc/resolv.conf (read now; a missing file counts as empty).
    pub fn etc_files(
        &self,
        pod: &UserPod,
        addr: Option<Ipv4Addr>,
        container_names: &[String],
    ) -> EtcFiles {
        let host = std::fs::read_to_string(HOST_RESOLV_CONF).unwrap_or_default();
        etc_files_with(pod, addr, container_names, &host)
    }

    /// Renders the whole ruleset from the database (leases, and port mappings of pods that
    /// hold a lease) and applies it with one `nft -f -`; with nothing to NAT, deletes the
    /// table. Does nothing at all with `iptables` off. `Nft` carries nft's stderr.
    pub async fn apply(&self) -> Result<(), Error> {
        if !self.config.iptables {
            return Ok(());
        }
        let _one = self.applying.lock().await;
        let script = match self.nat_state()? {
            Some(state) => nft::ruleset(&state),
            None => None,
        };
        nft::run_nft(&script.unwrap_or_else(nft::delete_script)).await
    }

    /// The state the ruleset is rendered from; `None` when disabled.
    pub fn nat_state(&self) -> Result<Option<nft::NatState>, Error> {
        let Some(bridge) = self.config.bridge.clone() else {
            return Ok(None);
        };
        let (leases, held) = self
            .store
            .read(|c| Ok((store::list_leases(c)?, store::list_ports(c, None)?)))?;
        let mappings = held
            .iter()
            .filter_map(|p| {
                let lease = leases.iter().find(|l| l.pod_id == p.pod_id)?;
                Some((lease.address, rule_of(p)))
            })
            .collect();
        Ok(Some(nft::NatState {
            bridge,
            subnet: self.subnet(),
            leases: leases.iter().map(|l| l.address).collect(),
            mappings,
        }))
    }
}

/// [`Network::etc_files`] with the host's resolv.conf given.
pub fn etc_files_with(
    pod: &UserPod,
    addr: Option<Ipv4Addr>,
    container_names: &[String],
    host_resolv_conf: &str,
) -> EtcFiles {
    let hostname = if pod.hostname.is_empty() {
        pod.id.as_str()
    } else {
        pod.hostname.as_str()
    };
    EtcFiles {
        hostname: format!("{hostname}\n"),
        hosts: etc::hosts(hostname, addr, container_names),
        resolv_conf: etc::resolv_conf(pod, host_resolv_conf),
    }
}

/// `ip` of a spec interface: empty, or an address (with the subnet's prefix, if any) usable
/// in `subnet`.
fn fixed_ip(ip: &str, subnet: Ipv4Net, gateway: Ipv4Addr) -> Result<Option<Ipv4Addr>, String> {
    if ip.is_empty() {
        return Ok(None);
    }
    let (addr, prefix) = match ip.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (ip, None),
    };
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("{ip:?}: not an IPv4 address or CIDR"))?;
    if let Some(p) = prefix
        && p.parse::<u8>().ok() != Some(subnet.prefix_len())
    {
        return Err(format!(
            "{ip:?}: the prefix must be the subnet's ({subnet})"
        ));
    }
    match ipam::unusable(subnet, gateway, addr) {
        Some(why) => Err(format!("{ip:?}: {why}")),
        None => Ok(Some(addr)),
    }
}

fn rule_of(r: &PortRecord) -> PortRule {
    let protocol = if r.protocol == "udp" {
        Protocol::Udp
    } else {
        Protocol::Tcp
    };
    PortRule {
        protocol,
        host: PortRange {
            first: r.host_first,
            last: r.host_last,
        },
        container: PortRange {
            first: r.container_first,
            last: r.container_first + (r.host_last - r.host_first),
        },
    }
}

fn reserve_rules(
    tx: &Transaction,
    pod_id: &str,
    rules: &[PortRule],
) -> store::Result<Result<(), Error>> {
    for rule in rules {
        let record = PortRecord {
            pod_id: pod_id.into(),
            protocol: rule.protocol.to_string(),
            host_first: rule.host.first,
            host_last: rule.host.last,
            container_first: rule.container.first,
        };
        let mut already_ours = false;
        for port in rule.host.first..=rule.host.last {
            if let Some(holder) = store::port_holder(tx, rule.protocol.as_str(), port)? {
                if holder == record {
                    already_ours = true;
                    break;
                }
                return Ok(Err(Error::PortInUse {
                    protocol: rule.protocol,
                    port,
                    pod_id: holder.pod_id,
                }));
            }
        }
        if !already_ours {
            store::insert_ports(tx, &record)?;
        }
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests;
