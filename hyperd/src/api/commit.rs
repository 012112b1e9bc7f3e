//! `POST /container/commit`: the query and the optional container-config body checked into
//! [`CommitOptions`] (a bad one is a 400 naming it), then the commit.

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use hyper_proto::rest::IdResponse;

use super::error::ApiResult;
use crate::Daemon;
use crate::error::Error;
use crate::image::Reference;
use crate::image::commit::{self, CommitConfig, CommitOptions};

fn invalid(msg: String) -> super::error::ApiError {
    Error::InvalidInput(msg).into()
}

/// `POST /container/commit?container=&repo=&tag=&comment=&author=&pause=&changes=` (`changes`
/// repeatable, each one or more Dockerfile lines), with Docker's container config as an
/// optional JSON body. Answers `{"ID": "sha256:…", "Code": 0, "Cause": ""}`.
pub async fn commit(
    State(d): State<Arc<Daemon>>,
    RawQuery(query): RawQuery,
    body: axum::body::Bytes,
) -> ApiResult<Json<IdResponse>> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| invalid(format!("query: {e}")))?;
    let mut container = String::new();
    let (mut repo, mut tag) = (String::new(), String::new());
    let mut opts = CommitOptions {
        pause: true,
        ..Default::default()
    };
    for (k, v) in pairs {
        match k.as_str() {
            "container" => container = v,
            "repo" => repo = v,
            "tag" => tag = v,
            "comment" => opts.comment = v,
            "author" => opts.author = v,
            "pause" => opts.pause = super::truthy(&v),
            "changes" => opts.changes.extend(
                v.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from),
            ),
            other => {
                return Err(invalid(format!(
                    "query parameter {other}: not supported by commit"
                )));
            }
        }
    }
    if container.is_empty() {
        return Err(invalid("query parameter container: required".into()));
    }
    opts.name = match (repo.as_str(), tag.as_str()) {
        ("", "") => None,
        ("", _) => return Err(invalid("query parameter tag: given without repo".into())),
        (r, t) => Some(Reference::for_import(r, t)?),
    };
    if !body.iter().all(u8::is_ascii_whitespace) {
        let de = &mut serde_json::Deserializer::from_slice(&body);
        let config: CommitConfig = serde_path_to_error::deserialize(de)
            .map_err(|e| invalid(format!("body: a container config: {e}")))?;
        opts.config = Some(config);
    }
    let image = commit::commit(&d.images, &d.vms, &container, &opts).await?;
    Ok(Json(IdResponse::ok(format!("sha256:{}", image.id))))
}
