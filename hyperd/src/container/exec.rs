//! Commands exec'ed into running containers (`/exec/create`, `/exec/start`, `/exitcode`,
//! `/tty/resize`) and into the VM itself (`/execvm`). An exec is recorded at create; start
//! runs it in the guest and the caller relays its stdio ([`super::stdio`]); the exit code is
//! recorded when it ends, 137 when its VM died under it.

use std::sync::Arc;

use tokio::sync::watch;

use hyper_proto::shim::ContainerRef;
use hyper_proto::types::{ExecRequest, Process, ProcessRef};

use super::{Error, ProcessSpec, find};
use crate::ids;
use crate::store::{self, ContainerRecord, ExecRecord, Store};
use crate::vm::{Shim, Vms};

/// The exit code of a process whose VM died under it (SIGKILL's, as Docker reports an OOM or
/// a killed container).
pub const VM_DIED_EXIT: i32 = 128 + libc::SIGKILL;

pub struct Execs {
    store: Arc<Store>,
    vms: Arc<Vms>,
    /// Bumped whenever an exit (container or exec) is recorded.
    pub changes: watch::Sender<u64>,
}

/// A started exec: the shim it runs on and the process to attach to.
pub struct ExecSession {
    pub shim: Shim,
    pub process: ProcessRef,
    pub tty: bool,
}

impl Execs {
    pub fn new(store: Arc<Store>, vms: Arc<Vms>, changes: watch::Sender<u64>) -> Self {
        Self {
            store,
            vms,
            changes,
        }
    }

    fn running(&self, reference: &str) -> Result<(ContainerRecord, Shim), Error> {
        let ct = find(&self.store, reference)?;
        if !ct.state.is_running() {
            return Err(Error::NotRunning(ct.name));
        }
        let pod = self
            .store
            .read(|c| store::get_pod(c, &ct.pod_id))?
            .ok_or_else(|| Error::NotFound(reference.into()))?;
        if pod.state == crate::pod::PodState::Paused {
            return Err(Error::Paused(pod.id));
        }
        let vm_id = pod
            .vm_id
            .ok_or_else(|| Error::NotRunning(ct.name.clone()))?;
        Ok((ct, self.vms.shim(&vm_id)?))
    }

    /// Records an exec of `command` (on a terminal when `tty`) in a running container.
    pub fn create(
        &self,
        container: &str,
        command: Vec<String>,
        tty: bool,
    ) -> Result<String, Error> {
        if command.is_empty() {
            return Err(Error::Invalid(
                "command: required, a JSON array like [\"ls\",\"-l\"]".into(),
            ));
        }
        let (ct, _) = self.running(container)?;
        let exec = ExecRecord {
            id: ids::exec_id(),
            container_id: ct.id,
            command,
            exit_code: None,
            tty,
        };
        self.store.write(|tx| store::insert_exec(tx, &exec))?;
        Ok(exec.id)
    }

    /// Starts the exec in the guest with stdin open; the caller attaches to `process`.
    pub async fn start(&self, container: &str, exec_id: &str) -> Result<ExecSession, Error> {
        let exec = self.get(exec_id)?;
        let (ct, shim) = self.running(container)?;
        if exec.container_id != ct.id {
            return Err(Error::ExecNotFound(format!(
                "{exec_id} in container {container}"
            )));
        }
        if exec.exit_code.is_some() {
            return Err(Error::Invalid(format!("exec {exec_id} has already run")));
        }
        let process = ProcessSpec {
            args: exec.command.clone(),
            ..ct.process.clone()
        }
        .to_process(exec.tty, true);
        shim.exec(ExecRequest {
            container_id: ct.id.clone(),
            exec_id: exec.id.clone(),
            process: Some(process),
        })
        .await?;
        Ok(ExecSession {
            process: ProcessRef {
                container_id: ct.id,
                exec_id: exec.id,
            },
            shim,
            tty: exec.tty,
        })
    }

    /// `/execvm`: runs `command` in the VM of a running pod, outside every container, as
    /// root in `/`, with stdin open and its output raw (hyperd 1.1's execvm has no framing).
    pub async fn start_in_vm(
        &self,
        shim: Shim,
        command: Vec<String>,
    ) -> Result<ExecSession, Error> {
        if command.is_empty() {
            return Err(Error::Invalid(
                "command: required, a JSON array like [\"ls\",\"-l\"]".into(),
            ));
        }
        let exec_id = ids::exec_id();
        shim.exec(ExecRequest {
            container_id: String::new(),
            exec_id: exec_id.clone(),
            process: Some(Process {
                args: command,
                env: vec![super::DEFAULT_PATH.to_string()],
                cwd: "/".into(),
                user: String::new(),
                terminal: false,
                stdin: true,
                additional_groups: Vec::new(),
            }),
        })
        .await?;
        Ok(ExecSession {
            process: ProcessRef {
                container_id: String::new(),
                exec_id,
            },
            shim,
            tty: true,
        })
    }

    /// `/tty/resize`: a new window size for a container's main process (no `exec_id`) or an
    /// exec, which must run on a terminal.
    pub async fn resize(
        &self,
        container: &str,
        exec_id: Option<&str>,
        rows: u32,
        cols: u32,
    ) -> Result<(), Error> {
        let (ct, shim) = self.running(container)?;
        let (exec_id, tty) = match exec_id {
            Some(id) => {
                let exec = self.get(id)?;
                if exec.container_id != ct.id {
                    return Err(Error::ExecNotFound(format!(
                        "{id} in container {container}"
                    )));
                }
                if exec.exit_code.is_some() {
                    return Err(Error::Invalid(format!("exec {id} has ended")));
                }
                (exec.id, exec.tty)
            }
            None => (String::new(), ct.process.tty),
        };
        if !tty {
            return Err(Error::NoTty(if exec_id.is_empty() {
                format!("(container {}: its main process)", ct.name)
            } else {
                exec_id
            }));
        }
        shim.resize(
            ProcessRef {
                container_id: ct.id,
                exec_id,
            },
            rows,
            cols,
        )
        .await?;
        Ok(())
    }

    /// Waits for the exec's exit and records it: a wait that fails because the VM or its
    /// shim is gone records [`VM_DIED_EXIT`].
    pub async fn finish(&self, session: &ExecSession) -> Result<i32, Error> {
        let code = match session.shim.wait(session.process.clone()).await {
            Ok(code) => code,
            // The guest no longer answers for it: the VM (or its shim) died under it.
            Err(e)
                if matches!(
                    e.kind(),
                    crate::error::Kind::Unavailable | crate::error::Kind::Internal
                ) =>
            {
                tracing::warn!(exec_id = %session.process.exec_id, "vm gone under the exec: {e}");
                VM_DIED_EXIT
            }
            Err(e) => return Err(e.into()),
        };
        if !session.process.container_id.is_empty() {
            self.record(&session.process.exec_id, code)?;
        }
        Ok(code)
    }

    /// Records an exit code for an exec that could not run to its end.
    pub fn record(&self, exec_id: &str, code: i32) -> Result<(), Error> {
        self.store
            .write(|tx| store::set_exec_exit(tx, exec_id, code))?;
        self.changes.send_modify(|n| *n += 1);
        Ok(())
    }

    fn get(&self, exec_id: &str) -> Result<ExecRecord, Error> {
        self.store
            .read(|c| store::get_exec(c, exec_id))?
            .ok_or_else(|| Error::ExecNotFound(exec_id.into()))
    }

    /// `/exitcode`: a container's exit code once it is no longer running (0 if it never ran),
    /// or an exec's once it ended, however long that takes (the caller hanging up ends the
    /// wait). An exec that never started in a container that is no longer running is
    /// [`Error::NotRunning`].
    pub async fn exit_code(&self, container: &str, exec_id: Option<&str>) -> Result<i32, Error> {
        let ct = find(&self.store, container)?;
        let mut changes = self.changes.subscribe();
        loop {
            changes.borrow_and_update();
            match exec_id {
                Some(id) => {
                    let exec = self.get(id)?;
                    if exec.container_id != ct.id {
                        return Err(Error::ExecNotFound(format!(
                            "{id} in container {container}"
                        )));
                    }
                    if let Some(code) = exec.exit_code {
                        return Ok(code);
                    }
                    // An exit is recorded for every exec that ran, also when its container
                    // or VM ended under it; one that never started has nothing to wait for.
                    let ct = self
                        .store
                        .read(|c| store::get_container(c, &ct.id))?
                        .ok_or_else(|| Error::NotFound(container.into()))?;
                    if !ct.state.is_running() {
                        return Err(Error::NotRunning(ct.name));
                    }
                    if changes.changed().await.is_err() {
                        return Err(Error::NotRunning(ct.name));
                    }
                }
                None => {
                    let ct = self
                        .store
                        .read(|c| store::get_container(c, &ct.id))?
                        .ok_or_else(|| Error::NotFound(container.into()))?;
                    if !ct.state.is_running() {
                        return Ok(ct.exit_code.unwrap_or(0));
                    }
                    if changes.changed().await.is_err() {
                        return Err(Error::NotRunning(ct.name));
                    }
                }
            }
        }
    }
}

/// Removes a container from its VM; a container the guest no longer knows is fine.
pub async fn remove_from_vm(shim: &Shim, container_id: &str) -> Result<(), Error> {
    match shim
        .client
        .clone()
        .remove_container(ContainerRef {
            id: container_id.into(),
        })
        .await
    {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
        Err(s) => Err(shim.error(s).into()),
    }
}
