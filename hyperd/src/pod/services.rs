//! A pod's services (hyperd 1.1's UserService, §2.2, and its `/service` routes, §1.4): layer-4
//! load balancing inside the pod's VM, done by the agent with IPVS (masquerade, round robin,
//! weight 1). They live in the pod's spec; a running pod's guest follows every change at once
//! (replace-all), a stopped pod's only its record, applied when it starts.

use std::net::Ipv4Addr;
use std::sync::Arc;

use hyper_proto::rest::{UserPod, UserService};
use hyper_proto::types::{Service, ServiceBackend, ServiceList};

use super::spec::SpecError;
use super::{Error, PodState, Pods, Result};
use crate::store::{self, PodRecord};
use crate::vm::Shim;

/// What a `/service` route does with the services it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceAction {
    /// `POST /service/add`: appends; a service the pod has already is a 400.
    Add,
    /// `POST /service/update`: replaces the whole list (empty: no services).
    Update,
    /// `DELETE /service`: removes the listed ones (by `serviceIP:servicePort@protocol`; their
    /// hosts are not checked or compared); one the pod does not have is a 400.
    Delete,
}

fn bad(field: String, message: impl Into<String>) -> Error {
    Error::Spec(SpecError {
        field,
        message: message.into(),
    })
}

/// The key hyperd 1.1 keeps services unique by: `serviceIP:servicePort@protocol`.
fn key(s: &UserService) -> String {
    let protocol = if s.protocol.is_empty() {
        "tcp"
    } else {
        &s.protocol
    };
    format!("{}:{}@{protocol}", s.service_ip, s.service_port)
}

fn port(value: i32, field: String) -> Result<()> {
    if (1..=65535).contains(&value) {
        Ok(())
    } else {
        Err(bad(field, format!("{value}: must be between 1 and 65535")))
    }
}

fn ipv4(value: &str, field: String) -> Result<()> {
    value
        .parse::<Ipv4Addr>()
        .map(|_| ())
        .map_err(|_| bad(field, format!("{value:?}: not an IPv4 address")))
}

/// Checks services as the pod spec's `services` (`field` names the list, e.g. "services"):
/// IPv4 `serviceIP` and `hostIP`s, ports 1..=65535, `protocol` tcp or udp, at least one host,
/// each `serviceIP:servicePort@protocol` once; an empty protocol becomes "tcp". Errors:
/// [`Error::Spec`] naming the field, e.g. `services[0].serviceIP`.
pub fn check_services(field: &str, services: &mut [UserService]) -> Result<()> {
    check_list(field, services, true)
}

/// [`check_services`]; without `hosts`, only what names a service (its address, port and
/// protocol) is checked, as `DELETE /service` needs.
fn check_list(field: &str, services: &mut [UserService], hosts: bool) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for (i, s) in services.iter_mut().enumerate() {
        let at = format!("{field}[{i}]");
        check_one(&at, s, hosts)?;
        if !seen.insert(key(s)) {
            return Err(bad(at, format!("{} is listed twice", key(s))));
        }
    }
    Ok(())
}

fn check_one(at: &str, s: &mut UserService, check_hosts: bool) -> Result<()> {
    match s.protocol.as_str() {
        "" => s.protocol = "tcp".into(),
        "tcp" | "udp" => {}
        other => {
            return Err(bad(
                format!("{at}.protocol"),
                format!("{other:?}: must be tcp or udp"),
            ));
        }
    }
    ipv4(&s.service_ip, format!("{at}.serviceIP"))?;
    port(s.service_port, format!("{at}.servicePort"))?;
    if !check_hosts {
        return Ok(());
    }
    if s.hosts.is_empty() {
        return Err(bad(format!("{at}.hosts"), "at least one host is needed"));
    }
    let mut hosts = std::collections::HashSet::new();
    for (j, h) in s.hosts.iter().enumerate() {
        ipv4(&h.host_ip, format!("{at}.hosts[{j}].hostIP"))?;
        port(h.host_port, format!("{at}.hosts[{j}].hostPort"))?;
        if !hosts.insert((h.host_ip.as_str(), h.host_port)) {
            return Err(bad(
                format!("{at}.hosts[{j}]"),
                format!("{}:{} is listed twice", h.host_ip, h.host_port),
            ));
        }
    }
    Ok(())
}

fn no_network() -> Error {
    bad(
        "services".into(),
        "the pod has no network (networking is off, or its network is none), \
         so no service IP can be reached",
    )
}

/// The agent's form of checked services.
pub fn service_list(services: &[UserService]) -> ServiceList {
    ServiceList {
        services: services
            .iter()
            .map(|s| Service {
                service_ip: s.service_ip.clone(),
                protocol: s.protocol.clone(),
                service_port: s.service_port as u32,
                backends: s
                    .hosts
                    .iter()
                    .map(|h| ServiceBackend {
                        ip: h.host_ip.clone(),
                        port: h.host_port as u32,
                    })
                    .collect(),
            })
            .collect(),
    }
}

impl Pods {
    /// [`check_services`] for a pod spec on this daemon: services need the pod's NIC (its
    /// default route is how a service IP is reached), so a pod without a network (`network:
    /// none`, or networking off) that has services is a 400 naming `services`.
    pub(super) fn check_pod_services(&self, pod: &mut UserPod) -> Result<()> {
        check_services("services", &mut pod.services)?;
        if !pod.services.is_empty() && !self.network.wants_address(pod) {
            return Err(no_network());
        }
        Ok(())
    }

    /// Puts a starting pod's services into its VM (after its network); nothing to do for a
    /// pod without services, so its guest never loads IPVS.
    pub(super) async fn apply_services(&self, pod: &PodRecord, shim: &Shim) -> Result<()> {
        if pod.spec.services.is_empty() {
            return Ok(());
        }
        shim.configure_services(service_list(&pod.spec.services))
            .await?;
        tracing::info!(pod_id = %pod.id, count = pod.spec.services.len(), "pod services up");
        Ok(())
    }

    /// `GET /service/list`: the pod's services.
    pub fn services(&self, pod_id: &str) -> Result<Vec<UserService>> {
        Ok(self.get(pod_id)?.spec.services)
    }

    /// `POST /service/add`, `POST /service/update`, `DELETE /service` (see [`ServiceAction`]).
    /// The new list is checked as a whole (400 naming the field); a paused pod is a 409; a
    /// running pod's guest gets it first, and only then is it recorded, so a guest that refuses it (and puts
    /// its previous table back) leaves the record as it was.
    pub async fn change_services(
        self: &Arc<Self>,
        pod_id: &str,
        action: ServiceAction,
        mut services: Vec<UserService>,
    ) -> Result<()> {
        let lock = self.lock_of(pod_id);
        let _guard = lock.lock().await;
        let mut pod = self.get(pod_id)?;
        if services.is_empty() && action != ServiceAction::Update {
            return Err(bad("services".into(), "the array is empty"));
        }
        check_list("services", &mut services, action != ServiceAction::Delete)?;
        if action == ServiceAction::Add && !self.network.wants_address(&pod.spec) {
            return Err(no_network());
        }
        let list = match action {
            ServiceAction::Update => services,
            ServiceAction::Add => {
                let mut list = pod.spec.services.clone();
                for (i, s) in services.into_iter().enumerate() {
                    if list.iter().any(|old| key(old) == key(&s)) {
                        return Err(bad(
                            format!("services[{i}]"),
                            format!("pod {pod_id} has service {} already", key(&s)),
                        ));
                    }
                    list.push(s);
                }
                list
            }
            ServiceAction::Delete => {
                for (i, s) in services.iter().enumerate() {
                    if !pod.spec.services.iter().any(|old| key(old) == key(s)) {
                        return Err(bad(
                            format!("services[{i}]"),
                            format!("pod {pod_id} has no service {}", key(s)),
                        ));
                    }
                }
                let mut list = pod.spec.services.clone();
                list.retain(|old| !services.iter().any(|s| key(s) == key(old)));
                list
            }
        };
        // A paused guest cannot answer; rather than record what it does not run, refuse.
        if pod.state == PodState::Paused {
            return Err(Error::WrongState {
                id: pod.id,
                state: pod.state,
            });
        }
        if pod.state == PodState::Running
            && let Some(vm_id) = &pod.vm_id
        {
            let shim = self.vms.shim(vm_id)?;
            shim.configure_services(service_list(&list)).await?;
        }
        pod.spec.services = list;
        self.store.write(|tx| store::update_pod_spec(tx, &pod))?;
        tracing::info!(
            pod_id,
            ?action,
            count = pod.spec.services.len(),
            "services changed"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_proto::rest::UserServiceBackend;

    fn service(ip: &str, protocol: &str, port: i32, hosts: &[(&str, i32)]) -> UserService {
        UserService {
            service_ip: ip.into(),
            protocol: protocol.into(),
            service_port: port,
            hosts: hosts
                .iter()
                .map(|(ip, port)| UserServiceBackend {
                    host_ip: (*ip).into(),
                    host_port: *port,
                })
                .collect(),
        }
    }

    fn field_of(mut services: Vec<UserService>) -> String {
        match check_services("services", &mut services) {
            Err(Error::Spec(e)) => e.field,
            other => panic!("expected a spec error, got {other:?}"),
        }
    }

    #[test]
    fn protocol_defaults_to_tcp() {
        let mut list = vec![service(
            "10.254.0.10",
            "",
            6379,
            &[("192.168.123.20", 6379)],
        )];
        check_services("services", &mut list).unwrap();
        assert_eq!(list[0].protocol, "tcp");
        assert_eq!(service_list(&list).services[0].backends[0].port, 6379);
    }

    #[test]
    fn each_bad_field_is_named() {
        let h = [("10.0.0.1", 80)];
        assert_eq!(
            field_of(vec![service("nope", "tcp", 80, &h)]),
            "services[0].serviceIP"
        );
        assert_eq!(
            field_of(vec![service("::1", "tcp", 80, &h)]),
            "services[0].serviceIP"
        );
        assert_eq!(
            field_of(vec![service("10.0.0.9", "icmp", 80, &h)]),
            "services[0].protocol"
        );
        assert_eq!(
            field_of(vec![service("10.0.0.9", "tcp", 0, &h)]),
            "services[0].servicePort"
        );
        assert_eq!(
            field_of(vec![service("10.0.0.9", "tcp", 65536, &h)]),
            "services[0].servicePort"
        );
        assert_eq!(
            field_of(vec![service("10.0.0.9", "tcp", 80, &[])]),
            "services[0].hosts"
        );
        assert_eq!(
            field_of(vec![service("10.0.0.9", "tcp", 80, &[("10.0.0.300", 80)])]),
            "services[0].hosts[0].hostIP"
        );
        assert_eq!(
            field_of(vec![service("10.0.0.9", "tcp", 80, &[("10.0.0.1", -1)])]),
            "services[0].hosts[0].hostPort"
        );
    }

    #[test]
    fn a_service_twice_is_refused_even_with_the_default_protocol() {
        let h = [("10.0.0.1", 80)];
        assert_eq!(
            field_of(vec![
                service("10.0.0.9", "tcp", 80, &h),
                service("10.0.0.9", "", 80, &h)
            ]),
            "services[1]"
        );
        // The same address and port over udp is another service.
        let mut ok = vec![
            service("10.0.0.9", "tcp", 80, &h),
            service("10.0.0.9", "udp", 80, &h),
        ];
        check_services("services", &mut ok).unwrap();
    }
}
