//! Containers: their states, the process a container runs (resolved from its spec), finding
//! one by name, id, id prefix or pod, its rootfs ([`rootfs`]), its stdio and log
//! ([`stdio`]) and the commands exec'ed into it ([`exec`]).

pub mod exec;
pub mod rootfs;
pub mod stdio;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use hyper_proto::rest::UserContainer;
use hyper_proto::types::Process;

use crate::error::Kind;
use crate::image::config::RunConfig;
use crate::store::{self, ContainerRecord, Store};

/// The PATH a container gets when its spec sets none.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, never started (or its pod was stopped before it ran).
    Pending,
    Running,
    /// Exited with status 0.
    Succeeded,
    /// Exited non-zero, was killed, or its VM died.
    Failed,
}

impl ContainerState {
    pub fn exited(code: i32) -> Self {
        if code == 0 {
            ContainerState::Succeeded
        } else {
            ContainerState::Failed
        }
    }

    pub fn is_running(self) -> bool {
        self == ContainerState::Running
    }
}

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContainerState::Pending => "pending",
            ContainerState::Running => "running",
            ContainerState::Succeeded => "succeeded",
            ContainerState::Failed => "failed",
        })
    }
}

impl FromStr for ContainerState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "pending" => ContainerState::Pending,
            "running" => ContainerState::Running,
            "succeeded" => ContainerState::Succeeded,
            "failed" => ContainerState::Failed,
            other => return Err(format!("unknown container state {other:?}")),
        })
    }
}

/// What a container runs, resolved once at pod create.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    pub tty: bool,
    /// The main process reads attach stdin (a TTY one always does).
    #[serde(default)]
    pub stdin: bool,
    /// What stop sends first: the spec's `StopSignal`, else the image's, else TERM; a signal
    /// number. Records from before it was kept read 0, which means TERM.
    #[serde(default)]
    pub stop_signal: i32,
    /// The spec's `user.additionalGroups`: names (resolved in the image's /etc/group) or gids.
    #[serde(default)]
    pub additional_groups: Vec<String>,
}

impl ProcessSpec {
    /// The process of container `index` of a pod spec over its image's defaults, by Docker's
    /// rules: the spec's `entrypoint` replaces the image's ENTRYPOINT (and then drops the
    /// image's CMD); its `command` replaces CMD; `envs` are added to the image's ENV (a name
    /// given in both takes the spec's value); `workdir` and `user` replace WORKDIR and USER.
    /// With neither an entrypoint nor a command from either side there is nothing to run.
    /// The stop signal is the spec's `StopSignal`, else the image's, else TERM; a bad name in
    /// either is an [`Error::Invalid`] naming it.
    pub fn from_spec(index: usize, c: &UserContainer, image: &RunConfig) -> Result<Self, Error> {
        let entrypoint = if c.entrypoint.is_empty() {
            &image.entrypoint
        } else {
            &c.entrypoint
        };
        let cmd: &[String] = if !c.command.is_empty() {
            &c.command
        } else if !c.entrypoint.is_empty() {
            &[]
        } else {
            &image.cmd
        };
        let args: Vec<String> = entrypoint.iter().chain(cmd).cloned().collect();
        if args.is_empty() {
            return Err(Error::NoCommand {
                field: format!("containers[{index}].command"),
                image: c.image.clone(),
            });
        }
        let mut env: Vec<String> = Vec::new();
        let overridden = |entry: &str| {
            let name = entry.split_once('=').map_or(entry, |(n, _)| n);
            c.envs.iter().any(|e| e.env == name)
        };
        env.extend(image.env.iter().filter(|e| !overridden(e)).cloned());
        env.extend(c.envs.iter().map(|e| format!("{}={}", e.env, e.value)));
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, DEFAULT_PATH.to_string());
        }
        let user = match &c.user {
            Some(u) if !u.group.is_empty() => format!("{}:{}", u.name, u.group),
            Some(u) if !u.name.is_empty() => u.name.clone(),
            _ => image.user.clone(),
        };
        let cwd = [&c.workdir, &image.working_dir]
            .into_iter()
            .find(|d| !d.is_empty())
            .cloned()
            .unwrap_or_else(|| "/".into());
        let stop_signal = if !c.stop_signal.is_empty() {
            parse_signal(&format!("containers[{index}].StopSignal"), &c.stop_signal)?
        } else if !image.stop_signal.is_empty() {
            parse_signal(
                &format!("containers[{index}]: image {} StopSignal", c.image),
                &image.stop_signal,
            )?
        } else {
            libc::SIGTERM
        };
        Ok(Self {
            args,
            env,
            cwd,
            user,
            tty: c.tty,
            stdin: c.stdin || c.tty,
            stop_signal,
            additional_groups: c
                .user
                .as_ref()
                .map(|u| u.additional_groups.clone())
                .unwrap_or_default(),
        })
    }

    /// The shim's process message: on a terminal when `tty`, with stdin open when `stdin`.
    /// A process on a terminal whose env has no `TERM` gets `TERM=xterm`, as Docker does.
    pub fn to_process(&self, tty: bool, stdin: bool) -> Process {
        let mut env = self.env.clone();
        if tty
            && !env
                .iter()
                .any(|e| e.split_once('=').map_or(e.as_str(), |(n, _)| n) == "TERM")
        {
            env.push("TERM=xterm".into());
        }
        Process {
            args: self.args.clone(),
            env,
            cwd: self.cwd.clone(),
            user: self.user.clone(),
            terminal: tty,
            stdin,
            additional_groups: self.additional_groups.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("container reference {reference:?} matches more than one container: {}", candidates.join(", "))]
    Ambiguous {
        reference: String,
        candidates: Vec<String>,
    },
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("no such exec: {0}")]
    ExecNotFound(String),
    #[error("{field}: no command given and image {image} has no default command")]
    NoCommand { field: String, image: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("pod {0} is paused")]
    Paused(String),
    #[error("exec {0} does not run on a terminal")]
    NoTty(String),
    #[error(transparent)]
    Stdio(#[from] stdio::Error),
    #[error(transparent)]
    Vm(#[from] crate::vm::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl Error {
    pub fn kind(&self) -> Kind {
        match self {
            Error::NotFound(_) | Error::ExecNotFound(_) => Kind::NotFound,
            Error::NoCommand { .. } | Error::Invalid(_) => Kind::InvalidInput,
            Error::Ambiguous { .. } | Error::NotRunning(_) | Error::NoTty(_) | Error::Paused(_) => {
                Kind::Conflict
            }
            Error::Stdio(e) => e.kind(),
            Error::Vm(e) => e.kind(),
            Error::Io { .. } | Error::Store(_) => Kind::Internal,
        }
    }
}

/// Signal names Linux has (without `SIG`), by number.
const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// A signal as Docker takes it: a number (1-64) or a name, with or without `SIG`, any case
/// (`9`, `KILL`, `sigkill`). `field` names the parameter in the error.
pub fn parse_signal(field: &str, s: &str) -> Result<i32, Error> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(Error::Invalid(format!(
            "{field}: {s}: not a signal number (1-64)"
        )));
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, num)| *num)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{field}: {s:?}: not a signal (a number or a name like KILL, SIGTERM)"
            ))
        })
}

/// Finds a container by name, id, unique id prefix, or (hyperctl's shortcut) a pod id, which
/// means the pod's first container.
pub fn find(store: &Store, reference: &str) -> Result<ContainerRecord, Error> {
    let name = reference.trim_start_matches('/');
    if name.is_empty() {
        return Err(Error::Invalid("container: required".into()));
    }
    let mut found = store.read(|c| {
        if let Some(ct) = store::container_by_name(c, name)? {
            return Ok(vec![ct]);
        }
        if let Some(ct) = store::get_container(c, name)? {
            return Ok(vec![ct]);
        }
        if name.chars().all(|ch| ch.is_ascii_hexdigit()) {
            let by_prefix = store::containers_by_id_prefix(c, name)?;
            if !by_prefix.is_empty() {
                return Ok(by_prefix);
            }
        }
        Ok(store::containers_of_pod(c, name)?
            .into_iter()
            .take(1)
            .collect())
    })?;
    match found.len() {
        0 => Err(Error::NotFound(reference.into())),
        1 => Ok(found.remove(0)),
        _ => Err(Error::Ambiguous {
            reference: reference.into(),
            candidates: found
                .into_iter()
                .map(|c| format!("{} ({})", c.id, c.name))
                .collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_proto::rest::{EnvironmentVar, UserUser};

    #[test]
    fn a_process_on_a_terminal_gets_term_xterm_unless_its_env_sets_term() {
        let spec = |env: &[&str]| ProcessSpec {
            args: vec!["sh".into()],
            env: env.iter().map(|e| e.to_string()).collect(),
            ..Default::default()
        };
        let term = |p: &Process| {
            p.env
                .iter()
                .filter(|e| e.starts_with("TERM="))
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            term(&spec(&["PATH=/bin"]).to_process(true, true)),
            ["TERM=xterm"]
        );
        assert!(term(&spec(&["PATH=/bin"]).to_process(false, true)).is_empty());
        assert_eq!(
            term(&spec(&["TERM=vt100"]).to_process(true, false)),
            ["TERM=vt100"]
        );
        // TERMINFO is not TERM.
        assert_eq!(
            term(&spec(&["TERMINFO=/x"]).to_process(true, false)),
            ["TERM=xterm"]
        );
    }

    #[test]
    fn lookup_by_name_id_or_unique_prefix_and_an_ambiguous_prefix_names_the_candidates() {
        use crate::pod::PodState;
        use crate::store::PodRecord;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let ct = |id: &str, name: &str| ContainerRecord {
            id: id.into(),
            pod_id: "p".into(),
            idx: 0,
            name: name.into(),
            image: "busybox".into(),
            image_id: "i".into(),
            process: ProcessSpec::default(),
            state: ContainerState::Pending,
            exit_code: None,
            dir: "/nowhere".into(),
            restart_count: 0,
            stopped_by_user: false,
        };
        store
            .write(|tx| {
                store::insert_pod(
                    tx,
                    &PodRecord {
                        id: "p".into(),
                        spec: Default::default(),
                        state: PodState::Pending,
                        vm_id: None,
                        created: 0,
                    },
                )?;
                store::insert_container(tx, &ct("abc1f", "one"))?;
                let mut two = ct("abc2f", "two");
                two.idx = 1;
                store::insert_container(tx, &two)
            })
            .unwrap();
        assert_eq!(find(&store, "one").unwrap().id, "abc1f");
        assert_eq!(find(&store, "abc2f").unwrap().name, "two");
        assert_eq!(find(&store, "abc1").unwrap().name, "one");
        let e = find(&store, "abc").unwrap_err();
        assert_eq!(e.kind(), Kind::Conflict);
        let msg = e.to_string();
        assert!(
            msg.contains("abc1f (one)") && msg.contains("abc2f (two)"),
            "{msg}"
        );
        assert_eq!(find(&store, "abd").unwrap_err().kind(), Kind::NotFound);
    }

    #[test]
    fn signals_by_number_or_name() {
        assert_eq!(parse_signal("signal", "9").unwrap(), 9);
        assert_eq!(parse_signal("signal", "KILL").unwrap(), 9);
        assert_eq!(parse_signal("signal", "sigterm").unwrap(), 15);
        for bad in ["", "0", "65", "-1", "NOPE", "SIG", "9x"] {
            let e = parse_signal("signal", bad).unwrap_err();
            assert!(e.to_string().starts_with("signal: "), "{bad}: {e}");
            assert_eq!(e.kind(), Kind::InvalidInput);
        }
    }

    #[test]
    fn process_from_spec() {
        let c = UserContainer {
            image: "busybox".into(),
            entrypoint: vec!["sh".into(), "-c".into()],
            command: vec!["echo hi".into()],
            envs: vec![EnvironmentVar {
                env: "A".into(),
                value: "1".into(),
            }],
            user: Some(UserUser {
                name: "app".into(),
                group: "staff".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let p = ProcessSpec::from_spec(0, &c, &RunConfig::default()).unwrap();
        assert_eq!(p.args, ["sh", "-c", "echo hi"]);
        assert_eq!(p.env, [DEFAULT_PATH, "A=1"]);
        assert_eq!((p.cwd.as_str(), p.user.as_str()), ("/", "app:staff"));
        let none = UserContainer {
            image: "busybox".into(),
            ..Default::default()
        };
        let e = ProcessSpec::from_spec(2, &none, &RunConfig::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "containers[2].command: no command given and image busybox has no default command"
        );
        assert_eq!(e.kind(), Kind::InvalidInput);
    }

    #[test]
    fn the_stop_signal_is_the_spec_s_else_the_image_s_else_term() {
        let c = |sig: &str| UserContainer {
            image: "app".into(),
            command: vec!["x".into()],
            stop_signal: sig.into(),
            ..Default::default()
        };
        let image = |sig: &str| RunConfig {
            stop_signal: sig.into(),
            ..Default::default()
        };
        let signal = |spec: &str, img: &str| ProcessSpec::from_spec(0, &c(spec), &image(img));
        assert_eq!(signal("", "").unwrap().stop_signal, libc::SIGTERM);
        assert_eq!(signal("", "SIGUSR1").unwrap().stop_signal, libc::SIGUSR1);
        assert_eq!(signal("INT", "SIGUSR1").unwrap().stop_signal, libc::SIGINT);
        let e = signal("", "NOPE").unwrap_err();
        assert!(e.to_string().contains("image app StopSignal"), "{e}");
        assert_eq!(e.kind(), Kind::InvalidInput);
        // The spec's own wins even over a bad image's.
        assert_eq!(signal("9", "NOPE").unwrap().stop_signal, 9);
    }

    #[test]
    fn the_spec_overrides_the_image_as_docker_does() {
        let image = RunConfig {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["default".into()],
            env: vec!["PATH=/image/bin".into(), "A=image".into(), "B=image".into()],
            working_dir: "/srv".into(),
            user: "1000:1000".into(),
            ..Default::default()
        };
        let run = |c: UserContainer| ProcessSpec::from_spec(0, &c, &image).unwrap();
        let bare = UserContainer {
            image: "app".into(),
            ..Default::default()
        };
        let p = run(bare.clone());
        assert_eq!(p.args, ["/entry", "default"]);
        assert_eq!(p.env, ["PATH=/image/bin", "A=image", "B=image"]);
        assert_eq!((p.cwd.as_str(), p.user.as_str()), ("/srv", "1000:1000"));

        // A command replaces CMD only.
        let p = run(UserContainer {
            command: vec!["other".into()],
            ..bare.clone()
        });
        assert_eq!(p.args, ["/entry", "other"]);
        // An entrypoint replaces ENTRYPOINT and drops CMD.
        let p = run(UserContainer {
            entrypoint: vec!["sh".into()],
            ..bare.clone()
        });
        assert_eq!(p.args, ["sh"]);
        // envs override by name and add; workdir and user replace.
        let p = run(UserContainer {
            envs: vec![
                EnvironmentVar {
                    env: "A".into(),
                    value: "spec".into(),
                },
                EnvironmentVar {
                    env: "C".into(),
                    value: "spec".into(),
                },
            ],
            workdir: "/w".into(),
            user: Some(UserUser {
                name: "root".into(),
                ..Default::default()
            }),
            ..bare
        });
        assert_eq!(p.env, ["PATH=/image/bin", "B=image", "A=spec", "C=spec"]);
        assert_eq!((p.cwd.as_str(), p.user.as_str()), ("/w", "root"));
    }
}
