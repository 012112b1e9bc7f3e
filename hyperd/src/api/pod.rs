//! `/pod/*` and `/list`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;

use hyper_proto::rest::{IdResponse, ListResponse, PodInfo};

use super::error::ApiResult;
use super::{Params, param, required, truthy};
use crate::Daemon;
use crate::pod::{ListItem, spec};

/// The spec comes as the body, or (the seed's spelling) as the `podArgs` query parameter.
pub async fn create(
    State(d): State<Arc<Daemon>>,
    q: Params,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<IdResponse>)> {
    let json: &[u8] = match param(&q, "podArgs") {
        "" => &body,
        args => args.as_bytes(),
    };
    if json.iter().all(u8::is_ascii_whitespace) {
        return Err(crate::error::Error::InvalidInput(
            "pod spec: send the pod JSON as the body or as podArgs".into(),
        )
        .into());
    }
    let pod = spec::parse(json)
        .and_then(spec::normalize)
        .map_err(crate::pod::Error::from)?;
    let id = d.pods.create(pod)?;
    Ok((StatusCode::CREATED, Json(IdResponse::ok(id))))
}

pub async fn start(State(d): State<Arc<Daemon>>, q: Params) -> ApiResult<Json<IdResponse>> {
    let pod_id = required(&q, "podId")?;
    let vm_id = Some(param(&q, "vmId")).filter(|v| !v.is_empty());
    d.pods.start(pod_id, vm_id).await?;
    Ok(Json(IdResponse::ok(pod_id)))
}

/// `stopVM=no` keeps the VM, idle, for another pod; absent means yes.
pub async fn stop(State(d): State<Arc<Daemon>>, q: Params) -> ApiResult<Json<IdResponse>> {
    let pod_id = required(&q, "podId")?;
    let stop_vm = match q.get("stopVM").or(q.get("stopVm")) {
        None => true,
        Some(v) => truthy(v),
    };
    d.pods.stop(pod_id, stop_vm).await?;
    Ok(Json(IdResponse::ok(pod_id)))
}

pub async fn remove(State(d): State<Arc<Daemon>>, q: Params) -> ApiResult<Json<IdResponse>> {
    let pod_id = required(&q, "podId")?;
    d.pods.remove(pod_id).await?;
    Ok(Json(IdResponse::ok(pod_id)))
}

pub async fn info(State(d): State<Arc<Daemon>>, q: Params) -> ApiResult<Json<PodInfo>> {
    let pod_id = match param(&q, "podName") {
        "" => required(&q, "podId")?,
        name => name,
    };
    Ok(Json(d.pods.info(pod_id)?))
}

/// 201, as hyperd 1.1 answers `/list`.
pub async fn list(
    State(d): State<Arc<Daemon>>,
    q: Params,
) -> ApiResult<(StatusCode, Json<ListResponse>)> {
    let item: ListItem = required(&q, "item")?.parse()?;
    let filter = |name: &str| Some(param(&q, name)).filter(|v| !v.is_empty());
    let list = d.pods.list(item, filter("pod"), filter("vm"))?;
    Ok((StatusCode::CREATED, Json(list)))
}
