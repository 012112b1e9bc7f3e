//! Typed rows and the SQL that reads and writes them. States are stored as their `Display`
//! strings and parsed back with `FromStr`; JSON columns hold the pod spec and process specs.

use std::str::FromStr;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Error, Result};
use crate::container::{ContainerState, ProcessSpec};
use crate::image::LayerRecord;
use crate::pod::PodState;
use crate::vm::{VmRole, VmState};
use hyper_proto::rest::UserPod;

#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    /// The hex sha256 of the image config (of the tarball, for images imported before v2).
    pub id: String,
    pub created: i64,
    /// Bytes of unpacked file content.
    pub size: i64,
    /// Images imported before the content store: their one unpacked rootfs dir; else empty.
    pub rootfs: String,
    /// `sha256:…` of the manifest blob; empty for the old rootfs images.
    pub manifest: String,
    /// Bottom layer first.
    pub layers: Vec<LayerRecord>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImageTag {
    pub repo: String,
    pub tag: String,
    pub image_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VmRecord {
    pub id: String,
    pub state: VmState,
    pub socket: String,
    pub run_dir: String,
    pub log: String,
    pub shim_pid: u32,
    pub cpus: u32,
    pub memory_mib: u32,
    pub created: i64,
    /// A pod's VM or a build's (never offered to a pod).
    pub role: VmRole,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PodRecord {
    pub id: String,
    pub spec: UserPod,
    pub state: PodState,
    pub vm_id: Option<String>,
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRecord {
    pub id: String,
    pub pod_id: String,
    pub idx: i64,
    pub name: String,
    /// The reference the spec gave (`busybox`, `busybox:latest`).
    pub image: String,
    pub image_id: String,
    pub process: ProcessSpec,
    pub state: ContainerState,
    pub exit_code: Option<i32>,
    /// `<root>/containers/<id>`: the container's rootfs and output log.
    pub dir: String,
    /// Restarts by its restart policy since it was last started through the API (written
    /// only by [`set_restart_count`]).
    pub restart_count: u32,
    /// Stopped or killed through the API since it last started: not restarted (written
    /// only by [`set_stopped_by_user`]).
    pub stopped_by_user: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecRecord {
    pub id: String,
    pub container_id: String,
    pub command: Vec<String>,
    pub exit_code: Option<i32>,
    /// Runs on a terminal: raw output, resizable.
    pub tty: bool,
}

fn parse<T: FromStr>(what: &str, s: String) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e: T::Err| Error::Corrupt {
        what: what.into(),
        message: e.to_string(),
    })
}

fn json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::Corrupt {
        what: what.into(),
        message: e.to_string(),
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    // Serialising plain data structs (no maps with non-string keys) cannot fail.
    serde_json::to_string(v).expect("plain data serialises")
}

// ---- images --------------------------------------------------------------------------------

const IMAGE_COLUMNS: &str = "id, created, size, rootfs, manifest, layers";

pub fn insert_image(c: &Connection, img: &ImageRecord) -> Result<()> {
    c.execute(
        "INSERT OR REPLACE INTO images (id, created, size, rootfs, manifest, layers)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            img.id,
            img.created,
            img.size,
            img.rootfs,
            img.manifest,
            to_json(&img.layers)
        ],
    )?;
    Ok(())
}

/// Removes an image with its tags and repo digests.
pub fn delete_image(c: &Connection, id: &str) -> Result<()> {
    c.execute("DELETE FROM image_tags WHERE image_id = ?1", [id])?;
    c.execute("DELETE FROM image_digests WHERE image_id = ?1", [id])?;
    c.execute("DELETE FROM images WHERE id = ?1", [id])?;
    Ok(())
}

pub fn tag_image(c: &Connection, t: &ImageTag) -> Result<()> {
    c.execute(
        "INSERT OR REPLACE INTO image_tags (repo, tag, image_id) VALUES (?1, ?2, ?3)",
        params![t.repo, t.tag, t.image_id],
    )?;
    Ok(())
}

pub fn untag_image(c: &Connection, repo: &str, tag: &str) -> Result<()> {
    c.execute(
        "DELETE FROM image_tags WHERE repo = ?1 AND tag = ?2",
        [repo, tag],
    )?;
    Ok(())
}

/// Records that `image_id` is `repo@digest` in a registry (a pull or a push).
pub fn add_repo_digest(c: &Connection, repo: &str, digest: &str, image_id: &str) -> Result<()> {
    c.execute(
        "INSERT OR REPLACE INTO image_digests (repo, digest, image_id) VALUES (?1, ?2, ?3)",
        [repo, digest, image_id],
    )?;
    Ok(())
}

pub fn remove_repo_digest(c: &Connection, repo: &str, digest: &str) -> Result<()> {
    c.execute(
        "DELETE FROM image_digests WHERE repo = ?1 AND digest = ?2",
        [repo, digest],
    )?;
    Ok(())
}

pub fn tags_of_image(c: &Connection, image_id: &str) -> Result<Vec<ImageTag>> {
    let mut stmt = c.prepare(
        "SELECT repo, tag, image_id FROM image_tags WHERE image_id = ?1 ORDER BY repo, tag",
    )?;
    let rows = stmt.query_map([image_id], |r| {
        Ok(ImageTag {
            repo: r.get(0)?,
            tag: r.get(1)?,
            image_id: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// `(repo, digest)` pairs of an image.
pub fn digests_of_image(c: &Connection, image_id: &str) -> Result<Vec<(String, String)>> {
    let mut stmt = c.prepare(
        "SELECT repo, digest FROM image_digests WHERE image_id = ?1 ORDER BY repo, digest",
    )?;
    let rows = stmt.query_map([image_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn image_row(r: &Row) -> rusqlite::Result<ImageRecord> {
    let layers: String = r.get(5)?;
    Ok(ImageRecord {
        id: r.get(0)?,
        created: r.get(1)?,
        size: r.get(2)?,
        rootfs: r.get(3)?,
        manifest: r.get(4)?,
        layers: serde_json::from_str(&layers).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, Box::new(e))
        })?,
    })
}

pub fn get_image(c: &Connection, id: &str) -> Result<Option<ImageRecord>> {
    Ok(c.query_row(
        &format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id = ?1"),
        [id],
        image_row,
    )
    .optional()?)
}

pub fn image_by_tag(c: &Connection, repo: &str, tag: &str) -> Result<Option<ImageRecord>> {
    Ok(c.query_row(
        &format!(
            "SELECT {IMAGE_COLUMNS} FROM images WHERE id =
             (SELECT image_id FROM image_tags WHERE repo = ?1 AND tag = ?2)"
        ),
        [repo, tag],
        image_row,
    )
    .optional()?)
}

pub fn image_by_digest(c: &Connection, repo: &str, digest: &str) -> Result<Option<ImageRecord>> {
    Ok(c.query_row(
        &format!(
            "SELECT {IMAGE_COLUMNS} FROM images WHERE id =
             (SELECT image_id FROM image_digests WHERE repo = ?1 AND digest = ?2)"
        ),
        [repo, digest],
        image_row,
    )
    .optional()?)
}

/// Images whose id starts with `prefix`.
pub fn images_by_id_prefix(c: &Connection, prefix: &str) -> Result<Vec<ImageRecord>> {
    let mut stmt = c.prepare(&format!(
        "SELECT {IMAGE_COLUMNS} FROM images WHERE substr(id, 1, ?2) = ?1"
    ))?;
    let rows = stmt.query_map(params![prefix, prefix.len() as i64], image_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every image, newest first.
pub fn list_images(c: &Connection) -> Result<Vec<ImageRecord>> {
    let mut stmt = c.prepare(&format!(
        "SELECT {IMAGE_COLUMNS} FROM images ORDER BY created DESC, id"
    ))?;
    let rows = stmt.query_map([], image_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn count_images(c: &Connection) -> Result<u64> {
    Ok(c.query_row("SELECT count(*) FROM images", [], |r| r.get::<_, i64>(0))? as u64)
}

/// Names of the containers whose rootfs is made from `image_id`.
pub fn containers_using_image(c: &Connection, image_id: &str) -> Result<Vec<String>> {
    let mut stmt = c.prepare("SELECT name FROM containers WHERE image_id = ?1 ORDER BY name")?;
    let rows = stmt.query_map([image_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ---- vms -------------------------------------------------------------------------------------

const VM_COLUMNS: &str =
    "id, state, socket, run_dir, log, shim_pid, cpus, memory_mib, created, role";

fn vm_row(r: &Row) -> rusqlite::Result<(VmRecord, String, String)> {
    Ok((
        VmRecord {
            id: r.get(0)?,
            state: VmState::Failed,
            socket: r.get(2)?,
            run_dir: r.get(3)?,
            log: r.get(4)?,
            shim_pid: r.get(5)?,
            cpus: r.get(6)?,
            memory_mib: r.get(7)?,
            created: r.get(8)?,
            role: VmRole::Pool,
        },
        r.get(1)?,
        r.get(9)?,
    ))
}

fn finish_vm((mut vm, state, role): (VmRecord, String, String)) -> Result<VmRecord> {
    vm.state = parse(&format!("vm {}", vm.id), state)?;
    vm.role = parse(&format!("vm {}", vm.id), role)?;
    Ok(vm)
}

pub fn insert_vm(c: &Connection, vm: &VmRecord) -> Result<()> {
    c.execute(
        &format!("INSERT INTO vms ({VM_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
        params![
            vm.id,
            vm.state.to_string(),
            vm.socket,
            vm.run_dir,
            vm.log,
            vm.shim_pid,
            vm.cpus,
            vm.memory_mib,
            vm.created,
            vm.role.to_string()
        ],
    )?;
    Ok(())
}

pub fn update_vm(c: &Connection, vm: &VmRecord) -> Result<()> {
    c.execute(
        "UPDATE vms SET state = ?2, shim_pid = ?3, cpus = ?4, memory_mib = ?5 WHERE id = ?1",
        params![
            vm.id,
            vm.state.to_string(),
            vm.shim_pid,
            vm.cpus,
            vm.memory_mib
        ],
    )?;
    Ok(())
}

pub fn get_vm(c: &Connection, id: &str) -> Result<Option<VmRecord>> {
    c.query_row(
        &format!("SELECT {VM_COLUMNS} FROM vms WHERE id = ?1"),
        [id],
        vm_row,
    )
    .optional()?
    .map(finish_vm)
    .transpose()
}

/// The VMs of pods (and `/vm/create`'s idle ones), oldest first: never a build's.
pub fn list_vms(c: &Connection) -> Result<Vec<VmRecord>> {
    list_vms_of(c, VmRole::Pool)
}

/// The VMs of builds, oldest first.
pub fn list_build_vms(c: &Connection) -> Result<Vec<VmRecord>> {
    list_vms_of(c, VmRole::Build)
}

fn list_vms_of(c: &Connection, role: VmRole) -> Result<Vec<VmRecord>> {
    let mut stmt = c.prepare(&format!(
        "SELECT {VM_COLUMNS} FROM vms WHERE role = ?1 ORDER BY created, rowid"
    ))?;
    let rows = stmt.query_map([role.to_string()], vm_row)?;
    rows.map(|r| finish_vm(r?)).collect()
}

pub fn delete_vm(c: &Connection, id: &str) -> Result<()> {
    c.execute("DELETE FROM vms WHERE id = ?1", [id])?;
    Ok(())
}

// ---- pods ------------------------------------------------------------------------------------

fn pod_row(r: &Row) -> rusqlite::Result<(String, String, String, Option<String>, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn finish_pod(
    (id, spec, state, vm_id, created): (String, String, String, Option<String>, i64),
) -> Result<PodRecord> {
    Ok(PodRecord {
        spec: json(&format!("pod {id} spec"), &spec)?,
        state: parse(&format!("pod {id}"), state)?,
        id,
        vm_id,
        created,
    })
}

pub fn insert_pod(c: &Connection, pod: &PodRecord) -> Result<()> {
    c.execute(
        "INSERT INTO pods (id, spec, state, vm_id, created) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            pod.id,
            to_json(&pod.spec),
            pod.state.to_string(),
            pod.vm_id,
            pod.created
        ],
    )?;
    Ok(())
}

pub fn update_pod(c: &Connection, pod: &PodRecord) -> Result<()> {
    c.execute(
        "UPDATE pods SET state = ?2, vm_id = ?3 WHERE id = ?1",
        params![pod.id, pod.state.to_string(), pod.vm_id],
    )?;
    Ok(())
}

/// Writes a pod's spec (labels changed, a container added).
pub fn update_pod_spec(c: &Connection, pod: &PodRecord) -> Result<()> {
    c.execute(
        "UPDATE pods SET spec = ?2 WHERE id = ?1",
        params![pod.id, to_json(&pod.spec)],
    )?;
    Ok(())
}

pub fn get_pod(c: &Connection, id: &str) -> Result<Option<PodRecord>> {
    c.query_row(
        "SELECT id, spec, state, vm_id, created FROM pods WHERE id = ?1",
        [id],
        pod_row,
    )
    .optional()?
    .map(finish_pod)
    .transpose()
}

pub fn pod_of_vm(c: &Connection, vm_id: &str) -> Result<Option<PodRecord>> {
    c.query_row(
        "SELECT id, spec, state, vm_id, created FROM pods WHERE vm_id = ?1",
        [vm_id],
        pod_row,
    )
    .optional()?
    .map(finish_pod)
    .transpose()
}

pub fn list_pods(c: &Connection) -> Result<Vec<PodRecord>> {
    let mut stmt =
        c.prepare("SELECT id, spec, state, vm_id, created FROM pods ORDER BY created, rowid")?;
    let rows = stmt.query_map([], pod_row)?;
    rows.map(|r| finish_pod(r?)).collect()
}

pub fn delete_pod(c: &Connection, id: &str) -> Result<()> {
    c.execute(
        "DELETE FROM execs WHERE container_id IN (SELECT id FROM containers WHERE pod_id = ?1)",
        [id],
    )?;
    c.execute("DELETE FROM containers WHERE pod_id = ?1", [id])?;
    c.execute("DELETE FROM pods WHERE id = ?1", [id])?;
    Ok(())
}

// ---- containers ------------------------------------------------------------------------------

const CONTAINER_COLUMNS: &str = "id, pod_id, idx, name, image, image_id, process, state, exit_code, dir, restart_count, stopped_by_user";

type ContainerRow = (ContainerRecord, String, String);

fn container_row(r: &Row) -> rusqlite::Result<ContainerRow> {
    Ok((
        ContainerRecord {
            id: r.get(0)?,
            pod_id: r.get(1)?,
            idx: r.get(2)?,
            name: r.get(3)?,
            image: r.get(4)?,
            image_id: r.get(5)?,
            process: ProcessSpec::default(),
            state: ContainerState::Pending,
            exit_code: r.get(8)?,
            dir: r.get(9)?,
            restart_count: r.get(10)?,
            stopped_by_user: r.get(11)?,
        },
        r.get(6)?,
        r.get(7)?,
    ))
}

fn finish_container((mut c, process, state): ContainerRow) -> Result<ContainerRecord> {
    c.process = json(&format!("container {} process", c.id), &process)?;
    c.state = parse(&format!("container {}", c.id), state)?;
    Ok(c)
}

pub fn insert_container(c: &Connection, ct: &ContainerRecord) -> Result<()> {
    c.execute(
        &format!(
            "INSERT INTO containers ({CONTAINER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        ),
        params![
            ct.id,
            ct.pod_id,
            ct.idx,
            ct.name,
            ct.image,
            ct.image_id,
            to_json(&ct.process),
            ct.state.to_string(),
            ct.exit_code,
            ct.dir,
            ct.restart_count,
            ct.stopped_by_user
        ],
    )?;
    Ok(())
}

pub fn update_container(c: &Connection, ct: &ContainerRecord) -> Result<()> {
    c.execute(
        "UPDATE containers SET state = ?2, exit_code = ?3 WHERE id = ?1",
        params![ct.id, ct.state.to_string(), ct.exit_code],
    )?;
    Ok(())
}

/// Sets how often a container was restarted by its restart policy.
pub fn set_restart_count(c: &Connection, id: &str, count: u32) -> Result<()> {
    c.execute(
        "UPDATE containers SET restart_count = ?2 WHERE id = ?1",
        params![id, count],
    )?;
    Ok(())
}

/// Marks a container as stopped or killed through the API (`true`), or started through it.
pub fn set_stopped_by_user(c: &Connection, id: &str, stopped: bool) -> Result<()> {
    c.execute(
        "UPDATE containers SET stopped_by_user = ?2 WHERE id = ?1",
        params![id, stopped],
    )?;
    Ok(())
}

pub fn rename_container(c: &Connection, id: &str, name: &str) -> Result<()> {
    c.execute(
        "UPDATE containers SET name = ?2 WHERE id = ?1",
        params![id, name],
    )?;
    Ok(())
}

/// Deletes a container and its execs.
pub fn delete_container(c: &Connection, id: &str) -> Result<()> {
    c.execute("DELETE FROM execs WHERE container_id = ?1", [id])?;
    c.execute("DELETE FROM containers WHERE id = ?1", [id])?;
    Ok(())
}

/// The largest `idx` of a pod's containers (-1 for none).
pub fn max_container_idx(c: &Connection, pod_id: &str) -> Result<i64> {
    Ok(c.query_row(
        "SELECT COALESCE(MAX(idx), -1) FROM containers WHERE pod_id = ?1",
        [pod_id],
        |r| r.get(0),
    )?)
}

/// The execs of a container that have not recorded an exit.
pub fn unfinished_execs(c: &Connection, container_id: &str) -> Result<Vec<String>> {
    let mut stmt =
        c.prepare("SELECT id FROM execs WHERE container_id = ?1 AND exit_code IS NULL")?;
    let ids = stmt
        .query_map([container_id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(ids)
}

fn query_containers(c: &Connection, filter: &str, arg: &str) -> Result<Vec<ContainerRecord>> {
    let mut stmt = c.prepare(&format!(
        "SELECT {CONTAINER_COLUMNS} FROM containers {filter} ORDER BY pod_id, idx"
    ))?;
    let rows = if filter.is_empty() {
        stmt.query_map([], container_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?
    } else {
        stmt.query_map([arg], container_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?
    };
    rows.into_iter().map(finish_container).collect()
}

pub fn containers_of_pod(c: &Connection, pod_id: &str) -> Result<Vec<ContainerRecord>> {
    query_containers(c, "WHERE pod_id = ?1", pod_id)
}

pub fn list_containers(c: &Connection) -> Result<Vec<ContainerRecord>> {
    query_containers(c, "", "")
}

pub fn get_container(c: &Connection, id: &str) -> Result<Option<ContainerRecord>> {
    Ok(query_containers(c, "WHERE id = ?1", id)?.pop())
}

pub fn container_by_name(c: &Connection, name: &str) -> Result<Option<ContainerRecord>> {
    Ok(query_containers(c, "WHERE name = ?1", name)?.pop())
}

pub fn containers_by_id_prefix(c: &Connection, prefix: &str) -> Result<Vec<ContainerRecord>> {
    query_containers(c, "WHERE id LIKE ?1 || '%'", prefix)
}

// ---- execs -----------------------------------------------------------------------------------

pub fn insert_exec(c: &Connection, e: &ExecRecord) -> Result<()> {
    c.execute(
        "INSERT INTO execs (id, container_id, command, exit_code, tty) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            e.id,
            e.container_id,
            to_json(&e.command),
            e.exit_code,
            e.tty
        ],
    )?;
    Ok(())
}

pub fn set_exec_exit(c: &Connection, id: &str, code: i32) -> Result<()> {
    c.execute(
        "UPDATE execs SET exit_code = ?2 WHERE id = ?1",
        params![id, code],
    )?;
    Ok(())
}

pub fn get_exec(c: &Connection, id: &str) -> Result<Option<ExecRecord>> {
    c.query_row(
        "SELECT id, container_id, command, exit_code, tty FROM execs WHERE id = ?1",
        [id],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<i32>>(3)?,
                r.get::<_, bool>(4)?,
            ))
        },
    )
    .optional()?
    .map(|(id, container_id, command, exit_code, tty)| {
        Ok(ExecRecord {
            command: json(&format!("exec {id}"), &command)?,
            id,
            container_id,
            exit_code,
            tty,
        })
    })
    .transpose()
}

// ---- build cache ---------------------------------------------------------------------------

/// One cached build step: what it made (a layer, or nothing for a config-only step) and when
/// (the history entry's date, so a rebuild from cache gives the same image id).
#[derive(Debug, Clone, PartialEq)]
pub struct BuildCacheEntry {
    pub key: String,
    pub layer: Option<LayerRecord>,
    pub created: i64,
}

pub fn put_build_cache(c: &Connection, e: &BuildCacheEntry) -> Result<()> {
    c.execute(
        "INSERT OR REPLACE INTO build_cache (key, layer, created) VALUES (?1, ?2, ?3)",
        params![e.key, e.layer.as_ref().map(to_json), e.created],
    )?;
    Ok(())
}

pub fn get_build_cache(c: &Connection, key: &str) -> Result<Option<BuildCacheEntry>> {
    c.query_row(
        "SELECT key, layer, created FROM build_cache WHERE key = ?1",
        [key],
        build_cache_row,
    )
    .optional()?
    .transpose()
}

/// Every cached layer (the image garbage collector keeps them).
pub fn build_cache_layers(c: &Connection) -> Result<Vec<LayerRecord>> {
    let mut stmt =
        c.prepare("SELECT key, layer, created FROM build_cache WHERE layer IS NOT NULL")?;
    let rows = stmt.query_map([], build_cache_row)?;
    let mut out = Vec::new();
    for row in rows {
        if let Some(layer) = row??.layer {
            out.push(layer);
        }
    }
    Ok(out)
}

fn build_cache_row(r: &Row) -> rusqlite::Result<Result<BuildCacheEntry>> {
    let key: String = r.get(0)?;
    let layer: Option<String> = r.get(1)?;
    let created: i64 = r.get(2)?;
    let layer = match layer {
        None => None,
        Some(json) => match serde_json::from_str(&json) {
            Ok(l) => Some(l),
            Err(e) => {
                return Ok(Err(Error::Corrupt {
                    what: format!("build cache {key}"),
                    message: e.to_string(),
                }));
            }
        },
    };
    Ok(Ok(BuildCacheEntry {
        key,
        layer,
        created,
    }))
}
