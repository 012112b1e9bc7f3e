//! The image routes: pull and import (`/image/create`), push, `/auth`, load and save, list,
//! inspect, tag and remove. Long work answers with a stream of Docker JSON progress messages.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::image::registry::Credentials;
use crate::image::{ArchiveFormat, Progress, Reference};
use axum::extract::RawQuery;
use axum::http::{HeaderMap, StatusCode};
use futures::StreamExt as _;
use hyper_proto::rest::{
    AuthConfig, AuthResponse, ImageDeleteItem, ImageInspect, ImageRemoveResponse, ImageSummary,
    ImagesResponse, JsonMessage,
};

use super::error::ApiResult;
use super::{Params, param, required};
use crate::Daemon;
use crate::error::Error;

/// `POST /image/create`: a pull (`imageName`, `tag`) or an import (`fromSrc=-`, `repo`, `tag`).
pub async fn create(
    State(d): State<Arc<Daemon>>,
    q: Params,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let name = ["imageName", "fromImage"]
        .iter()
        .map(|n| param(&q, n))
        .find(|v| !v.is_empty());
    if let Some(name) = name {
        let reference = pull_reference(name, param(&q, "tag"))?;
        let creds = registry_auth(&headers)?;
        return Ok(json_stream(move |progress| async move {
            d.images.pull(&reference, &creds, &progress).await?;
            Ok(())
        }));
    }
    for unsupported in ["message", "changes"] {
        if !param(&q, unsupported).is_empty() {
            return Err(Error::InvalidInput(format!(
                "query parameter {unsupported}: not supported for imports yet"
            ))
            .into());
        }
    }
    match param(&q, "fromSrc") {
        "-" => {}
        "" => {
            return Err(Error::InvalidInput(
                "query parameter imageName (to pull) or fromSrc=- (to import the body): required"
                    .into(),
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
    let line = json_line(&JsonMessage::status(format!("sha256:{}", image.id), ""));
    Ok(([("content-type", "application/json")], line).into_response())
}

/// `imageName` plus `tag`, which may be a tag or a digest (`sha256:…`).
fn pull_reference(name: &str, tag: &str) -> ApiResult<Reference> {
    if !tag.is_empty() {
        let named = Reference::parse(name)?;
        let has_tag = name
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'));
        if has_tag || named.digest.is_some() {
            return Err(Error::InvalidInput(format!(
                "imageName {name:?} already names a tag or digest; give tag {tag:?} in one place"
            ))
            .into());
        }
    }
    let full = match tag {
        "" => name.to_string(),
        t if t.starts_with("sha256:") => format!("{name}@{t}"),
        t => format!("{name}:{t}"),
    };
    Ok(Reference::parse(&full)?)
}

/// The credentials of `X-Registry-Auth` (base64url JSON AuthConfig), anonymous without one.
fn registry_auth(headers: &HeaderMap) -> ApiResult<Credentials> {
    match headers.get("x-registry-auth") {
        None => Ok(Credentials::Anonymous),
        Some(v) => {
            let v = v
                .to_str()
                .map_err(|_| Error::InvalidInput("header X-Registry-Auth: not ASCII".into()))?;
            Ok(Credentials::from_header(v).map_err(crate::image::Error::from)?)
        }
    }
}

/// `POST /image/push?remote=&tag=` (and `/images/push`). Credentials come from
/// `X-Registry-Auth`, or (hyperd 1.1 clients) an AuthConfig JSON body.
pub async fn push(
    State(d): State<Arc<Daemon>>,
    q: Params,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let remote = required(&q, "remote")?;
    let reference = Reference::parse(remote)?;
    let reference = match param(&q, "tag") {
        "" => reference,
        tag => Reference::for_import(&reference.repo, tag)?,
    };
    let creds = if headers.contains_key("x-registry-auth") || body.is_empty() {
        registry_auth(&headers)?
    } else {
        let auth: AuthConfig = serde_json::from_slice(&body)
            .map_err(|e| Error::InvalidInput(format!("body: an AuthConfig JSON object: {e}")))?;
        Credentials::from_auth_config(&auth).map_err(crate::image::Error::from)?
    };
    Ok(json_stream(move |progress| async move {
        d.images.push(&reference, &creds, &progress).await?;
        Ok(())
    }))
}

/// `POST /auth`: checks credentials against the registry they name.
pub async fn auth(
    State(d): State<Arc<Daemon>>,
    body: axum::body::Bytes,
) -> ApiResult<Json<AuthResponse>> {
    let auth: AuthConfig = serde_json::from_slice(&body)
        .map_err(|e| Error::InvalidInput(format!("body: an AuthConfig JSON object: {e}")))?;
    let token = d.images.login(&auth).await?;
    Ok(Json(AuthResponse {
        status: "Login Succeeded".into(),
        identity_token: token.unwrap_or_default(),
    }))
}

/// `POST /image/load`: a docker-archive or OCI layout tar in the body, compressed or not.
pub async fn load(State(d): State<Arc<Daemon>>, q: Params, body: Body) -> ApiResult<Response> {
    for unsupported in ["name", "refs"] {
        if !param(&q, unsupported).is_empty() {
            return Err(Error::InvalidInput(format!(
                "query parameter {unsupported}: not supported yet; the archive's own names are used"
            ))
            .into());
        }
    }
    let stream = body.into_data_stream();
    Ok(json_stream(move |progress| async move {
        d.images.load(stream, &progress).await?;
        Ok(())
    }))
}

/// `GET /images/save?names=…&names=…&format=docker|oci`: a tar of the images.
pub async fn save(State(d): State<Arc<Daemon>>, RawQuery(query): RawQuery) -> ApiResult<Response> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| Error::InvalidInput(format!("query: {e}")))?;
    let mut names = Vec::new();
    let mut format = ArchiveFormat::Docker;
    for (k, v) in pairs {
        match k.as_str() {
            "names" => names.extend(v.split(',').filter(|n| !n.is_empty()).map(String::from)),
            "format" => format = v.parse()?,
            "refs" if !v.is_empty() => {
                return Err(
                    Error::InvalidInput("query parameter refs: not supported yet".into()).into(),
                );
            }
            _ => {}
        }
    }
    let file = d.images.save(&names, format).await?;
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    Ok((
        [("content-type", "application/x-tar")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Runs `work` in the background and answers with its progress, one JSON message a line; an
/// error after the stream started is its last message, as Docker reports it.
fn json_stream<F, Fut>(work: F) -> Response
where
    F: FnOnce(Progress) -> Fut,
    Fut: Future<Output = Result<(), Error>> + Send + 'static,
{
    let (progress, rx) = Progress::channel();
    let task = work(progress.clone());
    tokio::spawn(async move {
        if let Err(e) = task.await {
            tracing::info!("{e}");
            progress.send(JsonMessage::error(e.to_string()));
        }
    });
    let lines = tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
        .map(|m| Ok::<_, std::convert::Infallible>(json_line(&m)));
    (
        [("content-type", "application/json")],
        Body::from_stream(lines),
    )
        .into_response()
}

fn json_line(m: &JsonMessage) -> String {
    format!("{}\n", serde_json::to_string(m).unwrap_or_default())
}

/// `imagesList` rows `repo:tag:imageId:createdUnix:sizeBytes` (an image with no tag shows as
/// `<repo>:<none>` from its first digest, or `<none>:<none>`), and the same images with their
/// digests in `images`.
pub async fn list(State(d): State<Arc<Daemon>>, q: Params) -> ApiResult<Json<ImagesResponse>> {
    let all = super::truthy(param(&q, "all"));
    let images = d.images.list()?;
    let mut rows = Vec::new();
    let mut summaries = Vec::new();
    for i in &images {
        let untagged = i.tags.is_empty();
        if untagged && !all && i.digests.is_empty() {
            // Dangling images (untagged, pulled from nowhere) only with all=yes, as Docker.
            continue;
        }
        let mut names: Vec<(String, String)> = i
            .tags
            .iter()
            .map(|t| (t.repo.clone(), t.tag.clone()))
            .collect();
        if untagged {
            let repo = i.digests.first().map_or("<none>", |(r, _)| r.as_str());
            names.push((repo.to_string(), "<none>".to_string()));
        }
        for (repo, tag) in names {
            rows.push(format!(
                "{repo}:{tag}:{}:{}:{}",
                i.image.id, i.image.created, i.image.size
            ));
        }
        summaries.push(ImageSummary {
            id: format!("sha256:{}", i.image.id),
            repo_tags: i
                .tags
                .iter()
                .map(|t| format!("{}:{}", t.repo, t.tag))
                .collect(),
            repo_digests: i.digests.iter().map(|(r, d)| format!("{r}@{d}")).collect(),
            created: i.image.created,
            size: i.image.size,
        });
    }
    Ok(Json(ImagesResponse {
        images_list: rows,
        images: summaries,
    }))
}

/// The image a request names: `imageId` (hyperd 1.1), or `imageName`/`name`.
fn image_param(q: &std::collections::HashMap<String, String>) -> ApiResult<&str> {
    ["imageId", "imageName", "name"]
        .iter()
        .map(|n| param(q, n))
        .find(|v| !v.is_empty())
        .ok_or_else(|| {
            Error::InvalidInput("query parameter imageId: required (an image name or id)".into())
                .into()
        })
}

/// `GET /image/history?imageName=` (or `imageId`, `name`): Docker's image history rows.
pub async fn history(
    State(d): State<Arc<Daemon>>,
    q: Params,
) -> ApiResult<Json<Vec<hyper_proto::rest::ImageHistoryItem>>> {
    Ok(Json(d.images.history(image_param(&q)?)?))
}

pub async fn inspect(State(d): State<Arc<Daemon>>, q: Params) -> ApiResult<Json<ImageInspect>> {
    Ok(Json(d.images.inspect(image_param(&q)?)?))
}

/// `POST /image/tag?imageId=&repo=&tag=`.
pub async fn tag(State(d): State<Arc<Daemon>>, q: Params) -> ApiResult<Response> {
    let source = image_param(&q)?;
    let target = d
        .images
        .tag(source, required(&q, "repo")?, param(&q, "tag"))?;
    Ok((StatusCode::CREATED, format!("{target}\n")).into_response())
}

/// `DELETE /image?imageId=&force=&noprune=` and `POST /images/remove`.
pub async fn remove(
    State(d): State<Arc<Daemon>>,
    q: Params,
) -> ApiResult<Json<ImageRemoveResponse>> {
    let force = super::truthy(param(&q, "force"));
    if super::truthy(param(&q, "noprune")) {
        // Parent images do not exist here (no intermediate images), so there is nothing to keep.
        tracing::debug!("noprune: no parent images to keep");
    }
    let removed = d.images.remove(image_param(&q)?, force).await?;
    let mut list: Vec<ImageDeleteItem> = removed
        .untagged
        .into_iter()
        .map(|u| ImageDeleteItem {
            untaged: u,
            ..Default::default()
        })
        .collect();
    list.extend(removed.deleted.into_iter().map(|id| ImageDeleteItem {
        deleted: id,
        ..Default::default()
    }));
    Ok(Json(ImageRemoveResponse { images_list: list }))
}
