//! The pod spec at the API edge: parsed once from JSON (a wrong type is an error naming the
//! field), then given hyperd 1.1's defaults (§2.7) and validated (§2.8). Everything after this
//! works on a spec that is known to be good.

use std::collections::HashSet;
use std::net::IpAddr;

use hyper_proto::rest::UserPod;

use crate::ids;

pub const DEFAULT_VCPU: i32 = 1;
pub const DEFAULT_MEMORY_MIB: i32 = 128;
const MAX_HOSTNAME: usize = 63;
const VOLUME_FORMATS: &[&str] = &["", "vfs", "raw", "qcow2", "vdi", "rbd", "nas"];
const CACHE_MODES: &[&str] = &[
    "",
    "off",
    "none",
    "directsync",
    "writeback",
    "unsafe",
    "writethrough",
];

/// A spec problem: the field's path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        message: message.into(),
    }
}

/// Parses a pod JSON document; a syntax error or a wrong type names where it is.
pub fn parse(json: &[u8]) -> Result<UserPod, SpecError> {
    let de = &mut serde_json::Deserializer::from_slice(json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            bad("pod", format!("malformed JSON: {inner}"))
        } else if path == "." {
            bad("pod", inner.to_string())
        } else {
            bad(path, inner.to_string())
        }
    })
}

/// `^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`: Docker's container names, also used for pod ids.
pub(crate) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// A valid hostname made from a pod id (which may hold uppercase letters, `_` and `..`):
/// lowercase DNS labels of letters, digits and `-`, at most [`MAX_HOSTNAME`] characters.
fn hostname_from_id(id: &str) -> String {
    let mapped: String = id
        .chars()
        .map(|c| match c {
            'A'..='Z' => c.to_ascii_lowercase(),
            'a'..='z' | '0'..='9' | '-' | '.' => c,
            _ => '-',
        })
        .take(MAX_HOSTNAME)
        .collect();
    let labels: Vec<&str> = mapped
        .split('.')
        .map(|l| l.trim_matches('-'))
        .filter(|l| !l.is_empty())
        .collect();
    match labels.join(".") {
        h if h.is_empty() => "pod".into(),
        h => h,
    }
}

/// The last path component of an image reference without its tag: `a/b:1` → `b`.
pub(crate) fn image_base(image: &str) -> &str {
    let no_tag = match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => image,
    };
    no_tag.rsplit('/').next().unwrap_or(no_tag)
}

/// Validates and normalises one container added to a pod (`/container/create`) by the pod's
/// rules; its errors name the field as `containers[0].…`.
pub fn normalize_container(
    pod: &UserPod,
    container: hyper_proto::rest::UserContainer,
) -> Result<hyper_proto::rest::UserContainer, SpecError> {
    let mut probe = pod.clone();
    probe.containers = vec![container];
    let mut probe = normalize(probe)?;
    Ok(probe.containers.remove(0))
}

/// Fills in defaults and validates. The result is what hyperd stores and runs.
pub fn normalize(mut pod: UserPod) -> Result<UserPod, SpecError> {
    if pod.id.is_empty() {
        pod.id = ids::pod_id();
    } else if !valid_name(&pod.id) {
        return Err(bad(
            "id",
            format!("{:?}: must match [a-zA-Z0-9][a-zA-Z0-9_.-]+", pod.id),
        ));
    }
    if pod.hostname.is_empty() {
        pod.hostname = hostname_from_id(&pod.id);
    } else if pod.hostname.len() > MAX_HOSTNAME || !pod.hostname.split('.').all(dns_label) {
        return Err(bad(
            "hostname",
            format!("{:?}: at most 63 characters of DNS labels", pod.hostname),
        ));
    }
    if pod.resource.vcpu <= 0 {
        pod.resource.vcpu = DEFAULT_VCPU;
    }
    if pod.resource.memory <= 0 {
        pod.resource.memory = DEFAULT_MEMORY_MIB;
    }
    for (i, dns) in pod.dns.iter().enumerate() {
        if dns.parse::<IpAddr>().is_err() {
            return Err(bad(
                format!("dns[{i}]"),
                format!("{dns:?} is not an IP address"),
            ));
        }
    }
    // One resolv.conf line each: a space or a control character would let a value add lines
    // (another nameserver) or options to every container's resolv.conf.
    for (field, values) in [
        ("dnsSearch", &pod.dns_search),
        ("dnsOptions", &pod.dns_options),
    ] {
        for (i, v) in values.iter().enumerate() {
            if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(bad(
                    format!("{field}[{i}]"),
                    format!("{v:?}: must be one word, without spaces or control characters"),
                ));
            }
        }
    }
    if pod
        .interfaces
        .iter()
        .filter(|i| !i.gateway.is_empty())
        .count()
        > 1
    {
        return Err(bad("interfaces", "at most one interface may set a gateway"));
    }
    unique(
        pod.volumes.iter().map(|v| v.name.as_str()),
        "volumes",
        "volume name",
    )?;
    unique(
        pod.files.iter().map(|f| f.name.as_str()),
        "files",
        "file name",
    )?;
    let services: Vec<String> = pod
        .services
        .iter()
        .map(|s| format!("{}:{}@{}", s.service_ip, s.service_port, s.protocol))
        .collect();
    unique(services.iter().map(String::as_str), "services", "service")?;
    for (i, v) in pod.volumes.iter().enumerate() {
        check_volume(&format!("volumes[{i}]"), v)?;
    }
    for (i, pm) in pod.portmappings.iter_mut().enumerate() {
        match pm.protocol.as_str() {
            "" => pm.protocol = "tcp".into(),
            "tcp" | "udp" => {}
            other => {
                return Err(bad(
                    format!("portmappings[{i}].protocol"),
                    format!("{other:?}: must be tcp or udp"),
                ));
            }
        }
    }
    let pod_volumes: HashSet<String> = pod.volumes.iter().map(|v| v.name.clone()).collect();
    let pod_files: HashSet<String> = pod.files.iter().map(|f| f.name.clone()).collect();
    let mut names = HashSet::new();
    let pod_id = pod.id.clone();
    let pod_tty = pod.tty;
    for (i, c) in pod.containers.iter_mut().enumerate() {
        let at = |f: &str| format!("containers[{i}].{f}");
        if c.image.is_empty() {
            return Err(bad(at("image"), "required"));
        }
        if c.name.is_empty() {
            let base = image_base(&c.image);
            c.name = if dns_label(base) {
                format!("{pod_id}-{base}-{i}")
            } else {
                format!("{pod_id}-{i}")
            };
        }
        c.name = c.name.trim_start_matches('/').to_string();
        if !valid_name(&c.name) {
            return Err(bad(
                at("name"),
                format!("{:?}: must match [a-zA-Z0-9][a-zA-Z0-9_.-]+", c.name),
            ));
        }
        if !names.insert(c.name.clone()) {
            return Err(bad(
                at("name"),
                format!("{:?} is used twice in this pod", c.name),
            ));
        }
        c.tty |= pod_tty;
        unique(
            c.envs.iter().map(|e| e.env.as_str()),
            &at("envs"),
            "env name",
        )?;
        for (j, e) in c.envs.iter().enumerate() {
            if e.env.is_empty() || e.env.contains('=') {
                return Err(bad(
                    format!("{}[{j}].env", at("envs")),
                    format!("{:?}: invalid name", e.env),
                ));
            }
        }
        unique(
            c.volumes.iter().map(|v| v.volume.as_str()),
            &at("volumes"),
            "volume",
        )?;
        for (j, v) in c.volumes.iter().enumerate() {
            let field = format!("{}[{j}]", at("volumes"));
            match &v.detail {
                Some(d) => check_volume(&format!("{field}.detail"), d)?,
                None if !pod_volumes.contains(&v.volume) => {
                    return Err(bad(
                        format!("{field}.volume"),
                        format!("{:?}: no such pod volume", v.volume),
                    ));
                }
                None => {}
            }
            if !v.path.starts_with('/') {
                return Err(bad(
                    format!("{field}.path"),
                    format!("{:?}: must be absolute", v.path),
                ));
            }
        }
        for (j, f) in c.files.iter_mut().enumerate() {
            let field = format!("{}[{j}]", at("files"));
            if !pod_files.contains(&f.filename) {
                return Err(bad(
                    format!("{field}.filename"),
                    format!("{:?}: no such pod file", f.filename),
                ));
            }
            if f.perm.is_empty() {
                f.perm = "0755".into();
            }
            let octal = f.perm == "0"
                || (f.perm.len() == 4
                    && f.perm.starts_with('0')
                    && f.perm.chars().all(|ch| ('0'..='7').contains(&ch)));
            if !octal {
                return Err(bad(
                    format!("{field}.perm"),
                    format!("{:?}: must be octal like 0644", f.perm),
                ));
            }
        }
        if !CACHE_MODES.contains(&c.cache.as_str()) {
            return Err(bad(
                at("cache"),
                format!("{:?}: unknown cache mode", c.cache),
            ));
        }
    }
    super::volumes::check_volumes(&pod)?;
    super::restart::check_policies(&pod)?;
    Ok(pod)
}

fn check_volume(field: &str, v: &hyper_proto::rest::UserVolume) -> Result<(), SpecError> {
    if !VOLUME_FORMATS.contains(&v.format.as_str()) {
        return Err(bad(
            format!("{field}.format"),
            format!("{:?}: unknown volume format", v.format),
        ));
    }
    if !CACHE_MODES.contains(&v.cache.as_str()) {
        return Err(bad(
            format!("{field}.cache"),
            format!("{:?}: unknown cache mode", v.cache),
        ));
    }
    Ok(())
}

fn unique<'a>(
    items: impl Iterator<Item = &'a str>,
    field: &str,
    what: &str,
) -> Result<(), SpecError> {
    let mut seen = HashSet::new();
    for item in items {
        if !seen.insert(item) {
            return Err(bad(field, format!("{what} {item:?} is used twice")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: &str) -> Result<UserPod, SpecError> {
        normalize(parse(json.as_bytes())?)
    }

    #[test]
    fn defaults_fill_an_almost_empty_pod() {
        let p =
            pod(r#"{"id":"web","containers":[{"image":"busybox:1.36"},{"image":"reg/x/app"}]}"#)
                .unwrap();
        assert_eq!(p.hostname, "web");
        for (id, hostname) in [
            ("pod-eUynciORwu", "pod-euynciorwu"),
            ("a_b..c-", "a-b.c"),
            ("__", "pod"),
        ] {
            assert_eq!(hostname_from_id(id), hostname, "{id}");
        }
        assert_eq!((p.resource.vcpu, p.resource.memory), (1, 128));
        assert_eq!(p.containers[0].name, "web-busybox-0");
        assert_eq!(p.containers[1].name, "web-app-1");
        let generated = pod(r#"{"containers":[]}"#).unwrap();
        assert!(generated.id.starts_with("pod-"));
    }

    #[test]
    fn wrong_types_and_bad_json_name_the_field() {
        let e = pod(r#"{"resource":{"vcpu":"two"}}"#).unwrap_err();
        assert_eq!(e.field, "resource.vcpu");
        assert!(e.message.contains("invalid type"), "{e}");
        let e = pod(r#"{"containers":[{"image":"a"},{"image":7}]}"#).unwrap_err();
        assert_eq!(e.field, "containers[1].image");
        let e = pod(r#"{"id": "#).unwrap_err();
        assert!(e.to_string().starts_with("pod: malformed JSON"), "{e}");
    }

    #[test]
    fn validation_follows_hyperd_1_1() {
        let field = |json: &str| pod(json).unwrap_err().field;
        assert_eq!(field(r#"{"hostname":"Bad_Host"}"#), "hostname");
        assert_eq!(field(r#"{"dns":["8.8.8.8","nope"]}"#), "dns[1]");
        assert_eq!(
            field(r#"{"dnsSearch":["ok.test","c\nnameserver 7.7.7.7"]}"#),
            "dnsSearch[1]"
        );
        assert_eq!(
            field(r#"{"dnsOptions":["ndots:1 nameserver 6.6.6.6"]}"#),
            "dnsOptions[0]"
        );
        assert_eq!(
            field(r#"{"containers":[{"name":"x"}]}"#),
            "containers[0].image"
        );
        assert_eq!(
            field(r#"{"containers":[{"image":"a","envs":[{"env":"A"},{"env":"A"}]}]}"#),
            "containers[0].envs"
        );
        assert_eq!(
            field(r#"{"containers":[{"image":"a","volumes":[{"volume":"v","path":"/d"}]}]}"#),
            "containers[0].volumes[0].volume"
        );
        assert_eq!(
            field(
                r#"{"files":[{"name":"f"}],"containers":[{"image":"a","files":[{"filename":"f","perm":"999"}]}]}"#
            ),
            "containers[0].files[0].perm"
        );
        assert_eq!(
            field(r#"{"volumes":[{"name":"v","format":"zip"}]}"#),
            "volumes[0].format"
        );
        assert_eq!(
            field(r#"{"portmappings":[{"protocol":"sctp"}]}"#),
            "portmappings[0].protocol"
        );
        assert_eq!(
            field(r#"{"containers":[{"image":"a","name":"x1"},{"image":"b","name":"x1"}]}"#),
            "containers[1].name"
        );
    }
}

/// Client input never panics the spec parser: any bytes, any JSON, and pod-shaped JSON whose
/// fields have arbitrary types and values give a pod or a [`SpecError`] naming a field.
/// `PROPTEST_CASES=10000` for the long run.
#[cfg(test)]
mod proptests {
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    use super::*;

    fn scalar() -> BoxedStrategy<Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            ".{0,12}".prop_map(Value::from),
            // Values the validator has opinions about.
            prop_oneof![
                Just("10.0.0.1"),
                Just("::1"),
                Just("busybox"),
                Just("a..b"),
                Just("-x"),
                Just("qcow2"),
                Just("writeback"),
                Just("tcp"),
                Just("80"),
                Just("/data"),
            ]
            .prop_map(Value::from),
        ]
        .boxed()
    }

    fn any_json() -> BoxedStrategy<Value> {
        scalar()
            .prop_recursive(4, 32, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map(".{0,6}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
            .boxed()
    }

    /// An object with some of `keys`, each with a value from `value`.
    fn object(
        keys: &'static [&'static str],
        value: impl Strategy<Value = Value> + Clone + 'static,
    ) -> BoxedStrategy<Value> {
        prop::collection::vec((prop::sample::select(keys), value), 0..keys.len())
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.into(), v)).collect()))
            .boxed()
    }

    fn container() -> BoxedStrategy<Value> {
        let field = prop_oneof![
            3 => scalar(),
            1 => prop::collection::vec(scalar(), 0..3).prop_map(Value::Array),
            1 => object(&["env", "value", "volume", "path", "readOnly", "filename", "hostPort",
                "containerPort", "protocol", "Name", "Hard", "Soft", "name", "group"], scalar())
                .prop_map(|o| Value::Array(vec![o])),
        ];
        object(
            &[
                "name",
                "image",
                "command",
                "entrypoint",
                "workdir",
                "envs",
                "tty",
                "readOnly",
                "user",
                "volumes",
                "files",
                "ports",
                "labels",
                "sysctl",
                "restartPolicy",
                "StopSignal",
                "ulimits",
                "logPath",
                "cache",
                "id",
            ],
            field,
        )
        .boxed()
    }

    fn pod() -> BoxedStrategy<Value> {
        let field = prop_oneof![
            3 => scalar(),
            2 => prop::collection::vec(container(), 0..3).prop_map(Value::Array),
            1 => object(&["vcpu", "memory", "type", "config"], scalar()),
            1 => object(&["name", "source", "format", "fstype", "cache", "encoding", "uri",
                "content", "serviceIP", "servicePort", "protocol", "hosts"], scalar())
                .prop_map(|o| Value::Array(vec![o])),
            1 => prop::collection::vec(scalar(), 0..3).prop_map(Value::Array),
        ];
        object(
            &[
                "id",
                "hostname",
                "type",
                "restartPolicy",
                "tty",
                "labels",
                "resource",
                "log",
                "dns",
                "dnsOptions",
                "dnsSearch",
                "containers",
                "files",
                "volumes",
                "interfaces",
                "services",
                "portmappings",
                "portmappingWhiteLists",
            ],
            field,
        )
        .boxed()
    }

    fn typed(json: &[u8]) -> Result<Option<UserPod>, TestCaseError> {
        match parse(json).and_then(normalize) {
            Ok(pod) => Ok(Some(pod)),
            Err(e) => {
                prop_assert!(!e.field.is_empty() && !e.message.is_empty(), "{e:?}");
                Ok(None)
            }
        }
    }

    proptest! {
        #[test]
        fn any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            typed(&bytes)?;
        }

        #[test]
        fn any_json_document(v in any_json()) {
            typed(v.to_string().as_bytes())?;
        }

        #[test]
        fn pod_shaped_json(mut v in pod(), containers in prop::collection::vec(container(), 0..3)) {
            if let (Value::Object(m), false) = (&mut v, containers.is_empty()) {
                m.insert("containers".into(), Value::Array(containers));
            }
            // A pod that passes is stable: normalising it again changes nothing (a hostname
            // defaulted from the id is a valid one).
            if let Some(pod) = typed(v.to_string().as_bytes())? {
                let again = serde_json::to_vec(&pod).unwrap();
                prop_assert_eq!(parse(&again).and_then(normalize), Ok(pod));
            }
        }

        #[test]
        fn a_wrong_type_names_its_field(key in prop::sample::select(&["id", "containers",
            "resource", "dns", "labels", "tty"][..]), v in scalar()) {
            let mut m = Map::new();
            m.insert(key.into(), v);
            if let Err(e) = parse(Value::Object(m).to_string().as_bytes()) {
                prop_assert!(e.field.starts_with(key) || e.field == "pod", "{e:?}");
            }
        }
    }
}
