//! The host side of a VM's network card: a tap device opened on `/dev/net/tun`, joined to a
//! host bridge over rtnetlink, and handed to the VMM as an fd.
//!
//! The tap is not persistent: it lives while someone holds an fd on it (the shim until the VMM
//! has its own, then the VMM), so a killed shim or VMM leaves nothing to clean up.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::LinkMessage;
use rtnetlink::{Handle, LinkBridgePort, LinkUnspec};

use hyper_proto::mac::parse_mac;
use hyper_proto::types::NicSpec;

use crate::vmm::Nic;

/// The tap's MTU when the spec leaves it 0.
pub const DEFAULT_MTU: u32 = 1500;
/// Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
const MAX_NAME: usize = 15;
const MIN_MTU: u32 = 68;
const MAX_MTU: u32 = 65535;

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("nic: {0}")]
    InvalidSpec(String),
    #[error("bridge {bridge}: not found on the host ({reason})")]
    NoBridge { bridge: String, reason: String },
    #[error("tap {tap}: {context}: {reason}")]
    Setup {
        tap: String,
        context: &'static str,
        reason: String,
    },
}

/// A checked [`NicSpec`]: the MTU is resolved and the MAC is in canonical lowercase form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicConfig {
    pub bridge: String,
    pub tap: String,
    /// `52:54:00:xx:xx:xx`, lowercase.
    pub mac: String,
    /// Bytes; [`DEFAULT_MTU`] when the spec said 0.
    pub mtu: u32,
}

fn check_name(what: &str, name: &str) -> Result<(), TapError> {
    let bad = name.is_empty()
        || name.len() > MAX_NAME
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if bad {
        return Err(TapError::InvalidSpec(format!(
            "{what} {name:?}: not a valid interface name (1 to {MAX_NAME} bytes, no '/', ':' or spaces)"
        )));
    }
    Ok(())
}

/// A unicast MAC (the guest NIC's own address), parsed.
fn parse_unicast_mac(mac: &str) -> Option<[u8; 6]> {
    parse_mac(mac).filter(|m| m[0] & 1 == 0)
}

/// Checks a [`NicSpec`]. Errors: [`TapError::InvalidSpec`] naming the field.
pub fn nic_config(spec: &NicSpec) -> Result<NicConfig, TapError> {
    check_name("bridge", &spec.bridge)?;
    check_name("tap", &spec.tap)?;
    let mac = parse_unicast_mac(&spec.mac).ok_or_else(|| {
        TapError::InvalidSpec(format!(
            "mac {:?}: not a unicast MAC address (aa:bb:cc:dd:ee:ff)",
            spec.mac
        ))
    })?;
    let mtu = if spec.mtu == 0 { DEFAULT_MTU } else { spec.mtu };
    if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
        return Err(TapError::InvalidSpec(format!(
            "mtu {mtu}: must be between {MIN_MTU} and {MAX_MTU}"
        )));
    }
    Ok(NicConfig {
        bridge: spec.bridge.clone(),
        tap: spec.tap.clone(),
        mac: mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        mtu,
    })
}

impl NicConfig {
    /// The spec as the VM got it (VmInfo.nic).
    pub fn to_spec(&self) -> NicSpec {
        NicSpec {
            bridge: self.bridge.clone(),
            tap: self.tap.clone(),
            mac: self.mac.clone(),
            mtu: self.mtu,
        }
    }
}

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags (the union's first member).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// An open tap device, up and joined to its bridge. Dropping it closes the shim's fd; the
/// device goes away once the VMM's fd is closed too.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    config: NicConfig,
}

impl Tap {
    /// Opens the tap (`IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`), then sets its MTU, joins it to
    /// the bridge and brings it up. Errors: [`TapError::NoBridge`] when the bridge does not
    /// exist, [`TapError::Setup`] naming the tap and the step that failed.
    pub async fn open(config: NicConfig) -> Result<Self, TapError> {
        let setup = |context: &'static str, reason: String| TapError::Setup {
            tap: config.tap.clone(),
            context,
            reason,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .map_err(|e| setup("open /dev/net/tun", e.to_string()))?;
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short,
            _pad: [0; 22],
        };
        req.name[..config.tap.len()].copy_from_slice(config.tap.as_bytes());
        // SAFETY: TUNSETIFF reads and writes one ifreq, which `req` is, for the call's duration.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) };
        if rc != 0 {
            return Err(setup(
                "TUNSETIFF",
                std::io::Error::last_os_error().to_string(),
            ));
        }
        let tap = Self {
            fd: file.into(),
            config,
        };
        tap.join_bridge().await?;
        tracing::info!(tap = %tap.config.tap, bridge = %tap.config.bridge, mtu = tap.config.mtu, "tap ready");
        Ok(tap)
    }

    async fn join_bridge(&self) -> Result<(), TapError> {
        let c = &self.config;
        let setup = |context: &'static str, reason: String| TapError::Setup {
            tap: c.tap.clone(),
            context,
            reason,
        };
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|e| setup("netlink socket", e.to_string()))?;
        let driver = tokio::spawn(connection);
        let joined = async {
            let bridge =
                link_index(&handle, &c.bridge)
                    .await
                    .map_err(|reason| TapError::NoBridge {
                        bridge: c.bridge.clone(),
                        reason,
                    })?;
            let tap = link_index(&handle, &c.tap)
                .await
                .map_err(|reason| setup("find the device", reason))?;
            handle
                .link()
                .set(LinkUnspec::new_with_index(tap).mtu(c.mtu).build())
                .execute()
                .await
                .map_err(|e| setup("set mtu", e.to_string()))?;
            handle
                .link()
                .set(
                    LinkUnspec::new_with_index(tap)
                        .controller(bridge)
                        .up()
                        .build(),
                )
                .execute()
                .await
                .map_err(|e| {
                    setup(
                        "join the bridge and bring it up",
                        format!("bridge {}: {e}", c.bridge),
                    )
                })?;
            // Hairpin: a pod's packet to its own published port (DNAT on the host) goes back
            // out of the port it came in on, which a bridge forwards only in this mode.
            handle
                .link()
                .set_port(LinkBridgePort::new(tap).hairpin(true).build())
                .execute()
                .await
                .map_err(|e| setup("set hairpin mode", e.to_string()))
        }
        .await;
        driver.abort();
        joined
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// The card for the VMM's [`VmSpec`](crate::vmm::VmSpec): the shim's fd on the tap, for
    /// the VMM to take its own copy of, and the guest side's MAC and MTU.
    pub fn into_nic(self) -> Nic {
        Nic {
            tap: Arc::new(self.fd),
            mac: self.config.mac,
            mtu: self.config.mtu,
        }
    }

    pub fn config(&self) -> &NicConfig {
        &self.config
    }
}

/// The index of the link named `name`, or why not.
async fn link_index(handle: &Handle, name: &str) -> Result<u32, String> {
    let link: Option<LinkMessage> = handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
        .map_err(|e| e.to_string())?;
    link.map(|l| l.header.index)
        .ok_or_else(|| "no such device".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(bridge: &str, tap: &str, mac: &str, mtu: u32) -> NicSpec {
        NicSpec {
            bridge: bridge.into(),
            tap: tap.into(),
            mac: mac.into(),
            mtu,
        }
    }

    #[test]
    fn a_good_spec_is_normalised() {
        let c = nic_config(&spec("hyper0", "hyt-ab12", "52:54:00:AB:cd:01", 0)).unwrap();
        assert_eq!(c.mac, "52:54:00:ab:cd:01");
        assert_eq!(c.mtu, DEFAULT_MTU);
        let c = nic_config(&spec("hyper0", "t", "52:54:00:00:00:01", 9000)).unwrap();
        assert_eq!(c.mtu, 9000);
    }

    #[test]
    fn bad_specs_name_the_field() {
        let err = |s: NicSpec| nic_config(&s).unwrap_err().to_string();
        assert!(
            err(spec("", "t", "52:54:00:00:00:01", 0)).starts_with("nic: bridge \"\""),
            "{}",
            err(spec("", "t", "52:54:00:00:00:01", 0))
        );
        assert!(err(spec("br", "a-name-of-16-byt", "52:54:00:00:00:01", 0)).contains("tap"));
        assert!(err(spec("br", "a/b", "52:54:00:00:00:01", 0)).contains("tap \"a/b\""));
        assert!(err(spec("br", "t", "52:54:00:00:01", 0)).contains("mac \"52:54:00:00:01\""));
        assert!(err(spec("br", "t", "01:00:5e:00:00:01", 0)).contains("not a unicast"));
        assert!(err(spec("br", "t", "52:54:00:00:00:zz", 0)).contains("mac"));
        assert!(err(spec("br", "t", "52:54:00:00:00:01", 10)).starts_with("nic: mtu 10"));
    }

    #[test]
    fn ifreq_has_the_kernels_size() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
    }
}
