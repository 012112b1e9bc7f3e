//! What a container gets besides its rootfs, process and volumes: a read-only rootfs, the
//! pod's files, rlimits and sysctls (reference §2.3, §2.5), applied by the guest agent.
//!
//! Placeholder of the spec-base contract: nothing is applied yet.

use hyper_proto::types::ContainerOptions;

use super::{Pods, Result};
use crate::store::{ContainerRecord, PodRecord};

impl Pods {
    /// The options of container `ct` of `pod`.
    pub(super) fn container_options(
        &self,
        _pod: &PodRecord,
        _ct: &ContainerRecord,
    ) -> Result<ContainerOptions> {
        Ok(ContainerOptions::default())
    }
}
