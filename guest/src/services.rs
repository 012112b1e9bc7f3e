//! The pod's services (`ConfigureServices`, hyperd 1.1's UserService): IPVS virtual servers in
//! the guest, one per service, each with its backends as masquerade (NAT) real servers, round
//! robin, weight 1 — what hyperd 1.1 loaded with `ipvsadm -R`. Spoken over generic netlink (the
//! kernel's `IPVS` family, `linux/ip_vs.h`) with a small encoder of our own: no Rust crate
//! speaks IPVS.
//!
//! Replace-all: every call flushes the table and adds the new list; if adding fails, the
//! previous list is put back. The IPVS modules (`/lib/modules/ipvs`) are loaded on the first
//! non-empty list, so pods without services boot without them.
//!
//! Processes in the pod reach a service IP through their ordinary route (the default route of
//! the pod's NIC): IPVS takes locally sent packets in LOCAL_OUT, after routing, rewrites them to
//! a backend and routes them again. The service IP is not bound to any interface, so the source
//! address stays the pod's own, which the backend can answer.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Mutex;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_GENERIC};

use hyper_proto::types::ServiceList;

use crate::error::{Error, Result};

/// Where the initramfs keeps the IPVS modules, apart from the ones loaded at boot.
pub const IPVS_MODULE_DIR: &str = "/lib/modules/ipvs";

/// One checked service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePlan {
    pub protocol: Protocol,
    pub address: Ipv4Addr,
    pub port: u16,
    pub backends: Vec<(Ipv4Addr, u16)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    fn number(self) -> u16 {
        match self {
            Protocol::Tcp => libc::IPPROTO_TCP as u16,
            Protocol::Udp => libc::IPPROTO_UDP as u16,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

fn invalid(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

fn port(value: u32, field: &str) -> Result<u16> {
    match u16::try_from(value) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(invalid(format!(
            "{field} {value}: must be between 1 and 65535"
        ))),
    }
}

fn ipv4(value: &str, field: &str) -> Result<Ipv4Addr> {
    value
        .parse()
        .map_err(|_| invalid(format!("{field} {value:?}: not an IPv4 address")))
}

/// Checks a [`ServiceList`]: IPv4 addresses, ports 1..=65535, protocol tcp or udp (empty: tcp),
/// at least one backend, each `ip:port@protocol` once. Errors: [`Error::InvalidArgument`]
/// naming the field (`services[0].serviceIP`, as in the pod spec) and value.
pub fn plan(list: &ServiceList) -> Result<Vec<ServicePlan>> {
    let mut plans: Vec<ServicePlan> = Vec::new();
    for (i, s) in list.services.iter().enumerate() {
        let at = format!("services[{i}]");
        let protocol = match s.protocol.as_str() {
            "" | "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => {
                return Err(invalid(format!(
                    "{at}.protocol {other:?}: must be tcp or udp"
                )));
            }
        };
        let address = ipv4(&s.service_ip, &format!("{at}.serviceIP"))?;
        let service_port = port(s.service_port, &format!("{at}.servicePort"))?;
        if s.backends.is_empty() {
            return Err(invalid(format!("{at}.hosts: at least one host is needed")));
        }
        let mut backends = Vec::new();
        for (j, b) in s.backends.iter().enumerate() {
            let ip = ipv4(&b.ip, &format!("{at}.hosts[{j}].hostIP"))?;
            let p = port(b.port, &format!("{at}.hosts[{j}].hostPort"))?;
            if backends.contains(&(ip, p)) {
                return Err(invalid(format!("{at}.hosts[{j}] {ip}:{p}: listed twice")));
            }
            backends.push((ip, p));
        }
        if plans
            .iter()
            .any(|p| (p.protocol, p.address, p.port) == (protocol, address, service_port))
        {
            return Err(invalid(format!(
                "{at} {address}:{service_port}@{}: listed twice",
                protocol.name()
            )));
        }
        plans.push(ServicePlan {
            protocol,
            address,
            port: service_port,
            backends,
        });
    }
    Ok(plans)
}

/// The guest's service table as last applied, and whether IPVS is loaded.
#[derive(Default)]
pub struct Services {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    loaded: bool,
    applied: Vec<ServicePlan>,
}

impl Services {
    /// Replaces the guest's services with `list` (see the module doc). Errors: the list's
    /// [`Error::InvalidArgument`]; loading the modules ([`Error::Io`]); the kernel's refusal
    /// ([`Error::Netlink`]), after which the previous table is back.
    pub fn configure(&self, list: &ServiceList) -> Result<()> {
        let plans = plan(list)?;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if plans.is_empty() && !state.loaded {
            return Ok(());
        }
        if !state.loaded {
            let report = crate::modules::load_dir(Path::new(IPVS_MODULE_DIR))?;
            tracing::info!(modules = ?report.loaded, "ipvs loaded");
            state.loaded = true;
        }
        let ipvs = Ipvs::open()?;
        if let Err(e) = ipvs.replace(&plans) {
            if let Err(back) = ipvs.replace(&state.applied) {
                tracing::error!("restoring the previous services: {back}");
            }
            return Err(e);
        }
        tracing::info!(count = plans.len(), "services configured");
        state.applied = plans;
        Ok(())
    }
}

// linux/netlink.h, linux/genetlink.h, linux/ip_vs.h.
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLMSG_ERROR: u16 = 0x2;
const NLMSG_DONE: u16 = 0x3;
const NLA_F_NESTED: u16 = 0x8000;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const IPVS_GENL_VERSION: u8 = 1;
const IPVS_CMD_NEW_SERVICE: u8 = 1;
const IPVS_CMD_NEW_DEST: u8 = 5;
const IPVS_CMD_FLUSH: u8 = 17;
const IPVS_CMD_ATTR_SERVICE: u16 = 1;
const IPVS_CMD_ATTR_DEST: u16 = 2;
const IPVS_SVC_ATTR_AF: u16 = 1;
const IPVS_SVC_ATTR_PROTOCOL: u16 = 2;
const IPVS_SVC_ATTR_ADDR: u16 = 3;
const IPVS_SVC_ATTR_PORT: u16 = 4;
const IPVS_SVC_ATTR_SCHED_NAME: u16 = 6;
const IPVS_SVC_ATTR_FLAGS: u16 = 7;
const IPVS_SVC_ATTR_TIMEOUT: u16 = 8;
const IPVS_SVC_ATTR_NETMASK: u16 = 9;
const IPVS_DEST_ATTR_ADDR: u16 = 1;
const IPVS_DEST_ATTR_PORT: u16 = 2;
const IPVS_DEST_ATTR_FWD_METHOD: u16 = 3;
const IPVS_DEST_ATTR_WEIGHT: u16 = 4;
const IPVS_DEST_ATTR_U_THRESH: u16 = 5;
const IPVS_DEST_ATTR_L_THRESH: u16 = 6;
const IPVS_DEST_ATTR_ADDR_FAMILY: u16 = 11;
const IP_VS_CONN_F_MASQ: u32 = 0;

/// Netlink attributes, appended with their 4-byte alignment.
#[derive(Default)]
struct Attrs(Vec<u8>);

impl Attrs {
    fn put(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = 4 + payload.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(payload);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
        self
    }

    fn u16(&mut self, kind: u16, v: u16) -> &mut Self {
        self.put(kind, &v.to_ne_bytes())
    }

    fn u32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.put(kind, &v.to_ne_bytes())
    }

    /// A port, in network byte order as IPVS keeps it.
    fn port(&mut self, kind: u16, v: u16) -> &mut Self {
        self.put(kind, &v.to_be_bytes())
    }

    /// An address as `union nf_inet_addr`: 16 bytes, IPv4 in the first four.
    fn addr(&mut self, kind: u16, v: Ipv4Addr) -> &mut Self {
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&v.octets());
        self.put(kind, &bytes)
    }

    fn nested(&mut self, kind: u16, inner: &Attrs) -> &mut Self {
        self.put(kind | NLA_F_NESTED, &inner.0)
    }
}

/// A generic netlink request: netlink header, generic header, attributes.
fn request(family: u16, cmd: u8, version: u8, seq: u32, attrs: &Attrs) -> Vec<u8> {
    let len = 16 + 4 + attrs.0.len();
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&family.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&[cmd, version, 0, 0]);
    msg.extend_from_slice(&attrs.0);
    msg
}

/// The service part that names a virtual server (`IPVS_CMD_ATTR_SERVICE`); `full` adds what
/// creating one needs: scheduler rr, no flags, no persistence.
fn service_attrs(s: &ServicePlan, full: bool) -> Attrs {
    let mut a = Attrs::default();
    a.u16(IPVS_SVC_ATTR_AF, libc::AF_INET as u16)
        .u16(IPVS_SVC_ATTR_PROTOCOL, s.protocol.number())
        .addr(IPVS_SVC_ATTR_ADDR, s.address)
        .port(IPVS_SVC_ATTR_PORT, s.port);
    if full {
        let mut flags = [0u8; 8];
        flags[4..].copy_from_slice(&u32::MAX.to_ne_bytes());
        a.put(IPVS_SVC_ATTR_SCHED_NAME, b"rr\0")
            .put(IPVS_SVC_ATTR_FLAGS, &flags)
            .u32(IPVS_SVC_ATTR_TIMEOUT, 0)
            .u32(IPVS_SVC_ATTR_NETMASK, u32::MAX);
    }
    a
}

/// `IPVS_CMD_NEW_SERVICE`'s attributes.
fn new_service(s: &ServicePlan) -> Attrs {
    let mut a = Attrs::default();
    a.nested(IPVS_CMD_ATTR_SERVICE, &service_attrs(s, true));
    a
}

/// `IPVS_CMD_NEW_DEST`'s attributes: a masquerade real server of weight 1.
fn new_dest(s: &ServicePlan, (ip, port): (Ipv4Addr, u16)) -> Attrs {
    let mut dest = Attrs::default();
    dest.addr(IPVS_DEST_ATTR_ADDR, ip)
        .port(IPVS_DEST_ATTR_PORT, port)
        .u32(IPVS_DEST_ATTR_FWD_METHOD, IP_VS_CONN_F_MASQ)
        .u32(IPVS_DEST_ATTR_WEIGHT, 1)
        .u32(IPVS_DEST_ATTR_U_THRESH, 0)
        .u32(IPVS_DEST_ATTR_L_THRESH, 0)
        .u16(IPVS_DEST_ATTR_ADDR_FAMILY, libc::AF_INET as u16);
    let mut a = Attrs::default();
    a.nested(IPVS_CMD_ATTR_SERVICE, &service_attrs(s, false))
        .nested(IPVS_CMD_ATTR_DEST, &dest);
    a
}

/// Finds attribute `kind` among `attrs`.
fn find_attr(mut attrs: &[u8], kind: u16) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if u16::from_ne_bytes([attrs[2], attrs[3]]) & !NLA_F_NESTED == kind {
            return Some(&attrs[4..len]);
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    None
}

/// A generic netlink socket on the kernel's IPVS family.
struct Ipvs {
    socket: Socket,
    family: u16,
}

impl Ipvs {
    fn open() -> Result<Self> {
        let mut socket = Socket::new(NETLINK_GENERIC)
            .map_err(|e| Error::io("open a generic netlink socket", e))?;
        socket
            .bind_auto()
            .map_err(|e| Error::io("bind a generic netlink socket", e))?;
        let mut name = Attrs::default();
        name.put(CTRL_ATTR_FAMILY_NAME, b"IPVS\0");
        let replies = call(
            &socket,
            GENL_ID_CTRL,
            CTRL_CMD_GETFAMILY,
            1,
            &name,
            "find ipvs",
        )?;
        let family = replies
            .iter()
            .filter_map(|r| {
                r.get(4..)
                    .and_then(|attrs| find_attr(attrs, CTRL_ATTR_FAMILY_ID))
            })
            .find_map(|id| Some(u16::from_ne_bytes(id.get(..2)?.try_into().ok()?)))
            .ok_or_else(|| Error::Netlink {
                context: "find ipvs".into(),
                message: "the kernel named no IPVS family".into(),
            })?;
        Ok(Self { socket, family })
    }

    /// Flushes the table, then adds every service and its backends.
    fn replace(&self, plans: &[ServicePlan]) -> Result<()> {
        self.send(IPVS_CMD_FLUSH, &Attrs::default(), "flush ipvs services")?;
        for s in plans {
            let name = format!("{}:{}@{}", s.address, s.port, s.protocol.name());
            self.send(
                IPVS_CMD_NEW_SERVICE,
                &new_service(s),
                &format!("add service {name}"),
            )?;
            for &b in &s.backends {
                self.send(
                    IPVS_CMD_NEW_DEST,
                    &new_dest(s, b),
                    &format!("add backend {}:{} to service {name}", b.0, b.1),
                )?;
            }
        }
        Ok(())
    }

    fn send(&self, cmd: u8, attrs: &Attrs, context: &str) -> Result<()> {
        call(
            &self.socket,
            self.family,
            cmd,
            IPVS_GENL_VERSION,
            attrs,
            context,
        )
        .map(|_| ())
    }
}

/// Sends one request and reads until its acknowledgement; returns the payloads (generic
/// header and attributes) of the data messages before it. A kernel error is
/// [`Error::Netlink`] with `context`.
fn call(
    socket: &Socket,
    family: u16,
    cmd: u8,
    version: u8,
    attrs: &Attrs,
    context: &str,
) -> Result<Vec<Vec<u8>>> {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    socket
        .send_to(
            &request(family, cmd, version, seq, attrs),
            &SocketAddr::new(0, 0),
            0,
        )
        .map_err(|e| Error::io(context, e))?;
    let mut data = Vec::new();
    loop {
        let (buf, _) = socket.recv_from_full().map_err(|e| Error::io(context, e))?;
        let mut rest = buf.as_slice();
        while rest.len() >= 16 {
            let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap_or_default()) as usize;
            let kind = u16::from_ne_bytes([rest[4], rest[5]]);
            let msg_seq = u32::from_ne_bytes(rest[8..12].try_into().unwrap_or_default());
            if len < 16 || len > rest.len() {
                break;
            }
            let payload = &rest[16..len];
            rest = &rest[len.next_multiple_of(4).min(rest.len())..];
            if msg_seq != seq {
                continue;
            }
            match kind {
                NLMSG_ERROR => {
                    let code = payload
                        .get(..4)
                        .map(|b| i32::from_ne_bytes(b.try_into().unwrap_or_default()))
                        .unwrap_or(0);
                    if code == 0 {
                        return Ok(data);
                    }
                    return Err(Error::Netlink {
                        context: context.into(),
                        message: std::io::Error::from_raw_os_error(-code).to_string(),
                    });
                }
                NLMSG_DONE => return Ok(data),
                _ => data.push(payload.to_vec()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_proto::types::{Service, ServiceBackend};

    fn service(ip: &str, proto: &str, port: u32, hosts: &[(&str, u32)]) -> Service {
        Service {
            service_ip: ip.into(),
            protocol: proto.into(),
            service_port: port,
            backends: hosts
                .iter()
                .map(|(ip, port)| ServiceBackend {
                    ip: (*ip).into(),
                    port: *port,
                })
                .collect(),
        }
    }

    fn err(services: Vec<Service>) -> String {
        plan(&ServiceList { services }).unwrap_err().to_string()
    }

    #[test]
    fn a_good_list_is_planned_with_tcp_by_default() {
        let plans = plan(&ServiceList {
            services: vec![
                service("10.254.0.10", "", 6379, &[("192.168.123.20", 6379)]),
                service("10.254.0.10", "udp", 6379, &[("192.168.123.21", 53)]),
            ],
        })
        .unwrap();
        assert_eq!(plans[0].protocol, Protocol::Tcp);
        assert_eq!(plans[1].protocol, Protocol::Udp);
        assert_eq!(plans[1].backends, [(Ipv4Addr::new(192, 168, 123, 21), 53)]);
    }

    #[test]
    fn bad_services_name_the_field() {
        let host = [("10.0.0.1", 80)];
        assert!(err(vec![service("x", "tcp", 80, &host)]).contains("services[0].serviceIP"));
        assert!(err(vec![service("10.0.0.9", "sctp", 80, &host)]).contains("services[0].protocol"));
        assert!(
            err(vec![service("10.0.0.9", "tcp", 0, &host)]).contains("services[0].servicePort")
        );
        assert!(err(vec![service("10.0.0.9", "tcp", 70000, &host)]).contains("servicePort"));
        assert!(err(vec![service("10.0.0.9", "tcp", 80, &[])]).contains("services[0].hosts"));
        assert!(
            err(vec![service("10.0.0.9", "tcp", 80, &[("::1", 80)])])
                .contains("services[0].hosts[0].hostIP")
        );
        assert!(
            err(vec![service("10.0.0.9", "tcp", 80, &[("10.0.0.1", 0)])])
                .contains("services[0].hosts[0].hostPort")
        );
        let dup = err(vec![
            service("10.0.0.9", "tcp", 80, &host),
            service("10.0.0.9", "", 80, &host),
        ]);
        assert!(
            dup.contains("services[1]") && dup.contains("twice"),
            "{dup}"
        );
    }

    #[test]
    fn attributes_are_aligned_and_nested() {
        let s = &plan(&ServiceList {
            services: vec![service(
                "10.254.0.10",
                "tcp",
                6379,
                &[("192.168.123.20", 80)],
            )],
        })
        .unwrap()[0];
        let msg = request(0x20, IPVS_CMD_NEW_DEST, 1, 7, &new_dest(s, s.backends[0]));
        assert_eq!(msg.len() % 4, 0);
        assert_eq!(
            u32::from_ne_bytes(msg[0..4].try_into().unwrap()) as usize,
            msg.len()
        );
        assert_eq!(&msg[16..18], &[IPVS_CMD_NEW_DEST, 1]);
        let attrs = &msg[20..];
        let svc = find_attr(attrs, IPVS_CMD_ATTR_SERVICE).unwrap();
        assert_eq!(
            find_attr(svc, IPVS_SVC_ATTR_PORT).unwrap(),
            &6379u16.to_be_bytes()
        );
        assert_eq!(
            &find_attr(svc, IPVS_SVC_ATTR_ADDR).unwrap()[..4],
            &[10, 254, 0, 10]
        );
        assert!(find_attr(svc, IPVS_SVC_ATTR_SCHED_NAME).is_none());
        let dest = find_attr(attrs, IPVS_CMD_ATTR_DEST).unwrap();
        assert_eq!(
            find_attr(dest, IPVS_DEST_ATTR_WEIGHT).unwrap(),
            &1u32.to_ne_bytes()
        );
        assert_eq!(
            find_attr(dest, IPVS_DEST_ATTR_PORT).unwrap(),
            &80u16.to_be_bytes()
        );
        let full = new_service(s);
        let svc = find_attr(&full.0, IPVS_CMD_ATTR_SERVICE).unwrap();
        assert_eq!(find_attr(svc, IPVS_SVC_ATTR_SCHED_NAME).unwrap(), b"rr\0");
    }
}
