//! Address management over the bridge subnet. The choice is a pure function of the subnet, the
//! cursor (the address given last) and the addresses held; the lease and the cursor are written
//! in the caller's one transaction, so an address has at most one live holder across restarts
//! and kill -9.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rusqlite::Connection;

use super::Error;
use crate::store::{self, LeaseRecord};

/// Why `addr` may not be a pod's address in `subnet` (gateway `gateway`), if it may not;
/// the reason names what `addr` collides with (the subnet, or the gateway's address).
pub fn unusable(subnet: Ipv4Net, gateway: Ipv4Addr, addr: Ipv4Addr) -> Option<String> {
    let subnet = subnet.trunc();
    if !subnet.contains(&addr) {
        Some(format!("outside the subnet {subnet}"))
    } else if addr == subnet.network() {
        Some(format!("the network address of {subnet}"))
    } else if addr == subnet.broadcast() {
        Some(format!("the broadcast address of {subnet}"))
    } else if addr == gateway {
        Some(format!(
            "the gateway's address ({gateway}, on hyperd's bridge)"
        ))
    } else {
        None
    }
}

/// The first usable address after `after` (or from the start of the subnet), wrapping once
/// round the subnet; `None` when every usable address is taken.
pub fn select(
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    after: Option<Ipv4Addr>,
    taken: &HashSet<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let first = u32::from(subnet.network()).checked_add(1)?;
    let last = u32::from(subnet.broadcast()).checked_sub(1)?;
    if first > last {
        return None;
    }
    let start = match after.map(u32::from) {
        Some(a) if (first..last).contains(&a) => a + 1,
        _ => first,
    };
    (start..=last)
        .chain(first..start)
        .map(Ipv4Addr::from)
        .find(|a| *a != gateway && !taken.contains(a))
}

/// Gives `pod_id` an address in `subnet`, inside the caller's transaction: its existing lease
/// (when it has one, and `fixed` is absent or the same), else `fixed`, else the next free
/// address after the cursor. `Ok(Err(_))` writes nothing.
pub fn allocate_in(
    tx: &Connection,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    pod_id: &str,
    fixed: Option<Ipv4Addr>,
) -> store::Result<Result<Ipv4Net, Error>> {
    let net = |a: Ipv4Addr, prefix: u8| Ipv4Net::new(a, prefix).expect("prefix checked at start");
    if let Some(held) = store::lease_of(tx, pod_id)? {
        if fixed.is_none_or(|f| f == held.address) {
            return Ok(Ok(net(held.address, held.prefix)));
        }
        return Ok(Err(Error::Invalid {
            field: "interfaces[0].ip".into(),
            message: format!(
                "pod {pod_id} already holds {}; release it first",
                held.address
            ),
        }));
    }
    let cursor_key = subnet.trunc().to_string();
    let address = match fixed {
        Some(addr) => {
            if let Some(why) = unusable(subnet, gateway, addr) {
                return Ok(Err(Error::Invalid {
                    field: "interfaces[0].ip".into(),
                    message: format!("{addr}: {why}"),
                }));
            }
            if let Some(holder) = store::lease_holder(tx, addr)? {
                return Ok(Err(Error::AddressInUse {
                    address: addr,
                    pod_id: holder,
                }));
            }
            addr
        }
        None => {
            let taken: HashSet<Ipv4Addr> = store::list_leases(tx)?
                .into_iter()
                .map(|l| l.address)
                .collect();
            let after = store::ipam_cursor(tx, &cursor_key)?;
            match select(subnet, gateway, after, &taken) {
                Some(a) => {
                    store::set_ipam_cursor(tx, &cursor_key, a)?;
                    a
                }
                None => {
                    return Ok(Err(Error::Exhausted {
                        subnet: subnet.trunc(),
                    }));
                }
            }
        }
    };
    store::insert_lease(
        tx,
        &LeaseRecord {
            pod_id: pod_id.into(),
            address,
            prefix: subnet.prefix_len(),
        },
    )?;
    Ok(Ok(net(address, subnet.prefix_len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(s: &str) -> (Ipv4Net, Ipv4Addr) {
        let n: Ipv4Net = s.parse().unwrap();
        (n.trunc(), n.addr())
    }

    fn a(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn selection_starts_after_the_cursor_and_skips_the_gateway_and_holders() {
        let (net, gw) = subnet("192.168.123.1/24");
        let none = HashSet::new();
        assert_eq!(select(net, gw, None, &none), Some(a("192.168.123.2")));
        assert_eq!(
            select(net, gw, Some(a("192.168.123.7")), &none),
            Some(a("192.168.123.8"))
        );
        let taken: HashSet<_> = [a("192.168.123.8"), a("192.168.123.9")].into();
        assert_eq!(
            select(net, gw, Some(a("192.168.123.7")), &taken),
            Some(a("192.168.123.10"))
        );
        // A gateway in the middle of the subnet is skipped too.
        let (net, gw) = subnet("10.0.0.5/29");
        assert_eq!(
            select(net, gw, Some(a("10.0.0.4")), &none),
            Some(a("10.0.0.6"))
        );
    }

    #[test]
    fn selection_wraps_and_reports_exhaustion() {
        let (net, gw) = subnet("10.1.0.1/29"); // usable .2 to .6
        let none = HashSet::new();
        assert_eq!(
            select(net, gw, Some(a("10.1.0.6")), &none),
            Some(a("10.1.0.2"))
        );
        // A cursor outside the subnet (the subnet changed) starts from the beginning.
        assert_eq!(
            select(net, gw, Some(a("172.16.0.9")), &none),
            Some(a("10.1.0.2"))
        );
        let taken: HashSet<_> = (2..=5).map(|i| a(&format!("10.1.0.{i}"))).collect();
        assert_eq!(
            select(net, gw, Some(a("10.1.0.3")), &taken),
            Some(a("10.1.0.6"))
        );
        let mut all = taken.clone();
        all.insert(a("10.1.0.6"));
        assert_eq!(select(net, gw, Some(a("10.1.0.3")), &all), None);
        // /31 and /32 have no pod addresses.
        let (net, gw) = subnet("10.2.0.0/31");
        assert_eq!(select(net, gw, None, &none), None);
    }

    #[test]
    fn fixed_addresses_must_be_usable_hosts() {
        let (net, gw) = subnet("192.168.123.1/24");
        assert_eq!(unusable(net, gw, a("192.168.123.20")), None);
        for (addr, why) in [
            ("192.168.124.2", "outside"),
            ("192.168.123.0", "network"),
            ("192.168.123.255", "broadcast"),
            ("192.168.123.1", "gateway"),
        ] {
            assert!(unusable(net, gw, a(addr)).unwrap().contains(why), "{addr}");
        }
        // Each reason names what the address collides with.
        assert_eq!(
            unusable(net, gw, a("192.168.123.1")).unwrap(),
            "the gateway's address (192.168.123.1, on hyperd's bridge)"
        );
        assert_eq!(
            unusable(net, gw, a("192.168.124.2")).unwrap(),
            "outside the subnet 192.168.123.0/24"
        );
    }
}
