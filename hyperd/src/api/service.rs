//! hyperd 1.1's `/service` routes (§1.4): a pod's IPVS services, listed, added, replaced and
//! removed. Both parameters are in the query: `podId`, and `services` as a JSON array of
//! UserService (`serviceIP`, `protocol`, `servicePort`, `hosts` [{`hostIP`, `hostPort`}]).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use hyper_proto::rest::UserService;

use super::error::ApiResult;
use super::{Params, required};
use crate::Daemon;
use crate::pod::ServiceAction;

/// What hyperd 1.1 answers to a service change: the raw array, not an object.
const SUCCESS: &[&str] = &["Result=success"];

/// `GET /service/list?podId=`: 200 with the pod's services, a JSON array (404: no such pod).
pub async fn list(State(d): State<Arc<Daemon>>, q: Params) -> ApiResult<Json<Vec<UserService>>> {
    Ok(Json(d.pods.services(required(&q, "podId")?)?))
}

/// `POST /service/add?podId=&services=`: 200 `["Result=success"]`.
pub async fn add(
    State(d): State<Arc<Daemon>>,
    q: Params,
) -> ApiResult<Json<&'static [&'static str]>> {
    change(&d, &q, ServiceAction::Add).await
}

/// `POST /service/update?podId=&services=`: replaces the whole list; 200 `["Result=success"]`.
pub async fn update(
    State(d): State<Arc<Daemon>>,
    q: Params,
) -> ApiResult<Json<&'static [&'static str]>> {
    change(&d, &q, ServiceAction::Update).await
}

/// `DELETE /service?podId=&services=`: removes the listed services; 200 `["Result=success"]`.
pub async fn remove(
    State(d): State<Arc<Daemon>>,
    q: Params,
) -> ApiResult<Json<&'static [&'static str]>> {
    change(&d, &q, ServiceAction::Delete).await
}

async fn change(
    d: &Arc<Daemon>,
    q: &Params,
    action: ServiceAction,
) -> ApiResult<Json<&'static [&'static str]>> {
    let pod_id = required(q, "podId")?;
    let services = parse_services(required(q, "services")?)?;
    d.pods.change_services(pod_id, action, services).await?;
    Ok(Json(SUCCESS))
}

/// The `services` parameter; a wrong type names where it is (`services[0].servicePort`).
fn parse_services(json: &str) -> Result<Vec<UserService>, crate::error::Error> {
    let mut de = serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let what = if inner.is_syntax() || inner.is_eof() {
            format!("malformed JSON: {inner}")
        } else if path == "." {
            format!("must be a JSON array of services ({inner})")
        } else {
            format!("{path}: {inner}")
        };
        crate::error::Error::InvalidInput(format!("query parameter services: {what}"))
    })
}
