//! A pod's volumes (reference §2.4): host directories and files shared over virtio-fs, named
//! volumes kept under `--root`, image `VOLUME`s, and block images given to the VM as disks.
//!
//! Placeholder of the spec-base contract: nothing is mounted yet.

use hyper_proto::rest::UserPod;
use hyper_proto::shim::VolumeMount;
use hyper_proto::types::DiskSpec;

use super::spec::SpecError;
use super::{Pods, Result};
use crate::store::{ContainerRecord, PodRecord};

/// Checks the pod's volumes and its containers' volume references beyond their shape (which
/// [`super::spec::normalize`] checks): sources, paths, formats hyperd cannot mount.
pub fn check_volumes(_pod: &UserPod) -> std::result::Result<(), SpecError> {
    Ok(())
}

impl Pods {
    /// The volumes of container `ct`, host side, in mount order.
    pub(super) fn volume_mounts(
        &self,
        _pod: &PodRecord,
        _ct: &ContainerRecord,
    ) -> Result<Vec<VolumeMount>> {
        Ok(Vec::new())
    }

    /// The pod's block volumes, given to its VM at boot.
    pub(super) fn pod_disks(&self, _pod: &UserPod) -> Result<Vec<DiskSpec>> {
        Ok(Vec::new())
    }
}
