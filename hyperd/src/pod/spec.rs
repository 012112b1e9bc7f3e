//! The pod spec at the API edge: parsed once from JSON or YAML, with keys matched to the
//! spec's field names regardless of case as hyperd 1.1 did (§2.10; a wrong type is an error
//! naming the field), then given hyperd 1.1's defaults (§2.7) and validated (§2.8). A field
//! hyperd does not honour is refused here when set ("the rule", [`check_supported`]).
//! Everything after this works on a spec that is known to be good.

use std::collections::HashSet;
use std::net::IpAddr;

use base64::Engine;
use hyper_proto::rest::{UserContainer, UserFile, UserPod};
use serde_json::{Map, Value};

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

/// How a pod document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

impl Format {
    /// `application/yaml`, `application/x-yaml` and `text/yaml` (parameters ignored) are YAML;
    /// anything else (or nothing) is JSON.
    pub fn from_content_type(content_type: &str) -> Self {
        let mime = content_type.split(';').next().unwrap_or("").trim();
        if ["application/yaml", "application/x-yaml", "text/yaml"]
            .iter()
            .any(|m| mime.eq_ignore_ascii_case(m))
        {
            Format::Yaml
        } else {
            Format::Json
        }
    }
}

/// Parses a pod JSON document; a syntax error or a wrong type names where it is.
pub fn parse(json: &[u8]) -> Result<UserPod, SpecError> {
    parse_as(json, Format::Json)
}

/// Parses a pod document in `format`. Keys are matched against the spec's field names
/// regardless of case (hyperd 1.1's `containerport`, `stopsignal`, `Name`…); a key given twice
/// in different cases is an error; unknown keys are ignored (the open schema). In YAML a
/// number or boolean where the spec has a string (`containerport: 80`) is taken as its text,
/// as hyperd 1.1's YAML decoder did.
pub fn parse_as(body: &[u8], format: Format) -> Result<UserPod, SpecError> {
    let value: Value =
        match format {
            Format::Json => serde_json::from_slice(body)
                .map_err(|e| bad("pod", format!("malformed JSON: {e}")))?,
            Format::Yaml => serde_yaml::from_slice(body)
                .map_err(|e| bad("pod", format!("malformed YAML: {e}")))?,
        };
    let template = serde_json::to_value(UserPod::every_field()).unwrap_or_default();
    let value = fold_keys(value, &template, "", format == Format::Yaml)?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            bad("pod", inner.to_string())
        } else {
            bad(path, inner.to_string())
        }
    })
}

/// Fields whose keys are the user's (maps of strings), not field names.
const MAP_FIELDS: &[&str] = &["labels", "sysctl", "config"];

/// `value` with its object keys spelled as in `template` (the spec serialised with every
/// field set), matched ignoring ASCII case; `path` is where `value` is, for errors.
fn fold_keys(value: Value, template: &Value, path: &str, yaml: bool) -> Result<Value, SpecError> {
    match (value, template) {
        (Value::Object(input), Value::Object(known)) => {
            let mut out = Map::new();
            for (key, v) in input {
                let canonical = if known.contains_key(&key) {
                    Some(key.clone())
                } else {
                    known.keys().find(|k| k.eq_ignore_ascii_case(&key)).cloned()
                };
                let Some(canonical) = canonical else {
                    out.insert(key, v);
                    continue;
                };
                let at = if path.is_empty() {
                    canonical.clone()
                } else {
                    format!("{path}.{canonical}")
                };
                if out.contains_key(&canonical) {
                    return Err(bad(
                        at,
                        format!("given twice ({key:?} and another spelling; keys ignore case)"),
                    ));
                }
                let v = if MAP_FIELDS.contains(&canonical.as_str()) {
                    map_values(v, yaml)
                } else {
                    fold_keys(v, &known[&canonical], &at, yaml)?
                };
                out.insert(canonical, v);
            }
            Ok(Value::Object(out))
        }
        (Value::Array(items), Value::Array(known)) if !known.is_empty() => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| fold_keys(v, &known[0], &format!("{path}[{i}]"), yaml))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        (v @ (Value::Number(_) | Value::Bool(_)), Value::String(_)) if yaml => {
            Ok(Value::String(scalar_text(&v)))
        }
        (v, _) => Ok(v),
    }
}

/// A map of strings from YAML: scalar values taken as their text (`version: 2`).
fn map_values(v: Value, yaml: bool) -> Value {
    match v {
        Value::Object(m) if yaml => Value::Object(
            m.into_iter()
                .map(|(k, v)| match v {
                    Value::Number(_) | Value::Bool(_) => (k, Value::String(scalar_text(&v))),
                    v => (k, v),
                })
                .collect(),
        ),
        v => v,
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
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
    container: UserContainer,
) -> Result<UserContainer, SpecError> {
    if !container.ports.is_empty() {
        return Err(bad(
            "containers[0].ports",
            "not supported when adding a container: a pod's port mappings are set at pod create",
        ));
    }
    let mut probe = pod.clone();
    probe.containers = vec![container];
    let mut probe = normalize(probe)?;
    Ok(probe.containers.remove(0))
}

/// Fills in defaults and validates. The result is what hyperd stores and runs.
pub fn normalize(mut pod: UserPod) -> Result<UserPod, SpecError> {
    check_supported(&pod)?;
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
    for (i, f) in pod.files.iter_mut().enumerate() {
        check_file(&format!("files[{i}]"), f)?;
    }
    move_container_ports(&mut pod)?;
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
            match &mut f.detail {
                Some(d) => check_file(&format!("{field}.detail"), d)?,
                None if !pod_files.contains(&f.filename) => {
                    return Err(bad(
                        format!("{field}.filename"),
                        format!("{:?}: no such pod file", f.filename),
                    ));
                }
                None => {}
            }
            if !f.path.starts_with('/') {
                return Err(bad(
                    format!("{field}.path"),
                    format!("{:?}: must be absolute", f.path),
                ));
            }
            if f.path.ends_with('/') && f.filename.is_empty() {
                return Err(bad(
                    format!("{field}.filename"),
                    "required when path names a directory (ends with /)",
                ));
            }
            // The file is written into the rootfs, under the volume: it would be hidden.
            if let Some(v) = c.volumes.iter().find(|v| {
                let mount = v.path.trim_end_matches('/');
                f.path.starts_with(&format!("{mount}/")) || f.path.trim_end_matches('/') == mount
            }) {
                return Err(bad(
                    format!("{field}.path"),
                    format!(
                        "{:?} is inside volume {:?} mounted at {}: it would be hidden by the volume",
                        f.path, v.volume, v.path
                    ),
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
            for (name, v) in [("user", &f.user), ("group", &f.group)] {
                if v.contains(':') || v.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
                    return Err(bad(
                        format!("{field}.{name}"),
                        format!("{v:?}: a name or a number"),
                    ));
                }
            }
        }
        check_ulimits(&at("ulimits"), &mut c.ulimits)?;
        check_sysctls(&at("sysctl"), &c.sysctl)?;
        if !c.stop_signal.is_empty() {
            let field = at("StopSignal");
            crate::container::parse_signal(&field, &c.stop_signal).map_err(|e| {
                let message = e.to_string();
                let prefix = format!("{field}: ");
                bad(
                    &field,
                    message
                        .strip_prefix(&prefix)
                        .unwrap_or(&message)
                        .to_string(),
                )
            })?;
        }
    }
    super::volumes::check_volumes(&pod)?;
    super::restart::check_policies(&pod)?;
    Ok(pod)
}

/// Linux resource limits a container may set (`RLIMIT_*` lower-cased, Docker's `--ulimit`).
pub use hyper_proto::RLIMIT_NAMES as RLIMITS;

/// A field hyperd does not honour, set to something other than its default.
fn unsupported(field: impl Into<String>, why: &str) -> SpecError {
    bad(field, format!("not supported: {why}"))
}

/// The rule: every field of the spec either does what it says or, set to anything but its
/// default, is refused here naming it. Fields honoured elsewhere (volumes, restart policies,
/// networking, logs) are checked where they are applied.
pub fn check_supported(pod: &UserPod) -> Result<(), SpecError> {
    if !pod.kind.is_empty() {
        return Err(unsupported("type", "a pod has no type in hyperd"));
    }
    for (i, c) in pod.containers.iter().enumerate() {
        let at = |f: &str| format!("containers[{i}].{f}");
        if !c.cache.is_empty() {
            return Err(unsupported(
                at("cache"),
                "the rootfs is shared with the VM, not a block device",
            ));
        }
        if !c.id.is_empty() {
            return Err(unsupported(
                at("id"),
                "hyperd does not adopt existing containers; leave it empty",
            ));
        }
        if !c.log_path.is_empty() {
            return Err(unsupported(
                at("logPath"),
                "logs are kept under hyperd's root (see /container/logs)",
            ));
        }
        for (j, p) in c.ports.iter().enumerate() {
            if p.service_port != 0 {
                return Err(unsupported(
                    format!("{}[{j}].servicePort", at("ports")),
                    "give the pod's services instead",
                ));
            }
        }
        for (j, f) in c.files.iter().enumerate() {
            if f.detail.as_ref().is_some_and(|d| !d.uri.is_empty()) {
                return Err(unsupported(
                    format!("{}[{j}].detail.uri", at("files")),
                    "declare the file in the pod's files to have it fetched",
                ));
            }
        }
    }
    Ok(())
}

/// hyperd 1.1's deprecated container `ports` become pod `portmappings` (§2.7 step 5): each
/// needs a `hostPort` and a `containerPort`; `protocol` is tcp (default) or udp.
fn move_container_ports(pod: &mut UserPod) -> Result<(), SpecError> {
    let mut moved = Vec::new();
    for (i, c) in pod.containers.iter_mut().enumerate() {
        for (j, p) in c.ports.iter().enumerate() {
            let at = |f: &str| format!("containers[{i}].ports[{j}].{f}");
            for (name, port) in [
                ("hostPort", p.host_port),
                ("containerPort", p.container_port),
            ] {
                if !(1..=65535).contains(&port) {
                    return Err(bad(
                        at(name),
                        format!(
                            "{port}: a port 1-65535 is required (ports become the pod's portmappings)"
                        ),
                    ));
                }
            }
            let protocol = match p.protocol.to_ascii_lowercase().as_str() {
                "" | "tcp" => "tcp",
                "udp" => "udp",
                _ => {
                    return Err(bad(
                        at("protocol"),
                        format!("{:?}: must be tcp or udp", p.protocol),
                    ));
                }
            };
            moved.push(hyper_proto::rest::PortMapping {
                container_port: p.container_port.to_string(),
                host_port: p.host_port.to_string(),
                protocol: protocol.into(),
            });
        }
        c.ports.clear();
    }
    pod.portmappings.extend(moved);
    Ok(())
}

/// A pod file (or a reference's `detail`): `encoding` raw (default) or base64, inline
/// `content` that decodes, or a `uri` (`file://` absolute path, `http://`, `https://`) fetched
/// at create, not both. `encoding` is stored normalised.
fn check_file(field: &str, f: &mut UserFile) -> Result<(), SpecError> {
    match f.encoding.as_str() {
        "" | "raw" => f.encoding = "raw".into(),
        "base64" => {}
        other => {
            return Err(bad(
                format!("{field}.encoding"),
                format!("{other:?}: must be raw or base64"),
            ));
        }
    }
    if !f.uri.is_empty() {
        if !f.content.is_empty() {
            return Err(bad(format!("{field}.uri"), "give uri or content, not both"));
        }
        let ok = match f.uri.strip_prefix("file://") {
            Some(path) => path.starts_with('/'),
            None => f.uri.starts_with("http://") || f.uri.starts_with("https://"),
        };
        if !ok {
            return Err(bad(
                format!("{field}.uri"),
                format!(
                    "{:?}: must be file:///absolute/path, http:// or https://",
                    f.uri
                ),
            ));
        }
    }
    let content = decode_file(&f.encoding, f.content.as_bytes())
        .map_err(|m| bad(format!("{field}.content"), m))?;
    // The same cap as a fetched file's: the spec is kept in the database and sent to the
    // guest whole.
    let max = super::options::MAX_FILE_BYTES;
    if content.len() as u64 > max {
        return Err(bad(
            format!("{field}.content"),
            format!("larger than {max} bytes"),
        ));
    }
    Ok(())
}

/// A file's bytes as written in the spec or fetched, decoded by its `encoding`.
pub fn decode_file(encoding: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
    if encoding != "base64" {
        return Ok(bytes.to_vec());
    }
    let text: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(&text)
        .map_err(|e| format!("not base64: {e}"))
}

/// Docker's `--ulimit` rules: a known name (stored lower-cased), `Soft` ≤ `Hard`, each once.
fn check_ulimits(field: &str, ulimits: &mut [hyper_proto::rest::Ulimit]) -> Result<(), SpecError> {
    let mut seen = HashSet::new();
    for (j, u) in ulimits.iter_mut().enumerate() {
        let at = format!("{field}[{j}]");
        u.name = u.name.to_ascii_lowercase();
        if !RLIMITS.contains(&u.name.as_str()) {
            return Err(bad(
                at,
                format!("{:?}: not a Linux rlimit ({})", u.name, RLIMITS.join(", ")),
            ));
        }
        if u.soft > u.hard {
            return Err(bad(
                at,
                format!("{}: Soft {} is above Hard {}", u.name, u.soft, u.hard),
            ));
        }
        if !seen.insert(u.name.clone()) {
            return Err(bad(at, format!("{} is given twice", u.name)));
        }
        // The guest kernel's fs.nr_open: setrlimit refuses more open files than that.
        if u.name == "nofile" && u.hard > MAX_NOFILE {
            return Err(bad(
                format!("{at}.Hard"),
                format!(
                    "nofile {}: above the kernel's limit of {MAX_NOFILE} (fs.nr_open)",
                    u.hard
                ),
            ));
        }
    }
    Ok(())
}

/// The guest kernel's `fs.nr_open` (its default), the most `nofile` can be.
const MAX_NOFILE: u64 = 1 << 20;

/// Whether `key` is a sysctl a container may set: one of its own namespaces' (Docker's list:
/// IPC `kernel.shm*`, `kernel.msg*`, `kernel.sem`, `fs.mqueue.*`; network `net.*`, the pod's
/// network namespace being the VM's own).
pub fn namespaced_sysctl(key: &str) -> bool {
    let well_formed = !key.is_empty()
        && key.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    well_formed
        && (key.starts_with("kernel.shm")
            || key.starts_with("kernel.msg")
            || key == "kernel.sem"
            || key.starts_with("fs.mqueue.")
            || key.starts_with("net."))
}

fn check_sysctls(
    field: &str,
    sysctls: &std::collections::BTreeMap<String, String>,
) -> Result<(), SpecError> {
    for (key, value) in sysctls {
        let at = format!("{field}.{key}");
        if !namespaced_sysctl(key) {
            return Err(bad(
                at,
                "not allowed: only namespaced sysctls (kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, net.*)",
            ));
        }
        if value.is_empty() || value.chars().any(char::is_control) {
            return Err(bad(at, format!("{value:?}: must be one line of text")));
        }
    }
    Ok(())
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
                r#"{"files":[{"name":"f"}],"containers":[{"image":"a","files":[{"path":"/f","filename":"f","perm":"999"}]}]}"#
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

#[cfg(test)]
mod rule_tests {
    use super::*;

    fn pod(json: &str) -> Result<UserPod, SpecError> {
        normalize(parse(json.as_bytes())?)
    }

    fn field(json: &str) -> String {
        pod(json).unwrap_err().field
    }

    #[test]
    fn keys_match_regardless_of_case_in_json_and_yaml() {
        let p = pod(
            r#"{"ID":"p1","RestartPolicy":"never","containers":[{"IMAGE":"busybox",
            "stopsignal":"INT","readonly":true,"ulimits":[{"name":"NOFILE","hard":10,"soft":5}],
            "labels":{"Tier":"x"}}],"portmappings":[{"containerport":"80","hostport":"8080"}]}"#,
        )
        .unwrap();
        assert_eq!(p.id, "p1");
        assert_eq!(p.restart_policy, "never");
        let c = &p.containers[0];
        assert_eq!(
            (c.image.as_str(), c.stop_signal.as_str()),
            ("busybox", "INT")
        );
        assert!(c.read_only);
        assert_eq!(
            (c.ulimits[0].name.as_str(), c.ulimits[0].hard),
            ("nofile", 10)
        );
        // A map's keys are the user's: never folded.
        assert_eq!(c.labels.get("Tier").map(String::as_str), Some("x"));
        assert_eq!(p.portmappings[0].host_port, "8080");

        let yaml = "id: y1\nrestartpolicy: never\ndnsoptions: [\"ndots:2\"]\ncontainers:\n  - image: busybox\n    readonly: true\n    stopsignal: TERM\n    labels: {version: 2}\nportmappings:\n  - containerport: 80\n    hostport: 8080\n";
        let p = normalize(parse_as(yaml.as_bytes(), Format::Yaml).unwrap()).unwrap();
        assert_eq!(p.dns_options, ["ndots:2"]);
        assert!(p.containers[0].read_only);
        assert_eq!(p.containers[0].labels["version"], "2");
        assert_eq!(p.portmappings[0].container_port, "80");
        let e = parse_as(b"id: [", Format::Yaml).unwrap_err();
        assert!(e.message.starts_with("malformed YAML"), "{e}");
        assert_eq!(field(r#"{"dns":["1.1.1.1"],"DNS":["1.1.1.1"]}"#), "dns");
        assert_eq!(
            Format::from_content_type("application/x-yaml; charset=utf-8"),
            Format::Yaml
        );
        assert_eq!(Format::from_content_type(""), Format::Json);
    }

    #[test]
    fn fields_not_honoured_are_refused_naming_them() {
        for (json, want) in [
            (r#"{"type":"pod"}"#, "type"),
            (
                r#"{"containers":[{"image":"a","cache":"none"}]}"#,
                "containers[0].cache",
            ),
            (
                r#"{"containers":[{"image":"a","id":"abc"}]}"#,
                "containers[0].id",
            ),
            (
                r#"{"containers":[{"image":"a","logPath":"/x"}]}"#,
                "containers[0].logPath",
            ),
            (
                r#"{"containers":[{"image":"a","ports":[{"hostPort":1,"containerPort":2,"servicePort":3}]}]}"#,
                "containers[0].ports[0].servicePort",
            ),
            (
                r#"{"containers":[{"image":"a","files":[{"path":"/f","detail":{"name":"d","uri":"http://127.0.0.1/"}}]}]}"#,
                "containers[0].files[0].detail.uri",
            ),
        ] {
            let e = pod(json).unwrap_err();
            assert_eq!(e.field, want, "{json}");
            assert!(e.message.starts_with("not supported"), "{e}");
        }
    }

    #[test]
    fn the_rule_holds_for_an_added_container() {
        let base = pod(r#"{"id":"live","containers":[]}"#).unwrap();
        let add = |json: &str| {
            normalize_container(&base, serde_json::from_str(json).unwrap()).unwrap_err()
        };
        assert_eq!(
            add(r#"{"image":"a","logPath":"/x"}"#).field,
            "containers[0].logPath"
        );
        assert_eq!(
            add(r#"{"image":"a","ports":[{"hostPort":1,"containerPort":2}]}"#).field,
            "containers[0].ports"
        );
    }

    #[test]
    fn container_ports_become_pod_portmappings() {
        let p = pod(r#"{"containers":[{"image":"a","ports":[{"hostPort":8080,"containerPort":80,"protocol":"UDP"}]}]}"#).unwrap();
        assert!(p.containers[0].ports.is_empty());
        assert_eq!(
            (
                p.portmappings[0].host_port.as_str(),
                p.portmappings[0].container_port.as_str(),
                p.portmappings[0].protocol.as_str()
            ),
            ("8080", "80", "udp")
        );
        assert_eq!(
            field(r#"{"containers":[{"image":"a","ports":[{"containerPort":80}]}]}"#),
            "containers[0].ports[0].hostPort"
        );
    }

    #[test]
    fn ulimits_sysctls_signals_and_files_are_checked() {
        let c = |inner: &str| {
            format!(
                r#"{{"files":[{{"name":"f","content":"aGk="}}],"containers":[{{"image":"a",{inner}}}]}}"#
            )
        };
        assert_eq!(
            field(&c(r#""ulimits":[{"Name":"nofile","Hard":1,"Soft":2}]"#)),
            "containers[0].ulimits[0]"
        );
        assert_eq!(
            field(&c(r#""ulimits":[{"Name":"bogus","Hard":1,"Soft":1}]"#)),
            "containers[0].ulimits[0]",
        );
        assert_eq!(
            field(&c(
                r#""ulimits":[{"Name":"nofile","Hard":99999999999,"Soft":1024}]"#
            )),
            "containers[0].ulimits[0].Hard"
        );
        assert_eq!(
            field(&c(
                r#""ulimits":[{"Name":"nproc","Hard":1,"Soft":1},{"Name":"NPROC","Hard":1,"Soft":1}]"#
            )),
            "containers[0].ulimits[1]"
        );
        assert_eq!(
            field(&c(r#""sysctl":{"kernel.hostname":"x"}"#)),
            "containers[0].sysctl.kernel.hostname"
        );
        assert_eq!(
            field(&c(r#""sysctl":{"net.a..b":"1"}"#)),
            "containers[0].sysctl.net.a..b"
        );
        assert_eq!(
            field(&c(r#""sysctl":{"net.x":"1\n2"}"#)),
            "containers[0].sysctl.net.x"
        );
        pod(&c(r#""sysctl":{"net.ipv4.ip_forward":"1","kernel.shmmax":"1000","fs.mqueue.msg_max":"20","kernel.sem":"1 2 3 4"}"#)).unwrap();
        assert_eq!(
            field(&c(r#""StopSignal":"SIGNOPE""#)),
            "containers[0].StopSignal"
        );
        assert_eq!(
            field(&c(r#""files":[{"path":"rel","filename":"f"}]"#)),
            "containers[0].files[0].path"
        );
        assert_eq!(
            field(&c(
                r#""volumes":[{"volume":"v","path":"/v/","detail":{"name":"v"}}],"files":[{"path":"/v/inj","filename":"f"}]"#
            )),
            "containers[0].files[0].path"
        );
        let big = "x".repeat((1 << 20) + 1);
        assert_eq!(
            field(&format!(
                r#"{{"files":[{{"name":"f","content":"{big}"}}]}}"#
            )),
            "files[0].content"
        );
        assert_eq!(
            field(r#"{"files":[{"name":"f","encoding":"base64","content":"!!"}]}"#),
            "files[0].content"
        );
        assert_eq!(
            field(r#"{"files":[{"name":"f","encoding":"hex"}]}"#),
            "files[0].encoding"
        );
        assert_eq!(
            field(r#"{"files":[{"name":"f","uri":"ftp://x/y"}]}"#),
            "files[0].uri"
        );
        assert_eq!(
            field(r#"{"files":[{"name":"f","uri":"file://rel"}]}"#),
            "files[0].uri"
        );
        // An inline detail needs no pod file.
        pod(r#"{"containers":[{"image":"a","files":[{"path":"/etc/","filename":"x","detail":{"name":"x","content":"y"}}]}]}"#).unwrap();
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
