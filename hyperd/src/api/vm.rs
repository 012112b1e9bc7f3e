//! `/vm/create` (boot an idle VM a pod can start in) and `/vm/kill`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use hyper_proto::rest::IdResponse;

use super::error::ApiResult;
use super::{Params, param, required};
use crate::Daemon;
use crate::error::Error;
use crate::pod::spec::{DEFAULT_MEMORY_MIB, DEFAULT_VCPU};
use crate::vm::VmSize;

fn number(q: &Params, name: &str, default: i32) -> Result<u32, Error> {
    match param(q, name) {
        "" => Ok(default as u32),
        v => v.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
            Error::InvalidInput(format!(
                "query parameter {name}: {v:?} is not a positive number"
            ))
        }),
    }
}

/// `cpu` and `mem` (MiB) size the VM; defaults as for pods.
pub async fn create(
    State(d): State<Arc<Daemon>>,
    q: Params,
) -> ApiResult<(StatusCode, Json<IdResponse>)> {
    let size = VmSize {
        cpus: number(&q, "cpu", DEFAULT_VCPU)?,
        memory_mib: number(&q, "mem", DEFAULT_MEMORY_MIB)?,
    };
    let vm = d.vms.boot(size).await?;
    Ok((StatusCode::CREATED, Json(IdResponse::ok(vm.id))))
}

pub async fn kill(State(d): State<Arc<Daemon>>, q: Params) -> ApiResult<Json<IdResponse>> {
    let vm_id = match param(&q, "vmId") {
        "" => required(&q, "vm")?,
        id => id,
    };
    d.pods.kill_vm(vm_id).await?;
    Ok(Json(IdResponse::ok(vm_id)))
}
