//! The REST API's JSON bodies (serde only), shared by hyperd and hyperctl.
//!
//! Request types follow the hyperd 1.1 pod spec (`types.UserPod`): every field is optional and
//! unknown fields are ignored (the API's open schema). Wrong types are rejected by serde, and
//! hyperd reports the path of the offending field. Response types reproduce hyperd 1.1's key
//! spellings (`ID`, `podData`, ...), so old clients keep working.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The pod spec (`POST /pod/create` body, or its `podArgs` query parameter).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UserPod {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub restart_policy: String,
    #[serde(skip_serializing_if = "is_false")]
    pub tty: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub resource: UserResource,
    pub log: PodLogConfig,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_options: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    pub containers: Vec<UserContainer>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<UserFile>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<UserVolume>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<UserInterface>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<UserService>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub portmappings: Vec<PortMapping>,
    pub portmapping_white_lists: PortmappingWhiteList,
    /// The pod's network: empty or `bridge` (default: a NIC on hyperd's bridge with an address
    /// from its pool), or `none` (loopback only). Not in hyperd 1.1; Docker's `NetworkMode`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub network: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// VM size: vCPUs and memory in MiB; zero or less means the default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserResource {
    pub vcpu: i32,
    pub memory: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PodLogConfig {
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

/// `GET /pod/{id}/portmappings`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PortMappingList {
    pub port_mappings: Vec<PortMapping>,
}

/// A host port (or range) forwarded to the pod's port (or a range of the same size); all fields
/// are strings, as in hyperd 1.1. Stored normalised: `protocol` `tcp` or `udp`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PortMapping {
    pub container_port: String,
    pub host_port: String,
    pub protocol: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PortmappingWhiteList {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub internal_networks: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_networks: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserInterface {
    pub bridge: String,
    pub ip: String,
    pub ifname: String,
    pub mac: String,
    pub mtu: u64,
    pub gateway: String,
    pub id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UserService {
    #[serde(rename = "serviceIP")]
    pub service_ip: String,
    pub protocol: String,
    pub service_port: i32,
    pub hosts: Vec<UserServiceBackend>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UserServiceBackend {
    #[serde(rename = "hostIP")]
    pub host_ip: String,
    pub host_port: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UserContainer {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub image: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub workdir: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub envs: Vec<EnvironmentVar>,
    #[serde(skip_serializing_if = "is_false")]
    pub tty: bool,
    /// Keep the main process's stdin open for `/attach?stdin=1` without a TTY (Docker's
    /// `OpenStdin`); a client's half-close closes it. A TTY container takes stdin anyway.
    #[serde(skip_serializing_if = "is_false")]
    pub stdin: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserUser>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<UserVolumeReference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<UserFileReference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<UserContainerPort>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctl: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub restart_policy: String,
    #[serde(
        rename = "StopSignal",
        alias = "stopSignal",
        skip_serializing_if = "String::is_empty"
    )]
    pub stop_signal: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub log_path: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cache: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EnvironmentVar {
    pub env: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UserUser {
    pub name: String,
    pub group: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub additional_groups: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UserContainerPort {
    pub host_port: i32,
    pub container_port: i32,
    pub service_port: i32,
    pub protocol: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ulimit {
    #[serde(rename = "Name", alias = "name")]
    pub name: String,
    #[serde(rename = "Hard", alias = "hard")]
    pub hard: u64,
    #[serde(rename = "Soft", alias = "soft")]
    pub soft: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UserVolume {
    pub name: String,
    pub source: String,
    pub format: String,
    pub fstype: String,
    pub cache: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UserVolumeReference {
    pub volume: String,
    pub path: String,
    pub read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<UserVolume>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserFile {
    pub name: String,
    pub encoding: String,
    pub uri: String,
    pub content: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserFileReference {
    pub path: String,
    pub filename: String,
    pub perm: String,
    pub user: String,
    pub group: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<UserFile>,
}

impl UserPod {
    /// A pod with every field of the spec (and of its sub-objects) set to a non-default value,
    /// written without `..Default::default()`: a field added to any of these structs does not
    /// compile until it is set here, so whatever walks the spec's fields (hyperd's key-case
    /// matching, the test that every field is honoured or refused) sees it. The values are
    /// examples, not a valid pod.
    pub fn every_field() -> Self {
        let volume = UserVolume {
            name: "v".into(),
            source: "/srv".into(),
            format: "vfs".into(),
            fstype: "ext4".into(),
            cache: "none".into(),
        };
        let file = UserFile {
            name: "f".into(),
            encoding: "base64".into(),
            uri: "file:///etc/hostname".into(),
            content: "aGk=".into(),
        };
        UserPod {
            id: "every-field".into(),
            hostname: "every-field".into(),
            kind: "pod".into(),
            restart_policy: "always".into(),
            tty: true,
            labels: BTreeMap::from([("k".into(), "v".into())]),
            resource: UserResource {
                vcpu: 2,
                memory: 256,
            },
            log: PodLogConfig {
                kind: "json-file".into(),
                config: BTreeMap::from([("max-size".into(), "10m".into())]),
            },
            dns: vec!["192.0.2.53".into()],
            dns_options: vec!["ndots:2".into()],
            dns_search: vec!["example.test".into()],
            containers: vec![UserContainer {
                name: "web".into(),
                image: "busybox".into(),
                command: vec!["true".into()],
                entrypoint: vec!["/bin/sh".into()],
                workdir: "/tmp".into(),
                envs: vec![EnvironmentVar {
                    env: "A".into(),
                    value: "1".into(),
                }],
                tty: true,
                stdin: true,
                read_only: true,
                user: Some(UserUser {
                    name: "1000".into(),
                    group: "1000".into(),
                    additional_groups: vec!["10".into()],
                }),
                volumes: vec![UserVolumeReference {
                    volume: "v".into(),
                    path: "/data".into(),
                    read_only: true,
                    detail: Some(volume.clone()),
                }],
                files: vec![UserFileReference {
                    path: "/etc/f".into(),
                    filename: "f".into(),
                    perm: "0600".into(),
                    user: "1000".into(),
                    group: "1000".into(),
                    detail: Some(file.clone()),
                }],
                ports: vec![UserContainerPort {
                    host_port: 8080,
                    container_port: 80,
                    service_port: 80,
                    protocol: "tcp".into(),
                }],
                labels: BTreeMap::from([("k".into(), "v".into())]),
                sysctl: BTreeMap::from([("net.ipv4.ip_forward".into(), "1".into())]),
                restart_policy: "always".into(),
                stop_signal: "SIGINT".into(),
                ulimits: vec![Ulimit {
                    name: "nofile".into(),
                    hard: 1024,
                    soft: 1024,
                }],
                log_path: "/var/log/c.log".into(),
                cache: "none".into(),
                id: "0123456789ab".into(),
            }],
            files: vec![file],
            volumes: vec![volume],
            interfaces: vec![UserInterface {
                bridge: "hyper0".into(),
                ip: "192.168.123.50/24".into(),
                ifname: "eth0".into(),
                mac: "52:54:00:00:00:01".into(),
                mtu: 1450,
                gateway: "192.168.123.1".into(),
                id: "1".into(),
            }],
            services: vec![UserService {
                service_ip: "10.254.0.10".into(),
                protocol: "tcp".into(),
                service_port: 6379,
                hosts: vec![UserServiceBackend {
                    host_ip: "192.168.123.20".into(),
                    host_port: 6379,
                }],
            }],
            portmappings: vec![PortMapping {
                container_port: "80".into(),
                host_port: "8080".into(),
                protocol: "tcp".into(),
            }],
            portmapping_white_lists: PortmappingWhiteList {
                internal_networks: vec!["192.168.123.0/24".into()],
                external_networks: vec!["0.0.0.0/0".into()],
            },
            network: "bridge".into(),
        }
    }
}

// ---- responses -------------------------------------------------------------------------------

/// `{"ID":…,"Code":0,"Cause":""}`: pod create/stop/remove and vm create.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IdResponse {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Code", default)]
    pub code: i32,
    #[serde(rename = "Cause", default)]
    pub cause: String,
}

impl IdResponse {
    pub fn ok(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            code: 0,
            cause: String::new(),
        }
    }
}

/// `GET /version`: the daemon's pid (a number, as hyperd 1.1 sends it) and version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionResponse {
    #[serde(rename = "ID")]
    pub id: u32,
    #[serde(rename = "Version")]
    pub version: String,
}

/// `GET /info` (§4.1 of the reference; keys as hyperd 1.1 spells them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InfoResponse {
    #[serde(rename = "ID")]
    pub id: u32,
    #[serde(rename = "Containers")]
    pub containers: u64,
    #[serde(rename = "Images")]
    pub images: u64,
    #[serde(rename = "Pods")]
    pub pods: u64,
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "DriverStatus")]
    pub driver_status: Vec<(String, String)>,
    #[serde(rename = "DockerRootDir")]
    pub root_dir: String,
    #[serde(rename = "IndexServerAddress")]
    pub index_server_address: String,
    #[serde(rename = "ExecutionDriver")]
    pub execution_driver: String,
    /// Host memory in kB, as /proc/meminfo says.
    #[serde(rename = "MemTotal")]
    pub mem_total: u64,
    #[serde(rename = "Operating System")]
    pub operating_system: String,
    #[serde(rename = "Name", default)]
    pub name: String,
    /// The VMM of the most recently booted VM ("qemu", "cloud-hypervisor"), or the configured
    /// `--vmm` before any VM booted.
    #[serde(rename = "Vmm", default)]
    pub vmm: String,
    /// "kvm" or "tcg"; empty before any VM booted.
    #[serde(rename = "Acceleration", default)]
    pub acceleration: String,
    /// Why that VMM and acceleration were chosen.
    #[serde(rename = "VmmReason", default)]
    pub vmm_reason: String,
}

/// `GET /list?item=…`: colon-joined rows, as hyperd 1.1 answers.
/// pod: `podId:podName:vmId:status`; container: `containerId:name:podId:status`;
/// vm: `vmId:podId:status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResponse {
    pub item: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_data: Option<Vec<String>>,
    #[serde(rename = "cData", default, skip_serializing_if = "Option::is_none")]
    pub c_data: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_data: Option<Vec<String>>,
}

impl ListResponse {
    /// The rows, whichever item was listed.
    pub fn rows(&self) -> &[String] {
        self.pod_data
            .as_deref()
            .or(self.c_data.as_deref())
            .or(self.vm_data.as_deref())
            .unwrap_or_default()
    }
}

/// `GET /images/get`: `repo:tag:imageId:createdUnix:virtualSizeBytes` rows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImagesResponse {
    pub images_list: Vec<String>,
    /// The same images with their digests and every tag (hyperd's addition).
    #[serde(default)]
    pub images: Vec<ImageSummary>,
}

/// One line of a JSON progress stream (image import); `error` set when it failed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonMessage {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Byte counts of a download or upload in progress (`Downloading`, `Pushing`, `Extracting`).
    #[serde(
        default,
        rename = "progressDetail",
        skip_serializing_if = "Option::is_none"
    )]
    pub progress_detail: Option<ProgressDetail>,
    /// Build and load output: a line of text, newline included (`Loaded image: busybox:latest\n`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stream: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// The same message as `error`, in Docker's `{"message": …}` shape.
    #[serde(
        default,
        rename = "errorDetail",
        skip_serializing_if = "Option::is_none"
    )]
    pub error_detail: Option<ErrorDetail>,
    /// A typed result at the end of a stream: a push's `{"Tag","Digest","Size"}`, a build's `{"ID"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aux: Option<serde_json::Value>,
}

impl JsonMessage {
    /// `{"status": …}`, with the layer or tag it is about in `id` (may be empty).
    pub fn status(status: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            status: status.into(),
            id: id.into(),
            ..Default::default()
        }
    }

    /// `{"status": …, "progressDetail": {"current", "total"}, "id": …}`; sizes in bytes, total 0
    /// when unknown.
    pub fn progress(
        status: impl Into<String>,
        id: impl Into<String>,
        current: u64,
        total: u64,
    ) -> Self {
        Self {
            progress_detail: Some(ProgressDetail { current, total }),
            ..Self::status(status, id)
        }
    }

    /// `{"error": …, "errorDetail": {"message": …}}`: how a stream reports a failure once it has
    /// started (the HTTP status is already 200 by then).
    pub fn error(message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            error_detail: Some(ErrorDetail {
                message: message.clone(),
                code: None,
            }),
            error: message,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgressDetail {
    #[serde(default)]
    pub current: u64,
    #[serde(default)]
    pub total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    #[serde(default)]
    pub message: String,
    /// A build's failing `RUN`: the command's exit code, as Docker reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
}

/// One row of `GET /image/history` (Docker's image history), newest first: one per history
/// entry of the image config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageHistoryItem {
    /// `sha256:…` on the image's own (top) row, `<missing>` on the rows below, as Docker shows.
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    pub created_by: String,
    /// The image's names, on the top row only.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Bytes of file content the step's layer holds (0 for a step that made no layer).
    pub size: i64,
    #[serde(default)]
    pub comment: String,
}

/// Docker's `AuthConfig`: the body of `POST /auth`, and (base64url-encoded JSON) the
/// `X-Registry-Auth` header of pull and push.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// base64 of `username:password`, as `~/.docker/config.json` stores it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub auth: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub email: String,
    /// The registry, e.g. `127.0.0.1:5000` or `https://index.docker.io/v1/`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub serveraddress: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub identitytoken: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub registrytoken: String,
}

/// `POST /auth` on success.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuthResponse {
    /// `Login Succeeded`.
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(
        rename = "IdentityToken",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub identity_token: String,
}

/// One image of `GET /images/get` (the `images` field), with everything `hyperctl images
/// --digests` shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageSummary {
    /// `sha256:<hex>` of the image config.
    pub id: String,
    /// `repo:tag` (familiar names: `busybox:latest`, `127.0.0.1:5000/app:1`).
    #[serde(default)]
    pub repo_tags: Vec<String>,
    /// `repo@sha256:<manifest hex>` for every registry the image was pulled from or pushed to.
    #[serde(default)]
    pub repo_digests: Vec<String>,
    /// Unix seconds.
    pub created: i64,
    /// Bytes of the unpacked layers.
    pub size: i64,
}

/// `DELETE /image` / `POST /images/remove`: what was untagged and what was deleted, one entry
/// each (hyperd 1.1's key spelling `untaged` is kept).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRemoveResponse {
    pub images_list: Vec<ImageDeleteItem>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageDeleteItem {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub untaged: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub deleted: String,
}

/// `GET /image/inspect?imageId=`: Docker's image inspect shape (the fields hyperd keeps).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInspect {
    pub id: String,
    #[serde(default)]
    pub repo_tags: Vec<String>,
    #[serde(default)]
    pub repo_digests: Vec<String>,
    /// RFC 3339, from the image config (empty when the config has none).
    #[serde(default)]
    pub created: String,
    #[serde(default)]
    pub author: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    /// Bytes of the unpacked layers.
    #[serde(default)]
    pub size: i64,
    #[serde(default)]
    pub config: ImageConfig,
    #[serde(rename = "RootFS", default)]
    pub root_fs: RootFs,
}

/// The part of an image config that applies to containers (OCI image spec `config`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageConfig {
    pub user: String,
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub stop_signal: String,
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
    pub volumes: BTreeMap<String, serde_json::Value>,
    pub labels: BTreeMap<String, String>,
    /// `ONBUILD` triggers, as written after `ONBUILD` (Docker's `config.OnBuild`).
    pub on_build: Vec<String>,
    /// `SHELL` (Docker's `config.Shell`); empty: `/bin/sh -c`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shell: Vec<String>,
    /// Docker's `{"Test": […], "Interval": ns, "Timeout": ns, "StartPeriod": ns, "Retries": n}`
    /// from `HEALTHCHECK` (`{"Test": ["NONE"]}` for `HEALTHCHECK NONE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RootFs {
    /// `layers`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// The layers' diff ids (`sha256:<hex>` of each uncompressed layer tar), bottom first.
    pub layers: Vec<String>,
}

/// `GET /pod/info` (§2.9 of the reference).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodInfo {
    #[serde(rename = "podID")]
    pub pod_id: String,
    pub pod_name: String,
    pub kind: String,
    pub api_version: String,
    pub vm: String,
    pub created_at: i64,
    pub spec: PodInfoSpec,
    pub status: PodInfoStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodInfoSpec {
    pub containers: Vec<ContainerInfo>,
    pub labels: BTreeMap<String, String>,
    pub vcpu: i32,
    pub memory: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerInfo {
    /// The runtime name, with a leading `/` as hyperd 1.1 writes it.
    pub name: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub image: String,
    #[serde(rename = "imageID")]
    pub image_id: String,
    pub working_dir: String,
    pub tty: bool,
    /// The main process takes stdin (spec `stdin`, or `tty`): `/attach?stdin=1` reaches it.
    #[serde(default)]
    pub stdin: bool,
    pub commands: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<EnvironmentVar>,
    pub labels: BTreeMap<String, String>,
}

/// `GET /container/info` (hyperd 1.1's ContainerInfo).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerInfoResponse {
    pub container: ContainerInfo,
    pub created_at: i64,
    #[serde(rename = "podID")]
    pub pod_id: String,
    pub status: ContainerStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodInfoStatus {
    /// Pending, Running, Succeeded or Failed.
    pub phase: String,
    /// The host's address on the pod's network (the bridge's gateway), while the pod runs.
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
    /// The pod's addresses (CIDR), while it runs with a network.
    #[serde(rename = "podIP", default, skip_serializing_if = "Vec::is_empty")]
    pub pod_ip: Vec<String>,
    pub container_status: Vec<ContainerStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    pub name: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// pending, running, succeeded or failed.
    pub phase: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminated: Option<Terminated>,
    /// How often hyperd restarted it by its restart policy since it was last started through
    /// the API (Docker's `RestartCount`).
    #[serde(default)]
    pub restart_count: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Terminated {
    pub exit_code: i32,
    pub reason: String,
}

/// Docker's stdcopy stream ids, used on hijacked connections without a TTY.
pub const STDCOPY_STDOUT: u8 = 1;
pub const STDCOPY_STDERR: u8 = 2;

/// The 8-byte stdcopy header of a frame carrying `len` bytes of `stream`.
pub fn stdcopy_header(stream: u8, len: u32) -> [u8; 8] {
    let l = len.to_be_bytes();
    [stream, 0, 0, 0, l[0], l[1], l[2], l[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_ignored_and_defaults_fill_in() {
        let pod: UserPod = serde_json::from_str(
            r#"{"id":"p","bogus":1,"containers":[{"image":"busybox","StopSignal":"INT"}]}"#,
        )
        .unwrap();
        assert_eq!(pod.id, "p");
        assert_eq!(pod.containers[0].image, "busybox");
        assert_eq!(pod.containers[0].stop_signal, "INT");
        assert_eq!(pod.resource, UserResource::default());
    }

    #[test]
    fn stdcopy_header_is_big_endian_length() {
        assert_eq!(stdcopy_header(2, 258), [2, 0, 0, 0, 0, 0, 1, 2]);
    }
}
