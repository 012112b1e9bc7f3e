//! The router and the handlers checked against `openapi.yaml`, in both directions:
//!
//! - routes: the router's `(method, path)` pairs, read from `routes()` in `api/mod.rs` (every
//!   `.route("…", get(module::handler)…)`) plus [`NOT_BUILT`], against the document's
//!   operations; and the `not-implemented` marks against [`NOT_BUILT`];
//! - query parameters: every identifier-like string literal in a handler's body (and in the
//!   same module's functions it calls) must be a query parameter the document gives that
//!   route, and every documented query parameter must appear there. This over-approximates
//!   what a handler reads, so a new `param(&q, "x")` cannot slip past it; literals that are not
//!   parameters are listed in [`NOT_PARAMETERS`].
//!
//! Each check is a function over source text and the parsed document, so the negative cases
//! (a route or a parameter added on one side only) are tested by editing that text.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value as Yaml;

use super::super::NOT_BUILT;

const ROUTER_SOURCE: &str = include_str!("../mod.rs");

/// The handler modules' sources, by the name the router uses.
fn module_source(module: &str) -> Option<&'static str> {
    Some(match module {
        "system" => include_str!("../system.rs"),
        "pod" => include_str!("../pod.rs"),
        "vm" => include_str!("../vm.rs"),
        "image" => include_str!("../image.rs"),
        "build" => include_str!("../build.rs"),
        "commit" => include_str!("../commit.rs"),
        "exec" => include_str!("../exec.rs"),
        "container" => include_str!("../container.rs"),
        "spec" => include_str!("../spec.rs"),
        "volume" => include_str!("../volume.rs"),
        "service" => include_str!("../service.rs"),
        _ => return None,
    })
}

/// Identifier-like literals in handlers that are not query parameters.
const NOT_PARAMETERS: &[&str] = &["OK"];

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

type Route = (String, String);

fn document() -> Yaml {
    serde_yaml::from_str(super::DOCUMENT).expect("openapi.yaml parses")
}

// ---- a small Rust lexer: enough to skip strings, chars and comments -------------------------

#[derive(Debug, PartialEq)]
enum Token<'a> {
    Str(String),
    Ident(&'a str),
    Punct(char),
}

/// The tokens of Rust source: identifiers, string literals (contents, escapes kept as written)
/// and single punctuation characters; comments, char literals and numbers are dropped.
fn tokens(src: &str) -> Vec<Token<'_>> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if src[i..].starts_with("//") {
            i = src[i..].find('\n').map_or(b.len(), |n| i + n);
        } else if src[i..].starts_with("/*") {
            i = src[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
        } else if c == b'r' && matches!(b.get(i + 1), Some(b'"' | b'#')) {
            let hashes = src[i + 1..].bytes().take_while(|&c| c == b'#').count();
            let open = i + 1 + hashes;
            if b.get(open) != Some(&b'"') {
                out.push(Token::Ident("r"));
                i += 1;
                continue;
            }
            let close = format!("\"{}", "#".repeat(hashes));
            let end = src[open + 1..]
                .find(&close)
                .map_or(b.len(), |n| open + 1 + n);
            out.push(Token::Str(src[open + 1..end].to_string()));
            i = (end + close.len()).min(b.len());
        } else if c == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            out.push(Token::Str(src[i + 1..j.min(b.len())].to_string()));
            i = j + 1;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\''), or a lifetime ('a), which is skipped.
            if b.get(i + 1) == Some(&b'\\') {
                i = src[i + 3..].find('\'').map_or(b.len(), |n| i + 3 + n + 1);
            } else {
                let ch = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                i += if b.get(i + 1 + ch) == Some(&b'\'') {
                    ch + 2
                } else {
                    1
                };
            }
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let n = src[i..]
                .bytes()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
                .count();
            out.push(Token::Ident(&src[i..i + n]));
            i += n;
        } else if c.is_ascii_digit() {
            i += src[i..]
                .bytes()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.')
                .count();
        } else {
            if !c.is_ascii_whitespace() {
                out.push(Token::Punct(src[i..].chars().next().unwrap_or('?')));
            }
            i += src[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    out
}

/// The tokens of `fn name`'s body, braces excluded; `None` when the module has no such fn.
fn fn_body<'t, 'a>(toks: &'t [Token<'a>], name: &str) -> Option<&'t [Token<'a>]> {
    let start = toks
        .windows(2)
        .position(|w| w[0] == Token::Ident("fn") && w[1] == Token::Ident(name))?;
    let open = start + toks[start..].iter().position(|t| *t == Token::Punct('{'))?;
    let mut depth = 0usize;
    for (k, t) in toks[open..].iter().enumerate() {
        match t {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth -= 1;
                if depth == 0 {
                    return Some(&toks[open + 1..open + k]);
                }
            }
            _ => {}
        }
    }
    None
}

/// `(tokens of the arguments, index after the closing paren)` of a call whose `(` is at `open`.
fn call_args<'t, 'a>(toks: &'t [Token<'a>], open: usize) -> Option<(&'t [Token<'a>], usize)> {
    let mut depth = 0usize;
    for (k, t) in toks[open..].iter().enumerate() {
        match t {
            Token::Punct('(') => depth += 1,
            Token::Punct(')') => {
                depth -= 1;
                if depth == 0 {
                    return Some((&toks[open + 1..open + k], open + k + 1));
                }
            }
            _ => {}
        }
    }
    None
}

// ---- the router's side ----------------------------------------------------------------------

/// The routes `routes()` in `router_src` registers with a literal path, each with its handler
/// (`module::function`), plus [`NOT_BUILT`] (handler `not_built`). Anything else that adds
/// routes is an error, so that nothing escapes the check.
fn served(router_src: &str) -> Result<BTreeMap<Route, String>, String> {
    let toks = tokens(router_src);
    let body = fn_body(&toks, "routes").ok_or("api/mod.rs: no fn routes()")?;
    let mut routes = BTreeMap::new();
    let mut computed = 0;
    for (i, w) in body.windows(3).enumerate() {
        if let [Token::Punct('.'), Token::Ident(m), Token::Punct('(')] = w
            && ["nest", "merge", "route_service", "nest_service"].contains(m)
        {
            return Err(format!("routes(): .{m}(…) is not understood by this check"));
        }
        if !matches!(
            w,
            [Token::Punct('.'), Token::Ident("route"), Token::Punct('(')]
        ) {
            continue;
        }
        let (args, _) = call_args(body, i + 2).ok_or("routes(): unbalanced .route(")?;
        let path = match args.first() {
            Some(Token::Str(p)) => p.clone(),
            _ => {
                // Only the NOT_BUILT fold registers a computed path.
                computed += 1;
                if !args.contains(&Token::Ident("not_built")) || computed > 1 {
                    return Err("routes(): a .route( without a literal path".into());
                }
                continue;
            }
        };
        // get(module::handler).post(module::handler)…
        let mut found = false;
        for (k, t) in args.iter().enumerate() {
            let Token::Ident(m) = t else { continue };
            if !METHODS.contains(m) || args.get(k + 1) != Some(&Token::Punct('(')) {
                continue;
            }
            let (handler, _) = call_args(args, k + 1).ok_or("routes(): unbalanced handler")?;
            let handler: String = handler
                .iter()
                .map(|t| match t {
                    Token::Ident(s) => s.to_string(),
                    Token::Punct(c) => c.to_string(),
                    Token::Str(s) => format!("{s:?}"),
                })
                .collect();
            let route = (m.to_ascii_uppercase(), path.clone());
            if routes.insert(route, handler).is_some() {
                return Err(format!("routes(): {} {path} twice", m.to_ascii_uppercase()));
            }
            found = true;
        }
        if !found {
            return Err(format!("routes(): {path}: no get/post/… handler found"));
        }
    }
    for (method, path) in NOT_BUILT {
        routes.insert((method.to_string(), path.to_string()), "not_built".into());
    }
    Ok(routes)
}

// ---- the document's side --------------------------------------------------------------------

fn resolve<'a>(doc: &'a Yaml, v: &'a Yaml) -> &'a Yaml {
    match v.get("$ref").and_then(Yaml::as_str) {
        Some(r) => r
            .trim_start_matches("#/")
            .split('/')
            .fold(doc, |node, key| &node[key]),
        None => v,
    }
}

struct Operation<'a> {
    op: &'a Yaml,
    query: BTreeSet<String>,
    not_built: bool,
}

fn operations(doc: &Yaml) -> BTreeMap<Route, Operation<'_>> {
    let mut ops = BTreeMap::new();
    let Some(paths) = doc["paths"].as_mapping() else {
        return ops;
    };
    for (path, item) in paths {
        let (Some(path), Some(item)) = (path.as_str(), item.as_mapping()) else {
            continue;
        };
        for (method, op) in item {
            let Some(method) = method.as_str().filter(|m| METHODS.contains(m)) else {
                continue;
            };
            let query = op["parameters"]
                .as_sequence()
                .into_iter()
                .flatten()
                .map(|p| resolve(doc, p))
                .filter(|p| p["in"].as_str() == Some("query"))
                .filter_map(|p| p["name"].as_str().map(String::from))
                .collect();
            let tagged = op["tags"]
                .as_sequence()
                .is_some_and(|t| t.iter().any(|t| t.as_str() == Some("not-implemented")));
            let marked = op["x-hyperd-not-built"].as_bool() == Some(true);
            ops.insert(
                (method.to_ascii_uppercase(), path.to_string()),
                Operation {
                    op,
                    query,
                    not_built: tagged || marked,
                },
            );
        }
    }
    ops
}

// ---- the handlers' side ---------------------------------------------------------------------

/// Identifier-like string literals in `handler` (`module::function`) and in the functions of
/// the same module that it calls, transitively.
fn literals_read(
    handler: &str,
    sources: &dyn Fn(&str) -> Option<&'static str>,
) -> BTreeSet<String> {
    let Some((module, function)) = handler.split_once("::") else {
        return BTreeSet::new();
    };
    let Some(src) = sources(module) else {
        return BTreeSet::from([format!("<no source for module {module}>")]);
    };
    let toks = tokens(src);
    let mut seen = BTreeSet::new();
    let mut todo = vec![function.to_string()];
    let mut literals = BTreeSet::new();
    while let Some(f) = todo.pop() {
        if !seen.insert(f.clone()) {
            continue;
        }
        let Some(body) = fn_body(&toks, &f) else {
            continue;
        };
        for (k, t) in body.iter().enumerate() {
            match t {
                Token::Str(s) => {
                    let mut chars = s.chars();
                    if chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        literals.insert(s.clone());
                    }
                }
                // A call of a function of this module: not a method (`.push(`) nor a path
                // into another one (`spec::parse(`).
                Token::Ident(name)
                    if body.get(k + 1) == Some(&Token::Punct('('))
                        && !matches!(
                            k.checked_sub(1).map(|p| &body[p]),
                            Some(Token::Punct('.' | ':'))
                        ) =>
                {
                    todo.push(name.to_string());
                }
                _ => {}
            }
        }
    }
    literals.retain(|l| !NOT_PARAMETERS.contains(&l.as_str()));
    literals
}

/// Every way the router, the handlers and the document disagree; empty when they agree.
fn differences(
    doc: &Yaml,
    router_src: &str,
    sources: &dyn Fn(&str) -> Option<&'static str>,
) -> Vec<String> {
    let served = match served(router_src) {
        Ok(s) => s,
        Err(e) => return vec![e],
    };
    let ops = operations(doc);
    let mut out = Vec::new();
    for (route, handler) in &served {
        let (method, path) = route;
        let Some(op) = ops.get(route) else {
            out.push(format!("{method} {path}: served but not in openapi.yaml"));
            continue;
        };
        let not_built = handler == "not_built";
        if op.not_built != not_built {
            out.push(format!(
                "{method} {path}: openapi.yaml marks it {}, the router {}",
                if op.not_built { "not built" } else { "built" },
                if not_built {
                    "answers 501"
                } else {
                    "serves it"
                },
            ));
        }
        if not_built {
            continue;
        }
        let read = literals_read(handler, sources);
        for p in read.difference(&op.query) {
            out.push(format!(
                "{method} {path}: {handler} reads query parameter {p:?}, which openapi.yaml does not give"
            ));
        }
        for p in op.query.difference(&read) {
            out.push(format!(
                "{method} {path}: openapi.yaml gives query parameter {p:?}, which {handler} never reads"
            ));
        }
    }
    for (method, path) in ops.keys() {
        if !served.contains_key(&(method.clone(), path.clone())) {
            out.push(format!("{method} {path}: in openapi.yaml but not served"));
        }
    }
    out
}

// ---- tests ----------------------------------------------------------------------------------

#[test]
fn the_router_builds() {
    // Overlapping routes (a route built while still in NOT_BUILT) panic here.
    let _ = super::super::routes();
}

#[test]
fn router_handlers_and_document_agree() {
    let diffs = differences(&document(), ROUTER_SOURCE, &module_source);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    // The scan found the real table, not an empty one.
    let served = served(ROUTER_SOURCE).unwrap();
    assert!(served.len() > 40, "{served:?}");
    assert_eq!(served[&("GET".into(), "/list".into())], "pod::list");
}

#[test]
fn a_route_in_one_and_not_the_other_is_reported() {
    let doc = document();
    // A route added to the router without its entry.
    let added = ROUTER_SOURCE.replacen(
        ".route(\"/_ping\", get(system::ping))",
        ".route(\"/_ping\", get(system::ping))\n        .route(\"/pod/rename\", post(pod::start))",
        1,
    );
    assert_ne!(added, ROUTER_SOURCE, "the router source changed shape");
    let diffs = differences(&doc, &added, &module_source);
    assert!(
        diffs
            .iter()
            .any(|d| d == "POST /pod/rename: served but not in openapi.yaml"),
        "{diffs:?}"
    );
    // The same path under another method is another route.
    let method = ROUTER_SOURCE.replacen(
        "get(system::ping)",
        "get(system::ping).post(system::ping)",
        1,
    );
    let diffs = differences(&doc, &method, &module_source);
    assert_eq!(diffs, ["POST /_ping: served but not in openapi.yaml"]);
    // A route documented but not served.
    let mut removed = doc.clone();
    removed["paths"].as_mapping_mut().unwrap().insert(
        "/pod/rename".into(),
        serde_yaml::from_str("post: {responses: {}}").unwrap(),
    );
    let diffs = differences(&removed, ROUTER_SOURCE, &module_source);
    assert_eq!(diffs, ["POST /pod/rename: in openapi.yaml but not served"]);
    // A route nobody can see is refused rather than ignored.
    let nested = ROUTER_SOURCE.replacen(
        ".route(\"/_ping\"",
        ".merge(Router::new()).route(\"/_ping\"",
        1,
    );
    assert!(differences(&doc, &nested, &module_source)[0].contains(".merge("));
}

#[test]
fn a_parameter_read_but_not_documented_is_reported() {
    let doc = document();
    let pod = module_source("pod").unwrap();
    let edited: &'static str = pod
        .replacen(
            "let vm_id = Some(param(&q, \"vmId\"))",
            "let _ = param(&q, \"bogus\");\n    let vm_id = Some(param(&q, \"vmId\"))",
            1,
        )
        .leak();
    assert_ne!(edited, pod, "pod.rs changed shape");
    let sources = |m: &str| {
        if m == "pod" {
            Some(edited)
        } else {
            module_source(m)
        }
    };
    let diffs = differences(&doc, ROUTER_SOURCE, &sources);
    assert_eq!(
        diffs,
        [
            "POST /pod/start: pod::start reads query parameter \"bogus\", which openapi.yaml does not give"
        ]
    );
    // And a documented parameter that nothing reads.
    let mut stale = doc.clone();
    stale["paths"]["/pod/start"]["post"]["parameters"]
        .as_sequence_mut()
        .unwrap()
        .push(serde_yaml::from_str("{name: force, in: query, schema: {type: string}}").unwrap());
    let diffs = differences(&stale, ROUTER_SOURCE, &module_source);
    assert_eq!(
        diffs,
        [
            "POST /pod/start: openapi.yaml gives query parameter \"force\", which pod::start never reads"
        ]
    );
}

#[test]
fn the_lexer_skips_what_is_not_code() {
    let src = r##"fn f() { let a = "x{"; let b = '{'; let c = r#"y"}"#; // "z" {
        /* "w" } */ g("v", '\'', 'a') } fn g<'a>(x: &'a str) {}"##;
    let toks = tokens(src);
    let body = fn_body(&toks, "f").unwrap();
    let strs: Vec<_> = body
        .iter()
        .filter_map(|t| match t {
            Token::Str(s) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(strs, ["x{", "y\"}", "v"]);
    assert!(fn_body(&toks, "g").is_some());
}

#[test]
fn the_document_is_openapi_3_with_the_version_prefix() {
    let doc = document();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.0"));
    let servers: Vec<_> = doc["servers"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|s| s["url"].as_str())
        .collect();
    assert_eq!(servers, ["/", "/v{version}"]);
    // Every $ref points at something.
    fn refs<'a>(v: &'a Yaml, out: &mut Vec<&'a str>) {
        match v {
            Yaml::Mapping(m) => {
                for (k, v) in m {
                    match (k.as_str(), v.as_str()) {
                        (Some("$ref"), Some(r)) => out.push(r),
                        _ => refs(v, out),
                    }
                }
            }
            Yaml::Sequence(s) => s.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 100);
    for r in all {
        let target = resolve(
            &doc,
            &serde_yaml::from_str(&format!("{{$ref: '{r}'}}")).unwrap(),
        )
        .clone();
        assert!(!target.is_null(), "{r}: dangling");
    }
    // Every error answer is text/plain; every operation says what it answers.
    for ((method, path), op) in operations(&doc) {
        let responses = op.op["responses"].as_mapping().unwrap();
        assert!(!responses.is_empty(), "{method} {path}: no responses");
        for (status, r) in responses {
            let status = status.as_str().unwrap();
            let r = resolve(&doc, r);
            if status.starts_with('4') || status.starts_with('5') {
                let types: Vec<_> = r["content"].as_mapping().unwrap().keys().collect();
                assert_eq!(
                    types,
                    [&Yaml::from("text/plain")],
                    "{method} {path} {status}"
                );
            }
        }
    }
}

fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(
    example: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    let typed: T = serde_json::from_value(example.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// The `rest` type a schema of the document stands for.
fn rest_round_trip(schema: &str, example: &serde_json::Value) -> Result<serde_json::Value, String> {
    use hyper_proto::rest::*;
    match schema {
        "UserPod" => round_trip::<UserPod>(example),
        "IdResponse" => round_trip::<IdResponse>(example),
        "VersionResponse" => round_trip::<VersionResponse>(example),
        "InfoResponse" => round_trip::<InfoResponse>(example),
        "ListResponse" => round_trip::<ListResponse>(example),
        "ImagesResponse" => round_trip::<ImagesResponse>(example),
        "JsonMessage" => round_trip::<JsonMessage>(example),
        "AuthConfig" => round_trip::<AuthConfig>(example),
        "AuthResponse" => round_trip::<AuthResponse>(example),
        "ImageRemoveResponse" => round_trip::<ImageRemoveResponse>(example),
        "ImageInspect" => round_trip::<ImageInspect>(example),
        "PodInfo" => round_trip::<PodInfo>(example),
        "string" => round_trip::<String>(example),
        "integer" => round_trip::<i32>(example),
        other => Err(format!("no rest type for schema {other}")),
    }
}

#[test]
fn rest_types_round_trip_the_documents_examples() {
    let doc = document();
    let mut checked = 0;
    for ((method, path), op) in operations(&doc) {
        let mut media = Vec::new();
        if let Some(c) = resolve(&doc, &op.op["requestBody"])["content"].as_mapping() {
            media.extend(c.iter().map(|(t, m)| ("request".to_string(), t, m)));
        }
        for (status, r) in op.op["responses"].as_mapping().into_iter().flatten() {
            let status = status.as_str().unwrap_or("?").to_string();
            if let Some(c) = resolve(&doc, r)["content"].as_mapping() {
                media.extend(c.iter().map(|(t, m)| (status.clone(), t, m)));
            }
        }
        for (what, content_type, m) in media {
            if content_type.as_str() != Some("application/json") || m["example"].is_null() {
                continue;
            }
            let schema = &m["schema"];
            let name = match schema["$ref"].as_str() {
                Some(r) => r.rsplit('/').next().unwrap_or(r),
                None => schema["type"].as_str().unwrap_or("?"),
            };
            let example = serde_json::to_value(&m["example"]).unwrap();
            let back = rest_round_trip(name, &example)
                .unwrap_or_else(|e| panic!("{method} {path} {what}: {name}: {e}"));
            assert_eq!(
                back, example,
                "{method} {path} {what}: {name} does not round-trip"
            );
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} examples");
}

// ---- the real router, in process -------------------------------------------------------------

/// A daemon on a temporary root, wired as `crate::run` wires it, whose shim is `/bin/false`
/// (nothing here boots a VM), and the router behind the version-stripping layer.
pub(in crate::api) fn live(dir: &std::path::Path) -> axum::Router {
    use std::sync::Arc;

    use crate::config::{Config, VmmChoice};
    use crate::{Daemon, container, image, pod, store, vm};

    let config = Arc::new(Config {
        listen: vec![],
        root: dir.join("root"),
        run_dir: dir.join("run"),
        vmm: VmmChoice::Auto,
        log: "off".into(),
        shim: "/bin/false".into(),
        guest_dir: None,
        insecure_registries: vec![],
        registry_mirrors: vec![],
        certs_dir: dir.join("certs.d"),
        // Nothing listens there: no request of these tests leaves the machine.
        docker_hub_host: "127.0.0.1:9".into(),
        log_default: Default::default(),
        network: Default::default(),
    });
    std::fs::create_dir_all(&config.root).unwrap();
    let store = Arc::new(store::Store::open(&config.db_path()).unwrap());
    let registry = image::registry::Registry::new(image::registry::RegistryConfig {
        insecure: vec![],
        mirrors: vec![],
        certs_dir: config.certs_dir.clone(),
        docker_hub_host: config.docker_hub_host.clone(),
    })
    .unwrap();
    let images = Arc::new(image::Images::new(&config.root, store.clone(), registry).unwrap());
    let (died, _) = tokio::sync::mpsc::unbounded_channel();
    // Bridge none, iptables off: nothing here touches the host's network.
    let network = crate::network::Network::detached(
        crate::network::NetworkConfig {
            bridge: None,
            iptables: false,
            ..Default::default()
        },
        store.clone(),
    );
    let vms = vm::Vms::new(config.clone(), store.clone(), network.clone(), died);
    let (changes, _) = tokio::sync::watch::channel(0u64);
    let pods = pod::Pods::new(
        &config.root,
        store.clone(),
        vms.clone(),
        images.clone(),
        network.clone(),
        changes.clone(),
        Default::default(),
    )
    .unwrap();
    let execs = Arc::new(container::exec::Execs::new(
        store.clone(),
        vms.clone(),
        changes,
    ));
    let volumes = Arc::new(crate::volume::Volumes::new(&config.root, store));
    let daemon = Arc::new(Daemon {
        config,
        pods,
        vms,
        images,
        execs,
        network,
        volumes,
    });
    super::super::router(daemon)
}

pub(in crate::api) struct Answer {
    pub status: u16,
    pub content_type: String,
    pub allow: String,
    pub body: String,
}

pub(in crate::api) async fn call(app: &axum::Router, method: &str, uri: &str) -> Answer {
    use tower::ServiceExt as _;

    let req = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .body(axum::body::Body::empty())
        .unwrap();
    let req = super::super::strip_version(req);
    let resp = app.clone().oneshot(req).await.unwrap();
    let header = |name| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (status, content_type, allow) = (
        resp.status().as_u16(),
        header(axum::http::header::CONTENT_TYPE),
        header(axum::http::header::ALLOW),
    );
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    Answer {
        status,
        content_type,
        allow,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

#[tokio::test]
async fn routes_not_built_answer_501_and_wrong_methods_405() {
    let dir = tempfile::tempdir().unwrap();
    let app = live(dir.path());
    for (method, path) in NOT_BUILT {
        let path = path.replace("{id}", "pod-1").replace("{action}", "add");
        for uri in [path.clone(), format!("/v1.1.0{path}")] {
            let a = call(&app, method.as_str(), &uri).await;
            assert_eq!(a.status, 501, "{method} {uri}: {}", a.body);
            assert!(a.content_type.starts_with("text/plain"), "{method} {uri}");
            assert_eq!(a.body, format!("{method} {path}: not implemented yet\n"));
        }
    }
    let a = call(&app, "GET", "/v1.17/pod/create").await;
    assert_eq!((a.status, a.allow.as_str()), (405, "POST"), "{}", a.body);
    assert_eq!(
        a.body,
        "GET /pod/create: method not allowed (see the Allow header)\n"
    );
    let a = call(&app, "POST", "/list").await;
    assert_eq!((a.status, a.allow.as_str()), (405, "GET,HEAD"));
    let a = call(&app, "GET", "/v1.1.0/no/such/thing").await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (404, "GET /no/such/thing: no such route\n")
    );
}

#[tokio::test]
async fn the_document_is_served_and_every_documented_route_is_routed() {
    let dir = tempfile::tempdir().unwrap();
    let app = live(dir.path());
    let a = call(&app, "GET", "/v1.1.0/openapi.yaml").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.content_type, "application/yaml");
    assert_eq!(a.body, super::DOCUMENT);
    // Every built route answers something of its own with no parameters: not the router's
    // 404 or 405. (`cpu=0` keeps /vm/create from booting anything.)
    for ((method, path), op) in operations(&document()) {
        if op.not_built {
            continue;
        }
        let uri = if path == "/vm/create" {
            "/vm/create?cpu=0".to_string()
        } else {
            path.clone()
        };
        let a = call(&app, &method, &uri).await;
        assert!(
            a.status != 405 && !a.body.ends_with(": no such route\n"),
            "{method} {path}: {} {}",
            a.status,
            a.body
        );
        if a.status >= 400 {
            assert!(
                a.content_type.starts_with("text/plain"),
                "{method} {path}: {} {}",
                a.status,
                a.content_type
            );
            let documented = &op.op["responses"][a.status.to_string().as_str()];
            assert!(
                !documented.is_null(),
                "{method} {path}: {} undocumented: {}",
                a.status,
                a.body
            );
        }
    }
}
