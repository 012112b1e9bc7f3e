//! Named volumes, as Docker's `local` driver keeps them: a directory
//! `<root>/volumes/<name>/_data` and a record (name, creation time, labels). A pod volume with an
//! empty `source` is the named volume of that name, made on first use and kept after the pod is
//! removed; an image `VOLUME` no volume reference covers becomes an anonymous volume (a record
//! naming its pod), removed with that pod. Modes as Docker's: `volumes/` 0701, `<name>/` and
//! `_data/` 0755 (all under the 0700 root, so nobody else reaches them).

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::Kind;
use crate::ids;
use crate::store::{self, Store, VolumeRecord};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such volume: {0}")]
    NotFound(String),
    #[error("volume name {0:?}: must match [a-zA-Z0-9][a-zA-Z0-9_.-]+")]
    InvalidName(String),
    #[error("volume {name} is in use by pod {pod_id}")]
    InUse { name: String, pod_id: String },
    #[error("volume {0}: {1}")]
    Invalid(String, String),
    #[error("volume {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl Error {
    pub fn kind(&self) -> Kind {
        match self {
            Error::NotFound(_) => Kind::NotFound,
            Error::InvalidName(_) | Error::Invalid(..) => Kind::InvalidInput,
            Error::InUse { .. } => Kind::Conflict,
            Error::Io { .. } | Error::Store(_) => Kind::Internal,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

/// Docker's Volume object (`GET /volumes/{name}`), driver `local`, scope `local`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    pub name: String,
    pub driver: String,
    /// The host directory holding the data (`<root>/volumes/<name>/_data`).
    pub mountpoint: String,
    /// RFC 3339, seconds.
    pub created_at: String,
    pub labels: BTreeMap<String, String>,
    pub scope: String,
    pub options: BTreeMap<String, String>,
}

/// The named volumes under one root.
pub struct Volumes {
    /// `<root>/volumes`.
    dir: PathBuf,
    store: Arc<Store>,
}

impl Volumes {
    /// The volumes of `root`; nothing is created until a volume is.
    pub fn new(root: &Path, store: Arc<Store>) -> Self {
        Self {
            dir: root.join("volumes"),
            store,
        }
    }

    /// `<root>/volumes/<name>/_data`, where the volume's content lives.
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("_data")
    }

    /// The Docker view of a record.
    pub fn view(&self, v: &VolumeRecord) -> Volume {
        Volume {
            name: v.name.clone(),
            driver: "local".into(),
            mountpoint: self.data_dir(&v.name).to_string_lossy().into_owned(),
            created_at: humantime::format_rfc3339_seconds(
                UNIX_EPOCH + Duration::from_secs(v.created.max(0) as u64),
            )
            .to_string(),
            labels: v.labels.clone(),
            scope: "local".into(),
            options: BTreeMap::new(),
        }
    }

    /// Creates the named volume `name` (Docker's `POST /volumes/create`); an existing one is
    /// returned as it is, as Docker's local driver does.
    pub fn create(&self, name: &str, labels: BTreeMap<String, String>) -> Result<VolumeRecord> {
        self.make(name, labels, None)
    }

    /// The data dir of named volume `name`, created now if it does not exist (a pod volume
    /// with an empty source).
    pub fn ensure(&self, name: &str) -> Result<PathBuf> {
        self.make(name, BTreeMap::new(), None)?;
        Ok(self.data_dir(name))
    }

    /// The data dir of anonymous volume `name` of pod `pod_id` (an image `VOLUME`), created
    /// now if it does not exist.
    pub fn ensure_anonymous(&self, name: &str, pod_id: &str) -> Result<PathBuf> {
        self.make(name, BTreeMap::new(), Some(pod_id))?;
        Ok(self.data_dir(name))
    }

    fn make(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
        pod_id: Option<&str>,
    ) -> Result<VolumeRecord> {
        if !crate::pod::spec::valid_name(name) {
            return Err(Error::InvalidName(name.into()));
        }
        if let Some(v) = self.store.read(|c| store::get_volume(c, name))? {
            return Ok(v);
        }
        if !self.dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o701)
                .create(&self.dir)
                .map_err(io(format!("mkdir {}", self.dir.display())))?;
            // The mode of a dir that existed is left alone; a new one gets exactly 0701.
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o701))
                .map_err(io(format!("chmod {}", self.dir.display())))?;
        }
        let data = self.data_dir(name);
        // The directory before the record: a record always has its directory. A directory
        // left by a crash before the record is simply taken over.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&data)
            .map_err(io(format!("{name}: mkdir {}", data.display())))?;
        let record = VolumeRecord {
            name: name.into(),
            created: ids::now(),
            labels,
            pod_id: pod_id.map(str::to_string),
        };
        self.store.write(|tx| store::insert_volume(tx, &record))?;
        let made = self
            .store
            .read(|c| store::get_volume(c, name))?
            .ok_or_else(|| Error::NotFound(name.into()))?;
        tracing::info!(volume = name, pod_id, "volume created");
        Ok(made)
    }

    pub fn get(&self, name: &str) -> Result<VolumeRecord> {
        self.store
            .read(|c| store::get_volume(c, name))?
            .ok_or_else(|| Error::NotFound(name.into()))
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<VolumeRecord>> {
        Ok(self.store.read(store::list_volumes)?)
    }

    /// The volumes `filters` selects, by name.
    pub fn list_filtered(&self, filters: &Filters) -> Result<Vec<VolumeRecord>> {
        let (all, used) = self.store.read(|c| {
            let used: Vec<String> = store::list_pods(c)?
                .iter()
                .flat_map(|p| crate::pod::volumes::named_volumes(&p.spec))
                .collect();
            let pods: Vec<String> = store::list_pods(c)?.into_iter().map(|p| p.id).collect();
            let all = store::list_volumes(c)?;
            let used = all
                .iter()
                .filter(|v| {
                    used.contains(&v.name) || v.pod_id.as_ref().is_some_and(|p| pods.contains(p))
                })
                .map(|v| v.name.clone())
                .collect::<Vec<_>>();
            Ok((all, used))
        })?;
        Ok(all
            .into_iter()
            .filter(|v| filters.matches(v, used.contains(&v.name)))
            .collect())
    }

    /// Removes volume `name` and its data. A volume that a pod which exists refers to (or,
    /// anonymous, belongs to) is a conflict naming the pod. The check, the record's removal
    /// and the move of its directory out of the way are one transaction.
    pub fn remove(&self, name: &str) -> Result<()> {
        let doomed = self
            .dir
            .join(format!(".{name}.removing-{}", ids::name_suffix()));
        self.store.write(|tx| {
            let Some(v) = store::get_volume(tx, name)? else {
                return Ok(Err(Error::NotFound(name.into())));
            };
            if let Some(pod_id) = &v.pod_id
                && store::get_pod(tx, pod_id)?.is_some()
            {
                return Ok(Err(Error::InUse {
                    name: name.into(),
                    pod_id: pod_id.clone(),
                }));
            }
            for pod in store::list_pods(tx)? {
                if crate::pod::volumes::named_volumes(&pod.spec)
                    .iter()
                    .any(|n| n == name)
                {
                    return Ok(Err(Error::InUse {
                        name: name.into(),
                        pod_id: pod.id,
                    }));
                }
            }
            let dir = self.dir.join(name);
            match std::fs::rename(&dir, &doomed) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Ok(Err(Error::Io {
                        context: format!("{name}: rename {}", dir.display()),
                        source: e,
                    }));
                }
            }
            store::delete_volume(tx, name)?;
            Ok(Ok(()))
        })??;
        if doomed.exists()
            && let Err(e) = std::fs::remove_dir_all(&doomed)
        {
            tracing::warn!(volume = name, "remove {}: {e}", doomed.display());
        }
        tracing::info!(volume = name, "volume removed");
        Ok(())
    }

    /// Removes the anonymous volumes of pod `pod_id` (after the pod's record is gone).
    pub fn remove_of_pod(&self, pod_id: &str) {
        let anonymous = match self.store.read(|c| store::volumes_of_pod(c, pod_id)) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(pod_id, "anonymous volumes: {e}");
                return;
            }
        };
        for v in anonymous {
            if let Err(e) = self.remove(&v.name) {
                tracing::warn!(pod_id, volume = %v.name, "remove anonymous volume: {e}");
            }
        }
    }
}

/// Docker's volume list filters (`GET /volumes?filters=`): `name` (a substring, any of them),
/// `label` (`key` or `key=value`, all of them), `dangling` (`true`/`1`: used by no pod;
/// `false`/`0`: used by one), `driver` (any of them; every volume's is `local`).
#[derive(Debug, Default, PartialEq)]
pub struct Filters {
    names: Vec<String>,
    labels: Vec<String>,
    dangling: Option<bool>,
    drivers: Vec<String>,
}

impl Filters {
    /// Parses Docker's JSON: `{"label": ["k=v"]}` or `{"label": {"k=v": true}}`. An unknown
    /// filter is an error naming it.
    pub fn parse(json: &str) -> Result<Self> {
        let invalid = |m: String| Error::Invalid("filters".into(), m);
        let map: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(json).map_err(|e| invalid(format!("{json:?}: {e}")))?;
        let mut f = Filters::default();
        for (key, value) in map {
            let values: Vec<String> = match value {
                serde_json::Value::Array(a) => a
                    .into_iter()
                    .map(|v| match v {
                        serde_json::Value::String(s) => Ok(s),
                        other => Err(invalid(format!("{key}: {other} is not a string"))),
                    })
                    .collect::<Result<_>>()?,
                serde_json::Value::Object(o) => o
                    .into_iter()
                    .filter(|(_, on)| on.as_bool() == Some(true))
                    .map(|(k, _)| k)
                    .collect(),
                other => {
                    return Err(invalid(format!(
                        "{key}: {other}: must be a list of strings or a map of string to true"
                    )));
                }
            };
            match key.as_str() {
                "name" => f.names.extend(values),
                "label" => f.labels.extend(values),
                "driver" => f.drivers.extend(values),
                "dangling" => {
                    for v in values {
                        let d = match v.as_str() {
                            "true" | "1" => true,
                            "false" | "0" => false,
                            _ => {
                                return Err(invalid(format!(
                                    "dangling: {v:?}: must be true, false, 1 or 0"
                                )));
                            }
                        };
                        if f.dangling.is_some_and(|x| x != d) {
                            return Err(invalid("dangling: given both true and false".into()));
                        }
                        f.dangling = Some(d);
                    }
                }
                other => {
                    return Err(invalid(format!(
                        "{other:?}: not supported (name, label, dangling and driver are)"
                    )));
                }
            }
        }
        Ok(f)
    }

    fn matches(&self, v: &VolumeRecord, used: bool) -> bool {
        (self.names.is_empty() || self.names.iter().any(|n| v.name.contains(n.as_str())))
            && self.labels.iter().all(|l| match l.split_once('=') {
                Some((k, want)) => v.labels.get(k).is_some_and(|have| have == want),
                None => v.labels.contains_key(l),
            })
            && self.dangling.is_none_or(|d| d != used)
            && (self.drivers.is_empty() || self.drivers.iter().any(|d| d == "local"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    fn volumes() -> (tempfile::TempDir, Volumes) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
        let v = Volumes::new(dir.path(), store);
        (dir, v)
    }

    #[test]
    fn a_volume_is_a_data_dir_and_a_record_and_remove_takes_both() {
        let (root, vols) = volumes();
        let labels = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let v = vols.create("data", labels.clone()).unwrap();
        let data = root.path().join("volumes/data/_data");
        assert!(data.is_dir());
        assert_eq!(
            std::fs::metadata(root.path().join("volumes"))
                .unwrap()
                .mode()
                & 0o777,
            0o701
        );
        assert_eq!(std::fs::metadata(&data).unwrap().mode() & 0o777, 0o755);
        std::fs::write(data.join("f"), "x").unwrap();
        // Created again: the same volume, its data untouched.
        assert_eq!(vols.create("data", BTreeMap::new()).unwrap(), v);
        assert_eq!(std::fs::read_to_string(data.join("f")).unwrap(), "x");
        let view = vols.view(&v);
        assert_eq!(view.mountpoint, data.to_string_lossy());
        assert_eq!(view.labels, labels);
        assert!(view.created_at.ends_with('Z'), "{}", view.created_at);
        vols.remove("data").unwrap();
        assert!(!root.path().join("volumes/data").exists());
        assert!(matches!(vols.get("data"), Err(Error::NotFound(_))));
        assert!(matches!(vols.remove("data"), Err(Error::NotFound(_))));
        // Nothing is left beside the volumes.
        assert_eq!(
            std::fs::read_dir(root.path().join("volumes"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn bad_names_are_refused_and_create_nothing() {
        let (root, vols) = volumes();
        for name in ["", "a", "../x", "a/b", "-a", ".a"] {
            assert!(
                matches!(
                    vols.create(name, BTreeMap::new()),
                    Err(Error::InvalidName(_))
                ),
                "{name}"
            );
        }
        assert!(!root.path().join("volumes").exists());
    }

    #[test]
    fn anonymous_volumes_go_with_their_pod_only() {
        let (root, vols) = volumes();
        vols.ensure_anonymous("anon1", "p1").unwrap();
        vols.ensure_anonymous("anon2", "p2").unwrap();
        vols.ensure("named").unwrap();
        vols.remove_of_pod("p1");
        assert!(!root.path().join("volumes/anon1").exists());
        assert!(root.path().join("volumes/anon2/_data").is_dir());
        let names: Vec<String> = vols.list().unwrap().into_iter().map(|v| v.name).collect();
        assert_eq!(names, ["anon2", "named"]);
    }

    #[test]
    fn filters_select_by_name_label_dangling_and_driver() {
        let (_root, vols) = volumes();
        vols.create("alpha", BTreeMap::from([("team".into(), "a".into())]))
            .unwrap();
        vols.create("beta", BTreeMap::new()).unwrap();
        let names = |json: &str| -> Vec<String> {
            vols.list_filtered(&Filters::parse(json).unwrap())
                .unwrap()
                .into_iter()
                .map(|v| v.name)
                .collect()
        };
        assert_eq!(names("{}"), ["alpha", "beta"]);
        assert_eq!(names(r#"{"name":["alp"]}"#), ["alpha"]);
        assert_eq!(names(r#"{"label":{"team=a":true}}"#), ["alpha"]);
        assert_eq!(names(r#"{"label":["team"]}"#), ["alpha"]);
        assert!(names(r#"{"label":["team=b"]}"#).is_empty());
        assert_eq!(names(r#"{"dangling":["true"]}"#), ["alpha", "beta"]);
        assert!(names(r#"{"dangling":["0"]}"#).is_empty());
        assert!(names(r#"{"driver":["nfs"]}"#).is_empty());
        for bad in [
            r#"{"until":["1h"]}"#,
            r#"{"dangling":["maybe"]}"#,
            "[",
            r#"{"name":"x"}"#,
        ] {
            let e = Filters::parse(bad).unwrap_err();
            assert_eq!(e.kind(), Kind::InvalidInput, "{bad}: {e}");
        }
    }
}
