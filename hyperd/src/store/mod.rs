//! The state database: one SQLite file (`<root>/hyperd.db`) holding every pod, container, VM,
//! exec and image record, and the network's address leases and host ports. The schema carries a
//! version (`PRAGMA user_version`) and is brought up to date by [`MIGRATIONS`] on open; every
//! change of records is one transaction.

mod net;
mod records;
mod volumes;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, Transaction};

pub use net::*;
pub use records::*;
pub use volumes::*;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state database: record {what} is corrupt: {message}")]
    Corrupt { what: String, message: String },
    #[error("state database: {0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("state database schema version {found} is newer than this hyperd ({known})")]
    TooNew { found: i64, known: i64 },
}

impl Error {
    pub fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::Internal
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Schema migrations; entry `i` brings version `i` to `i + 1`. Append only.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE images (
        id TEXT PRIMARY KEY,
        created INTEGER NOT NULL,
        size INTEGER NOT NULL,
        rootfs TEXT NOT NULL
    );
    CREATE TABLE image_tags (
        repo TEXT NOT NULL,
        tag TEXT NOT NULL,
        image_id TEXT NOT NULL REFERENCES images(id),
        PRIMARY KEY (repo, tag)
    );
    CREATE TABLE vms (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        socket TEXT NOT NULL,
        run_dir TEXT NOT NULL,
        log TEXT NOT NULL,
        shim_pid INTEGER NOT NULL,
        cpus INTEGER NOT NULL,
        memory_mib INTEGER NOT NULL,
        created INTEGER NOT NULL
    );
    CREATE TABLE pods (
        id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        state TEXT NOT NULL,
        vm_id TEXT,
        created INTEGER NOT NULL
    );
    CREATE TABLE containers (
        id TEXT PRIMARY KEY,
        pod_id TEXT NOT NULL REFERENCES pods(id),
        idx INTEGER NOT NULL,
        name TEXT NOT NULL UNIQUE,
        image TEXT NOT NULL,
        image_id TEXT NOT NULL,
        process TEXT NOT NULL,
        state TEXT NOT NULL,
        exit_code INTEGER,
        dir TEXT NOT NULL
    );
    CREATE TABLE execs (
        id TEXT PRIMARY KEY,
        container_id TEXT NOT NULL REFERENCES containers(id),
        command TEXT NOT NULL,
        exit_code INTEGER
    );",
    // 2: images in the content store: manifest and layers per image, and registry digests.
    "ALTER TABLE images ADD COLUMN manifest TEXT NOT NULL DEFAULT '';
    ALTER TABLE images ADD COLUMN layers TEXT NOT NULL DEFAULT '[]';
    CREATE TABLE image_digests (
        repo TEXT NOT NULL,
        digest TEXT NOT NULL,
        image_id TEXT NOT NULL REFERENCES images(id),
        PRIMARY KEY (repo, digest)
    );",
    // 3: execs with a TTY.
    "ALTER TABLE execs ADD COLUMN tty INTEGER NOT NULL DEFAULT 0;",
    // 4: the build cache: a step's key (parent + instruction + inputs) → the layer it made
    // (JSON LayerRecord, or NULL for a step that changes only the config) and when.
    "CREATE TABLE build_cache (
        key TEXT PRIMARY KEY,
        layer TEXT,
        created INTEGER NOT NULL
    );",
    // 5: what a VM is for: `pool` (a pod's, or `/vm/create`'s for a pod to start in) or
    // `build` (one build's, never a pod's; destroyed at a restart, its build having died).
    "ALTER TABLE vms ADD COLUMN role TEXT NOT NULL DEFAULT 'pool';",
    // 6: pod networking. An address lease per pod (`address` unique: never two holders), the
    // allocation cursor per subnet (addresses are not reused soon after release), and one row
    // per reserved host port (`(protocol, host_port)` unique: never two pods on one port), each
    // naming the mapping (host range → container range) it belongs to.
    "CREATE TABLE ip_leases (
        address TEXT PRIMARY KEY,
        prefix INTEGER NOT NULL,
        pod_id TEXT NOT NULL UNIQUE
    );
    CREATE TABLE ipam_cursors (
        subnet TEXT PRIMARY KEY,
        last TEXT NOT NULL
    );
    CREATE TABLE host_ports (
        protocol TEXT NOT NULL,
        host_port INTEGER NOT NULL,
        pod_id TEXT NOT NULL,
        host_first INTEGER NOT NULL,
        host_last INTEGER NOT NULL,
        container_first INTEGER NOT NULL,
        PRIMARY KEY (protocol, host_port)
    );
    CREATE INDEX host_ports_pod ON host_ports (pod_id);",
    // 7: named volumes kept under `--root` (`pod_id` set: an image VOLUME's anonymous volume,
    // removed with its pod).
    "CREATE TABLE volumes (
        name TEXT PRIMARY KEY,
        created INTEGER NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}',
        pod_id TEXT
    );",
    // 8: restart policies: how often hyperd restarted each container since it was last
    // started through the API, and whether the API stopped or killed it (never restarted).
    "ALTER TABLE containers ADD COLUMN restart_count INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE containers ADD COLUMN stopped_by_user INTEGER NOT NULL DEFAULT 0;",
];

pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating) the database at `path`. A new file is created 0600 (SQLite gives its
    /// `-wal` and `-shm` files the same mode), and an existing one is narrowed to 0600: it holds
    /// every pod's environment.
    pub fn open(path: &Path) -> Result<Self> {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::Io(format!("open {}", path.display()), e))?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::Io(format!("chmod {}", path.display()), e))?;
        drop(file);
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back on
        // drop), so a poisoned lock is still safe to use.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` in one transaction: all of its changes land, or none.
    pub fn write<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Reads with a consistent view.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.lock();
        f(&conn)
    }
}

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

fn migrate(conn: &mut Connection) -> Result<()> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(Error::TooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version as i64 + 1)?;
        tx.commit()?;
        tracing::info!(version = version + 1, "state database migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_database_gets_the_latest_schema_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = Store::open(&path).unwrap();
        let v: i64 = store
            .read(|c| Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        drop(store);
        Store::open(&path).unwrap();
    }

    #[test]
    fn restart_counts_and_manual_stops_are_kept_apart_from_state_updates() {
        use crate::container::{ContainerState, ProcessSpec};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let mut ct = ContainerRecord {
            id: "c1".into(),
            pod_id: "p".into(),
            idx: 0,
            name: "one".into(),
            image: "busybox".into(),
            image_id: "i".into(),
            process: ProcessSpec::default(),
            state: ContainerState::Running,
            exit_code: None,
            dir: "/nowhere".into(),
            restart_count: 0,
            stopped_by_user: false,
        };
        store
            .write(|tx| {
                insert_pod(
                    tx,
                    &PodRecord {
                        id: "p".into(),
                        spec: Default::default(),
                        state: crate::pod::PodState::Running,
                        vm_id: None,
                        created: 0,
                    },
                )?;
                insert_container(tx, &ct)?;
                set_restart_count(tx, "c1", 3)?;
                set_stopped_by_user(tx, "c1", true)
            })
            .unwrap();
        // A state update from a record read earlier leaves both alone.
        ct.state = ContainerState::Failed;
        ct.exit_code = Some(3);
        store.write(|tx| update_container(tx, &ct)).unwrap();
        let read = store.read(|c| get_container(c, "c1")).unwrap().unwrap();
        assert_eq!((read.restart_count, read.stopped_by_user), (3, true));
        assert_eq!(read.exit_code, Some(3));
        store
            .write(|tx| set_stopped_by_user(tx, "c1", false))
            .unwrap();
        let read = store.read(|c| get_container(c, "c1")).unwrap().unwrap();
        assert!(!read.stopped_by_user);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = Store::open(&path).err().unwrap();
        assert!(matches!(err, Error::TooNew { found: 99, .. }), "{err}");
    }

    #[test]
    fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let vm = VmRecord {
            id: "vm-a".into(),
            state: crate::vm::VmState::Running,
            socket: "/s".into(),
            run_dir: "/r".into(),
            log: "/l".into(),
            shim_pid: 1,
            cpus: 1,
            memory_mib: 128,
            created: 0,
            role: crate::vm::VmRole::Pool,
        };
        let failed: Result<()> = store.write(|tx| {
            insert_vm(tx, &vm)?;
            Err(Error::Corrupt {
                what: "test".into(),
                message: "abort".into(),
            })
        });
        assert!(failed.is_err());
        assert!(store.read(|c| get_vm(c, "vm-a")).unwrap().is_none());
    }

    /// A VM's role survives a reopen; pods' listings never see build VMs; VMs recorded before
    /// roles existed are pool VMs.
    #[test]
    fn build_vms_are_recorded_as_such_and_listed_apart() {
        use crate::vm::{VmRole, VmState};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        // A database of schema 4 with one VM in it.
        let conn = Connection::open(&path).unwrap();
        for m in &MIGRATIONS[..4] {
            conn.execute_batch(m).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        conn.execute(
            "INSERT INTO vms VALUES ('vm-old', 'running', '/s', '/r', '/l', 1, 1, 128, 0)",
            [],
        )
        .unwrap();
        drop(conn);
        let store = Store::open(&path).unwrap();
        let old = store.read(|c| get_vm(c, "vm-old")).unwrap().unwrap();
        assert_eq!(old.role, VmRole::Pool);
        let build = VmRecord {
            id: "vm-build".into(),
            created: 1,
            role: VmRole::Build,
            state: VmState::Running,
            ..old
        };
        store.write(|tx| insert_vm(tx, &build)).unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        let ids = |vms: Vec<VmRecord>| vms.into_iter().map(|v| v.id).collect::<Vec<_>>();
        assert_eq!(ids(store.read(list_vms).unwrap()), ["vm-old"]);
        assert_eq!(ids(store.read(list_build_vms).unwrap()), ["vm-build"]);
        let got = store.read(|c| get_vm(c, "vm-build")).unwrap().unwrap();
        assert_eq!(got, build);
    }
}
