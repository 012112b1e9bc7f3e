//! The host side over netlink (`rtnetlink`): the bridge and its gateway address, and the
//! sysctls NAT needs. Works in the calling thread's network namespace.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt as _;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::{Handle, LinkBridge};

use super::Error;

fn netlink(name: &str, what: &str) -> impl Fn(rtnetlink::Error) -> Error {
    let (name, what) = (name.to_string(), what.to_string());
    move |e| Error::Netlink {
        link: name.clone(),
        message: format!("{what}: {e}"),
    }
}

async fn connect(name: &str) -> Result<Handle, Error> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| Error::Netlink {
        link: name.into(),
        message: format!("netlink socket: {e}"),
    })?;
    tokio::spawn(conn);
    Ok(handle)
}

/// The link, or `None` when there is no such link.
async fn find(handle: &Handle, name: &str) -> Result<Option<LinkMessage>, Error> {
    let found = handle
        .link()
        .get()
        .match_name(name)
        .execute()
        .try_next()
        .await;
    match found {
        Ok(link) => Ok(link),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(netlink(name, "look up")(e)),
    }
}

/// The link's index, or `None` when there is no such link.
async fn index_of(handle: &Handle, name: &str) -> Result<Option<u32>, Error> {
    Ok(find(handle, name).await?.map(|l| l.header.index))
}

/// The link's kind (`IFLA_INFO_KIND`: bridge, veth…); `None` for a device without one (`lo`,
/// a physical NIC).
fn kind_of(link: &LinkMessage) -> Option<&InfoKind> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k),
            _ => None,
        }),
        _ => None,
    })
}

/// Whether the bridge was created: a missing bridge `name` is made (up, `mtu`, with the gateway
/// address `bip`); an existing link of that name is left alone, but must carry the gateway
/// address (else pods would route through an address nobody has) and be a bridge (else taps
/// cannot join it): `Netlink` "is not a bridge" for a veth, `lo` or a NIC.
pub async fn ensure_bridge(name: &str, bip: Ipv4Net, mtu: u32) -> Result<bool, Error> {
    let handle = connect(name).await?;
    if let Some(link) = find(&handle, name).await? {
        match kind_of(&link) {
            Some(InfoKind::Bridge) => {}
            other => {
                let kind = other.map_or("a device without a link kind".to_string(), |k| {
                    format!("a {k}")
                });
                return Err(Error::Netlink {
                    link: name.into(),
                    message: format!(
                        "{name} is not a bridge (it is {kind}); name a bridge or one that does not exist yet with --bridge"
                    ),
                });
            }
        }
        let index = link.header.index;
        if ipv4_addresses(&handle, index, name)
            .await?
            .contains(&(bip.addr(), bip.prefix_len()))
        {
            return Ok(false);
        }
        return Err(Error::Netlink {
            link: name.into(),
            message: format!(
                "exists but does not have the address {bip}; give it that address or start hyperd with --bip set to its address"
            ),
        });
    }
    handle
        .link()
        .add(LinkBridge::new(name).mtu(mtu).build())
        .execute()
        .await
        .map_err(netlink(name, "create bridge"))?;
    let index = index_of(&handle, name)
        .await?
        .ok_or_else(|| Error::Netlink {
            link: name.into(),
            message: "gone right after it was created".into(),
        })?;
    handle
        .address()
        .add(index, IpAddr::V4(bip.addr()), bip.prefix_len())
        .execute()
        .await
        .map_err(netlink(name, &format!("add address {bip}")))?;
    Ok(true)
}

/// Deletes the link if it exists (tests, and an operator's clean-up).
pub async fn delete_link(name: &str) -> Result<(), Error> {
    let handle = connect(name).await?;
    if let Some(index) = index_of(&handle, name).await? {
        handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(netlink(name, "delete"))?;
    }
    Ok(())
}

/// The bridge's IPv4 addresses with their prefixes (for `--bip` checks and tests).
pub async fn addresses(name: &str) -> Result<Vec<(Ipv4Addr, u8)>, Error> {
    let handle = connect(name).await?;
    let Some(index) = index_of(&handle, name).await? else {
        return Ok(vec![]);
    };
    ipv4_addresses(&handle, index, name).await
}

/// Link `index`'s IPv4 addresses with their prefixes.
async fn ipv4_addresses(
    handle: &Handle,
    index: u32,
    name: &str,
) -> Result<Vec<(Ipv4Addr, u8)>, Error> {
    let mut out = Vec::new();
    let mut addrs = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    while let Some(msg) = addrs
        .try_next()
        .await
        .map_err(netlink(name, "list addresses"))?
    {
        for a in &msg.attributes {
            if let AddressAttribute::Local(IpAddr::V4(ip)) = a {
                out.push((*ip, msg.header.prefix_len));
            }
        }
    }
    Ok(out)
}

/// Writes `value` to `/proc/sys/<key>` (key with slashes, e.g. `net/ipv4/ip_forward`), in the
/// calling thread's network namespace.
pub fn set_sysctl(key: &str, value: &str) -> Result<(), Error> {
    let path = format!("/proc/sys/{key}");
    std::fs::write(&path, value).map_err(|e| Error::Sysctl {
        key: key.into(),
        source: e,
    })
}
