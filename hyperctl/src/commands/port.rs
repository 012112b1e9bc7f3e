//! Port mappings on the command line: the `-p, --publish HOST:CONTAINER[/PROTO]` syntax of
//! `run`/`create`/`portmap` (Docker's, without a host address), `hyperctl port POD` (`GET
//! /pod/{id}/portmappings`, printed as `docker port` prints) and `hyperctl portmap add|rm`
//! (`PUT /pod/{id}/portmappings/add|delete`, as hyperd 1.1).

use anyhow::Result;
use bytes::Bytes;
use hyper::Method;

use hyper_proto::rest::{PortMapping, PortMappingList};

use crate::client::{Client, enc};

/// Why a `-p` value is refused; every message names the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    #[error(
        "publish {0:?}: expected HOST:CONTAINER[/tcp|/udp] (e.g. 8080:80, 8000-8010:80-90/udp)"
    )]
    Syntax(String),
    #[error("publish {0:?}: expected HOST:CONTAINER[/tcp|/udp]; a pod file is read with --podfile")]
    PodFile(String),
    #[error(
        "publish {0:?}: a host address is not supported (hyperd publishes on all of the host's addresses)"
    )]
    HostAddress(String),
    #[error("publish {spec:?}: protocol {proto:?} is not supported (tcp or udp)")]
    Protocol { spec: String, proto: String },
    #[error("publish {spec:?}: port {port:?} is not a number from 1 to 65535")]
    Port { spec: String, port: String },
    #[error("publish {spec:?}: range {range:?} ends before it starts")]
    Backwards { spec: String, range: String },
    #[error(
        "publish {0:?}: the host and container ranges must be of the same size (one port each, or N ports each)"
    )]
    Sizes(String),
}

/// A port or an inclusive range of ports, as `-p` writes it (`80`, `8000-8010`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ports {
    first: u16,
    last: u16,
}

impl Ports {
    fn parse(spec: &str, s: &str) -> Result<Self, PublishError> {
        let port = |p: &str| match p.parse::<u16>() {
            Ok(n) if n > 0 && !p.starts_with('+') => Ok(n),
            _ => Err(PublishError::Port {
                spec: spec.into(),
                port: p.into(),
            }),
        };
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(s)?, port(s)?),
        };
        if last < first {
            return Err(PublishError::Backwards {
                spec: spec.into(),
                range: s.into(),
            });
        }
        Ok(Self { first, last })
    }

    fn len(self) -> u32 {
        u32::from(self.last - self.first) + 1
    }
}

impl std::fmt::Display for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// One `-p` value as the pod spec's `PortMapping`: `8080:80` → `{hostPort: "8080",
/// containerPort: "80", protocol: "tcp"}`; `8000-8010:80-90/udp` keeps the ranges; hyperctl
/// 1.1's `udp:53:53` is `53:53/udp`. The two
/// sides must be the same size (hyperd 1.1 refuses one-to-many too).
pub fn parse_publish(spec: &str) -> Result<PortMapping, PublishError> {
    // hyperctl 1.1's `-p` was --podfile: say so to whoever still types it.
    if !spec.contains(':')
        && (spec.ends_with(".json")
            || spec.ends_with(".yaml")
            || std::path::Path::new(spec).is_file())
    {
        return Err(PublishError::PodFile(spec.into()));
    }
    let (ports, proto) = match spec.rsplit_once('/') {
        Some((p, proto)) => (p, proto),
        None => (spec, "tcp"),
    };
    if proto != "tcp" && proto != "udp" {
        return Err(PublishError::Protocol {
            spec: spec.into(),
            proto: proto.into(),
        });
    }
    let parts: Vec<&str> = ports.split(':').collect();
    let (host, container, proto) = match parts[..] {
        [host, container] => (host, container, proto),
        // hyperctl 1.1's `--publish [tcp|udp:]HOST:CONTAINER`.
        [p @ ("tcp" | "udp"), host, container] if !spec.contains('/') => (host, container, p),
        ["tcp" | "udp", _, _] => return Err(PublishError::Syntax(spec.into())),
        [_, _, _] => return Err(PublishError::HostAddress(spec.into())),
        _ => return Err(PublishError::Syntax(spec.into())),
    };
    if host.is_empty() || container.is_empty() {
        return Err(PublishError::Syntax(spec.into()));
    }
    let host = Ports::parse(spec, host)?;
    let container = Ports::parse(spec, container)?;
    if host.len() != container.len() {
        return Err(PublishError::Sizes(spec.into()));
    }
    Ok(PortMapping {
        container_port: container.to_string(),
        host_port: host.to_string(),
        protocol: proto.into(),
    })
}

/// All `-p` values, in order; the first bad one is the error.
pub fn parse_publishes(specs: &[String]) -> Result<Vec<PortMapping>, PublishError> {
    specs.iter().map(|s| parse_publish(s)).collect()
}

/// `docker port` lines for mappings: one `80/tcp -> 0.0.0.0:8080` per container port (ranges
/// expanded), sorted by container port then protocol. A mapping whose ports do not parse (a
/// daemon's answer we do not understand) is shown as the daemon gave it.
pub fn port_lines(mappings: &[PortMapping]) -> Vec<String> {
    let mut lines: Vec<(u16, String, String)> = Vec::new();
    for m in mappings {
        let proto = if m.protocol.is_empty() {
            "tcp"
        } else {
            &m.protocol
        };
        let parsed = (
            Ports::parse("", &m.container_port),
            Ports::parse("", &m.host_port),
        );
        match parsed {
            (Ok(c), Ok(h)) if c.len() == h.len() => {
                for i in 0..c.len() {
                    let (cp, hp) = (u32::from(c.first) + i, u32::from(h.first) + i);
                    lines.push((
                        cp as u16,
                        proto.to_string(),
                        format!("{cp}/{proto} -> 0.0.0.0:{hp}"),
                    ));
                }
            }
            _ => lines.push((
                0,
                proto.to_string(),
                format!("{}/{proto} -> 0.0.0.0:{}", m.container_port, m.host_port),
            )),
        }
    }
    lines.sort();
    lines.into_iter().map(|(_, _, l)| l).collect()
}

#[derive(Debug, clap::Args)]
pub struct PortArgs {
    /// The pod.
    pub pod: String,
    /// Only this container port: PORT[/tcp|/udp] (prints just `0.0.0.0:HOSTPORT`).
    pub port: Option<String>,
}

/// `hyperctl port POD [PORT[/PROTO]]`.
pub async fn port(client: &Client, args: PortArgs) -> Result<i32> {
    let list: PortMappingList = client
        .get(&format!("/pod/{}/portmappings", enc(&args.pod)))
        .await?;
    let lines = port_lines(&list.port_mappings);
    let Some(want) = args.port else {
        for l in lines {
            println!("{l}");
        }
        return Ok(0);
    };
    let want = if want.contains('/') {
        want
    } else {
        format!("{want}/tcp")
    };
    let prefix = format!("{want} -> ");
    let found: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix))
        .collect();
    if found.is_empty() {
        anyhow::bail!("no public port {want:?} published for pod {}", args.pod);
    }
    for f in found {
        println!("{f}");
    }
    Ok(0)
}

#[derive(Debug, clap::Subcommand)]
pub enum PortmapCommand {
    /// Publish more ports of a pod: HOST:CONTAINER[/tcp|/udp]...
    Add(PortmapArgs),
    /// Stop publishing ports of a pod: HOST:CONTAINER[/tcp|/udp]...
    #[command(alias = "delete")]
    Rm(PortmapArgs),
}

#[derive(Debug, clap::Args)]
pub struct PortmapArgs {
    /// The pod.
    pub pod: String,
    /// HOST:CONTAINER[/tcp|/udp], ranges as in `run -p`.
    #[arg(required = true)]
    pub mappings: Vec<String>,
}

/// `hyperctl portmap add|rm POD MAPPING...`: one `PUT /pod/{id}/portmappings/add|delete`.
pub async fn portmap(client: &Client, command: PortmapCommand) -> Result<i32> {
    let (action, args) = match command {
        PortmapCommand::Add(a) => ("add", a),
        PortmapCommand::Rm(a) => ("delete", a),
    };
    let mappings = parse_publishes(&args.mappings)?;
    client
        .call(
            Method::PUT,
            &format!("/pod/{}/portmappings/{action}", enc(&args.pod)),
            Some("application/json"),
            Bytes::from(serde_json::to_vec(&mappings)?),
        )
        .await?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pm(host: &str, container: &str, proto: &str) -> PortMapping {
        PortMapping {
            container_port: container.into(),
            host_port: host.into(),
            protocol: proto.into(),
        }
    }

    #[test]
    fn publish_values_become_port_mappings() {
        assert_eq!(parse_publish("8080:80"), Ok(pm("8080", "80", "tcp")));
        assert_eq!(parse_publish("53:53/udp"), Ok(pm("53", "53", "udp")));
        assert_eq!(parse_publish("8080:80/tcp"), Ok(pm("8080", "80", "tcp")));
        assert_eq!(
            parse_publish("8000-8010:80-90"),
            Ok(pm("8000-8010", "80-90", "tcp"))
        );
        assert_eq!(parse_publish("65535:1"), Ok(pm("65535", "1", "tcp")));
        assert_eq!(parse_publish("udp:53:53"), Ok(pm("53", "53", "udp")));
        assert_eq!(parse_publish("tcp:8080:80"), Ok(pm("8080", "80", "tcp")));
        // A one-port range is one port.
        assert_eq!(parse_publish("80-80:90"), Ok(pm("80", "90", "tcp")));
    }

    #[test]
    fn bad_publish_values_say_what_is_wrong() {
        let msg = |s: &str| parse_publish(s).unwrap_err().to_string();
        assert!(msg("99999:80").contains("port \"99999\" is not a number from 1 to 65535"));
        assert!(msg("0:80").contains("port \"0\""));
        assert!(msg("8080:http").contains("port \"http\""));
        assert!(msg("8080:+80").contains("port \"+80\""));
        assert!(msg("8080:80/sctp").contains("protocol \"sctp\" is not supported"));
        assert!(msg("8080:80/TCP").contains("protocol \"TCP\""));
        assert!(msg("80").contains("expected HOST:CONTAINER"));
        assert!(msg(":80").contains("expected HOST:CONTAINER"));
        assert!(msg("8080:").contains("expected HOST:CONTAINER"));
        assert!(msg("1:2:3:4").contains("expected HOST:CONTAINER"));
        assert!(msg("127.0.0.1:8080:80").contains("host address is not supported"));
        assert!(msg("udp:53:53/tcp").contains("expected HOST:CONTAINER"));
        assert!(msg("90-80:80-90").contains("range \"90-80\" ends before it starts"));
        assert!(msg("8000-8010:80").contains("same size"));
        assert!(msg("8000:80-81").contains("same size"));
        assert!(msg("8000-8001:80-82").contains("same size"));
        assert!(msg("pod.json").contains("a pod file is read with --podfile"));
        assert!(msg("/tmp/p/pod.json").contains("--podfile"));
        assert_eq!(
            parse_publishes(&["1:1".into(), "x".into(), "0:0".into()]),
            Err(PublishError::Syntax("x".into()))
        );
    }

    #[test]
    fn port_prints_one_line_per_container_port_as_docker_does() {
        let lines = port_lines(&[
            pm("8080", "80", "tcp"),
            pm("5353", "53", "udp"),
            pm("9000-9001", "90-91", ""),
            pm("53", "53", "tcp"),
        ]);
        assert_eq!(
            lines,
            [
                "53/tcp -> 0.0.0.0:53",
                "53/udp -> 0.0.0.0:5353",
                "80/tcp -> 0.0.0.0:8080",
                "90/tcp -> 0.0.0.0:9000",
                "91/tcp -> 0.0.0.0:9001",
            ]
        );
        assert_eq!(port_lines(&[]), Vec::<String>::new());
    }
}
