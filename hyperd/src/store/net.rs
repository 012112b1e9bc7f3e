//! Rows of the network: address leases, the allocation cursor and reserved host ports. The
//! choices (which address, which ports may be taken) are made in `crate::network`; this only
//! reads and writes rows.

use std::net::Ipv4Addr;

use rusqlite::{Connection, OptionalExtension, params};

use super::{Error, Result};

/// A pod's address on the bridge network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub pod_id: String,
    pub address: Ipv4Addr,
    /// The subnet's prefix length when the address was given.
    pub prefix: u8,
}

/// One port mapping of a pod: host ports `host_first..=host_last` forwarded to the pod's ports
/// from `container_first` on (a range of the same size).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRecord {
    pub pod_id: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    pub host_first: u16,
    pub host_last: u16,
    pub container_first: u16,
}

fn ip(what: &str, s: String) -> Result<Ipv4Addr> {
    s.parse()
        .map_err(|e: std::net::AddrParseError| Error::Corrupt {
            what: what.into(),
            message: format!("{s:?}: {e}"),
        })
}

fn lease_row(r: &rusqlite::Row) -> rusqlite::Result<(String, String, u8)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

fn lease(row: (String, String, u8)) -> Result<LeaseRecord> {
    let (pod_id, address, prefix) = row;
    Ok(LeaseRecord {
        address: ip(&format!("lease of pod {pod_id}"), address)?,
        pod_id,
        prefix,
    })
}

pub fn lease_of(c: &Connection, pod_id: &str) -> Result<Option<LeaseRecord>> {
    c.query_row(
        "SELECT pod_id, address, prefix FROM ip_leases WHERE pod_id = ?1",
        params![pod_id],
        lease_row,
    )
    .optional()?
    .map(lease)
    .transpose()
}

/// The pod holding `address`, if any.
pub fn lease_holder(c: &Connection, address: Ipv4Addr) -> Result<Option<String>> {
    Ok(c.query_row(
        "SELECT pod_id FROM ip_leases WHERE address = ?1",
        params![address.to_string()],
        |r| r.get(0),
    )
    .optional()?)
}

pub fn list_leases(c: &Connection) -> Result<Vec<LeaseRecord>> {
    let mut stmt = c.prepare("SELECT pod_id, address, prefix FROM ip_leases ORDER BY pod_id")?;
    let rows = stmt.query_map([], lease_row)?;
    rows.map(|r| lease(r?)).collect()
}

/// Fails with a constraint error when the address or the pod already has a lease.
pub fn insert_lease(c: &Connection, l: &LeaseRecord) -> Result<()> {
    c.execute(
        "INSERT INTO ip_leases (address, prefix, pod_id) VALUES (?1, ?2, ?3)",
        params![l.address.to_string(), l.prefix, l.pod_id],
    )?;
    Ok(())
}

/// Whether the pod had a lease.
pub fn delete_lease(c: &Connection, pod_id: &str) -> Result<bool> {
    Ok(c.execute("DELETE FROM ip_leases WHERE pod_id = ?1", params![pod_id])? > 0)
}

/// The address given last in `subnet` (CIDR text), if any.
pub fn ipam_cursor(c: &Connection, subnet: &str) -> Result<Option<Ipv4Addr>> {
    c.query_row(
        "SELECT last FROM ipam_cursors WHERE subnet = ?1",
        params![subnet],
        |r| r.get::<_, String>(0),
    )
    .optional()?
    .map(|s| ip(&format!("address cursor of {subnet}"), s))
    .transpose()
}

pub fn set_ipam_cursor(c: &Connection, subnet: &str, last: Ipv4Addr) -> Result<()> {
    c.execute(
        "INSERT INTO ipam_cursors (subnet, last) VALUES (?1, ?2)
         ON CONFLICT (subnet) DO UPDATE SET last = excluded.last",
        params![subnet, last.to_string()],
    )?;
    Ok(())
}

fn port_row(r: &rusqlite::Row) -> rusqlite::Result<PortRecord> {
    Ok(PortRecord {
        pod_id: r.get(0)?,
        protocol: r.get(1)?,
        host_first: r.get(2)?,
        host_last: r.get(3)?,
        container_first: r.get(4)?,
    })
}

/// The mapping holding host port `port` of `protocol`, if any.
pub fn port_holder(c: &Connection, protocol: &str, port: u16) -> Result<Option<PortRecord>> {
    Ok(c.query_row(
        "SELECT pod_id, protocol, host_first, host_last, container_first FROM host_ports
         WHERE protocol = ?1 AND host_port = ?2",
        params![protocol, port],
        port_row,
    )
    .optional()?)
}

/// One row per host port of the mapping; fails with a constraint error when one is held.
pub fn insert_ports(c: &Connection, p: &PortRecord) -> Result<()> {
    let mut stmt = c.prepare_cached(
        "INSERT INTO host_ports (protocol, host_port, pod_id, host_first, host_last, container_first)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for port in p.host_first..=p.host_last {
        stmt.execute(params![
            p.protocol,
            port,
            p.pod_id,
            p.host_first,
            p.host_last,
            p.container_first
        ])?;
    }
    Ok(())
}

/// The mappings of one pod, or of every pod; ordered by pod, protocol, host port.
pub fn list_ports(c: &Connection, pod_id: Option<&str>) -> Result<Vec<PortRecord>> {
    let mut stmt = c.prepare(
        "SELECT DISTINCT pod_id, protocol, host_first, host_last, container_first FROM host_ports
         WHERE ?1 IS NULL OR pod_id = ?1
         ORDER BY pod_id, protocol, host_first",
    )?;
    let rows = stmt.query_map(params![pod_id], port_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Removes one mapping of the pod (every row of it); how many host ports were freed.
pub fn delete_ports(c: &Connection, p: &PortRecord) -> Result<usize> {
    Ok(c.execute(
        "DELETE FROM host_ports WHERE pod_id = ?1 AND protocol = ?2 AND host_first = ?3
         AND host_last = ?4 AND container_first = ?5",
        params![
            p.pod_id,
            p.protocol,
            p.host_first,
            p.host_last,
            p.container_first
        ],
    )?)
}

/// Removes every host port of the pod; how many were freed.
pub fn delete_pod_ports(c: &Connection, pod_id: &str) -> Result<usize> {
    Ok(c.execute("DELETE FROM host_ports WHERE pod_id = ?1", params![pod_id])?)
}

/// Drops leases and host ports of pods that no longer exist (a crash between removing a pod
/// and releasing its network); how many rows went.
pub fn delete_orphan_network_rows(c: &Connection) -> Result<usize> {
    let leases = c.execute(
        "DELETE FROM ip_leases WHERE pod_id NOT IN (SELECT id FROM pods)",
        [],
    )?;
    let ports = c.execute(
        "DELETE FROM host_ports WHERE pod_id NOT IN (SELECT id FROM pods)",
        [],
    )?;
    Ok(leases + ports)
}
