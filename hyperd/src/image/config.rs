//! The image config (OCI image spec `application/vnd.oci.image.config.v1+json`, the same shape
//! as Docker's `application/vnd.docker.container.image.v1+json`): what we read of it, and the
//! config of an image we make ourselves (an import). The config's exact bytes live in the
//! content store; its sha256 is the image id.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use hyper_proto::rest;

use super::digest::Digest;

pub const MEDIA_TYPE_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// The fields of an image config hyperd uses. Unknown fields are ignored here but kept in the
/// stored bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageConfigFile {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub created: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub author: String,
    pub architecture: String,
    pub os: String,
    #[serde(deserialize_with = "null_default")]
    pub config: RunConfig,
    pub rootfs: RootFs,
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub history: Vec<serde_json::Value>,
}

/// `config` of an image config: the container defaults. Docker writes `null` for unset lists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub user: String,
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub env: Vec<String>,
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub entrypoint: Vec<String>,
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub cmd: Vec<String>,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub working_dir: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub stop_signal: String,
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub volumes: BTreeMap<String, serde_json::Value>,
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub labels: BTreeMap<String, String>,
    /// Docker's `{"Test": […], "Interval": ns, "Timeout": ns, "StartPeriod": ns, "Retries": n}`,
    /// kept as the image has it (a build's `HEALTHCHECK`; not run yet).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "null_default"
    )]
    pub healthcheck: Option<serde_json::Value>,
    /// `ONBUILD` triggers: Dockerfile instructions run when a build uses the image as `FROM`.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub on_build: Vec<String>,
    /// `SHELL`: the shell of the shell form of later `RUN`, `CMD` and `ENTRYPOINT`.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub shell: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(deserialize_with = "null_default")]
    pub diff_ids: Vec<Digest>,
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl ImageConfigFile {
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let config: Self = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if config.rootfs.kind != "layers" {
            return Err(format!(
                "rootfs.type {:?}: want \"layers\"",
                config.rootfs.kind
            ));
        }
        Ok(config)
    }

    /// The config of an image made from one layer with no defaults (an import).
    pub fn single_layer(diff_id: Digest, created: &str, comment: &str) -> Self {
        let mut history = Vec::new();
        if !comment.is_empty() {
            history.push(serde_json::json!({ "created": created, "comment": comment }));
        }
        Self {
            created: created.into(),
            architecture: "amd64".into(),
            os: "linux".into(),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![diff_id],
            },
            history,
            ..Default::default()
        }
    }

    pub fn to_rest(&self) -> rest::ImageConfig {
        let c = &self.config;
        rest::ImageConfig {
            user: c.user.clone(),
            env: c.env.clone(),
            entrypoint: c.entrypoint.clone(),
            cmd: c.cmd.clone(),
            working_dir: c.working_dir.clone(),
            stop_signal: c.stop_signal.clone(),
            exposed_ports: c.exposed_ports.clone(),
            volumes: c.volumes.clone(),
            labels: c.labels.clone(),
            on_build: c.on_build.clone(),
            shell: c.shell.clone(),
            healthcheck: c.healthcheck.clone(),
        }
    }
}

/// RFC 3339 in UTC with seconds, as image configs write `created`.
pub fn rfc3339(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_docker_config_with_nulls_parses() {
        let bytes = br#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],
            "Cmd":null,"Entrypoint":["/app"],"WorkingDir":"","User":"1000:1000",
            "ExposedPorts":{"80/tcp":{}},"Volumes":null,"StopSignal":"SIGINT","Labels":null},
            "rootfs":{"type":"layers","diff_ids":["sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]},
            "history":null}"#;
        let c = ImageConfigFile::parse(bytes).unwrap();
        assert_eq!(c.config.entrypoint, ["/app"]);
        assert!(c.config.cmd.is_empty());
        assert_eq!(c.config.user, "1000:1000");
        assert_eq!(c.config.stop_signal, "SIGINT");
        assert_eq!(c.rootfs.diff_ids.len(), 1);
        assert!(c.to_rest().exposed_ports.contains_key("80/tcp"));
    }

    #[test]
    fn a_config_without_layers_is_refused() {
        let err = ImageConfigFile::parse(br#"{"rootfs":{"type":"x"}}"#).unwrap_err();
        assert!(err.contains("rootfs.type"), "{err}");
        assert!(ImageConfigFile::parse(b"[]").is_err());
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
    }
}
