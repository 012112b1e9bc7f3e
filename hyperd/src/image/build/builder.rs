//! The executor of a build: the parsed stages run step by step into an image.
//!
//! Each stage starts from `scratch`, an earlier stage or an image (local, or pulled when it is
//! missing or `pull` is set), whose `ONBUILD` triggers run first. Every instruction is a step
//! keyed for the cache by the previous step's key, its text and its inputs (the build args in
//! use; for `COPY`/`ADD` the sources' content digest and the expanded flags): a hit reuses the
//! step's layer and date, so an unchanged rebuild makes the same image id and boots no VM.
//! `RUN` runs in the build VM ([`super::run`]) on an overlay of the image's layers and its upper
//! dir becomes the layer; `COPY`/`ADD` ([`super::copy`]) and a `WORKDIR` that does not exist
//! yet write a fresh layer dir on the host; the other instructions change only the config.
//! Intermediate containers are never kept, so Docker's `rm` and `forcerm` are always satisfied.
//!
//! Nothing is recorded as an image before the last step succeeds; the cache entries of the
//! steps that did succeed stay (as Docker's do). The work dir (context, upper dirs) goes with
//! the build, and the VM is destroyed at the end however the build ends.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use hyper_proto::rest::{ErrorDetail, JsonMessage};
use hyper_proto::types::Process;
use tokio::io::AsyncWriteExt as _;

use super::context::{BuildContext, ContextError, Source};
use super::copy::{self, CopyMeta};
use super::dockerfile::{
    self, ArgDecl, Command, CopyArgs, Dockerfile, Healthcheck, Instruction, ParseError, ShellOrExec,
};
use super::run::{self, BuildVm, RunStep};
use super::words::{self, WordError};
use crate::error::Kind;
use crate::ids;
use crate::image::config::{self, ImageConfigFile, RootFs};
use crate::image::registry::Credentials;
use crate::image::{self as image, Digest, Images, LayerRecord, Progress, Reference};
use crate::store::{self, BuildCacheEntry, ImageRecord};
use crate::vm::Vms;

/// Docker's predefined build args: usable without an `ARG`, passed to `RUN`, never part of the
/// cache key or the history.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("Dockerfile line {line}: {source}")]
    Word {
        line: usize,
        #[source]
        source: WordError,
    },
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error("Dockerfile line {line}: {source}")]
    Copy {
        line: usize,
        #[source]
        source: copy::Error,
    },
    #[error(transparent)]
    Image(#[from] image::Error),
    #[error(transparent)]
    Run(#[from] run::Error),
    /// Docker's own words, which clients match on.
    #[error("The command '{command}' returned a non-zero code: {code}")]
    RunFailed { command: String, code: i32 },
    #[error("Dockerfile line {line}: {message}")]
    Step { line: usize, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("build: {context}: {source}")]
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
            Error::Image(e) => e.kind(),
            Error::Run(run::Error::Vm(e)) => e.kind(),
            Error::Io { .. } | Error::Store(_) => Kind::Internal,
            Error::Copy {
                source: copy::Error::Io { .. },
                ..
            } => Kind::Internal,
            _ => Kind::InvalidInput,
        }
    }

    /// The stream's last message: Docker's `{"error", "errorDetail": {"message", "code"}}`.
    pub fn to_message(&self) -> JsonMessage {
        let mut m = JsonMessage::error(self.to_string());
        if let Error::RunFailed { code, .. } = self {
            m.error_detail = Some(ErrorDetail {
                message: self.to_string(),
                code: Some(*code),
            });
        }
        m
    }

    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// What `POST /image/build` asks for, parsed and checked by the API.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The Dockerfile's path in the context (`Dockerfile` when empty).
    pub dockerfile: String,
    /// `t` (and hyperd 1.1's `name`): every name the image gets.
    pub tags: Vec<Reference>,
    /// `q`: only the image id is printed.
    pub quiet: bool,
    /// `nocache`: no step is taken from the cache (results are still cached).
    pub no_cache: bool,
    /// `pull`: base images are pulled even when present.
    pub pull: bool,
    /// `buildargs`: a value of `None` (JSON null) leaves the `ARG`'s default.
    pub build_args: BTreeMap<String, Option<String>>,
    /// `labels`: added to the image's labels last.
    pub labels: BTreeMap<String, String>,
    /// `X-Registry-Config`: credentials per registry host (`docker.io`, `host:port`).
    pub registry_auth: HashMap<String, Credentials>,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Built {
    pub image: ImageRecord,
    /// Steps taken from the cache, and steps run.
    pub cached: usize,
    pub executed: usize,
    /// VMs booted (0 when no `RUN` missed the cache).
    pub vms_booted: usize,
}

pub struct Builder {
    images: Arc<Images>,
    vms: Arc<Vms>,
}

/// The image a stage has built so far.
#[derive(Debug, Clone)]
struct State {
    config: ImageConfigFile,
    layers: Vec<LayerRecord>,
    /// Cache key of the last step (the base's identity before the first).
    key: String,
    /// When the last step was made (unix seconds), from the cache on a hit.
    created: i64,
}

/// One stage's variables and flags while it runs.
#[derive(Default)]
struct StageVars {
    /// `ARG`s declared in the stage, with their values (None: declared, no value).
    args: BTreeMap<String, Option<String>>,
    /// `CMD` was set in this stage (so a later `ENTRYPOINT` does not clear it).
    cmd_set: bool,
}

/// A build in progress: its work dir, context, VM, counters and finished stages.
struct Build<'a> {
    builder: &'a Builder,
    opts: &'a BuildOptions,
    progress: &'a Progress,
    work: PathBuf,
    context: BuildContext,
    escape: char,
    vm: BuildVm,
    global_args: BTreeMap<String, Option<String>>,
    used_args: BTreeSet<String>,
    stages: Vec<(Option<String>, State)>,
    /// Every stage's `AS` name, in order (the finished ones and those still to come).
    stage_names: Vec<Option<String>>,
    step_no: usize,
    steps_total: usize,
    cached: usize,
    executed: usize,
    scratch_seq: usize,
}

impl Builder {
    pub fn new(images: Arc<Images>, vms: Arc<Vms>) -> Self {
        Self { images, vms }
    }

    /// Runs a build of the context tar `body` (plain, gzip, bzip2 or xz), sending Docker's
    /// build messages to `progress`, and records and tags the image. The caller sends the
    /// error message (see [`Error::to_message`]) when this fails.
    pub async fn build<S, E>(
        &self,
        body: S,
        opts: &BuildOptions,
        progress: &Progress,
    ) -> Result<Built>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let work = tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(self.images.work_dir())
            .map_err(|e| Error::io("create the build dir", e))?;
        let tar = work.path().join("context.tar");
        receive(body, &tar).await?;
        let ctx_dir = work.path().join("ctx");
        std::fs::create_dir(&ctx_dir).map_err(|e| Error::io("create the context dir", e))?;
        let context = {
            let (tar, dir) = (tar.clone(), ctx_dir.clone());
            tokio::task::spawn_blocking(move || {
                let f = std::fs::File::open(&tar)?;
                Ok::<_, std::io::Error>(BuildContext::extract(std::io::BufReader::new(f), &dir))
            })
            .await
            .map_err(|e| Error::io("extract the context", std::io::Error::other(e)))?
            .map_err(|e| Error::io("open the context file", e))??
        };
        let _ = std::fs::remove_file(&tar);
        let name = if opts.dockerfile.is_empty() {
            "Dockerfile"
        } else {
            &opts.dockerfile
        };
        let text = context.dockerfile(name)?;
        let dockerfile = dockerfile::parse(&text)?;
        let mut build = Build {
            builder: self,
            opts,
            progress,
            work: work.path().to_path_buf(),
            context,
            escape: dockerfile.escape,
            vm: BuildVm::new(self.vms.clone()),
            global_args: BTreeMap::new(),
            used_args: BTreeSet::new(),
            stages: Vec::new(),
            stage_names: dockerfile.stages.iter().map(|s| s.name.clone()).collect(),
            step_no: 0,
            steps_total: dockerfile
                .stages
                .iter()
                .map(|s| 1 + s.instructions.len())
                .sum(),
            cached: 0,
            executed: 0,
            scratch_seq: 0,
        };
        let result = build.run(&dockerfile).await;
        build.vm.destroy().await;
        let image = result?;
        let built = Built {
            image,
            cached: build.cached,
            executed: build.executed,
            vms_booted: build.vm.boots(),
        };
        drop(work);
        Ok(built)
    }
}

/// Writes the request body to `path`.
async fn receive<S, E>(mut body: S, path: &Path) -> Result<()>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut f = tokio::fs::File::create(path)
        .await
        .map_err(|e| Error::io("create the context file", e))?;
    let mut len = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Error::Invalid(format!("read the build context: {e}")))?;
        len += chunk.len();
        f.write_all(&chunk)
            .await
            .map_err(|e| Error::io("write the context file", e))?;
    }
    f.flush()
        .await
        .map_err(|e| Error::io("write the context file", e))?;
    if len == 0 {
        return Err(Error::Invalid(
            "the build context is empty: send a tar archive of the context".into(),
        ));
    }
    Ok(())
}

impl Build<'_> {
    fn images(&self) -> &Images {
        &self.builder.images
    }

    /// A line of build output (none with `q`).
    fn say(&self, text: impl Into<String>) {
        if !self.opts.quiet {
            self.progress.line(text);
        }
    }

    fn check_client(&self) -> Result<()> {
        if self.progress.is_closed() {
            return Err(run::Error::Cancelled.into());
        }
        Ok(())
    }

    async fn run(&mut self, df: &Dockerfile) -> Result<ImageRecord> {
        for w in &df.warnings {
            self.say(format!("[Warning] {w}"));
        }
        // Global ARGs: for FROM lines; a stage's `ARG name` without a default takes their value.
        for decl in &df.global_args {
            let value = self.arg_value(decl, &self.global_args.clone(), df.stages[0].line)?;
            self.global_args.insert(decl.name.clone(), value);
        }
        for (i, stage) in df.stages.iter().enumerate() {
            self.step_no += 1;
            self.check_client()?;
            self.say(format!(
                "Step {}/{} : {}",
                self.step_no, self.steps_total, stage.original
            ));
            let lookup = |n: &str| self.global_args.get(n).cloned().flatten();
            let base = words::expand_word(&stage.base, &lookup, self.escape).map_err(|source| {
                Error::Word {
                    line: stage.line,
                    source,
                }
            })?;
            if let Some(raw) = &stage.platform {
                let platform = words::expand_word(raw, &lookup, self.escape).map_err(|source| {
                    Error::Word {
                        line: stage.line,
                        source,
                    }
                })?;
                // VMs here are linux/amd64: another platform cannot be built, so say so.
                if !matches!(platform.as_str(), "linux/amd64" | "linux/x86_64" | "linux") {
                    return Err(Error::Step {
                        line: stage.line,
                        message: format!(
                            "FROM --platform={platform}: only linux/amd64 can be built here"
                        ),
                    });
                }
            }
            let mut state = self.base(&base, i, stage.line).await?;
            self.say(format!(" ---> {}", short(&state.key)));
            let mut vars = StageVars::default();
            let triggers = std::mem::take(&mut state.config.config.on_build);
            if !triggers.is_empty() {
                self.say(format!(
                    "# Executing {} build trigger{}",
                    triggers.len(),
                    if triggers.len() == 1 { "" } else { "s" }
                ));
                for t in &triggers {
                    let ins = dockerfile::parse_instruction(t, stage.line, self.escape)?;
                    self.step(&mut state, &mut vars, &ins).await?;
                }
            }
            for ins in &stage.instructions {
                self.step_no += 1;
                self.check_client()?;
                self.say(format!(
                    "Step {}/{} : {}",
                    self.step_no, self.steps_total, ins.original
                ));
                self.step(&mut state, &mut vars, ins).await?;
            }
            self.stages.push((stage.name.clone(), state));
        }
        let unused: Vec<&String> = self
            .opts
            .build_args
            .keys()
            .filter(|k| !self.used_args.contains(*k) && !PROXY_ARGS.contains(&k.as_str()))
            .collect();
        if !unused.is_empty() {
            self.say(format!(
                "[Warning] One or more build-args {unused:?} were not consumed"
            ));
        }
        let (_, last) = self
            .stages
            .last()
            .cloned()
            .expect("a Dockerfile has a stage");
        self.commit(last).await
    }

    /// The state a stage starts from: `scratch`, an earlier stage (by name) or an image.
    async fn base(&mut self, name: &str, index: usize, line: usize) -> Result<State> {
        if name.eq_ignore_ascii_case("scratch") {
            self.scratch_seq += 1;
            let config = ImageConfigFile {
                architecture: "amd64".into(),
                os: "linux".into(),
                rootfs: RootFs {
                    kind: "layers".into(),
                    diff_ids: vec![],
                },
                ..Default::default()
            };
            return Ok(State {
                config,
                layers: vec![],
                key: Digest::of(b"scratch").hex().to_string(),
                created: 0,
            });
        }
        let lower = name.to_ascii_lowercase();
        if let Some((_, st)) = self.stages[..index]
            .iter()
            .find(|(n, _)| n.as_deref() == Some(lower.as_str()))
        {
            return Ok(st.clone());
        }
        self.refuse_unfinished_stage(&lower, line, "FROM")?;
        let image = self.image(name, line).await?;
        self.state_of_image(&image)
    }

    /// A `FROM` or `COPY --from` naming the stage being built or a later one is an error
    /// (Docker's words for the first), never an image to pull. `name` is lowercased.
    fn refuse_unfinished_stage(&self, name: &str, line: usize, what: &str) -> Result<()> {
        let current = self.stages.len();
        let Some(at) = self.stage_names[current..]
            .iter()
            .position(|n| n.as_deref() == Some(name))
        else {
            return Ok(());
        };
        let message = if at == 0 {
            format!("circular dependency detected on stage: {name}")
        } else {
            format!("{what} {name}: a later stage cannot be used, only an earlier one")
        };
        Err(Error::Step { line, message })
    }

    fn state_of_image(&self, image: &ImageRecord) -> Result<State> {
        if image.manifest.is_empty() {
            return Err(Error::Invalid(format!(
                "image {} was imported before images had layers: import it again to build on it",
                &image.id[..12]
            )));
        }
        let config = self.images().config_of(image)?;
        Ok(State {
            config,
            layers: image.layers.clone(),
            key: image.id.clone(),
            created: 0,
        })
    }

    /// A base image: local unless `pull`, pulled (with `X-Registry-Config`'s credentials)
    /// when missing.
    async fn image(&self, name: &str, line: usize) -> Result<ImageRecord> {
        if !self.opts.pull {
            match self.images().resolve(name) {
                Ok(img) => return Ok(img),
                Err(image::Error::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let reference = Reference::parse(name).map_err(|e| Error::Step {
            line,
            message: format!("base image {name:?}: {e}"),
        })?;
        let creds = self
            .opts
            .registry_auth
            .get(reference.registry())
            .cloned()
            .unwrap_or(Credentials::Anonymous);
        let progress = if self.opts.quiet {
            Progress::discard()
        } else {
            self.progress.clone()
        };
        Ok(self.images().pull(&reference, &creds, &progress).await?)
    }

    /// The value of an `ARG`: the build arg given, else its default (expanded against the
    /// args so far), else the global arg of that name.
    fn arg_value(
        &mut self,
        decl: &ArgDecl,
        known: &BTreeMap<String, Option<String>>,
        line: usize,
    ) -> Result<Option<String>> {
        if let Some(Some(v)) = self.opts.build_args.get(&decl.name) {
            self.used_args.insert(decl.name.clone());
            return Ok(Some(v.clone()));
        }
        if self.opts.build_args.contains_key(&decl.name) {
            self.used_args.insert(decl.name.clone());
        }
        match &decl.default {
            Some(raw) => {
                let lookup = |n: &str| known.get(n).cloned().flatten();
                let v = words::expand_word(raw, &lookup, self.escape)
                    .map_err(|source| Error::Word { line, source })?;
                Ok(Some(v))
            }
            None => Ok(self.global_args.get(&decl.name).cloned().flatten()),
        }
    }

    /// Variables for word expansion: the image's `ENV` first, then the stage's `ARG`s.
    fn lookup<'s>(state: &'s State, vars: &'s StageVars) -> impl Fn(&str) -> Option<String> + 's {
        move |name: &str| {
            env_lookup(&state.config.config.env, name)
                .or_else(|| vars.args.get(name).cloned().flatten())
        }
    }

    fn expand(&self, raw: &str, state: &State, vars: &StageVars, line: usize) -> Result<String> {
        words::expand_word(raw, &Self::lookup(state, vars), self.escape)
            .map_err(|source| Error::Word { line, source })
    }

    fn expand_all(
        &self,
        raw: &[String],
        state: &State,
        vars: &StageVars,
        line: usize,
    ) -> Result<Vec<String>> {
        raw.iter()
            .map(|r| self.expand(r, state, vars, line))
            .collect()
    }

    /// The stage's args with values, as `KEY=VALUE` (sorted): the part of a step's cache key
    /// and a `RUN`'s environment the build args make.
    fn args_in_use(vars: &StageVars) -> Vec<String> {
        vars.args
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect()
    }

    fn lowers(&self, state: &State) -> Vec<PathBuf> {
        state
            .layers
            .iter()
            .rev()
            .map(|l| self.images().snapshot_path(&l.chain_id))
            .collect()
    }

    fn step_dir(&self) -> Result<PathBuf> {
        let dir = self
            .work
            .join(format!("step-{}", self.executed + self.cached + 1));
        let dir = if dir.exists() {
            self.work
                .join(format!("step-{}-{}", self.step_no, ids::exec_id()))
        } else {
            dir
        };
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create a step dir", e))?;
        Ok(dir)
    }

    /// Runs one instruction: from the cache when its key is there (and its layers still are),
    /// else for real; the result is cached either way.
    async fn step(
        &mut self,
        state: &mut State,
        vars: &mut StageVars,
        ins: &Instruction,
    ) -> Result<()> {
        // Inputs beyond the text: the build args in use, and for COPY/ADD the sources.
        let mut inputs = Self::args_in_use(vars).join("\n");
        let mut sources = None;
        if let Command::Copy(c) | Command::Add(c) = &ins.command {
            let prepared = self.prepare_copy(c, state, vars, ins).await?;
            inputs.push('\n');
            inputs.push_str(&prepared.key);
            sources = Some(prepared);
        }
        let key = Digest::of(format!("{}\n{}\n{}", state.key, ins.original, inputs).as_bytes())
            .hex()
            .to_string();
        let hit = if self.opts.no_cache {
            None
        } else {
            self.images()
                .store
                .read(|c| store::get_build_cache(c, &key))?
                .filter(|e| {
                    e.layer
                        .as_ref()
                        .is_none_or(|l| self.images().snapshot_path(&l.chain_id).is_dir())
                })
                .filter(|_| self.lowers(state).iter().all(|p| p.is_dir()))
        };
        let (layer, created) = match hit {
            Some(entry) => {
                self.say(" ---> Using cache");
                self.cached += 1;
                // Config changes are recomputed (they are cheap and deterministic).
                self.apply_config(state, vars, ins)?;
                (entry.layer, entry.created)
            }
            None => {
                self.executed += 1;
                let layer = self.execute(state, vars, ins, sources).await?;
                let created = ids::now();
                let entry = BuildCacheEntry {
                    key: key.clone(),
                    layer: layer.clone(),
                    created,
                };
                self.images()
                    .store
                    .write(|tx| store::put_build_cache(tx, &entry))?;
                (layer, created)
            }
        };
        let empty = layer.is_none();
        if let Some(l) = layer {
            state.config.rootfs.diff_ids.push(l.diff_id.clone());
            state.layers.push(l);
        }
        state
            .config
            .history
            .push(history(created, &self.created_by(state, ins), empty));
        state.key = key;
        state.created = created;
        self.say(format!(" ---> {}", short(&state.key)));
        Ok(())
    }

    /// `created_by` of a history entry, in Docker's words.
    fn created_by(&self, state: &State, ins: &Instruction) -> String {
        match &ins.command {
            Command::Run(ShellOrExec::Shell(cmd)) => {
                let mut v = shell_of(state);
                v.push(cmd.clone());
                v.join(" ")
            }
            Command::Run(ShellOrExec::Exec(args)) => args.join(" "),
            _ => format!("/bin/sh -c #(nop) {}", ins.original),
        }
    }

    /// Does a step for real. Returns its layer (None for a config-only step).
    async fn execute(
        &mut self,
        state: &mut State,
        vars: &mut StageVars,
        ins: &Instruction,
        sources: Option<PreparedCopy>,
    ) -> Result<Option<LayerRecord>> {
        match &ins.command {
            Command::Run(run) => self.run_step(state, vars, run).await.map(Some),
            Command::Copy(_) | Command::Add(_) => {
                let prepared = sources.expect("COPY and ADD are prepared before");
                let dir = self.step_dir()?.join("layer");
                std::fs::create_dir(&dir).map_err(|e| Error::io("create a layer dir", e))?;
                let lowers = self.lowers(state);
                let line = ins.line;
                let d = dir.clone();
                tokio::task::spawn_blocking(move || prepared.write(&d, &lowers))
                    .await
                    .map_err(|e| Error::io("copy", std::io::Error::other(e)))?
                    .map_err(|source| Error::Copy { line, source })?;
                self.layer_from(dir, state).await.map(Some)
            }
            Command::Workdir(_) => {
                self.apply_config(state, vars, ins)?;
                let (rel, _) = copy::resolve_dest(&state.config.config.working_dir, "/").map_err(
                    |source| Error::Copy {
                        line: ins.line,
                        source,
                    },
                )?;
                let lowers = self.lowers(state);
                let rel = copy::resolve_in_image(&lowers, &rel, false);
                if rel.as_os_str().is_empty() || copy::is_dir(&lowers, &rel) {
                    return Ok(None);
                }
                let dir = self.step_dir()?.join("layer");
                std::fs::create_dir(&dir).map_err(|e| Error::io("create a layer dir", e))?;
                copy::make_dirs(&dir, &lowers, &rel, None).map_err(|source| Error::Copy {
                    line: ins.line,
                    source,
                })?;
                self.layer_from(dir, state).await.map(Some)
            }
            _ => {
                self.apply_config(state, vars, ins)?;
                Ok(None)
            }
        }
    }

    async fn layer_from(&self, dir: PathBuf, state: &State) -> Result<LayerRecord> {
        let parent = state.layers.last().map(|l| l.chain_id.clone());
        // From here until the cache entry is written nothing else roots the layer.
        let _gc = self.images().gc_guard().await;
        let (layer, _) = self.images().layer_from_dir(dir, parent).await?;
        Ok(layer)
    }

    async fn run_step(
        &mut self,
        state: &State,
        vars: &StageVars,
        run: &ShellOrExec,
    ) -> Result<LayerRecord> {
        let args = match run {
            ShellOrExec::Shell(cmd) => {
                let mut v = shell_of(state);
                v.push(cmd.clone());
                v
            }
            ShellOrExec::Exec(v) => v.clone(),
        };
        if args.is_empty() {
            return Err(Error::Invalid("RUN: an empty command".into()));
        }
        let mut env = state.config.config.env.clone();
        let names: BTreeSet<String> = env
            .iter()
            .filter_map(|e| e.split_once('=').map(|(k, _)| k.to_string()))
            .collect();
        for kv in Self::args_in_use(vars) {
            let (k, _) = kv.split_once('=').unwrap_or((&kv, ""));
            if !names.contains(k) {
                env.push(kv.clone());
            }
        }
        for p in PROXY_ARGS {
            if let Some(Some(v)) = self.opts.build_args.get(*p)
                && !vars.args.contains_key(*p)
                && !names.contains(*p)
            {
                env.push(format!("{p}={v}"));
            }
        }
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push(crate::container::DEFAULT_PATH.into());
        }
        let dir = self.step_dir()?;
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        for d in [&upper, &work] {
            std::fs::create_dir(d).map_err(|e| Error::io("create an upper dir", e))?;
        }
        let mut layers: Vec<String> = self
            .lowers(state)
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if layers.is_empty() {
            // overlayfs needs a lower dir: an empty one for a RUN on scratch.
            let empty = dir.join("empty");
            std::fs::create_dir(&empty).map_err(|e| Error::io("create a lower dir", e))?;
            layers.push(empty.to_string_lossy().into_owned());
        }
        let c = &state.config.config;
        let step = RunStep {
            id: format!("build-{}", ids::exec_id()),
            process: Process {
                args: args.clone(),
                env,
                cwd: if c.working_dir.is_empty() {
                    "/".into()
                } else {
                    c.working_dir.clone()
                },
                user: c.user.clone(),
                terminal: false,
                stdin: false,
                additional_groups: Vec::new(),
            },
            layers,
            upper: upper.clone(),
            work,
        };
        self.say(format!(
            " ---> Running in {}",
            &step.id[6..18.min(step.id.len())]
        ));
        let code = self.vm.run(&step, self.progress, !self.opts.quiet).await?;
        if code != 0 {
            return Err(Error::RunFailed {
                command: args.join(" "),
                code,
            });
        }
        // Mount points the runtime had to create are not the command's doing.
        let lowers = self.lowers(state);
        for name in ["proc", "sys", "dev"] {
            let p = upper.join(name);
            if !copy::is_dir(&lowers, Path::new(name))
                && std::fs::read_dir(&p).is_ok_and(|mut d| d.next().is_none())
            {
                let _ = std::fs::remove_dir(&p);
            }
        }
        self.layer_from(upper, state).await
    }

    /// Applies a config-only instruction (and `WORKDIR`'s config part) to the state.
    fn apply_config(
        &mut self,
        state: &mut State,
        vars: &mut StageVars,
        ins: &Instruction,
    ) -> Result<()> {
        match &ins.command {
            Command::Arg(decls) => {
                for d in decls {
                    let known = vars.args.clone();
                    let v = self.arg_value(d, &known, ins.line)?;
                    vars.args.insert(d.name.clone(), v);
                }
                Ok(())
            }
            Command::Run(_) | Command::Copy(_) | Command::Add(_) => Ok(()),
            command => {
                if matches!(command, Command::Cmd(_)) {
                    vars.cmd_set = true;
                }
                let inherited_cmd = !vars.cmd_set;
                // Every word of one instruction sees the variables as they were before it.
                let env = state.config.config.env.clone();
                let args = vars.args.clone();
                let lookup = move |name: &str| {
                    env_lookup(&env, name).or_else(|| args.get(name).cloned().flatten())
                };
                apply_instruction(&mut state.config, ins, &lookup, self.escape)?;
                if matches!(command, Command::Entrypoint(_)) && inherited_cmd {
                    // Docker: an ENTRYPOINT drops a CMD inherited from the base.
                    state.config.config.cmd.clear();
                }
                Ok(())
            }
        }
    }

    /// Resolves a `COPY`/`ADD`'s sources and flags before the cache lookup: the key part is
    /// the content digest and the expanded flags.
    async fn prepare_copy(
        &mut self,
        c: &CopyArgs,
        state: &State,
        vars: &StageVars,
        ins: &Instruction,
    ) -> Result<PreparedCopy> {
        let line = ins.line;
        let is_add = matches!(ins.command, Command::Add(_));
        let sources = self.expand_all(&c.sources, state, vars, line)?;
        let dest = self.expand(&c.dest, state, vars, line)?;
        let cerr = |source| Error::Copy { line, source };
        let (dest_rel, dir_syntax) =
            copy::resolve_dest(&dest, &state.config.config.working_dir).map_err(cerr)?;
        let lowers = self.lowers(state);
        // A link to a dir is followed; a link to anything else is replaced (as Docker does).
        let followed = copy::resolve_in_image(&lowers, &dest_rel, false);
        let dest_rel = if dir_syntax || copy::is_dir(&lowers, &followed) {
            followed
        } else {
            copy::resolve_in_image(&lowers, &dest_rel, true)
        };
        let owner = match &c.chown {
            Some(spec) => {
                let spec = self.expand(spec, state, vars, line)?;
                Some(copy::resolve_chown(&spec, &lowers).map_err(cerr)?)
            }
            None => None,
        };
        let mode = match &c.chmod {
            Some(m) => Some(copy::parse_chmod(&self.expand(m, state, vars, line)?).map_err(cerr)?),
            None => None,
        };
        let dest_is_dir = dir_syntax || sources.len() > 1 || copy::is_dir(&lowers, &dest_rel);
        let flags = format!("{dest_rel:?} {dest_is_dir} {owner:?} {mode:?}");
        if let Some(from) = &c.from {
            let from = self.expand(from, state, vars, line)?;
            let (from_lowers, from_key) = self.copy_source_fs(&from, line).await?;
            let mut paths = Vec::new();
            for s in &sources {
                if s.contains(['*', '?', '[']) {
                    return Err(Error::Step {
                        line,
                        message: format!(
                            "COPY --from={from} {s}: wildcards are not supported with --from"
                        ),
                    });
                }
                let (rel, _) = copy::resolve_dest(s, "/").map_err(cerr)?;
                if copy::lookup(&from_lowers, &rel).is_none() {
                    return Err(Error::Step {
                        line,
                        message: format!(
                            "COPY --from={from}: /{}: no such file or directory",
                            rel.display()
                        ),
                    });
                }
                paths.push(rel);
            }
            return Ok(PreparedCopy {
                key: format!("from {from_key} {paths:?} {flags}"),
                what: CopyFrom::Stage {
                    lowers: from_lowers,
                    paths,
                },
                dest: dest_rel,
                dest_is_dir,
                meta: CopyMeta {
                    owner,
                    mode,
                    keep_owner: true,
                },
                add: false,
            });
        }
        if is_add
            && let Some(url) = sources.iter().find(|s| {
                s.starts_with("http://") || s.starts_with("https://") || s.starts_with("git@")
            })
        {
            return Err(Error::Step {
                line,
                message: format!(
                    "ADD {url}: remote sources are not supported yet: builds have no network access"
                ),
            });
        }
        let found = {
            let patterns = sources.clone();
            // The context is only read here; sources() walks it.
            self.context.sources(&patterns)?
        };
        let digest = self.context.digest(&found)?;
        Ok(PreparedCopy {
            key: format!("context {digest} {flags} add={is_add}"),
            dest_is_dir: dest_is_dir || found.len() > 1,
            what: CopyFrom::Context(found),
            dest: dest_rel,
            meta: CopyMeta {
                owner,
                mode,
                keep_owner: false,
            },
            add: is_add,
        })
    }

    /// `COPY --from=`: an earlier stage by name or index, or an image. Returns its lower dirs
    /// and its identity for the cache key.
    async fn copy_source_fs(&self, from: &str, line: usize) -> Result<(Vec<PathBuf>, String)> {
        let lower = from.to_ascii_lowercase();
        let st = self
            .stages
            .iter()
            .find(|(n, _)| n.as_deref() == Some(lower.as_str()))
            .map(|(_, s)| s)
            .or_else(|| {
                from.parse::<usize>()
                    .ok()
                    .and_then(|i| self.stages.get(i).map(|(_, s)| s))
            });
        if let Some(st) = st {
            return Ok((self.lowers(st), st.key.clone()));
        }
        self.refuse_unfinished_stage(&lower, line, "COPY --from")?;
        if from.parse::<usize>().is_ok() {
            return Err(Error::Step {
                line,
                message: format!(
                    "COPY --from={from}: no such stage (stages count from 0, earlier ones only)"
                ),
            });
        }
        let image = self.image(from, line).await?;
        let st = self.state_of_image(&image)?;
        Ok((self.lowers(&st), st.key))
    }

    /// Records the final state as an image and tags it; prints Docker's closing lines.
    async fn commit(&mut self, mut state: State) -> Result<ImageRecord> {
        for (k, v) in &self.opts.labels {
            state.config.config.labels.insert(k.clone(), v.clone());
        }
        let created = if state.created > 0 {
            state.created
        } else {
            ids::now()
        };
        state.config.created = config::rfc3339(created);
        let bytes = serde_json::to_vec(&state.config).expect("a config serialises");
        let size: u64 = state
            .layers
            .iter()
            .map(|l| self.images().snapshots.size(&l.chain_id))
            .sum();
        let image = {
            let _gc = self.images().gc_guard().await;
            self.images()
                .record_image(&bytes, None, state.layers.clone(), size, created)?
        };
        self.images().store.write(|tx| {
            for t in &self.opts.tags {
                store::tag_image(
                    tx,
                    &store::ImageTag {
                        repo: t.repo.clone(),
                        tag: t.tag.clone(),
                        image_id: image.id.clone(),
                    },
                )?;
            }
            Ok(())
        })?;
        let id = format!("sha256:{}", image.id);
        self.progress.send(JsonMessage {
            aux: Some(serde_json::json!({ "ID": id })),
            ..Default::default()
        });
        if self.opts.quiet {
            self.progress.line(id);
        } else {
            self.say(format!("Successfully built {}", &image.id[..12]));
            for t in &self.opts.tags {
                self.say(format!("Successfully tagged {t}"));
            }
        }
        tracing::info!(image_id = %image.id, cached = self.cached, executed = self.executed, "image built");
        Ok(image)
    }
}

/// The value of `name` in an image's `KEY=VALUE` environment (the last one wins).
pub(crate) fn env_lookup(env: &[String], name: &str) -> Option<String> {
    env.iter().rev().find_map(|e| {
        e.split_once('=')
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    })
}

/// Applies an instruction that changes only the image config (`ENV`, `LABEL`, `EXPOSE`,
/// `VOLUME`, `STOPSIGNAL`, `USER`, `WORKDIR`, `SHELL`, `CMD`, `ENTRYPOINT`, `HEALTHCHECK`,
/// `ONBUILD`, `MAINTAINER`) to `config`, expanding words with `lookup` as Docker does. Used by
/// builds and by `commit`'s `changes`. Errors: [`Error::Word`], [`Error::Step`] (with the
/// instruction's line) for an instruction that is not a config change.
pub(crate) fn apply_instruction(
    config: &mut ImageConfigFile,
    ins: &Instruction,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<()> {
    let line = ins.line;
    let expand = |raw: &str| -> Result<String> {
        words::expand_word(raw, lookup, escape).map_err(|source| Error::Word { line, source })
    };
    let shell = if config.config.shell.is_empty() {
        DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()
    } else {
        config.config.shell.clone()
    };
    let command = |c: &ShellOrExec| match c {
        ShellOrExec::Shell(s) => {
            let mut v = shell.clone();
            v.push(s.clone());
            v
        }
        ShellOrExec::Exec(v) => v.clone(),
    };
    let c = &mut config.config;
    match &ins.command {
        Command::Env(pairs) => {
            for (k, v) in pairs {
                let (k, v) = (expand(k)?, expand(v)?);
                set_env(&mut c.env, &k, &v);
            }
        }
        Command::Label(pairs) => {
            for (k, v) in pairs {
                c.labels.insert(expand(k)?, expand(v)?);
            }
        }
        Command::Expose(ports) => {
            // All checked before any is recorded, so a refused line changes nothing.
            let mut keys = Vec::new();
            for p in ports {
                for p in expand(p)?.split_whitespace() {
                    keys.extend(exposed_ports(p).map_err(|message| Error::Step {
                        line,
                        message: format!("EXPOSE: {message}"),
                    })?);
                }
            }
            for k in keys {
                c.exposed_ports.insert(k, serde_json::json!({}));
            }
        }
        Command::Volume(paths) => {
            for p in paths {
                let p = expand(p)?;
                if p.is_empty() {
                    return Err(Error::Step {
                        line,
                        message: "VOLUME: an empty path".into(),
                    });
                }
                c.volumes.insert(p, serde_json::json!({}));
            }
        }
        Command::StopSignal(s) => c.stop_signal = expand(s)?,
        Command::User(u) => c.user = expand(u)?,
        Command::Workdir(w) => {
            let w = expand(w)?;
            let joined = if w.starts_with('/') {
                PathBuf::from(&w)
            } else {
                Path::new(if c.working_dir.is_empty() {
                    "/"
                } else {
                    &c.working_dir
                })
                .join(&w)
            };
            let (rel, _) = copy::resolve_dest(&joined.to_string_lossy(), "/")
                .map_err(|source| Error::Copy { line, source })?;
            c.working_dir = format!("/{}", rel.display());
        }
        Command::Shell(v) => c.shell = v.clone(),
        Command::Cmd(cmd) => c.cmd = command(cmd),
        Command::Entrypoint(e) => c.entrypoint = command(e),
        Command::Healthcheck(h) => c.healthcheck = Some(healthcheck_json(h)),
        Command::Onbuild(inner) => c.on_build.push(inner.original.clone()),
        Command::Maintainer(m) => config.author = m.clone(),
        Command::Run(_) | Command::Copy(_) | Command::Add(_) | Command::Arg(_) => {
            return Err(Error::Step {
                line,
                message: format!("{}: not a change of the image config", ins.original),
            });
        }
    }
    Ok(())
}

/// The `ExposedPorts` keys of one `EXPOSE` word, as Docker's `nat.ParsePortSpecs` reads it:
/// `port`, `port/proto` or `first-last[/proto]` (ports 0-65535, proto `tcp` (default), `udp`
/// or `sctp`, any case), a range giving one key per port (`80-81` → `80/tcp`, `81/tcp`).
/// Errors: Docker's message naming the word (`invalid containerPort: abc`, `invalid proto: x`).
pub(crate) fn exposed_ports(word: &str) -> std::result::Result<Vec<String>, String> {
    let (ports, proto) = match word.split_once('/') {
        Some((ports, proto)) => (ports, proto.to_ascii_lowercase()),
        None => (word, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let bad = || format!("invalid containerPort: {ports}");
    // Digits only: u16's parser would take a leading '+'.
    let port = |s: &str| {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse::<u16>().map_err(|_| bad())
    };
    let (first, last) = match ports.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(ports)?, port(ports)?),
    };
    if first > last {
        return Err(bad());
    }
    Ok((first..=last).map(|p| format!("{p}/{proto}")).collect())
}

/// Where a `COPY`/`ADD` reads from.
enum CopyFrom {
    Context(Vec<Source>),
    /// Another stage's (or image's) filesystem: its lower dirs and the paths in it.
    Stage {
        lowers: Vec<PathBuf>,
        paths: Vec<PathBuf>,
    },
}

/// A `COPY`/`ADD` with its sources found and its flags resolved.
struct PreparedCopy {
    key: String,
    what: CopyFrom,
    dest: PathBuf,
    dest_is_dir: bool,
    meta: CopyMeta,
    add: bool,
}

impl PreparedCopy {
    /// Writes the sources into the fresh layer dir `layer` over the image `lowers`.
    fn write(self, layer: &Path, lowers: &[PathBuf]) -> std::result::Result<(), copy::Error> {
        let owner = self.meta.owner;
        let into_dir = |name: &Path| -> PathBuf { layer.join(&self.dest).join(name) };
        match &self.what {
            CopyFrom::Context(sources) => {
                for s in sources {
                    if s.is_dir {
                        copy::make_dirs(layer, lowers, &self.dest, owner)?;
                        for e in std::fs::read_dir(&s.path).map_err(|e| copy::Error::Io {
                            op: "list",
                            path: s.path.clone(),
                            source: e,
                        })? {
                            let e = e.map_err(|e| copy::Error::Io {
                                op: "list",
                                path: s.path.clone(),
                                source: e,
                            })?;
                            copy::copy_tree(
                                &e.path(),
                                &into_dir(Path::new(&e.file_name())),
                                self.meta,
                            )?;
                        }
                    } else if self.add && is_tar(&s.path) {
                        copy::make_dirs(layer, lowers, &self.dest, owner)?;
                        let f = std::fs::File::open(&s.path).map_err(|e| copy::Error::Io {
                            op: "open",
                            path: s.path.clone(),
                            source: e,
                        })?;
                        let (_, r) = crate::image::compression::decompress(f).map_err(|e| {
                            copy::Error::Io {
                                op: "read",
                                path: s.path.clone(),
                                source: e,
                            }
                        })?;
                        crate::image::unpack::unpack_layer(r, &layer.join(&self.dest)).map_err(
                            |e| copy::Error::Invalid(format!("ADD {}: {e}", s.relative)),
                        )?;
                    } else {
                        let name = Path::new(&s.relative)
                            .file_name()
                            .map(PathBuf::from)
                            .unwrap_or_default();
                        let target = if self.dest_is_dir {
                            copy::make_dirs(layer, lowers, &self.dest, owner)?;
                            into_dir(&name)
                        } else {
                            if let Some(parent) = self.dest.parent() {
                                copy::make_dirs(layer, lowers, parent, None)?;
                            }
                            layer.join(&self.dest)
                        };
                        copy::copy_tree(&s.path, &target, self.meta)?;
                    }
                }
            }
            CopyFrom::Stage {
                lowers: from,
                paths,
            } => {
                for rel in paths {
                    let is_dir = copy::is_dir(from, rel);
                    let target = if is_dir {
                        copy::make_dirs(layer, lowers, &self.dest, owner)?;
                        layer.join(&self.dest)
                    } else if self.dest_is_dir {
                        copy::make_dirs(layer, lowers, &self.dest, owner)?;
                        into_dir(Path::new(rel.file_name().unwrap_or_default()))
                    } else {
                        if let Some(parent) = self.dest.parent() {
                            copy::make_dirs(layer, lowers, parent, None)?;
                        }
                        layer.join(&self.dest)
                    };
                    if is_dir {
                        // A dir's contents go into the destination, as from the context.
                        for name in merged_children(from, rel) {
                            copy::merge_tree(
                                from,
                                &rel.join(&name),
                                &target.join(&name),
                                self.meta,
                            )?;
                        }
                    } else {
                        copy::merge_tree(from, rel, &target, self.meta)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Names in the merged dir `rel` of `lowers` (whiteouts and opaque dirs honoured by
/// [`copy::lookup`]).
fn merged_children(lowers: &[PathBuf], rel: &Path) -> Vec<std::ffi::OsString> {
    let mut names = BTreeSet::new();
    for l in lowers {
        if let Ok(rd) = std::fs::read_dir(l.join(rel)) {
            for e in rd.flatten() {
                names.insert(e.file_name());
            }
        }
    }
    names
        .into_iter()
        .filter(|n| copy::lookup(lowers, &rel.join(n)).is_some())
        .collect()
}

/// A local file `ADD` extracts: a tar, plain or compressed (by magic bytes).
fn is_tar(path: &Path) -> bool {
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let Ok((_, mut r)) = crate::image::compression::decompress(f) else {
        return false;
    };
    let mut block = [0u8; 512];
    let mut got = 0;
    while got < block.len() {
        match std::io::Read::read(&mut r, &mut block[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    got == 512 && &block[257..262] == b"ustar"
}

fn shell_of(state: &State) -> Vec<String> {
    if state.config.config.shell.is_empty() {
        DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()
    } else {
        state.config.config.shell.clone()
    }
}

fn healthcheck_json(h: &Healthcheck) -> serde_json::Value {
    match h {
        Healthcheck::None => serde_json::json!({ "Test": ["NONE"] }),
        Healthcheck::Cmd {
            test,
            interval,
            timeout,
            start_period,
            retries,
        } => {
            let test: Vec<String> = match test {
                ShellOrExec::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
                ShellOrExec::Exec(v) => std::iter::once("CMD".to_string())
                    .chain(v.iter().cloned())
                    .collect(),
            };
            let ns = |d: &Option<std::time::Duration>| d.map_or(0, |d| d.as_nanos() as u64);
            serde_json::json!({
                "Test": test,
                "Interval": ns(interval),
                "Timeout": ns(timeout),
                "StartPeriod": ns(start_period),
                "Retries": retries.unwrap_or(0),
            })
        }
    }
}

pub(crate) fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match env
        .iter_mut()
        .find(|e| e.split_once('=').is_some_and(|(k, _)| k == key))
    {
        Some(e) => *e = entry,
        None => env.push(entry),
    }
}

fn history(created: i64, created_by: &str, empty_layer: bool) -> serde_json::Value {
    let mut h = serde_json::json!({
        "created": config::rfc3339(created),
        "created_by": created_by,
    });
    if empty_layer {
        h["empty_layer"] = serde_json::json!(true);
    }
    h
}

fn short(key: &str) -> &str {
    &key[..12.min(key.len())]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn context_tar(files: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(1_700_000_000);
            b.append_data(&mut h, name, data.as_bytes()).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn body(
        data: Vec<u8>,
    ) -> impl Stream<Item = std::result::Result<Bytes, std::io::Error>> + Unpin {
        futures::stream::iter(vec![Ok(Bytes::from(data))])
    }

    /// Images and a builder under `dir` whose VMs cannot boot (the shim is `/bin/false`).
    fn no_vm_builder(dir: &tempfile::TempDir) -> (Arc<Images>, Builder) {
        let (images, vms) = images_and_no_vms(dir);
        (images.clone(), Builder::new(images, vms))
    }

    /// Images and VMs under `dir`; the VMs cannot boot (the shim is `/bin/false`).
    pub(crate) fn images_and_no_vms(dir: &tempfile::TempDir) -> (Arc<Images>, Arc<Vms>) {
        let store = Arc::new(crate::store::Store::open(&dir.path().join("db")).unwrap());
        let registry = crate::image::registry::Registry::new(Default::default()).unwrap();
        let images = Arc::new(Images::new(dir.path(), store.clone(), registry).unwrap());
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let config = crate::config::Config {
            listen: vec![],
            root: dir.path().into(),
            run_dir: dir.path().join("run"),
            vmm: crate::config::VmmChoice::Auto,
            log: "off".into(),
            // A build that tried to boot would fail at once.
            shim: "/bin/false".into(),
            guest_dir: None,
            insecure_registries: vec![],
            registry_mirrors: vec![],
            certs_dir: dir.path().join("certs.d"),
            docker_hub_host: "127.0.0.1:9".into(),
            log_default: Default::default(),
            network: Default::default(),
        };
        (
            images,
            Vms::new(
                Arc::new(config),
                store.clone(),
                crate::network::Network::detached(
                    crate::network::NetworkConfig {
                        bridge: None,
                        iptables: false,
                        ..Default::default()
                    },
                    store,
                ),
                tx,
            ),
        )
    }

    /// A build without RUN needs no VM: the executor, the cache and the image record alone.
    #[tokio::test]
    async fn a_build_without_run_boots_nothing_and_a_rebuild_is_all_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (images, builder) = no_vm_builder(&dir);
        let ctx = context_tar(&[
            (
                "Dockerfile",
                "FROM scratch\nARG V=1\nCOPY a /etc/a\nENV X=$V Y=\"a b\"\nWORKDIR /w\nLABEL v=$V\nCMD [\"x\"]\n",
            ),
            ("a", "alpha"),
        ]);
        let opts = BuildOptions {
            tags: vec![Reference::parse("t:1").unwrap()],
            build_args: [("V".to_string(), Some("2".to_string()))].into(),
            ..Default::default()
        };
        let first = builder
            .build(body(ctx.clone()), &opts, &Progress::discard())
            .await
            .unwrap();
        assert_eq!((first.executed, first.cached, first.vms_booted), (6, 0, 0));
        let config = images.config_of(&first.image).unwrap();
        assert_eq!(config.config.env, ["X=2", "Y=a b"]);
        assert_eq!(config.config.working_dir, "/w");
        assert_eq!(config.config.cmd, ["x"]);
        assert_eq!(config.config.labels["v"], "2");
        // COPY made one layer, WORKDIR another (the dir did not exist).
        assert_eq!(first.image.layers.len(), 2);
        let top = images.snapshot_path(&first.image.layers[0].chain_id);
        assert_eq!(std::fs::read_to_string(top.join("etc/a")).unwrap(), "alpha");
        assert_eq!(config.history.len(), 6);

        // The same context, gzipped: every step from the cache, the same image.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &ctx).unwrap();
        let again = builder
            .build(body(gz.finish().unwrap()), &opts, &Progress::discard())
            .await
            .unwrap();
        assert_eq!((again.executed, again.cached), (0, 6));
        assert_eq!(again.image.id, first.image.id);
        // Another build arg value changes the key of every step after its ARG.
        let other = BuildOptions {
            build_args: [("V".to_string(), Some("3".to_string()))].into(),
            ..opts.clone()
        };
        let third = builder
            .build(body(ctx), &other, &Progress::discard())
            .await
            .unwrap();
        assert_eq!((third.cached, third.executed), (1, 5));
        assert_ne!(third.image.id, first.image.id);
        // Nothing of the builds is left in the work dir.
        assert_eq!(std::fs::read_dir(images.work_dir()).unwrap().count(), 0);
    }

    /// Builds the Dockerfile `text` (no other file in the context) with tag `t:1`.
    async fn build_text(builder: &Builder, text: &str) -> Result<Built> {
        let opts = BuildOptions {
            tags: vec![Reference::parse("t:1").unwrap()],
            ..Default::default()
        };
        let ctx = context_tar(&[("Dockerfile", text), ("x", "x")]);
        builder.build(body(ctx), &opts, &Progress::discard()).await
    }

    #[tokio::test]
    async fn onbuild_shell_and_healthcheck_show_in_inspect() {
        let dir = tempfile::tempdir().unwrap();
        let (images, builder) = no_vm_builder(&dir);
        build_text(
            &builder,
            "FROM scratch\nONBUILD RUN echo hi\nSHELL [\"/bin/bash\", \"-ec\"]\n\
             HEALTHCHECK --interval=5s --retries=2 CMD true\nCMD x\n",
        )
        .await
        .unwrap();
        let c = images.inspect("t:1").unwrap().config;
        assert_eq!(c.on_build, ["RUN echo hi"]);
        assert_eq!(c.shell, ["/bin/bash", "-ec"]);
        let h = c.healthcheck.expect("a healthcheck");
        assert_eq!(h["Test"], serde_json::json!(["CMD-SHELL", "true"]));
        assert_eq!(h["Interval"], 5_000_000_000u64);
        assert_eq!(h["Retries"], 2);
        // SHELL applies to the shell form of later steps.
        assert_eq!(c.cmd, ["/bin/bash", "-ec", "x"]);
        let json = serde_json::to_value(images.inspect("t:1").unwrap()).unwrap();
        assert_eq!(
            json["Config"]["OnBuild"],
            serde_json::json!(["RUN echo hi"])
        );
        assert_eq!(
            json["Config"]["Shell"],
            serde_json::json!(["/bin/bash", "-ec"])
        );
    }

    #[tokio::test]
    async fn a_stage_naming_itself_or_a_later_stage_is_an_error_not_a_pull() {
        let dir = tempfile::tempdir().unwrap();
        let (_images, builder) = no_vm_builder(&dir);
        for (text, want) in [
            (
                "FROM scratch AS a\nFROM a AS b\nCOPY --from=b /x /y\n",
                "Dockerfile line 3: circular dependency detected on stage: b",
            ),
            (
                "FROM scratch AS a\nFROM A2 AS a2\n",
                "Dockerfile line 2: circular dependency detected on stage: a2",
            ),
            (
                "FROM scratch AS a\nCOPY --from=b /x /y\nFROM a AS b\n",
                "Dockerfile line 2: COPY --from b: a later stage cannot be used, only an earlier one",
            ),
            (
                "FROM b AS a\nFROM scratch AS b\n",
                "Dockerfile line 1: FROM b: a later stage cannot be used, only an earlier one",
            ),
        ] {
            let e = build_text(&builder, text).await.unwrap_err();
            assert_eq!(e.to_string(), want, "{text}");
            assert_eq!(e.kind(), Kind::InvalidInput);
        }
        // An earlier stage by name still works.
        build_text(
            &builder,
            "FROM scratch AS a\nCOPY x /x\nFROM scratch\nCOPY --from=a /x /y\n",
        )
        .await
        .unwrap();
    }

    #[test]
    fn expose_words_are_docker_s_port_specs() {
        assert_eq!(exposed_ports("80").unwrap(), ["80/tcp"]);
        assert_eq!(exposed_ports("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(
            exposed_ports("8000-8002/sctp").unwrap(),
            ["8000/sctp", "8001/sctp", "8002/sctp"]
        );
        for (word, want) in [
            ("abc", "invalid containerPort: abc"),
            ("abc/tcp", "invalid containerPort: abc"),
            ("+80", "invalid containerPort: +80"),
            ("65536", "invalid containerPort: 65536"),
            ("90-80", "invalid containerPort: 90-80"),
            ("/tcp", "invalid containerPort: "),
            ("80/http", "invalid proto: http"),
        ] {
            assert_eq!(exposed_ports(word).unwrap_err(), want, "{word}");
        }
    }

    #[tokio::test]
    async fn a_build_with_a_bad_expose_fails_naming_the_port() {
        let dir = tempfile::tempdir().unwrap();
        let (images, builder) = no_vm_builder(&dir);
        let e = build_text(&builder, "FROM scratch\nEXPOSE 80 abc\n")
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Dockerfile line 2: EXPOSE: invalid containerPort: abc"
        );
        let ok = build_text(&builder, "FROM scratch\nEXPOSE 80 53/udp\n").await;
        let c = images.config_of(&ok.unwrap().image).unwrap();
        assert_eq!(
            c.config.exposed_ports.keys().collect::<Vec<_>>(),
            ["53/udp", "80/tcp"]
        );
    }

    #[test]
    fn env_is_replaced_by_key() {
        let mut env = vec!["A=1".to_string(), "PATH=/bin".to_string()];
        set_env(&mut env, "A", "2");
        set_env(&mut env, "B", "x y");
        assert_eq!(env, ["A=2", "PATH=/bin", "B=x y"]);
    }

    #[test]
    fn a_failing_run_reports_docker_s_message_and_code() {
        let e = Error::RunFailed {
            command: "/bin/sh -c false".into(),
            code: 1,
        };
        let m = serde_json::to_value(e.to_message()).unwrap();
        assert_eq!(
            m["error"],
            "The command '/bin/sh -c false' returned a non-zero code: 1"
        );
        assert_eq!(m["errorDetail"]["code"], 1);
    }
}
