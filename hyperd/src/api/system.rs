//! `/_ping`, `/version`, `/info`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use hyper_proto::rest::{InfoResponse, VersionResponse};

use super::error::ApiResult;
use crate::Daemon;

pub async fn ping() -> &'static str {
    "OK"
}

pub async fn version() -> Json<VersionResponse> {
    Json(VersionResponse {
        id: std::process::id(),
        version: crate::VERSION.into(),
    })
}

pub async fn info(State(d): State<Arc<Daemon>>) -> ApiResult<Json<InfoResponse>> {
    Ok(Json(d.system_info()?))
}
