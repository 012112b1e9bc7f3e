//! `/pod/*` and `/list`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};

use hyper_proto::rest::{IdResponse, ListResponse, PodInfo, PortMapping, PortMappingList};

use super::error::ApiResult;
use super::{Params, param, required, truthy};
use crate::Daemon;
use crate::pod::{LabelFilter, ListItem, PortMappingAction, spec};

/// The spec comes as the body, or (the seed's spelling) as the `podArgs` query parameter
/// (JSON). A body is YAML when its `Content-Type` says so (`application/yaml`,
/// `application/x-yaml`, `text/yaml`), JSON otherwise; keys match the spec's field names
/// regardless of case. Files with a `uri` are fetched now: a pod starts the same way every
/// time.
pub async fn create(
    State(d): State<Arc<Daemon>>,
    q: Params,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<IdResponse>)> {
    let (doc, format): (&[u8], _) = match param(&q, "podArgs") {
        "" => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            (&body, spec::Format::from_content_type(content_type))
        }
        args => (args.as_bytes(), spec::Format::Json),
    };
    if doc.iter().all(u8::is_ascii_whitespace) {
        return Err(crate::error::Error::InvalidInput(
            "pod spec: send the pod JSON (or YAML) as the body or as podArgs".into(),
        )
        .into());
    }
    let pod = spec::parse_as(doc, format)
        .and_then(spec::normalize)
        .map_err(crate::pod::Error::from)?;
    let fetched = d.pods.fetch_files(&pod).await?;
    let id = d.pods.create(pod)?;
    // Once recorded, the pod's remove takes its files: a failure here leaves no pod
    // half-made.
    if let Err(e) = d.pods.keep_files(&id, fetched) {
        let _ = d.pods.remove(&id).await;
        return Err(e.into());
    }
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

/// 201, as hyperd 1.1 answers `/list`. `label=k=v,k2` keeps the pods (or the containers)
/// that have every label given (`k2`: set to anything).
pub async fn list(
    State(d): State<Arc<Daemon>>,
    q: Params,
) -> ApiResult<(StatusCode, Json<ListResponse>)> {
    let item: ListItem = required(&q, "item")?.parse()?;
    let filter = |name: &str| Some(param(&q, name)).filter(|v| !v.is_empty());
    let labels = LabelFilter::parse(param(&q, "label"))?;
    if item == ListItem::Vm && !labels.is_empty() {
        return Err(crate::error::Error::InvalidInput(
            "query parameter label: filters pods and containers, not vms".into(),
        )
        .into());
    }
    let list = d.pods.list(item, filter("pod"), filter("vm"), &labels)?;
    Ok((StatusCode::CREATED, Json(list)))
}

/// `podId` (or hyperd 1.1's `podName`).
fn pod_id(q: &std::collections::HashMap<String, String>) -> Result<&str, super::error::ApiError> {
    match param(q, "podId") {
        "" => Ok(required(q, "podName")?),
        id => Ok(id),
    }
}

/// `signal` (a number or a name, default TERM) to `container` of the pod, or to all its
/// running containers.
pub async fn kill(State(d): State<Arc<Daemon>>, q: Params) -> ApiResult<Json<serde_json::Value>> {
    let pod_id = pod_id(&q)?;
    let signal = match param(&q, "signal") {
        "" => libc::SIGTERM,
        s => crate::container::parse_signal("signal", s)?,
    };
    let container = Some(param(&q, "container")).filter(|c| !c.is_empty());
    d.pods.kill_pod(pod_id, container, signal).await?;
    Ok(Json(serde_json::json!({})))
}

/// 204; the pod's whole VM is frozen.
pub async fn pause(State(d): State<Arc<Daemon>>, q: Params) -> ApiResult<StatusCode> {
    d.pods.pause(required(&q, "podId")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn unpause(State(d): State<Arc<Daemon>>, q: Params) -> ApiResult<StatusCode> {
    d.pods.unpause(required(&q, "podId")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `labels`: a JSON object of strings; `override` replaces labels already set.
pub async fn labels(
    State(d): State<Arc<Daemon>>,
    q: Params,
) -> ApiResult<(StatusCode, Json<IdResponse>)> {
    let pod_id = required(&q, "podId")?;
    let labels: std::collections::BTreeMap<String, String> =
        serde_json::from_str(required(&q, "labels")?).map_err(|e| {
            crate::error::Error::InvalidInput(format!(
                "labels: expected a JSON object of strings: {e}"
            ))
        })?;
    d.pods
        .set_labels(pod_id, labels, truthy(param(&q, "override")))
        .await?;
    Ok((StatusCode::CREATED, Json(IdResponse::ok(pod_id))))
}

/// A JSON array with one Docker stats object per running container; `stream=true` writes
/// one such array a line, every second, until the pod stops running or the client leaves.
pub async fn stats(State(d): State<Arc<Daemon>>, q: Params) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let pod_id = required(&q, "podId")?.to_string();
    let (shim, containers) = d.pods.stats_targets(&pod_id)?;
    let mut sampler = crate::pod::StatsSampler::default();
    let first = sampler.sample(&shim, &containers).await?;
    if !truthy(param(&q, "stream")) {
        return Ok(Json(first).into_response());
    }
    let line = |v: Vec<serde_json::Value>| {
        let mut b = serde_json::to_vec(&v).unwrap_or_default();
        b.push(b'\n');
        axum::body::Bytes::from(b)
    };
    let head = futures::stream::iter([Ok::<_, std::io::Error>(line(first))]);
    let rest = futures::stream::unfold(
        (d, pod_id, sampler),
        move |(d, pod_id, mut sampler)| async move {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let (shim, containers) = d.pods.stats_targets(&pod_id).ok()?;
            let sample = sampler.sample(&shim, &containers).await.ok()?;
            Some((Ok(line(sample)), (d, pod_id, sampler)))
        },
    );
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(futures::StreamExt::chain(head, rest)),
    )
        .into_response())
}

/// `GET /pod/{id}/portmappings` (hyperd 1.1): `{"portMappings": [...]}`, normalised.
pub async fn portmappings(
    State(d): State<Arc<Daemon>>,
    Path(pod_id): Path<String>,
) -> ApiResult<Json<PortMappingList>> {
    Ok(Json(PortMappingList {
        port_mappings: d.pods.portmappings(&pod_id)?,
    }))
}

/// `PUT /pod/{id}/portmappings/{add|delete}` (hyperd 1.1); the body is a JSON array of
/// PortMapping. 204; a host port another pod or a host process holds is a 409.
pub async fn change_portmappings(
    State(d): State<Arc<Daemon>>,
    Path((pod_id, action)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let action: PortMappingAction = action.parse()?;
    let mut de = serde_json::Deserializer::from_slice(&body);
    let mappings: Vec<PortMapping> = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let what = if inner.is_syntax() || inner.is_eof() {
            format!("malformed JSON: {inner}")
        } else if path == "." {
            format!("the body must be a JSON array ({inner})")
        } else {
            format!("{path}: {inner}")
        };
        crate::error::Error::InvalidInput(format!(
            "port mappings: {what}; send a JSON array of {{containerPort, hostPort, protocol}}"
        ))
    })?;
    d.pods
        .change_portmappings(&pod_id, action, mappings)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
