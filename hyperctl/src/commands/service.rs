//! `hyperctl service ls|add|update|rm POD …`: a pod's services through hyperd 1.1's `/service`
//! routes. A service is written `IP:PORT[/tcp|/udp]=HOST:PORT[,HOST:PORT…]`, e.g.
//! `10.254.0.10:6379=192.168.123.20:6379,192.168.123.21:6379`.

use anyhow::Result;
use bytes::Bytes;
use hyper::Method;

use hyper_proto::rest::{UserService, UserServiceBackend};

use crate::client::{Client, enc};

/// Why a service argument is refused; every message names the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServiceArgError {
    #[error("service {0:?}: expected IP:PORT[/tcp|/udp]=HOST:PORT[,HOST:PORT...]")]
    Syntax(String),
    #[error("service {spec:?}: port {port:?} is not a number from 1 to 65535")]
    Port { spec: String, port: String },
}

/// `IP:PORT` of a service argument; the address is checked by the daemon.
fn address(spec: &str, s: &str) -> Result<(String, i32), ServiceArgError> {
    let (ip, port) = s
        .rsplit_once(':')
        .filter(|(ip, _)| !ip.is_empty())
        .ok_or_else(|| ServiceArgError::Syntax(spec.into()))?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 && !port.starts_with('+') => Ok((ip.to_string(), i32::from(p))),
        _ => Err(ServiceArgError::Port {
            spec: spec.into(),
            port: port.into(),
        }),
    }
}

/// One service argument as the pod spec's UserService.
pub fn parse_service(spec: &str) -> Result<UserService, ServiceArgError> {
    let (front, hosts) = spec
        .split_once('=')
        .ok_or_else(|| ServiceArgError::Syntax(spec.into()))?;
    let mut service = parse_front(spec, front)?;
    service.hosts = hosts
        .split(',')
        .map(|h| {
            let (host_ip, host_port) = address(spec, h)?;
            Ok(UserServiceBackend { host_ip, host_port })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(service)
}

/// What names a service to remove: `IP:PORT[/PROTO]` (hosts after `=` are ignored).
pub fn parse_key(spec: &str) -> Result<UserService, ServiceArgError> {
    let front = spec.split_once('=').map_or(spec, |(f, _)| f);
    parse_front(spec, front)
}

/// `IP:PORT[/tcp|/udp]`, without hosts.
fn parse_front(spec: &str, front: &str) -> Result<UserService, ServiceArgError> {
    let (front, protocol) = match front.rsplit_once('/') {
        Some((f, p @ ("tcp" | "udp"))) => (f, p),
        Some(_) => return Err(ServiceArgError::Syntax(spec.into())),
        None => (front, "tcp"),
    };
    let (service_ip, service_port) = address(spec, front)?;
    Ok(UserService {
        service_ip,
        protocol: protocol.into(),
        service_port,
        hosts: Vec::new(),
    })
}

#[derive(Debug, clap::Subcommand)]
pub enum ServiceCommand {
    /// List a pod's services.
    #[command(alias = "list")]
    Ls(PodArg),
    /// Add services to a pod: IP:PORT[/tcp|/udp]=HOST:PORT[,HOST:PORT...]...
    Add(ServiceArgs),
    /// Replace all of a pod's services with these (none: remove them all).
    Update(UpdateArgs),
    /// Remove services of a pod (IP:PORT[/PROTO], or as given to add).
    #[command(alias = "delete")]
    Rm(RmArgs),
}

#[derive(Debug, clap::Args)]
pub struct PodArg {
    /// The pod.
    pub pod: String,
}

#[derive(Debug, clap::Args)]
pub struct ServiceArgs {
    /// The pod.
    pub pod: String,
    /// IP:PORT[/tcp|/udp]=HOST:PORT[,HOST:PORT...]
    #[arg(required = true)]
    pub services: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// The pod.
    pub pod: String,
    /// IP:PORT[/tcp|/udp]=HOST:PORT[,HOST:PORT...]
    pub services: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// The pod.
    pub pod: String,
    /// IP:PORT[/tcp|/udp] (anything after `=` is ignored: services are matched by these).
    #[arg(required = true)]
    pub services: Vec<String>,
}

/// `hyperctl service …`: one call of the matching `/service` route.
pub async fn run(client: &Client, command: ServiceCommand) -> Result<i32> {
    let (method, route, pod, services) = match command {
        ServiceCommand::Ls(a) => {
            let list: Vec<UserService> = client
                .get(&format!("/service/list?podId={}", enc(&a.pod)))
                .await?;
            println!("{:<22} {:<8} HOSTS", "SERVICE", "PROTOCOL");
            for s in list {
                let hosts: Vec<String> = s
                    .hosts
                    .iter()
                    .map(|h| format!("{}:{}", h.host_ip, h.host_port))
                    .collect();
                let service = format!("{}:{}", s.service_ip, s.service_port);
                println!("{service:<22} {:<8} {}", s.protocol, hosts.join(","));
            }
            return Ok(0);
        }
        ServiceCommand::Add(a) => (Method::POST, "/service/add", a.pod, parse_all(&a.services)?),
        ServiceCommand::Update(a) => (
            Method::POST,
            "/service/update",
            a.pod,
            parse_all(&a.services)?,
        ),
        ServiceCommand::Rm(a) => {
            let keys = a
                .services
                .iter()
                .map(|s| parse_key(s))
                .collect::<Result<Vec<_>, _>>()?;
            (Method::DELETE, "/service", a.pod, keys)
        }
    };
    let path = format!(
        "{route}?podId={}&services={}",
        enc(&pod),
        enc(&serde_json::to_string(&services)?)
    );
    client.call(method, &path, None, Bytes::new()).await?;
    Ok(0)
}

fn parse_all(specs: &[String]) -> Result<Vec<UserService>, ServiceArgError> {
    specs.iter().map(|s| parse_service(s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_argument_becomes_a_user_service() {
        let s = parse_service("10.254.0.10:53/udp=192.168.123.20:5353,192.168.123.21:53").unwrap();
        assert_eq!(s.service_ip, "10.254.0.10");
        assert_eq!(s.protocol, "udp");
        assert_eq!(s.service_port, 53);
        assert_eq!(s.hosts.len(), 2);
        assert_eq!(s.hosts[0].host_port, 5353);
        assert_eq!(
            parse_service("10.254.0.10:80=10.0.0.1:8080")
                .unwrap()
                .protocol,
            "tcp"
        );
    }

    #[test]
    fn bad_arguments_name_the_value() {
        for bad in [
            "10.254.0.10:80",
            "10.254.0.10:80/sctp=1.2.3.4:80",
            ":80=1.2.3.4:80",
        ] {
            assert_eq!(
                parse_service(bad),
                Err(ServiceArgError::Syntax(bad.into())),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_service("10.254.0.10:0=1.2.3.4:80"),
            Err(ServiceArgError::Port { .. })
        ));
        assert!(matches!(
            parse_service("10.254.0.10:80=1.2.3.4:x"),
            Err(ServiceArgError::Port { .. })
        ));
        let key = parse_key("10.254.0.10:53/udp").unwrap();
        assert_eq!((key.service_port, key.protocol.as_str()), (53, "udp"));
        assert!(key.hosts.is_empty());
    }
}
