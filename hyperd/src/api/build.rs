//! `POST /image/build`: the query and headers checked into [`BuildOptions`] before anything
//! runs (a bad one is a 400 naming it), then the build as a stream of Docker JSON messages.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures::StreamExt as _;
use hyper_proto::rest::AuthConfig;

use super::error::ApiResult;
use crate::Daemon;
use crate::error::Error;
use crate::image::Progress;
use crate::image::Reference;
use crate::image::build::builder::{BuildOptions, Builder};
use crate::image::registry::Credentials;

fn invalid(msg: String) -> super::error::ApiError {
    Error::InvalidInput(msg).into()
}

/// `POST /image/build?dockerfile=&t=&name=&remote=&q=&nocache=&pull=&rm=&forcerm=&buildargs=&labels=`
/// with the context tar as the body.
pub async fn build(
    State(d): State<Arc<Daemon>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let opts = options(query.as_deref().unwrap_or(""), &headers)?;
    let builder = Builder::new(d.images.clone(), d.vms.clone());
    let stream = body.into_data_stream();
    let (progress, rx) = Progress::channel();
    tokio::spawn(async move {
        if let Err(e) = builder.build(stream, &opts, &progress).await {
            tracing::info!("build failed: {e}");
            progress.send(e.to_message());
        }
    });
    let lines = tokio_stream::wrappers::UnboundedReceiverStream::new(rx).map(|m| {
        Ok::<_, std::convert::Infallible>(format!(
            "{}\n",
            serde_json::to_string(&m).unwrap_or_default()
        ))
    });
    Ok((
        [("content-type", "application/json")],
        Body::from_stream(lines),
    )
        .into_response())
}

/// The build's options from its query string and headers.
fn options(query: &str, headers: &HeaderMap) -> ApiResult<BuildOptions> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query).map_err(|e| invalid(format!("query: {e}")))?;
    let mut opts = BuildOptions::default();
    for (k, v) in pairs {
        match k.as_str() {
            "dockerfile" => opts.dockerfile = v,
            "t" | "name" if !v.is_empty() => {
                let r = Reference::parse(&v)
                    .map_err(|e| invalid(format!("query parameter {k}: {e}")))?;
                if r.digest.is_some() {
                    return Err(invalid(format!(
                        "query parameter {k}: {v:?} names a digest; give a name and tag"
                    )));
                }
                if !opts.tags.contains(&r) {
                    opts.tags.push(r);
                }
            }
            "remote" if !v.is_empty() => {
                return Err(invalid(format!(
                    "query parameter remote: building from {v:?} is not supported yet: builds have no network access; send the context as the body"
                )));
            }
            "q" => opts.quiet = super::truthy(&v),
            "nocache" => opts.no_cache = super::truthy(&v),
            "pull" => opts.pull = super::truthy(&v),
            "buildargs" if !v.is_empty() => {
                opts.build_args = serde_json::from_str::<BTreeMap<String, Option<String>>>(&v)
                    .map_err(|e| {
                        invalid(format!(
                            "query parameter buildargs: a JSON object of strings: {e}"
                        ))
                    })?;
            }
            "labels" if !v.is_empty() => {
                opts.labels = serde_json::from_str(&v).map_err(|e| {
                    invalid(format!(
                        "query parameter labels: a JSON object of strings: {e}"
                    ))
                })?;
            }
            // No intermediate container is ever kept, which is what both ask for.
            "rm" | "forcerm" => {}
            // Empty values of the parameters above.
            "t" | "name" | "remote" | "buildargs" | "labels" => {}
            other => {
                return Err(invalid(format!(
                    "query parameter {other}: not supported by hyperd's build"
                )));
            }
        }
    }
    // The body's format comes from its magic bytes (as Docker reads it), whatever
    // Content-Type says: curl's default form type must not fail a tar upload.
    if let Some(v) = headers.get("x-registry-config") {
        opts.registry_auth = registry_config(v.to_str().unwrap_or(""))?;
    }
    Ok(opts)
}

/// `X-Registry-Config`: base64 (standard or URL-safe) JSON map of registry → AuthConfig. Keys
/// are made host names (`https://index.docker.io/v1/` → `docker.io`).
fn registry_config(value: &str) -> ApiResult<HashMap<String, Credentials>> {
    let bad = |why: String| invalid(format!("header X-Registry-Config: {why}"));
    let value = value.trim();
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(value)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(value))
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(value))
        .map_err(|e| bad(format!("not base64: {e}")))?;
    let map: HashMap<String, AuthConfig> = serde_json::from_slice(&bytes)
        .map_err(|e| bad(format!("a JSON object of registry → AuthConfig: {e}")))?;
    let mut out = HashMap::new();
    for (registry, auth) in map {
        let creds = Credentials::from_auth_config(&auth)
            .map_err(|e| bad(format!("registry {registry}: {e}")))?;
        out.insert(registry_host(&registry), creds);
    }
    Ok(out)
}

fn registry_host(key: &str) -> String {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or("");
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        h => h.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_read_and_bad_ones_named() {
        let h = HeaderMap::new();
        let o = options(
            "t=app&t=app:2&q=1&nocache=1&rm=0&forcerm=1&buildargs=%7B%22A%22%3A%22x%22%2C%22B%22%3Anull%7D",
            &h,
        )
        .map_err(|e| e.0)
        .unwrap();
        assert_eq!(o.tags.len(), 2);
        assert!(o.quiet && o.no_cache && !o.pull);
        assert_eq!(o.build_args["A"].as_deref(), Some("x"));
        assert_eq!(o.build_args["B"], None);
        for (q, named) in [
            ("remote=https://example.com/x.git", "remote"),
            ("buildargs=[1]", "buildargs"),
            ("target=x", "target"),
            ("t=UPPER", "t"),
        ] {
            let e = options(q, &h).err().unwrap().0.to_string();
            assert!(e.contains(named), "{q}: {e}");
        }
    }

    #[test]
    fn registry_config_keys_become_hosts() {
        let v = base64::engine::general_purpose::STANDARD.encode(
            r#"{"https://index.docker.io/v1/":{"username":"u","password":"p"},"127.0.0.1:5000":{}}"#,
        );
        let m = registry_config(&v).map_err(|e| e.0).unwrap();
        assert!(m.contains_key("docker.io") && m.contains_key("127.0.0.1:5000"));
        assert!(registry_config("%%%").is_err());
    }
}
