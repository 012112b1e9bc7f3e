//! Port mappings as rules: parsed from the spec's strings (hyperd 1.1 §2.2: `"80"` or
//! `"8000-8009"`, `tcp`/`udp`), checked (ports 1..=65535, equal range sizes, no overlap inside
//! one request) and written back in the stored normal form (tcp first, canonical text).

use std::fmt;

use hyper_proto::rest::PortMapping;

use crate::pod::spec::SpecError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Ports `first..=last` (one port when equal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn single(port: u16) -> Self {
        Self {
            first: port,
            last: port,
        }
    }

    /// How many ports (at least one).
    pub fn count(self) -> u32 {
        u32::from(self.last - self.first) + 1
    }

    pub fn is_single(self) -> bool {
        self.first == self.last
    }

    pub fn overlaps(self, other: PortRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    /// `"80"` or `"8000-8009"`: ports 1..=65535, first ≤ last.
    pub fn parse(s: &str) -> Result<Self, String> {
        let port = |p: &str| match p.trim().parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "{s:?}: ports are 1 to 65535, a range is \"FIRST-LAST\""
            )),
        };
        let range = match s.split_once('-') {
            Some((a, b)) => Self {
                first: port(a)?,
                last: port(b)?,
            },
            None if s.is_empty() => return Err("required".into()),
            None => Self::single(port(s)?),
        };
        if range.first > range.last {
            return Err(format!("{s:?}: the range ends before it starts"));
        }
        Ok(range)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// One checked mapping: host ports → the pod's ports, offset for offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRule {
    pub protocol: Protocol,
    pub host: PortRange,
    pub container: PortRange,
}

impl PortRule {
    /// Checks one spec entry; errors name `<field>.hostPort` etc.
    pub fn parse(field: &str, m: &PortMapping) -> Result<Self, SpecError> {
        let bad = |f: &str, message: String| SpecError {
            field: format!("{field}.{f}"),
            message,
        };
        let protocol = Protocol::parse(&m.protocol)
            .ok_or_else(|| bad("protocol", format!("{:?}: must be tcp or udp", m.protocol)))?;
        let container = PortRange::parse(&m.container_port).map_err(|e| bad("containerPort", e))?;
        let host = PortRange::parse(&m.host_port).map_err(|e| bad("hostPort", e))?;
        if container.is_single() && !host.is_single() {
            return Err(bad(
                "hostPort",
                format!("{host}: a single containerPort ({container}) needs a single hostPort"),
            ));
        }
        if container.count() != host.count() {
            return Err(bad(
                "hostPort",
                format!(
                    "{host}: {} ports, but containerPort {container} has {}",
                    host.count(),
                    container.count()
                ),
            ));
        }
        Ok(Self {
            protocol,
            host,
            container,
        })
    }

    pub fn to_mapping(self) -> PortMapping {
        PortMapping {
            container_port: self.container.to_string(),
            host_port: self.host.to_string(),
            protocol: self.protocol.to_string(),
        }
    }
}

/// Parses and checks every entry (field names `<field>[i]…`), refusing two entries that share
/// a host port of one protocol; the rules in normal order (tcp first, then by host port).
pub fn parse_rules(field: &str, m: &[PortMapping]) -> Result<Vec<PortRule>, SpecError> {
    let mut rules = Vec::with_capacity(m.len());
    for (i, pm) in m.iter().enumerate() {
        let rule = PortRule::parse(&format!("{field}[{i}]"), pm)?;
        if let Some(j) = rules
            .iter()
            .position(|r: &PortRule| r.protocol == rule.protocol && r.host.overlaps(rule.host))
        {
            return Err(SpecError {
                field: format!("{field}[{i}].hostPort"),
                message: format!(
                    "{}/{}: overlaps {field}[{j}] ({}/{})",
                    rule.protocol, rule.host, rules[j].protocol, rules[j].host
                ),
            });
        }
        rules.push(rule);
    }
    rules.sort();
    Ok(rules)
}

/// The stored normal form of a spec's mappings (hyperd 1.1 §2.2): checked, protocol spelled
/// out, ports as canonical text, tcp entries first.
pub fn normalize_ports(field: &str, m: &[PortMapping]) -> Result<Vec<PortMapping>, SpecError> {
    Ok(parse_rules(field, m)?
        .into_iter()
        .map(PortRule::to_mapping)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pm(c: &str, h: &str, p: &str) -> PortMapping {
        PortMapping {
            container_port: c.into(),
            host_port: h.into(),
            protocol: p.into(),
        }
    }

    #[test]
    fn ranges_parse_and_print_canonically() {
        assert_eq!(PortRange::parse("80").unwrap(), PortRange::single(80));
        let r = PortRange::parse("8000-8009").unwrap();
        assert_eq!((r.first, r.last, r.count()), (8000, 8009, 10));
        assert_eq!(PortRange::parse(" 9 - 9").unwrap().to_string(), "9");
        assert_eq!(PortRange::parse("1-65535").unwrap().count(), 65535);
        for bad in ["0", "65536", "-1", "a", "10-", "20-10", "1-2-3", "", "0-5"] {
            assert!(PortRange::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn rules_follow_hyperd_range_rules() {
        let r = PortRule::parse("p", &pm("9000-9009", "19000-19009", "udp")).unwrap();
        assert_eq!(r.protocol, Protocol::Udp);
        assert_eq!(r.host.first - r.container.first, 10000);
        // A single container port with a host range: 1:N is refused.
        let e = PortRule::parse("p", &pm("80", "8080-8081", "")).unwrap_err();
        assert_eq!(e.field, "p.hostPort");
        assert!(e.message.contains("single"), "{e}");
        // Sizes differ.
        let e = PortRule::parse("p", &pm("80-82", "8080-8081", "tcp")).unwrap_err();
        assert!(
            e.message.contains("2 ports") && e.message.contains("3"),
            "{e}"
        );
        let e = PortRule::parse("p", &pm("80-81", "8080", "tcp")).unwrap_err();
        assert_eq!(e.field, "p.hostPort");
        // Empty host port: required (no random host ports).
        let e = PortRule::parse("p", &pm("80", "", "tcp")).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("p.hostPort", "required")
        );
        let e = PortRule::parse("p", &pm("80", "80", "sctp")).unwrap_err();
        assert_eq!(e.field, "p.protocol");
        let e = PortRule::parse("p", &pm("0", "80", "tcp")).unwrap_err();
        assert_eq!(e.field, "p.containerPort");
    }

    #[test]
    fn normal_form_is_tcp_first_and_canonical() {
        let got = normalize_ports(
            "portmappings",
            &[
                pm("53", "5353", "udp"),
                pm("80", "8080", ""),
                pm("9000-9001", "09000-9001", "tcp"),
            ],
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                pm("80", "8080", "tcp"),
                pm("9000-9001", "9000-9001", "tcp"),
                pm("53", "5353", "udp"),
            ]
        );
    }

    #[test]
    fn one_request_may_not_map_a_host_port_twice() {
        let e = parse_rules(
            "portmappings",
            &[pm("80", "8080", "tcp"), pm("1-10", "8075-8084", "tcp")],
        )
        .unwrap_err();
        assert_eq!(e.field, "portmappings[1].hostPort");
        assert!(e.message.contains("portmappings[0]"), "{e}");
        // The same port over the two protocols is fine.
        parse_rules(
            "portmappings",
            &[pm("80", "8080", "tcp"), pm("80", "8080", "udp")],
        )
        .unwrap();
    }
}
