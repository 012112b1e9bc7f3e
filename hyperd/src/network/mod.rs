//! PLACEHOLDER for the net-core branch's module: signatures only, so the pod wiring compiles.
#![allow(dead_code, unused_variables)]
use std::net::Ipv4Addr;

use hyper_proto::rest::{PortMapping, UserPod};
use hyper_proto::types::{EtcFiles, NicSpec, PodNetwork};
use rusqlite::Transaction;

use crate::error::Kind;
use crate::pod::spec::SpecError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("x")]
    X,
}
impl Error {
    pub fn kind(&self) -> Kind {
        Kind::Internal
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix: u8,
}

pub struct Network;
impl Network {
    pub fn disabled() -> std::sync::Arc<Self> {
        todo!()
    }
    pub fn enabled(&self) -> bool {
        todo!()
    }
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        todo!()
    }
    pub fn nic_for(&self, vm_id: &str) -> Option<NicSpec> {
        todo!()
    }
    pub fn check_spec(&self, pod: &UserPod) -> Result<(), SpecError> {
        todo!()
    }
    pub fn normalize_ports(m: Vec<PortMapping>) -> Result<Vec<PortMapping>, SpecError> {
        todo!()
    }
    pub fn reserve_ports(
        tx: &Transaction,
        pod_id: &str,
        m: &[PortMapping],
    ) -> crate::store::Result<Result<(), Error>> {
        todo!()
    }
    pub fn release_ports(
        tx: &Transaction,
        pod_id: &str,
        m: Option<&[PortMapping]>,
    ) -> crate::store::Result<()> {
        todo!()
    }
    pub fn probe_host_ports(&self, m: &[PortMapping]) -> Result<(), Error> {
        todo!()
    }
    pub fn allocate(&self, pod_id: &str, fixed: Option<Ipv4Addr>) -> Result<Lease, Error> {
        todo!()
    }
    pub fn release(&self, pod_id: &str) -> Result<(), Error> {
        todo!()
    }
    pub fn address_of(&self, pod_id: &str) -> Result<Option<Lease>, Error> {
        todo!()
    }
    pub fn pod_network(&self, lease: &Lease, mac: &str, pod: &UserPod) -> PodNetwork {
        todo!()
    }
    pub fn etc_files(&self, pod: &UserPod, addr: Option<Ipv4Addr>, names: &[String]) -> EtcFiles {
        todo!()
    }
    pub async fn apply(&self) -> Result<(), Error> {
        todo!()
    }
}
