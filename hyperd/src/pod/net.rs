//! A pod's network, seen from the pod's side: its address and the guest's configuration while
//! it runs, its /etc files whenever its containers change, and its port mappings (hyperd 1.1's
//! `/pod/{id}/portmappings` routes). The bridge, the address pool and the firewall are
//! [`crate::network`]'s; this module only says when a pod takes and gives back its share.

use std::net::Ipv4Addr;
use std::sync::Arc;

use hyper_proto::rest::PortMapping;
use hyper_proto::types::PodNetwork;

use super::{Error, PodState, Pods, Result};
use ipnet::Ipv4Net;

use crate::network::{self, Network};
use crate::store::{self, PodRecord};
use crate::vm::Shim;

/// What `PUT /pod/{id}/portmappings/{action}` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortMappingAction {
    Add,
    Delete,
}

impl std::str::FromStr for PortMappingAction {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "add" => Ok(Self::Add),
            "delete" => Ok(Self::Delete),
            _ => Err(Error::Invalid(
                "Only add or delete operation are permitted".into(),
            )),
        }
    }
}

impl Pods {
    /// A starting pod's address (`None` for a pod without a network), taken before its VM
    /// boots so that a taken fixed address or host port costs no boot. The caller gives it
    /// back ([`Pods::disconnect_network`]) if the start fails.
    pub(super) fn take_address(&self, pod: &PodRecord) -> Result<Option<Ipv4Net>> {
        if !self.network.wants_address(&pod.spec) {
            return Ok(None);
        }
        self.network.probe_host_ports(&pod.spec.portmappings)?;
        Ok(Some(
            self.network
                .allocate(&pod.id, Network::fixed_address(&pod.spec))?,
        ))
    }

    /// Configures the guest of a pod starting in `shim`'s VM with its `lease` (or loopback
    /// only), the host's forwarding, and the pod's /etc files.
    pub(super) async fn connect_network(
        &self,
        pod: &PodRecord,
        shim: &Shim,
        lease: Option<Ipv4Net>,
    ) -> Result<()> {
        match &lease {
            Some(lease) => {
                let Some(nic) = shim.nic().await? else {
                    return Err(Error::Invalid(format!(
                        "vm {}: it has no network card (booted while networking was off); \
                         start the pod without vmId or with \"network\": \"none\"",
                        shim.vm_id
                    )));
                };
                self.configure_guest(pod, shim, lease, &nic.mac).await?;
            }
            // Loopback only: `lo` up, a NIC (a VM from `/vm/create`) flushed and down.
            None => shim.configure_network(PodNetwork::default()).await?,
        }
        self.write_etc(pod, shim, lease.map(|l| l.addr())).await
    }

    async fn configure_guest(
        &self,
        pod: &PodRecord,
        shim: &Shim,
        lease: &Ipv4Net,
        mac: &str,
    ) -> Result<()> {
        let started = std::time::Instant::now();
        shim.configure_network(self.network.pod_network(*lease, mac, &pod.spec))
            .await?;
        self.network.apply().await?;
        tracing::info!(
            pod_id = %pod.id,
            address = %lease,
            network_ms = started.elapsed().as_millis() as u64,
            "pod network up"
        );
        Ok(())
    }

    /// Gives back a stopping (or failed) pod's address and its forwarding rules. With the
    /// pod's VM kept for another pod (`shim`), the guest's NIC goes down too, so a reused VM
    /// never keeps an address the pool may hand out again. Failures are logged: a pod that
    /// stops must stop.
    pub(super) async fn disconnect_network(&self, pod_id: &str, kept_vm: Option<&Shim>) {
        // The next pod in a kept VM starts without this one's services.
        if let Some(shim) = kept_vm
            && let Err(e) = shim.configure_services(Default::default()).await
        {
            tracing::warn!(pod_id, vm_id = %shim.vm_id, "clear the guest's services: {e}");
        }
        if !self.network.enabled() {
            return;
        }
        if let Some(shim) = kept_vm
            && let Err(e) = shim.configure_network(PodNetwork::default()).await
        {
            tracing::warn!(pod_id, vm_id = %shim.vm_id, "take the guest's nic down: {e}");
        }
        let held = matches!(self.network.address_of(pod_id), Ok(Some(_)));
        if let Err(e) = self.network.release(pod_id) {
            tracing::error!(pod_id, "release the pod's address: {e}");
        }
        if held {
            self.refresh_peers(pod_id).await;
        }
        if let Err(e) = self.network.apply().await {
            tracing::error!(pod_id, "update the firewall: {e}");
        }
    }

    /// Rewrites the pod's /etc/hostname, /etc/hosts and /etc/resolv.conf in its VM: the
    /// hostname and every container name resolve to the pod's address.
    pub(super) async fn write_etc(
        &self,
        pod: &PodRecord,
        shim: &Shim,
        address: Option<Ipv4Addr>,
    ) -> Result<()> {
        let names = self.names_of(&pod.id, &pod.spec.hostname)?;
        let mut files = self.network.etc_files(&pod.spec, address, &names[1..]);
        if address.is_some() {
            files
                .hosts
                .push_str(&network::etc::peer_hosts(&self.peers_of(&pod.id)?));
        }
        shim.write_etc_files(files).await?;
        Ok(())
    }

    /// The pod's hostname, then its containers' names.
    fn names_of(&self, pod_id: &str, hostname: &str) -> Result<Vec<String>> {
        let mut names = vec![hostname.to_string()];
        names.extend(self.containers(pod_id)?.into_iter().map(|c| c.name));
        Ok(names)
    }

    /// Every other pod holding an address, with its names: what `pod_id`'s /etc/hosts lists
    /// after its own lines.
    fn peers_of(&self, pod_id: &str) -> Result<Vec<(Ipv4Addr, Vec<String>)>> {
        let mut peers = Vec::new();
        for (holder, address) in self.network.holders()? {
            if holder == pod_id {
                continue;
            }
            if let Ok(peer) = self.get(&holder) {
                peers.push((address, self.names_of(&holder, &peer.spec.hostname)?));
            }
        }
        Ok(peers)
    }

    /// After a container was added, removed or renamed in a running pod: its /etc/hosts
    /// follows. A pod that is not running has nothing to update.
    pub(super) async fn refresh_etc(&self, pod_id: &str) -> Result<()> {
        let pod = self.get(pod_id)?;
        if pod.state != PodState::Running {
            return Ok(());
        }
        let Some(vm_id) = pod.vm_id.as_deref() else {
            return Ok(());
        };
        let shim = self.vms.shim(vm_id)?;
        let address = self.network.address_of(pod_id)?.map(|l| l.addr());
        self.write_etc(&pod, &shim, address).await
    }

    /// After `changed` took or gave back its address, or its containers' names changed: the
    /// other running pods' /etc/hosts follow (they list it). Failures are logged: a peer
    /// stopping meanwhile has nothing to update.
    pub(super) async fn refresh_peers(&self, changed: &str) {
        let holders = match self.network.holders() {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(pod_id = changed, "pods to tell about {changed}: {e}");
                return;
            }
        };
        for (holder, _) in holders {
            if holder != changed
                && let Err(e) = self.refresh_etc(&holder).await
            {
                tracing::warn!(pod_id = %holder, "/etc/hosts after {changed} changed: {e}");
            }
        }
    }

    /// The pod's address (CIDR) while it has one.
    pub(super) fn pod_addresses(&self, pod_id: &str) -> Vec<String> {
        match self.network.address_of(pod_id) {
            Ok(Some(lease)) => vec![lease.to_string()],
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::warn!(pod_id, "address of the pod: {e}");
                Vec::new()
            }
        }
    }

    /// `GET /pod/{id}/portmappings`: the pod's mappings, normalised.
    pub fn portmappings(&self, pod_id: &str) -> Result<Vec<PortMapping>> {
        Ok(self.get(pod_id)?.spec.portmappings)
    }

    /// `PUT /pod/{id}/portmappings/{add|delete}`. Adding checks the new host ports (409 when
    /// another pod or a host process holds one) and records them with the spec in one
    /// transaction; deleting a mapping the pod does not have is a 400 naming it. A running
    /// pod's forwarding follows at once.
    pub async fn change_portmappings(
        self: &Arc<Self>,
        pod_id: &str,
        action: PortMappingAction,
        mappings: Vec<PortMapping>,
    ) -> Result<()> {
        let lock = self.lock_of(pod_id);
        let _guard = lock.lock().await;
        let mut pod = self.get(pod_id)?;
        if mappings.is_empty() {
            return Err(Error::Invalid("port mappings: the array is empty".into()));
        }
        if !self.network.wants_address(&pod.spec) {
            return Err(Error::Invalid(format!(
                "pod {pod_id} has no network (networking is off, or the pod's network is none)"
            )));
        }
        let mappings = network::normalize_ports("portmappings", &mappings)?;
        match action {
            PortMappingAction::Add => {
                self.network.probe_host_ports(&mappings)?;
                pod.spec.portmappings.extend(mappings.iter().cloned());
                let mut probe = pod.spec.clone();
                probe.portmappings = network::normalize_ports("portmappings", &probe.portmappings)?;
                self.network.check_spec(&probe)?;
                pod.spec.portmappings = probe.portmappings;
                self.store.write(|tx| {
                    if let Err(e) = Network::reserve_ports(tx, pod_id, &mappings)? {
                        return Ok(Err(Error::from(e)));
                    }
                    store::update_pod_spec(tx, &pod)?;
                    Ok(Ok(()))
                })??;
            }
            PortMappingAction::Delete => {
                for m in &mappings {
                    if !pod.spec.portmappings.contains(m) {
                        return Err(Error::Invalid(format!(
                            "pod {pod_id} has no port mapping {}:{}/{}",
                            m.host_port, m.container_port, m.protocol
                        )));
                    }
                }
                pod.spec.portmappings.retain(|m| !mappings.contains(m));
                self.store.write(|tx| {
                    if let Err(e) = Network::release_ports(tx, pod_id, Some(&mappings))? {
                        return Ok(Err(Error::from(e)));
                    }
                    store::update_pod_spec(tx, &pod)?;
                    Ok(Ok(()))
                })??;
            }
        }
        if pod.state == PodState::Running || pod.state == PodState::Paused {
            self.network.apply().await?;
        }
        tracing::info!(
            pod_id,
            ?action,
            count = mappings.len(),
            "port mappings changed"
        );
        Ok(())
    }
}

impl From<network::Error> for Error {
    fn from(e: network::Error) -> Self {
        Error::Network(e)
    }
}
