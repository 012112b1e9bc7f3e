//! The REST API: routes (one file per resource), the `/v<version>` prefix that every route
//! also answers under, and the listeners (unix sockets, TCP). Handlers only translate between
//! HTTP and the services in `pod`, `image`, `vm`, `container` and `volume`.

mod build;
mod commit;
mod container;
pub mod error;
mod exec;
mod hijack;
mod image;
mod pod;
mod service;
mod spec;
mod system;
mod vm;
mod volume;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{Method, StatusCode, Uri};
use axum::routing::{MethodFilter, delete, get, on, post, put};

use crate::Daemon;

/// The query string, leniently: unknown parameters are ignored, repeated ones keep the last.
pub type Params = axum::extract::Query<HashMap<String, String>>;

/// A query parameter, empty when absent.
fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> &'a str {
    q.get(name).map(String::as_str).unwrap_or("")
}

/// A required query parameter.
fn required<'a>(q: &'a HashMap<String, String>, name: &str) -> Result<&'a str, error::ApiError> {
    match param(q, name) {
        "" => Err(
            crate::error::Error::InvalidInput(format!("query parameter {name}: required")).into(),
        ),
        v => Ok(v),
    }
}

/// Docker's boolean query values: false when empty, 0, no, false or none.
fn truthy(v: &str) -> bool {
    !matches!(
        v.to_ascii_lowercase().as_str(),
        "" | "0" | "no" | "false" | "none"
    )
}

pub fn router(daemon: Arc<Daemon>) -> Router {
    routes().with_state(daemon)
}

/// hyperd 1.1's and the seed's routes that are not built yet: each answers 501 naming itself,
/// rather than a bare 404. A route leaves this list when it is built.
const NOT_BUILT: &[(Method, &str)] = &[];

/// Every route, before the daemon is attached (the OpenAPI check builds it without one).
fn routes() -> Router<Arc<Daemon>> {
    let built = Router::new()
        .route("/openapi.yaml", get(spec::document))
        .route("/_ping", get(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/pod/create", post(pod::create))
        .route("/pod/start", post(pod::start))
        .route("/pod/stop", post(pod::stop))
        .route("/pod/remove", post(pod::remove))
        .route("/pod", delete(pod::remove))
        .route("/pod/info", get(pod::info))
        .route("/list", get(pod::list))
        .route("/vm/create", post(vm::create))
        .route("/vm/kill", post(vm::kill))
        .route("/vm", delete(vm::kill))
        .route("/image/create", post(image::create))
        .route("/images/get", get(image::list))
        .route("/image/inspect", get(image::inspect))
        .route("/image/history", get(image::history))
        .route("/image/push", post(image::push))
        .route("/images/push", post(image::push))
        .route("/image/load", post(image::load))
        .route("/image/build", post(build::build))
        .route("/container/commit", post(commit::commit))
        .route("/images/save", get(image::save))
        .route("/auth", post(image::auth))
        .route("/image/tag", post(image::tag))
        .route("/images/remove", post(image::remove))
        .route("/image", delete(image::remove))
        .route("/exec/create", post(exec::create))
        .route("/exec/start", post(exec::start))
        .route("/exitcode", get(exec::exit_code))
        .route("/attach", post(exec::attach))
        .route("/execvm", post(exec::execvm))
        .route("/tty/resize", post(exec::resize))
        .route("/pod/kill", post(pod::kill))
        .route("/pod/pause", post(pod::pause))
        .route("/pod/unpause", post(pod::unpause))
        .route("/pod/labels", post(pod::labels))
        .route("/pod/stats", get(pod::stats))
        .route("/pod/{id}/portmappings", get(pod::portmappings))
        .route(
            "/pod/{id}/portmappings/{action}",
            put(pod::change_portmappings),
        )
        .route("/service/list", get(service::list))
        .route("/service/add", post(service::add))
        .route("/service/update", post(service::update))
        .route("/service", delete(service::remove))
        .route("/container/create", post(container::create))
        .route("/container/start", post(container::start))
        .route("/container/stop", post(container::stop))
        .route("/container/kill", post(container::kill))
        .route("/container/remove", post(container::remove))
        .route("/container/rename", post(container::rename))
        .route("/container/info", get(container::info))
        .route("/container/logs", get(container::logs))
        .route("/volumes/create", post(volume::create))
        .route("/volumes", get(volume::list))
        .route(
            "/volumes/{name}",
            get(volume::inspect).delete(volume::remove),
        );
    NOT_BUILT
        .iter()
        .fold(built, |r, (method, path)| {
            let filter = MethodFilter::try_from(method.clone())
                .unwrap_or_else(|_| unreachable!("{method} is a standard method"));
            r.route(path, on(filter, not_built))
        })
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(no_such_route)
}

async fn not_built(method: Method, uri: Uri) -> (StatusCode, String) {
    let path = uri.path();
    (
        StatusCode::NOT_IMPLEMENTED,
        format!("{method} {path}: not implemented yet\n"),
    )
}

/// 405; axum adds the `Allow` header with the path's methods.
async fn method_not_allowed(method: Method, uri: Uri) -> (StatusCode, String) {
    let path = uri.path();
    (
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} {path}: method not allowed (see the Allow header)\n"),
    )
}

async fn no_such_route(method: Method, uri: Uri) -> (StatusCode, String) {
    let path = uri.path();
    (
        StatusCode::NOT_FOUND,
        format!("{method} {path}: no such route\n"),
    )
}

/// `/v1.1.0/list` → `/list`: the version is accepted and ignored, as hyperd 1.1 does.
pub fn strip_version(mut req: Request) -> Request {
    if let Some(stripped) = strip_version_path(req.uri().path()) {
        let uri = match req.uri().query() {
            Some(q) => format!("{stripped}?{q}"),
            None => stripped.to_string(),
        };
        if let Ok(uri) = uri.parse::<Uri>() {
            *req.uri_mut() = uri;
        }
    }
    req
}

fn strip_version_path(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v")?;
    let end = rest.find('/')?;
    let version = &rest[..end];
    if version.is_empty() || !version.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    Some(&rest[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefixes_are_stripped() {
        assert_eq!(strip_version_path("/v1.1.0/list"), Some("/list"));
        assert_eq!(strip_version_path("/v1.17/exec/start"), Some("/exec/start"));
        assert_eq!(strip_version_path("/vm/create"), None);
        assert_eq!(strip_version_path("/list"), None);
        assert_eq!(strip_version_path("/v/list"), None);
    }

    #[test]
    fn booleans_as_docker_reads_them() {
        for v in ["", "0", "no", "false", "None"] {
            assert!(!truthy(v), "{v}");
        }
        for v in ["yes", "1", "true"] {
            assert!(truthy(v), "{v}");
        }
    }
}

/// Query strings and paths are client input: any of them gives an answer of the route's own,
/// never a panic or a 5xx. `PROPTEST_CASES=10000` for the long run.
#[cfg(test)]
mod proptests {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    use super::*;

    proptest! {
        #[test]
        fn version_prefixes(path in "(/v[0-9.]{0,6})?(/[a-z_.]{0,8}){0,3}|.{0,20}") {
            let versioned = path
                .strip_prefix("/v")
                .and_then(|r| r.split_once('/'))
                .is_some_and(|(v, _)| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'));
            let stripped = strip_version_path(&path);
            prop_assert_eq!(stripped.is_some(), versioned);
            if let Some(rest) = stripped {
                prop_assert!(rest.starts_with('/') && path.ends_with(rest));
            }
        }

        #[test]
        fn booleans(v in ".{0,8}|(?i)(yes|no|true|false|none|0|1)") {
            let falsy = ["", "0", "no", "false", "none"].contains(&v.to_ascii_lowercase().as_str());
            prop_assert_eq!(truthy(&v), !falsy);
        }
    }

    /// The parameters the routes read, and a few they do not.
    const NAMES: &[&str] = &[
        "podId",
        "podName",
        "podArgs",
        "vmId",
        "vm",
        "pod",
        "item",
        "stopVM",
        "stopVm",
        "container",
        "command",
        "exec",
        "imageId",
        "imageName",
        "name",
        "repo",
        "tag",
        "force",
        "noprune",
        "all",
        "names",
        "format",
        "refs",
        "cpu",
        "mem",
        "signal",
        "t",
        "oldName",
        "newName",
        "labels",
        "override",
        "stream",
        "h",
        "w",
        "tail",
        "since",
        "follow",
        "timestamps",
        "stdout",
        "stderr",
        "tty",
        "detachKeys",
        "bogus",
    ];

    /// Routes that neither boot a VM nor reach a registry.
    const ROUTES: &[(&str, &str)] = &[
        ("GET", "/list"),
        ("GET", "/pod/info"),
        ("POST", "/pod/create"),
        ("POST", "/pod/stop"),
        ("POST", "/pod/remove"),
        ("DELETE", "/pod"),
        ("POST", "/vm/kill"),
        ("DELETE", "/vm"),
        ("GET", "/images/get"),
        ("GET", "/image/inspect"),
        ("POST", "/image/tag"),
        ("POST", "/images/remove"),
        ("DELETE", "/image"),
        ("POST", "/exec/create"),
        ("GET", "/exitcode"),
        ("GET", "/images/save"),
        ("GET", "/container/info"),
        ("GET", "/container/logs"),
        ("POST", "/container/start"),
        ("POST", "/container/stop"),
        ("POST", "/container/kill"),
        ("POST", "/container/remove"),
        ("POST", "/container/rename"),
        ("POST", "/pod/kill"),
        ("POST", "/pod/pause"),
        ("POST", "/pod/unpause"),
        ("POST", "/pod/labels"),
        ("GET", "/pod/stats"),
        ("POST", "/tty/resize"),
    ];

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            ".{0,12}",
            Just("yes".to_string()),
            Just("pod".to_string()),
            Just("container".to_string()),
            Just("vm".to_string()),
            Just("[\"ls\",\"-l\"]".to_string()),
            Just("{\"containers\":[{\"image\":\"busybox\"}]}".to_string()),
            Just("{}".to_string()),
            Just("busybox".to_string()),
            Just("oci".to_string()),
            "[0-9]{1,12}",
        ]
    }

    #[test]
    fn any_query_string_gets_an_answer_of_the_routes_own() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let app = rt.block_on(async { spec::check::live(dir.path()) });
        let query = prop::collection::vec(
            (prop::sample::select(NAMES).prop_map(String::from), value()),
            0..5,
        );
        let raw = "[a-zA-Z0-9=&%+._~-]{0,30}";
        let strategy = (
            prop::sample::select(ROUTES),
            prop_oneof![
                3 => query.prop_map(|q| serde_urlencoded::to_string(q).unwrap()),
                1 => raw,
            ],
        );
        let mut runner = TestRunner::new(Config::default());
        let result = runner.run(&strategy, |((method, path), query)| {
            let uri = format!("/v1.1.0{path}?{query}");
            if uri.parse::<axum::http::Uri>().is_err() {
                return Ok(());
            }
            let a = rt.block_on(spec::check::call(&app, method, &uri));
            if a.status >= 500 || a.status == 405 {
                return Err(TestCaseError::fail(format!(
                    "{method} {uri}: {} {}",
                    a.status, a.body
                )));
            }
            if a.status >= 400 && !a.content_type.starts_with("text/plain") {
                return Err(TestCaseError::fail(format!(
                    "{method} {uri}: {} as {}",
                    a.status, a.content_type
                )));
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    }
}
