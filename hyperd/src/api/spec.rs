//! The API as a contract: `openapi.yaml` (OpenAPI 3.0.3) describes every route the router
//! serves, and is itself served at `GET /openapi.yaml`. The tests here hold the router, the
//! handlers' query parameters and the `rest` types to that document.

use axum::http::header;
use axum::response::IntoResponse;

/// The OpenAPI document, as built into this daemon.
pub const DOCUMENT: &str = include_str!("openapi.yaml");

/// `GET /openapi.yaml`.
pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], DOCUMENT)
}

#[cfg(test)]
pub(super) mod check;
