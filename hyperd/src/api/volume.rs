//! `/volumes`: Docker's named volume routes (local driver only): create, list, inspect, remove.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::ApiResult;
use super::{Params, param, truthy};
use crate::Daemon;
use crate::error::Error;
use crate::volume::{Filters, Volume};

/// The one driver: volumes are directories under hyperd's root.
const LOCAL_DRIVER: &str = "local";

/// Docker's `VolumeCreateRequest`. `Driver` must be `local` (or empty), `DriverOpts` empty.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
struct CreateRequest {
    name: String,
    driver: String,
    driver_opts: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    /// Sent as null by Docker's CLI; a swarm cluster volume otherwise.
    cluster_volume_spec: Option<serde_json::Value>,
}

/// Docker's `VolumeListResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListResponse {
    volumes: Vec<Volume>,
    warnings: Vec<String>,
}

/// The body is a `VolumeCreateRequest`; an empty `Name` gets a random 64-hex one. 201 with the
/// Volume (an existing volume of that name is returned as it is).
pub async fn create(
    State(d): State<Arc<Daemon>>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Volume>)> {
    let req: CreateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CreateRequest::default()
    } else {
        let mut de = serde_json::Deserializer::from_slice(&body);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            Error::InvalidInput(format!("volume create: {}: {}", e.path(), e.inner()))
        })?
    };
    if !req.driver.is_empty() && req.driver != LOCAL_DRIVER {
        return Err(Error::InvalidInput(format!(
            "Driver: {:?}: not supported (only the local driver is)",
            req.driver
        ))
        .into());
    }
    if !req.driver_opts.is_empty() {
        return Err(Error::InvalidInput(
            "DriverOpts: not supported (the local driver here takes no options)".into(),
        )
        .into());
    }
    if req
        .cluster_volume_spec
        .as_ref()
        .is_some_and(|v| !v.is_null())
    {
        return Err(Error::InvalidInput("ClusterVolumeSpec: not supported".into()).into());
    }
    let name = match req.name.as_str() {
        "" => crate::ids::container_id(),
        n => n.to_string(),
    };
    let v = d.volumes.create(&name, req.labels)?;
    Ok((StatusCode::CREATED, Json(d.volumes.view(&v))))
}

/// `filters`: Docker's JSON filters (`name`, `label`, `dangling`, `driver`).
pub async fn list(State(d): State<Arc<Daemon>>, q: Params) -> ApiResult<Json<ListResponse>> {
    let filters = match param(&q, "filters") {
        "" => Filters::default(),
        json => Filters::parse(json)?,
    };
    let volumes = d
        .volumes
        .list_filtered(&filters)?
        .iter()
        .map(|v| d.volumes.view(v))
        .collect();
    Ok(Json(ListResponse {
        volumes,
        warnings: Vec::new(),
    }))
}

pub async fn inspect(
    State(d): State<Arc<Daemon>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Volume>> {
    let v = d.volumes.get(&name)?;
    Ok(Json(d.volumes.view(&v)))
}

/// 204; 409 naming the pod while a pod uses it. `force` is not honoured (a 400 when set).
pub async fn remove(
    State(d): State<Arc<Daemon>>,
    Path(name): Path<String>,
    q: Params,
) -> ApiResult<StatusCode> {
    if truthy(param(&q, "force")) {
        return Err(Error::InvalidInput(
            "query parameter force: not supported (a volume in use stays; remove its pod first)"
                .into(),
        )
        .into());
    }
    d.volumes.remove(&name)?;
    Ok(StatusCode::NO_CONTENT)
}
