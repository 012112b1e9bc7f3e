//! Rows of named volumes (migration 7). What a volume is and where its data lives is
//! `crate::volume`'s; this only reads and writes rows.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::{Error, Result};

/// A named volume: Docker's `local` driver, its data in `<root>/volumes/<name>/_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRecord {
    pub name: String,
    /// Seconds since the epoch.
    pub created: i64,
    pub labels: BTreeMap<String, String>,
    /// Set for an anonymous volume (an image `VOLUME`): removed with this pod.
    pub pod_id: Option<String>,
}

type Row = (String, i64, String, Option<String>);

fn row(r: &rusqlite::Row) -> rusqlite::Result<Row> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn record((name, created, labels, pod_id): Row) -> Result<VolumeRecord> {
    let labels = serde_json::from_str(&labels).map_err(|e| Error::Corrupt {
        what: format!("labels of volume {name}"),
        message: e.to_string(),
    })?;
    Ok(VolumeRecord {
        name,
        created,
        labels,
        pod_id,
    })
}

/// Inserts `v` unless a volume of that name exists; whether it was inserted.
pub fn insert_volume(c: &Connection, v: &VolumeRecord) -> Result<bool> {
    let labels = serde_json::to_string(&v.labels).expect("a string map serialises");
    Ok(c.execute(
        "INSERT OR IGNORE INTO volumes (name, created, labels, pod_id) VALUES (?1, ?2, ?3, ?4)",
        params![v.name, v.created, labels, v.pod_id],
    )? > 0)
}

pub fn get_volume(c: &Connection, name: &str) -> Result<Option<VolumeRecord>> {
    c.query_row(
        "SELECT name, created, labels, pod_id FROM volumes WHERE name = ?1",
        params![name],
        row,
    )
    .optional()?
    .map(record)
    .transpose()
}

/// Every volume, by name.
pub fn list_volumes(c: &Connection) -> Result<Vec<VolumeRecord>> {
    let mut stmt = c.prepare("SELECT name, created, labels, pod_id FROM volumes ORDER BY name")?;
    let rows = stmt.query_map([], row)?;
    rows.map(|r| record(r?)).collect()
}

/// The anonymous volumes of pod `pod_id`, by name.
pub fn volumes_of_pod(c: &Connection, pod_id: &str) -> Result<Vec<VolumeRecord>> {
    let mut stmt = c.prepare(
        "SELECT name, created, labels, pod_id FROM volumes WHERE pod_id = ?1 ORDER BY name",
    )?;
    let rows = stmt.query_map(params![pod_id], row)?;
    rows.map(|r| record(r?)).collect()
}

/// Whether the volume existed.
pub fn delete_volume(c: &Connection, name: &str) -> Result<bool> {
    Ok(c.execute("DELETE FROM volumes WHERE name = ?1", params![name])? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn volumes_round_trip_and_a_name_is_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let v = VolumeRecord {
            name: "data".into(),
            created: 7,
            labels: BTreeMap::from([("a".into(), "b".into())]),
            pod_id: None,
        };
        let anon = VolumeRecord {
            name: "anon".into(),
            created: 8,
            labels: BTreeMap::new(),
            pod_id: Some("p1".into()),
        };
        assert!(store.write(|tx| insert_volume(tx, &v)).unwrap());
        assert!(store.write(|tx| insert_volume(tx, &anon)).unwrap());
        let again = VolumeRecord {
            created: 9,
            ..v.clone()
        };
        assert!(!store.write(|tx| insert_volume(tx, &again)).unwrap());
        assert_eq!(store.read(|c| get_volume(c, "data")).unwrap(), Some(v));
        assert_eq!(
            store.read(|c| volumes_of_pod(c, "p1")).unwrap(),
            vec![anon.clone()]
        );
        assert_eq!(store.read(list_volumes).unwrap().len(), 2);
        assert!(store.write(|tx| delete_volume(tx, "data")).unwrap());
        assert!(!store.write(|tx| delete_volume(tx, "data")).unwrap());
        assert_eq!(store.read(list_volumes).unwrap(), vec![anon]);
    }
}
