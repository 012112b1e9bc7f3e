//! The guest's network (`ConfigureNetwork`): loopback up, then for each configured interface
//! (found by MAC) its MTU, its one IPv4 address and its link state, every other interface
//! flushed and down, then the routes; all over rtnetlink. Applying the same [`PodNetwork`] again gives the same result: addresses are
//! flushed before the new one is added and routes are replaced.

use std::net::Ipv4Addr;

use futures::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::AddressMessage;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{RouteAttribute, RouteHeader, RouteMessage, RouteProtocol};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use hyper_proto::mac::parse_mac;
use hyper_proto::types::PodNetwork;

use crate::error::{Error, Result};

/// A checked [`PodNetwork`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPlan {
    pub interfaces: Vec<InterfacePlan>,
    pub routes: Vec<RoutePlan>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfacePlan {
    pub mac: [u8; 6],
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    /// 0: leave as is.
    pub mtu: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePlan {
    /// `0.0.0.0/0` for the default route.
    pub destination: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
}

fn invalid(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

/// Parses an IPv4 CIDR, `a.b.c.d/n` with n at most 32.
pub fn parse_cidr(cidr: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, len) = cidr.split_once('/')?;
    let len: u8 = len.parse().ok()?;
    (len <= 32).then_some(())?;
    Some((addr.parse().ok()?, len))
}

/// Checks a [`PodNetwork`]. Errors: [`Error::InvalidArgument`] naming the field and value.
pub fn plan(net: &PodNetwork) -> Result<NetworkPlan> {
    let mut interfaces = Vec::new();
    for (i, iface) in net.interfaces.iter().enumerate() {
        let mac = parse_mac(&iface.mac).ok_or_else(|| {
            invalid(format!(
                "interfaces[{i}].mac {:?}: not a MAC address (aa:bb:cc:dd:ee:ff)",
                iface.mac
            ))
        })?;
        let (address, prefix_len) = parse_cidr(&iface.address).ok_or_else(|| {
            invalid(format!(
                "interfaces[{i}].address {:?}: not an IPv4 CIDR (a.b.c.d/n)",
                iface.address
            ))
        })?;
        if iface.mtu != 0 && !(68..=65535).contains(&iface.mtu) {
            return Err(invalid(format!(
                "interfaces[{i}].mtu {}: must be between 68 and 65535",
                iface.mtu
            )));
        }
        if interfaces.iter().any(|p: &InterfacePlan| p.mac == mac) {
            return Err(invalid(format!(
                "interfaces[{i}].mac {}: configured twice",
                iface.mac
            )));
        }
        interfaces.push(InterfacePlan {
            mac,
            address,
            prefix_len,
            mtu: iface.mtu,
        });
    }
    let mut routes = Vec::new();
    for (i, route) in net.routes.iter().enumerate() {
        let (destination, prefix_len) = if route.destination.is_empty() {
            (Ipv4Addr::UNSPECIFIED, 0)
        } else {
            parse_cidr(&route.destination).ok_or_else(|| {
                invalid(format!(
                    "routes[{i}].destination {:?}: not an IPv4 CIDR (a.b.c.d/n)",
                    route.destination
                ))
            })?
        };
        let gateway: Ipv4Addr = route.gateway.parse().map_err(|_| {
            invalid(format!(
                "routes[{i}].gateway {:?}: not an IPv4 address",
                route.gateway
            ))
        })?;
        routes.push(RoutePlan {
            destination,
            prefix_len,
            gateway,
        });
    }
    if !routes.is_empty() && interfaces.is_empty() {
        return Err(invalid(
            "routes: given without an interface to reach the gateway".into(),
        ));
    }
    Ok(NetworkPlan { interfaces, routes })
}

/// The `RTM_NEWROUTE` body for a route: main table, static, via the gateway (the kernel picks
/// the interface on the gateway's subnet).
pub fn route_message(route: &RoutePlan) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(route.destination, route.prefix_len)
        .gateway(route.gateway)
        .build()
}

/// Whether a route is one we replace: a static IPv4 route through a gateway in the main table
/// (connected routes come and go with their addresses).
fn is_replaceable(route: &RouteMessage) -> bool {
    route.header.address_family == AddressFamily::Inet
        && route.header.protocol == RouteProtocol::Static
        && route.header.table == RouteHeader::RT_TABLE_MAIN
        && route
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Gateway(_)))
}

fn netlink(context: impl Into<String>, e: rtnetlink::Error) -> Error {
    Error::Netlink {
        context: context.into(),
        message: e.to_string(),
    }
}

fn mac_string(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Applies `net`: see the module doc. Errors: [`Error::InvalidArgument`] for a bad request,
/// [`Error::NotFound`] when no interface has a configured MAC, [`Error::Netlink`] naming the
/// step the kernel refused.
pub async fn configure(net: &PodNetwork) -> Result<()> {
    let plan = plan(net)?;
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|e| Error::io("netlink socket", e))?;
    let driver = tokio::spawn(connection);
    let applied = apply(&handle, &plan).await;
    driver.abort();
    applied
}

async fn apply(handle: &Handle, plan: &NetworkPlan) -> Result<()> {
    let links: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| netlink("list links", e))?;
    let name_of = |l: &LinkMessage| {
        l.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
    };
    let lo = links
        .iter()
        .find(|l| name_of(l).as_deref() == Some("lo"))
        .ok_or_else(|| Error::NotFound("interface lo: not found".into()))?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(lo.header.index).up().build())
        .execute()
        .await
        .map_err(|e| netlink("lo: set up", e))?;

    for iface in &plan.interfaces {
        let mac = mac_string(&iface.mac);
        let link = links
            .iter()
            .find(|l| {
                l.attributes
                    .iter()
                    .any(|a| matches!(a, LinkAttribute::Address(m) if m[..] == iface.mac[..]))
            })
            .ok_or_else(|| Error::NotFound(format!("interface with mac {mac}: not found")))?;
        let index = link.header.index;
        let name = name_of(link).unwrap_or_else(|| format!("#{index}"));
        if iface.mtu != 0 {
            handle
                .link()
                .set(LinkUnspec::new_with_index(index).mtu(iface.mtu).build())
                .execute()
                .await
                .map_err(|e| netlink(format!("{name}: set mtu {}", iface.mtu), e))?;
        }
        flush_ipv4(handle, index, &name).await?;
        handle
            .address()
            .add(index, iface.address.into(), iface.prefix_len)
            .execute()
            .await
            .map_err(|e| {
                netlink(
                    format!("{name}: add {}/{}", iface.address, iface.prefix_len),
                    e,
                )
            })?;
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| netlink(format!("{name}: set up"), e))?;
        tracing::info!(interface = %name, %mac, address = %iface.address, prefix = iface.prefix_len, "interface configured");
    }
    // A NIC the request does not list loses its addresses and goes down: a VM kept for
    // another pod must not answer on an address the host may hand out again.
    for link in &links {
        let listed = plan.interfaces.iter().any(|i| {
            link.attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::Address(m) if m[..] == i.mac[..]))
        });
        let index = link.header.index;
        let name = name_of(link).unwrap_or_else(|| format!("#{index}"));
        if listed || index == lo.header.index {
            continue;
        }
        flush_ipv4(handle, index, &name).await?;
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).down().build())
            .execute()
            .await
            .map_err(|e| netlink(format!("{name}: set down"), e))?;
    }

    let old_routes: Vec<RouteMessage> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(|e| netlink("list routes", e))?;
    for old in old_routes.into_iter().filter(is_replaceable) {
        if let Err(e) = handle.route().del(old).execute().await {
            // Gone with a flushed address meanwhile: nothing left to replace.
            tracing::debug!("removing an old route: {e}");
        }
    }
    for route in &plan.routes {
        handle
            .route()
            .add(route_message(route))
            .replace()
            .execute()
            .await
            .map_err(|e| {
                netlink(
                    format!(
                        "route {}/{} via {}",
                        route.destination, route.prefix_len, route.gateway
                    ),
                    e,
                )
            })?;
    }
    Ok(())
}

/// Deletes every IPv4 address of link `index`.
async fn flush_ipv4(handle: &Handle, index: u32, name: &str) -> Result<()> {
    let addresses: Vec<AddressMessage> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(|e| netlink(format!("{name}: list addresses"), e))?;
    for old in addresses {
        // The dump may ignore the filter (no strict checking): check the index here.
        if old.header.index == index && old.header.family == AddressFamily::Inet {
            handle
                .address()
                .del(old)
                .execute()
                .await
                .map_err(|e| netlink(format!("{name}: flush addresses"), e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_proto::types::{InterfaceConfig, RouteConfig};

    fn net(ifaces: &[(&str, &str, u32)], routes: &[(&str, &str)]) -> PodNetwork {
        PodNetwork {
            interfaces: ifaces
                .iter()
                .map(|(mac, address, mtu)| InterfaceConfig {
                    mac: mac.to_string(),
                    address: address.to_string(),
                    mtu: *mtu,
                })
                .collect(),
            routes: routes
                .iter()
                .map(|(d, g)| RouteConfig {
                    destination: d.to_string(),
                    gateway: g.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_pod_network_becomes_a_plan() {
        let p = plan(&net(
            &[("52:54:00:AB:00:01", "192.168.77.2/24", 0)],
            &[("", "192.168.77.1"), ("10.1.0.0/16", "192.168.77.254")],
        ))
        .unwrap();
        assert_eq!(
            p.interfaces,
            [InterfacePlan {
                mac: [0x52, 0x54, 0, 0xab, 0, 1],
                address: Ipv4Addr::new(192, 168, 77, 2),
                prefix_len: 24,
                mtu: 0,
            }]
        );
        assert_eq!(p.routes[0].destination, Ipv4Addr::UNSPECIFIED);
        assert_eq!(p.routes[0].prefix_len, 0);
        assert_eq!(p.routes[1].prefix_len, 16);
        assert_eq!(plan(&PodNetwork::default()).unwrap().interfaces, []);
    }

    #[test]
    fn bad_fields_are_named() {
        let err = |n: PodNetwork| plan(&n).unwrap_err().to_string();
        assert_eq!(
            err(net(&[("52:54:00:ab:00", "10.0.0.2/24", 0)], &[])),
            "interfaces[0].mac \"52:54:00:ab:00\": not a MAC address (aa:bb:cc:dd:ee:ff)"
        );
        assert!(err(net(&[("52:54:00:ab:00:01", "10.0.0.2", 0)], &[])).contains("address"));
        assert!(err(net(&[("52:54:00:ab:00:01", "10.0.0.2/33", 0)], &[])).contains("/33"));
        assert!(err(net(&[("52:54:00:ab:00:01", "10.0.0.2/8", 20)], &[])).contains("mtu 20"));
        let two = net(
            &[
                ("52:54:00:ab:00:01", "10.0.0.2/8", 0),
                ("52:54:00:AB:00:01", "10.0.0.3/8", 0),
            ],
            &[],
        );
        assert!(err(two).contains("configured twice"));
        let one = [("52:54:00:ab:00:01", "10.0.0.2/8", 0)];
        assert!(err(net(&one, &[("", "")])).starts_with("routes[0].gateway"));
        assert!(err(net(&one, &[("10.0.0.0", "10.0.0.1")])).starts_with("routes[0].destination"));
        assert!(err(net(&[], &[("", "10.0.0.1")])).contains("without an interface"));
    }

    #[test]
    fn the_default_route_has_no_destination_and_a_gateway() {
        let m = route_message(&RoutePlan {
            destination: Ipv4Addr::UNSPECIFIED,
            prefix_len: 0,
            gateway: Ipv4Addr::new(192, 168, 77, 1),
        });
        assert_eq!(m.header.destination_prefix_length, 0);
        assert_eq!(m.header.address_family, AddressFamily::Inet);
        assert_eq!(m.header.protocol, RouteProtocol::Static);
        assert!(m.attributes.iter().any(|a| matches!(
            a,
            RouteAttribute::Gateway(rtnetlink::packet_route::route::RouteAddress::Inet(g))
                if *g == Ipv4Addr::new(192, 168, 77, 1)
        )));
        assert!(
            is_replaceable(&m),
            "what we add is what a re-apply replaces"
        );
    }
}
