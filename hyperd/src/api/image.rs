//! `/image/create` (import of a rootfs tarball; pulling comes with the image issue) and
//! `/images/get`.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use hyper_proto::rest::{ImagesResponse, JsonMessage};

use super::error::ApiResult;
use super::{Params, param};
use crate::Daemon;
use crate::error::Error;

pub async fn create(State(d): State<Arc<Daemon>>, q: Params, body: Body) -> ApiResult<Response> {
    if !param(&q, "imageName").is_empty() {
        return Err(Error::InvalidInput(
            "pulling images is not supported yet; import a rootfs tarball with fromSrc=-".into(),
        )
        .into());
    }
    match param(&q, "fromSrc") {
        "-" => {}
        "" => {
            return Err(Error::InvalidInput(
                "query parameter fromSrc: required (- for the request body)".into(),
            )
            .into());
        }
        other => {
            return Err(Error::InvalidInput(format!(
                "fromSrc {other:?}: only - (the request body) is supported"
            ))
            .into());
        }
    }
    let image = d
        .images
        .import(body.into_data_stream(), param(&q, "repo"), param(&q, "tag"))
        .await?;
    let msg = JsonMessage {
        status: image.id,
        ..Default::default()
    };
    let line = format!("{}\n", serde_json::to_string(&msg).unwrap_or_default());
    Ok(([("content-type", "application/json")], line).into_response())
}

/// Rows `repo:tag:imageId:createdUnix:sizeBytes`.
pub async fn list(State(d): State<Arc<Daemon>>) -> ApiResult<Json<ImagesResponse>> {
    let images = d.images.list()?;
    Ok(Json(ImagesResponse {
        images_list: images
            .iter()
            .map(|i| {
                format!(
                    "{}:{}:{}:{}:{}",
                    i.tag.repo, i.tag.tag, i.image.id, i.image.created, i.image.size
                )
            })
            .collect(),
        ..Default::default()
    }))
}
