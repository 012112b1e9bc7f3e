//! The Dockerfile grammar, read as Docker's own parser reads it
//! (<https://docs.docker.com/reference/dockerfile/>, moby/buildkit `frontend/dockerfile/parser`):
//! parser directives at the top (`# escape=`, `# syntax=` and `# check=` ignored with a
//! warning), a UTF-8 byte-order mark, comments, line continuations with the escape character
//! (comment and blank lines inside a continuation dropped), case-insensitive instruction names,
//! `--flag=value` options, shell and exec (JSON) forms, and both `ENV`/`LABEL` forms.
//!
//! Arguments stay raw: quotes and `$vars` are kept for the executor to expand with
//! [`super::words`] where Docker does. Everything Docker's classic builder does not do
//! (heredocs, BuildKit-only flags such as `RUN --mount`) is a [`ParseError`] naming it.

use std::time::Duration;

use crate::error::Kind;

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// `'\\'` or `` '`' `` from the `# escape=` directive.
    pub escape: char,
    /// `ARG`s before the first `FROM` (usable in `FROM` lines, and in a stage after a bare
    /// `ARG name` redeclares them).
    pub global_args: Vec<ArgDecl>,
    /// At least one.
    pub stages: Vec<Stage>,
    /// Things accepted but ignored, e.g. `"# syntax= directive ignored (line 1)"`.
    pub warnings: Vec<String>,
}

/// One `FROM` and the instructions up to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The raw image word, not yet expanded (`scratch` allowed).
    pub base: String,
    /// `AS name`, lowercased as Docker does; matches `[a-z][a-z0-9-_.]*`.
    pub name: Option<String>,
    /// `--platform=`, raw.
    pub platform: Option<String>,
    /// 1-based line of the `FROM`.
    pub line: usize,
    /// The `FROM` line as written (continuations joined).
    pub original: String,
    pub instructions: Vec<Instruction>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based first line of the instruction.
    pub line: usize,
    /// As written, continuations joined with the escape character removed and comment lines
    /// dropped: what "Step n/m : …" prints and what the build cache key hashes.
    pub original: String,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run(ShellOrExec),
    Cmd(ShellOrExec),
    Entrypoint(ShellOrExec),
    Copy(CopyArgs),
    Add(CopyArgs),
    /// Raw key and value words (quotes and `$vars` kept), from `ENV k v` or `ENV k=v k2="a b"`.
    Env(Vec<(String, String)>),
    Arg(Vec<ArgDecl>),
    /// Raw.
    Workdir(String),
    /// Raw.
    User(String),
    /// Raw words (`80/tcp`, `$PORT`).
    Expose(Vec<String>),
    /// Raw key and value words, as for `ENV`.
    Label(Vec<(String, String)>),
    /// Raw paths, from a JSON array or whitespace-separated words.
    Volume(Vec<String>),
    /// Raw.
    StopSignal(String),
    /// The JSON form only, at least one element (Docker requires it).
    Shell(Vec<String>),
    Healthcheck(Healthcheck),
    /// The trigger, stored in the image and run when the image is used in a `FROM`. Its
    /// `original` is the text after `ONBUILD`. Never `ONBUILD`, `FROM` or `MAINTAINER`.
    Onbuild(Box<Instruction>),
    Maintainer(String),
}

/// `RUN`, `CMD`, `ENTRYPOINT` and `HEALTHCHECK CMD` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellOrExec {
    /// Run with the stage's `SHELL` (default `/bin/sh -c`), not expanded by the builder.
    Shell(String),
    /// The rest of the line was a valid JSON array of strings.
    Exec(Vec<String>),
}

/// `COPY` and `ADD` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyArgs {
    /// Raw words (or the JSON form's strings), at least one.
    pub sources: Vec<String>,
    /// Raw.
    pub dest: String,
    /// `--from=`: a stage name, a stage index or an image reference (`COPY` only).
    pub from: Option<String>,
    /// `--chown=user[:group]`, raw.
    pub chown: Option<String>,
    /// `--chmod=`, octal digits (checked: at most `7777`).
    pub chmod: Option<String>,
}

/// `ARG name[=default]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    /// Raw.
    pub default: Option<String>,
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [--interval=…] CMD …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    None,
    /// Durations are Go durations (`30s`, `1m30s`) of at least 1ms; `0` (Docker's "inherit")
    /// and an absent flag are both `None`.
    Cmd {
        test: ShellOrExec,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        retries: Option<u32>,
    },
}

/// Why a Dockerfile was refused; every variant but `Empty` and `NoStage` names its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the Dockerfile is empty")]
    Empty,
    #[error("the Dockerfile has no FROM instruction")]
    NoStage,
    #[error("Dockerfile line {line}: unknown instruction: {name}")]
    UnknownInstruction { line: usize, name: String },
    #[error("Dockerfile line {line}: {instruction}: unknown flag: --{flag}")]
    UnknownFlag {
        line: usize,
        instruction: String,
        flag: String,
    },
    #[error(
        "Dockerfile line {line}: {instruction} --{flag} is a BuildKit feature and is not supported"
    )]
    BuildKitOnly {
        line: usize,
        instruction: String,
        flag: String,
    },
    #[error("Dockerfile line {line}: heredocs ({marker}) are not supported")]
    Heredoc { line: usize, marker: String },
    #[error("Dockerfile line {line}: {message}")]
    Invalid { line: usize, message: String },
}

impl ParseError {
    /// The 1-based line the error is about, if it is about one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ParseError::Empty | ParseError::NoStage => None,
            ParseError::UnknownInstruction { line, .. }
            | ParseError::UnknownFlag { line, .. }
            | ParseError::BuildKitOnly { line, .. }
            | ParseError::Heredoc { line, .. }
            | ParseError::Invalid { line, .. } => Some(*line),
        }
    }

    /// Always the client's fault.
    pub fn kind(&self) -> Kind {
        Kind::InvalidInput
    }
}

fn invalid(line: usize, message: impl Into<String>) -> ParseError {
    ParseError::Invalid {
        line,
        message: message.into(),
    }
}

/// Parses a Dockerfile. Errors: [`ParseError`], naming the line.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Go's line scanner: split on '\n', drop a '\r' before it.
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let (escape, warnings) = directives(&lines)?;
    let logical = logical_lines(&lines, escape);
    if logical.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut dockerfile = Dockerfile {
        escape,
        global_args: Vec::new(),
        stages: Vec::new(),
        warnings,
    };
    for (line, text) in logical {
        let raw = split_instruction(&text, line, escape)?;
        if raw.name.eq_ignore_ascii_case("FROM") {
            dockerfile.stages.push(from(&raw, &text)?);
            continue;
        }
        let instruction = instruction(&raw, &text, escape)?;
        match dockerfile.stages.last_mut() {
            Some(stage) => stage.instructions.push(instruction),
            None => match instruction.command {
                Command::Arg(args) => dockerfile.global_args.extend(args),
                _ => {
                    return Err(invalid(
                        line,
                        format!(
                            "{} before the first FROM: only ARG may come before it",
                            raw.name.to_uppercase()
                        ),
                    ));
                }
            },
        }
    }
    if dockerfile.stages.is_empty() {
        return Err(ParseError::NoStage);
    }
    Ok(dockerfile)
}

/// Parses one instruction line on its own, as `docker commit --change` and `ONBUILD` triggers
/// use them (`FROM` is refused). `line` is used in errors.
pub fn parse_instruction(text: &str, line: usize, escape: char) -> Result<Instruction, ParseError> {
    let text = text.trim();
    let raw = split_instruction(text, line, escape)?;
    if raw.name.eq_ignore_ascii_case("FROM") {
        return Err(invalid(line, "FROM is not allowed here"));
    }
    instruction(&raw, text, escape)
}

/// The parser directives at the top: the escape character and the warnings for ignored ones.
/// They end at the first line that is not one (a blank line, any other comment, an instruction).
fn directives(lines: &[&str]) -> Result<(char, Vec<String>), ParseError> {
    let mut escape = '\\';
    let mut warnings = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let line = i + 1;
        let Some((name, value)) = directive(l.trim_start()) else {
            break;
        };
        let name = name.to_ascii_lowercase();
        if !matches!(name.as_str(), "escape" | "syntax" | "check") {
            break;
        }
        if seen.contains(&name) {
            return Err(invalid(
                line,
                format!("only one {name} parser directive can be used"),
            ));
        }
        seen.push(name.clone());
        match (name.as_str(), value) {
            ("escape", "\\") => escape = '\\',
            ("escape", "`") => escape = '`',
            ("escape", other) => {
                return Err(invalid(
                    line,
                    format!("invalid escape token {other:?}: it must be ` or \\"),
                ));
            }
            _ => warnings.push(format!("# {name}= directive ignored (line {line})")),
        }
    }
    Ok((escape, warnings))
}

/// `# name = value` (Docker's `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`).
fn directive(l: &str) -> Option<(&str, &str)> {
    let rest = l.strip_prefix('#')?.trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let name = &rest[..end];
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let value = rest[end..].trim_start().strip_prefix('=')?.trim();
    (!value.is_empty()).then_some((name, value))
}

/// Joins continuation lines and drops comments and blank lines: (first line, joined text).
fn logical_lines(lines: &[&str], escape: char) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let first = lines[i].trim_start();
        i += 1;
        let start = i;
        if first.starts_with('#') {
            continue;
        }
        let (text, mut ended) = continuation(first, escape);
        if ended && text.is_empty() {
            continue;
        }
        let mut joined = text.to_string();
        while !ended && i < lines.len() {
            let l = lines[i];
            i += 1;
            let trimmed = l.trim_start();
            // Comment lines and empty lines inside a continuation are dropped, as Docker does.
            if trimmed.starts_with('#') || trimmed.is_empty() {
                continue;
            }
            let (text, e) = continuation(l, escape);
            joined.push_str(text);
            ended = e;
        }
        out.push((start, joined));
    }
    out
}

/// A line ending in the escape character (then only blanks) continues: the line without them
/// and `false`; otherwise the line and `true`.
fn continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    match body.strip_suffix(escape) {
        Some(rest) => (rest, false),
        None => (line, true),
    }
}

/// An instruction split into its name, its `--flags` and the rest.
struct RawInstruction<'a> {
    line: usize,
    name: &'a str,
    flags: Vec<(String, Option<String>)>,
    args: &'a str,
}

fn split_instruction(
    text: &str,
    line: usize,
    escape: char,
) -> Result<RawInstruction<'_>, ParseError> {
    let text = text.trim();
    let (name, rest) = match text.find(char::is_whitespace) {
        Some(i) => (&text[..i], text[i..].trim_start()),
        None => (text, ""),
    };
    let (flags, args) = builder_flags(rest, escape);
    Ok(RawInstruction {
        line,
        name,
        flags,
        args: args.trim(),
    })
}

/// Leading `--name[=value]` words (quotes removed from values), then the rest of the line. A
/// bare `--` ends the flags.
fn builder_flags(mut rest: &str, escape: char) -> (Vec<(String, Option<String>)>, &str) {
    let mut flags = Vec::new();
    loop {
        rest = rest.trim_start();
        if !rest.starts_with("--") {
            return (flags, rest);
        }
        let mut word = String::new();
        let mut quote = None;
        let mut end = rest.len();
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match quote {
                None if c.is_whitespace() => {
                    end = i;
                    break;
                }
                None if c == '"' || c == '\'' => quote = Some(c),
                Some(q) if c == q => quote = None,
                _ if c == escape && quote != Some('\'') => {
                    if let Some((_, next)) = chars.next() {
                        word.push(next);
                    }
                }
                _ => word.push(c),
            }
        }
        rest = &rest[end..];
        if word == "--" {
            return (flags, rest.trim_start());
        }
        let body = &word[2..];
        match body.split_once('=') {
            Some((n, v)) => flags.push((n.to_string(), Some(v.to_string()))),
            None => flags.push((body.to_string(), None)),
        }
    }
}

/// The flags an instruction takes, read once each.
struct Flags<'a> {
    raw: &'a RawInstruction<'a>,
    instruction: String,
}

impl<'a> Flags<'a> {
    /// Checks every flag given is in `known` (BuildKit-only ones in `buildkit` get their own
    /// error), once at most, and with a value.
    fn new(
        raw: &'a RawInstruction<'a>,
        known: &[&str],
        buildkit: &[&str],
    ) -> Result<Self, ParseError> {
        let instruction = raw.name.to_ascii_uppercase();
        for (i, (name, value)) in raw.flags.iter().enumerate() {
            if buildkit.contains(&name.as_str()) {
                return Err(ParseError::BuildKitOnly {
                    line: raw.line,
                    instruction,
                    flag: name.clone(),
                });
            }
            if !known.contains(&name.as_str()) {
                return Err(ParseError::UnknownFlag {
                    line: raw.line,
                    instruction,
                    flag: name.clone(),
                });
            }
            if raw.flags[..i].iter().any(|(n, _)| n == name) {
                return Err(invalid(
                    raw.line,
                    format!("{instruction}: duplicate flag --{name}"),
                ));
            }
            if value.as_deref().is_none_or(str::is_empty) {
                return Err(invalid(
                    raw.line,
                    format!("{instruction}: missing a value on flag --{name}"),
                ));
            }
        }
        Ok(Flags { raw, instruction })
    }

    fn get(&self, name: &str) -> Option<String> {
        self.raw
            .flags
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.clone())
    }
}

fn from(raw: &RawInstruction<'_>, original: &str) -> Result<Stage, ParseError> {
    let flags = Flags::new(raw, &["platform"], &[])?;
    let words: Vec<&str> = raw.args.split_whitespace().collect();
    let (base, name) = match words.as_slice() {
        [base] => (base, None),
        [base, r#as, name] if r#as.eq_ignore_ascii_case("as") => (base, Some(*name)),
        _ => {
            return Err(invalid(
                raw.line,
                "FROM requires either one or three arguments (FROM image [AS name])",
            ));
        }
    };
    let name = name.map(str::to_ascii_lowercase);
    if let Some(name) = &name {
        let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
        if !valid {
            return Err(invalid(
                raw.line,
                format!(
                    "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
                ),
            ));
        }
    }
    Ok(Stage {
        base: base.to_string(),
        name,
        platform: flags.get("platform"),
        line: raw.line,
        original: original.trim().to_string(),
        instructions: Vec::new(),
    })
}

fn instruction(
    raw: &RawInstruction<'_>,
    original: &str,
    escape: char,
) -> Result<Instruction, ParseError> {
    let line = raw.line;
    let upper = raw.name.to_ascii_uppercase();
    let args = raw.args;
    let no_flags = |raw| Flags::new(raw, &[], &[]);
    let at_least_one = || {
        if args.is_empty() {
            Err(invalid(
                line,
                format!("{upper} requires at least one argument"),
            ))
        } else {
            Ok(())
        }
    };
    let exactly_one = || {
        if args.is_empty() {
            Err(invalid(
                line,
                format!("{upper} requires exactly one argument"),
            ))
        } else {
            Ok(args.to_string())
        }
    };
    let command = match upper.as_str() {
        "RUN" => {
            Flags::new(raw, &[], &["mount", "network", "security"])?;
            heredoc(args, line)?;
            Command::Run(shell_or_exec(args))
        }
        "CMD" => {
            no_flags(raw)?;
            Command::Cmd(shell_or_exec(args))
        }
        "ENTRYPOINT" => {
            no_flags(raw)?;
            Command::Entrypoint(shell_or_exec(args))
        }
        "COPY" => {
            let flags = Flags::new(
                raw,
                &["from", "chown", "chmod"],
                &["link", "parents", "exclude"],
            )?;
            Command::Copy(copy_args(&flags, args)?)
        }
        "ADD" => {
            let flags = Flags::new(
                raw,
                &["chown", "chmod"],
                &["link", "checksum", "keep-git-dir", "exclude", "unpack"],
            )?;
            Command::Add(copy_args(&flags, args)?)
        }
        "ENV" => {
            no_flags(raw)?;
            Command::Env(name_values(&upper, args, line, escape)?)
        }
        "LABEL" => {
            no_flags(raw)?;
            Command::Label(name_values(&upper, args, line, escape)?)
        }
        "ARG" => {
            no_flags(raw)?;
            at_least_one()?;
            let mut decls = Vec::new();
            for word in shell_words(args, escape) {
                let (name, default) = match word.split_once('=') {
                    Some((n, v)) => (n.to_string(), Some(v.to_string())),
                    None => (word, None),
                };
                if name.is_empty() {
                    return Err(invalid(line, "ARG names can not be blank"));
                }
                decls.push(ArgDecl { name, default });
            }
            Command::Arg(decls)
        }
        "WORKDIR" => {
            no_flags(raw)?;
            Command::Workdir(exactly_one()?)
        }
        "USER" => {
            no_flags(raw)?;
            Command::User(exactly_one()?)
        }
        "STOPSIGNAL" => {
            no_flags(raw)?;
            Command::StopSignal(exactly_one()?)
        }
        "MAINTAINER" => {
            no_flags(raw)?;
            Command::Maintainer(exactly_one()?)
        }
        "EXPOSE" => {
            no_flags(raw)?;
            at_least_one()?;
            Command::Expose(args.split_whitespace().map(String::from).collect())
        }
        "VOLUME" => {
            no_flags(raw)?;
            at_least_one()?;
            let volumes = json_or_words(&upper, args, line)?;
            if volumes.iter().any(String::is_empty) {
                return Err(invalid(line, "VOLUME specified can not be an empty string"));
            }
            if volumes.is_empty() {
                return Err(invalid(line, "VOLUME requires at least one argument"));
            }
            Command::Volume(volumes)
        }
        "SHELL" => {
            no_flags(raw)?;
            match shell_or_exec(args) {
                ShellOrExec::Exec(v) if !v.is_empty() => Command::Shell(v),
                ShellOrExec::Exec(_) => {
                    return Err(invalid(line, "SHELL requires at least one argument"));
                }
                ShellOrExec::Shell(_) => {
                    return Err(invalid(
                        line,
                        "SHELL requires the arguments to be in JSON form",
                    ));
                }
            }
        }
        "HEALTHCHECK" => Command::Healthcheck(healthcheck(raw)?),
        "ONBUILD" => {
            no_flags(raw)?;
            at_least_one()?;
            let trigger = split_instruction(args, line, escape)?;
            let name = trigger.name.to_ascii_uppercase();
            if matches!(name.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                return Err(invalid(
                    line,
                    if name == "ONBUILD" {
                        "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_string()
                    } else {
                        format!("{name} isn't allowed as an ONBUILD trigger")
                    },
                ));
            }
            Command::Onbuild(Box::new(instruction(&trigger, args, escape)?))
        }
        _ => {
            return Err(ParseError::UnknownInstruction {
                line,
                name: raw.name.to_string(),
            });
        }
    };
    Ok(Instruction {
        line,
        original: original.trim().to_string(),
        command,
    })
}

/// `Exec` when the rest is a JSON array of strings, else the shell form as written.
fn shell_or_exec(args: &str) -> ShellOrExec {
    if args.starts_with('[')
        && let Ok(v) = serde_json::from_str::<Vec<String>>(args)
    {
        return ShellOrExec::Exec(v);
    }
    ShellOrExec::Shell(args.to_string())
}

/// A JSON array of strings, or whitespace-separated words. A JSON array holding anything
/// but strings is an error, as in Docker.
fn json_or_words(instruction: &str, args: &str, line: usize) -> Result<Vec<String>, ParseError> {
    if args.starts_with('[')
        && let Ok(v) = serde_json::from_str::<Vec<serde_json::Value>>(args)
    {
        return v
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Ok(s),
                other => Err(invalid(
                    line,
                    format!("{instruction}: the JSON array holds a non-string: {other}"),
                )),
            })
            .collect();
    }
    Ok(args.split_whitespace().map(String::from).collect())
}

/// Refuses `<<EOF`-style heredocs (BuildKit's; the classic builder has none).
fn heredoc(args: &str, line: usize) -> Result<(), ParseError> {
    for word in args.split_whitespace() {
        let Some(rest) = word.strip_prefix("<<") else {
            continue;
        };
        let rest = rest.strip_prefix('-').unwrap_or(rest);
        let rest = rest.trim_start_matches(['"', '\'']);
        if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            return Err(ParseError::Heredoc {
                line,
                marker: word.to_string(),
            });
        }
    }
    Ok(())
}

fn copy_args(flags: &Flags<'_>, args: &str) -> Result<CopyArgs, ParseError> {
    let line = flags.raw.line;
    let name = &flags.instruction;
    heredoc(args, line)?;
    let mut words = json_or_words(name, args, line)?;
    if words.len() < 2 {
        return Err(invalid(
            line,
            format!(
                "{name} requires at least two arguments, but only {} was provided: the destination could not be determined",
                words.len()
            ),
        ));
    }
    let dest = words.pop().unwrap_or_default();
    let chmod = flags.get("chmod");
    if let Some(mode) = &chmod {
        let ok = mode.chars().all(|c| c.is_digit(8))
            && u32::from_str_radix(mode, 8).is_ok_and(|m| m <= 0o7777);
        if !ok {
            return Err(invalid(
                line,
                format!("{name} --chmod={mode}: not an octal mode (0 to 7777)"),
            ));
        }
    }
    Ok(CopyArgs {
        sources: words,
        dest,
        from: flags.get("from"),
        chown: flags.get("chown"),
        chmod,
    })
}

/// `ENV`/`LABEL`: `KEY name value` (the first word has no `=`: the rest of the line is the
/// value) or `KEY n=v n2="v 2"`, words raw.
fn name_values(
    instruction: &str,
    args: &str,
    line: usize,
    escape: char,
) -> Result<Vec<(String, String)>, ParseError> {
    let words = shell_words(args, escape);
    let Some(first) = words.first() else {
        return Err(invalid(
            line,
            format!("{instruction} requires at least one argument"),
        ));
    };
    let pairs = if !first.contains('=') {
        let Some((name, value)) = args.split_once(char::is_whitespace) else {
            return Err(invalid(
                line,
                format!("{instruction} must have two arguments"),
            ));
        };
        vec![(name.to_string(), value.trim_start().to_string())]
    } else {
        let mut pairs = Vec::new();
        for word in words {
            let Some((n, v)) = word.split_once('=') else {
                return Err(invalid(
                    line,
                    format!(
                        "{instruction}: syntax error - can't find = in {word:?}. Must be of the form: name=value"
                    ),
                ));
            };
            pairs.push((n.to_string(), v.to_string()));
        }
        pairs
    };
    if pairs.iter().any(|(n, _)| n.is_empty()) {
        return Err(invalid(
            line,
            format!("{instruction} names can not be blank"),
        ));
    }
    Ok(pairs)
}

/// Docker's `parseWords`: words split on unquoted whitespace, quotes and escapes kept.
fn shell_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            None => {
                in_word = true;
                if c == '"' || c == '\'' {
                    quote = Some(c);
                }
                if c == escape {
                    // An escape keeps itself and the next character, even a quote.
                    if let Some(next) = chars.next() {
                        word.push(c);
                        word.push(next);
                    }
                    continue;
                }
                word.push(c);
            }
            Some(q) => {
                if c == q {
                    quote = None;
                }
                if c == escape && q != '\'' {
                    match chars.next() {
                        Some(next) => {
                            word.push(c);
                            word.push(next);
                        }
                        None => quote = None,
                    }
                    continue;
                }
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

fn healthcheck(raw: &RawInstruction<'_>) -> Result<Healthcheck, ParseError> {
    let line = raw.line;
    let args = raw.args;
    let (kind, rest) = match args.find(char::is_whitespace) {
        Some(i) => (&args[..i], args[i..].trim_start()),
        None => (args, ""),
    };
    if kind.is_empty() {
        return Err(invalid(line, "HEALTHCHECK requires at least one argument"));
    }
    match kind.to_ascii_uppercase().as_str() {
        "NONE" => {
            if !rest.is_empty() || !raw.flags.is_empty() {
                return Err(invalid(line, "HEALTHCHECK NONE takes no arguments"));
            }
            Ok(Healthcheck::None)
        }
        "CMD" => {
            let flags = Flags::new(
                raw,
                &["interval", "timeout", "start-period", "retries"],
                &["start-interval"],
            )?;
            let test = shell_or_exec(rest);
            let empty = match &test {
                ShellOrExec::Shell(s) => s.is_empty(),
                ShellOrExec::Exec(v) => v.is_empty(),
            };
            if empty {
                return Err(invalid(line, "missing command after HEALTHCHECK CMD"));
            }
            let duration = |name: &str| -> Result<Option<Duration>, ParseError> {
                let Some(v) = flags.get(name) else {
                    return Ok(None);
                };
                let d = go_duration(&v)
                    .map_err(|e| invalid(line, format!("HEALTHCHECK --{name}={v}: {e}")))?;
                if d.is_zero() {
                    return Ok(None);
                }
                if d < Duration::from_millis(1) {
                    return Err(invalid(
                        line,
                        format!("HEALTHCHECK --{name}={v}: cannot be less than 1ms"),
                    ));
                }
                Ok(Some(d))
            };
            let retries = match flags.get("retries") {
                None => None,
                Some(v) => Some(
                    v.parse::<u32>()
                        .ok()
                        .filter(|r| *r <= i32::MAX as u32)
                        .ok_or_else(|| {
                            invalid(
                                line,
                                format!("HEALTHCHECK --retries={v}: not a count (0 or more)"),
                            )
                        })?,
                ),
            };
            Ok(Healthcheck::Cmd {
                test,
                interval: duration("interval")?,
                timeout: duration("timeout")?,
                start_period: duration("start-period")?,
                retries,
            })
        }
        other => Err(invalid(
            line,
            format!("unknown type {other:?} in HEALTHCHECK (try CMD)"),
        )),
    }
}

/// A Go `time.ParseDuration` string (`300ms`, `1.5h`, `2h45m`), not negative.
fn go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("not a duration such as 30s or 1m30s: {s:?}");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.starts_with('-') {
        return Err("cannot be negative".into());
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..num_end];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(bad());
        }
        let value: f64 = number.parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_end..];
        total += value * nanos;
    }
    // Go's durations are int64 nanoseconds.
    if !total.is_finite() || total > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(s: &str) -> ShellOrExec {
        ShellOrExec::Shell(s.into())
    }

    fn exec(v: &[&str]) -> ShellOrExec {
        ShellOrExec::Exec(v.iter().map(|s| s.to_string()).collect())
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// The commands of the only stage.
    fn commands(text: &str) -> Vec<Command> {
        let d = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(d.stages.len(), 1, "{text:?}");
        d.stages[0]
            .instructions
            .iter()
            .map(|i| i.command.clone())
            .collect()
    }

    /// Each case: the lines after `FROM base`, and the commands they give.
    #[test]
    fn instructions_parse_as_docker_reads_them() {
        let copy = |sources: &[&str], dest: &str| CopyArgs {
            sources: strings(sources),
            dest: dest.into(),
            from: None,
            chown: None,
            chmod: None,
        };
        let cases: Vec<(&str, Vec<Command>)> = vec![
            ("RUN echo hi", vec![Command::Run(shell("echo hi"))]),
            (
                r#"RUN ["echo", "a \"b\""]"#,
                vec![Command::Run(exec(&["echo", "a \"b\""]))],
            ),
            // Not a JSON array of strings: the shell form, as written.
            ("CMD [echo, hi]", vec![Command::Cmd(shell("[echo, hi]"))]),
            (r#"CMD ["a", 1]"#, vec![Command::Cmd(shell(r#"["a", 1]"#))]),
            ("CMD []", vec![Command::Cmd(exec(&[]))]),
            (
                r#"ENTRYPOINT ["/bin/app", "--flag"]"#,
                vec![Command::Entrypoint(exec(&["/bin/app", "--flag"]))],
            ),
            // Instruction names are case-insensitive.
            ("run  echo   a", vec![Command::Run(shell("echo   a"))]),
            // A RUN continued over several lines, with a comment and a blank line inside.
            (
                "RUN apt-get update \\\n    # a comment\n    && apt-get install -y \\\n\n      curl",
                vec![Command::Run(shell(
                    "apt-get update     && apt-get install -y       curl",
                ))],
            ),
            // A continuation at the end of the file.
            ("RUN a \\", vec![Command::Run(shell("a"))]),
            (
                r#"ENV A=1 B="two words" C=a\ b D='$x'"#,
                vec![Command::Env(pairs(&[
                    ("A", "1"),
                    ("B", "\"two words\""),
                    ("C", "a\\ b"),
                    ("D", "'$x'"),
                ]))],
            ),
            (
                "ENV KEY value with  spaces",
                vec![Command::Env(pairs(&[("KEY", "value with  spaces")]))],
            ),
            (
                r#"LABEL "com.example.vendor"="ACME Inc" version=1.0"#,
                vec![Command::Label(pairs(&[
                    ("\"com.example.vendor\"", "\"ACME Inc\""),
                    ("version", "1.0"),
                ]))],
            ),
            (
                "ARG A B=2 C=",
                vec![Command::Arg(vec![
                    ArgDecl {
                        name: "A".into(),
                        default: None,
                    },
                    ArgDecl {
                        name: "B".into(),
                        default: Some("2".into()),
                    },
                    ArgDecl {
                        name: "C".into(),
                        default: Some(String::new()),
                    },
                ])],
            ),
            (
                "COPY a b* /dest/",
                vec![Command::Copy(copy(&["a", "b*"], "/dest/"))],
            ),
            (
                r#"ADD ["a b", "c d"]"#,
                vec![Command::Add(copy(&["a b"], "c d"))],
            ),
            (
                "COPY --from=build --chown=1000:1000 --chmod=0755 /out /app",
                vec![Command::Copy(CopyArgs {
                    sources: strings(&["/out"]),
                    dest: "/app".into(),
                    from: Some("build".into()),
                    chown: Some("1000:1000".into()),
                    chmod: Some("0755".into()),
                })],
            ),
            (
                r#"ADD --chown="app user" x y"#,
                vec![Command::Add(CopyArgs {
                    chown: Some("app user".into()),
                    ..copy(&["x"], "y")
                })],
            ),
            ("WORKDIR /a b", vec![Command::Workdir("/a b".into())]),
            ("USER app:app", vec![Command::User("app:app".into())]),
            (
                "EXPOSE 80/tcp 443 $PORT",
                vec![Command::Expose(strings(&["80/tcp", "443", "$PORT"]))],
            ),
            (
                r#"VOLUME ["/data", "/logs"]"#,
                vec![Command::Volume(strings(&["/data", "/logs"]))],
            ),
            (
                "VOLUME /a /b",
                vec![Command::Volume(strings(&["/a", "/b"]))],
            ),
            (
                "STOPSIGNAL SIGKILL",
                vec![Command::StopSignal("SIGKILL".into())],
            ),
            (
                r#"SHELL ["/bin/bash", "-o", "pipefail", "-c"]"#,
                vec![Command::Shell(strings(&[
                    "/bin/bash",
                    "-o",
                    "pipefail",
                    "-c",
                ]))],
            ),
            (
                "MAINTAINER Jo <jo@x>",
                vec![Command::Maintainer("Jo <jo@x>".into())],
            ),
            (
                "HEALTHCHECK NONE",
                vec![Command::Healthcheck(Healthcheck::None)],
            ),
            (
                "HEALTHCHECK --interval=30s --timeout=1m30s --start-period=1.5s --retries=3 CMD curl -f http://127.0.0.1/ || exit 1",
                vec![Command::Healthcheck(Healthcheck::Cmd {
                    test: shell("curl -f http://127.0.0.1/ || exit 1"),
                    interval: Some(Duration::from_secs(30)),
                    timeout: Some(Duration::from_secs(90)),
                    start_period: Some(Duration::from_millis(1500)),
                    retries: Some(3),
                })],
            ),
            (
                r#"HEALTHCHECK --interval=0 CMD ["true"]"#,
                vec![Command::Healthcheck(Healthcheck::Cmd {
                    test: exec(&["true"]),
                    interval: None,
                    timeout: None,
                    start_period: None,
                    retries: None,
                })],
            ),
            (
                "ONBUILD RUN echo hi",
                vec![Command::Onbuild(Box::new(Instruction {
                    line: 2,
                    original: "RUN echo hi".into(),
                    command: Command::Run(shell("echo hi")),
                }))],
            ),
            // Comments and blank lines between instructions.
            (
                "# c\n\n  RUN a\n  # d\nCMD b",
                vec![Command::Run(shell("a")), Command::Cmd(shell("b"))],
            ),
            // A `#` inside an instruction is not a comment.
            ("RUN echo a # b", vec![Command::Run(shell("echo a # b"))]),
            // CRLF line ends.
            (
                "RUN a \\\r\n b\r\nCMD c\r\n",
                vec![Command::Run(shell("a  b")), Command::Cmd(shell("c"))],
            ),
        ];
        for (body, want) in cases {
            let text = format!("FROM base\n{body}\n");
            assert_eq!(commands(&text), want, "{body:?}");
        }
    }

    /// Each case: a whole Dockerfile and the error it gives.
    #[test]
    fn bad_dockerfiles_are_refused_naming_the_line() {
        let cases: &[(&str, &str)] = &[
            ("", "the Dockerfile is empty"),
            ("# only a comment\n\n", "the Dockerfile is empty"),
            ("ARG A=1", "the Dockerfile has no FROM instruction"),
            (
                "RUN echo",
                "Dockerfile line 1: RUN before the first FROM: only ARG may come before it",
            ),
            (
                "FROM x\n\nFOO bar",
                "Dockerfile line 3: unknown instruction: FOO",
            ),
            (
                "FROM x\nRUN --mount=type=cache,target=/c make",
                "Dockerfile line 2: RUN --mount is a BuildKit feature and is not supported",
            ),
            (
                "FROM x\nRUN --network=none make",
                "Dockerfile line 2: RUN --network is a BuildKit feature and is not supported",
            ),
            (
                "FROM x\nCOPY --link a b",
                "Dockerfile line 2: COPY --link is a BuildKit feature and is not supported",
            ),
            (
                "FROM x\nCOPY --foo=1 a b",
                "Dockerfile line 2: COPY: unknown flag: --foo",
            ),
            (
                "FROM x\nADD --from=y a b",
                "Dockerfile line 2: ADD: unknown flag: --from",
            ),
            (
                "FROM x\nENV --a=b c=d",
                "Dockerfile line 2: ENV: unknown flag: --a",
            ),
            (
                "FROM x\nCOPY --from a b",
                "Dockerfile line 2: COPY: missing a value on flag --from",
            ),
            (
                "FROM x\nCOPY --chown=1 --chown=2 a b",
                "Dockerfile line 2: COPY: duplicate flag --chown",
            ),
            (
                "FROM x\nCOPY --chmod=999 a b",
                "Dockerfile line 2: COPY --chmod=999: not an octal mode (0 to 7777)",
            ),
            (
                "FROM x\nCOPY onlyone",
                "Dockerfile line 2: COPY requires at least two arguments, but only 1 was provided: the destination could not be determined",
            ),
            (
                "FROM x\nRUN <<EOF\necho hi\nEOF",
                "Dockerfile line 2: heredocs (<<EOF) are not supported",
            ),
            (
                "FROM x\nCOPY <<-\"END\" /f",
                "Dockerfile line 2: heredocs (<<-\"END\") are not supported",
            ),
            (
                "FROM x\nWORKDIR",
                "Dockerfile line 2: WORKDIR requires exactly one argument",
            ),
            (
                "FROM x\nENV",
                "Dockerfile line 2: ENV requires at least one argument",
            ),
            (
                "FROM x\nENV ONLY",
                "Dockerfile line 2: ENV must have two arguments",
            ),
            (
                "FROM x\nENV a=1 b",
                "Dockerfile line 2: ENV: syntax error - can't find = in \"b\". Must be of the form: name=value",
            ),
            (
                "FROM x\nENV =1",
                "Dockerfile line 2: ENV names can not be blank",
            ),
            (
                "FROM x\nSHELL /bin/bash -c",
                "Dockerfile line 2: SHELL requires the arguments to be in JSON form",
            ),
            (
                "FROM x\nSHELL []",
                "Dockerfile line 2: SHELL requires at least one argument",
            ),
            (
                "FROM x\nVOLUME [\"\"]",
                "Dockerfile line 2: VOLUME specified can not be an empty string",
            ),
            (
                "FROM x\nVOLUME [\"/a\", 1]",
                "Dockerfile line 2: VOLUME: the JSON array holds a non-string: 1",
            ),
            (
                "FROM x\nONBUILD ONBUILD RUN x",
                "Dockerfile line 2: chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
            ),
            (
                "FROM x\nONBUILD from y",
                "Dockerfile line 2: FROM isn't allowed as an ONBUILD trigger",
            ),
            (
                "FROM x\nONBUILD MAINTAINER y",
                "Dockerfile line 2: MAINTAINER isn't allowed as an ONBUILD trigger",
            ),
            (
                "FROM x\nONBUILD NOPE y",
                "Dockerfile line 2: unknown instruction: NOPE",
            ),
            (
                "FROM x\nHEALTHCHECK NONE --x",
                "Dockerfile line 2: HEALTHCHECK NONE takes no arguments",
            ),
            (
                "FROM x\nHEALTHCHECK CMD",
                "Dockerfile line 2: missing command after HEALTHCHECK CMD",
            ),
            (
                "FROM x\nHEALTHCHECK --interval=10us CMD true",
                "Dockerfile line 2: HEALTHCHECK --interval=10us: cannot be less than 1ms",
            ),
            (
                "FROM x\nHEALTHCHECK --timeout=soon CMD true",
                "Dockerfile line 2: HEALTHCHECK --timeout=soon: not a duration such as 30s or 1m30s: \"soon\"",
            ),
            (
                "FROM x\nHEALTHCHECK --retries=-1 CMD true",
                "Dockerfile line 2: HEALTHCHECK --retries=-1: not a count (0 or more)",
            ),
            (
                "FROM x\nHEALTHCHECK --start-interval=1s CMD true",
                "Dockerfile line 2: HEALTHCHECK --start-interval is a BuildKit feature and is not supported",
            ),
            (
                "FROM x\nHEALTHCHECK EXEC true",
                "Dockerfile line 2: unknown type \"EXEC\" in HEALTHCHECK (try CMD)",
            ),
            (
                "FROM x y",
                "Dockerfile line 1: FROM requires either one or three arguments (FROM image [AS name])",
            ),
            (
                "FROM x AS 1st",
                "Dockerfile line 1: invalid name for build stage: \"1st\", name can't start with a number or contain symbols",
            ),
            (
                "FROM --platfrom=linux x",
                "Dockerfile line 1: FROM: unknown flag: --platfrom",
            ),
            (
                "# escape=`\n# escape=\\\nFROM x",
                "Dockerfile line 2: only one escape parser directive can be used",
            ),
            (
                "# escape=x\nFROM x",
                "Dockerfile line 1: invalid escape token \"x\": it must be ` or \\",
            ),
        ];
        for (text, want) in cases {
            match parse(text) {
                Ok(d) => panic!("{text:?} parsed: {d:?}"),
                Err(e) => assert_eq!(e.to_string(), *want, "{text:?}"),
            }
        }
    }

    #[test]
    fn a_utf8_bom_at_the_start_is_skipped() {
        let d = parse("\u{feff}FROM scratch\nCMD [\"/hello\"]\n").unwrap();
        assert_eq!(d.stages[0].base, "scratch");
        assert_eq!(d.stages[0].line, 1);
        assert_eq!(
            d.stages[0].instructions[0].command,
            Command::Cmd(exec(&["/hello"]))
        );
        // A BOM anywhere else is not skipped.
        assert!(matches!(
            parse("FROM x\n\u{feff}RUN a"),
            Err(ParseError::UnknownInstruction { line: 2, .. })
        ));
    }

    #[test]
    fn escape_directive_with_a_backtick() {
        let text = "# escape=`\nFROM mcr/windows\nRUN dir c:\\ `\n    && echo done\nCOPY a\\b c:\\dest\\\n";
        let d = parse(text).unwrap();
        assert_eq!(d.escape, '`');
        let i = &d.stages[0].instructions;
        assert_eq!(
            i[0].command,
            Command::Run(shell("dir c:\\     && echo done"))
        );
        assert_eq!(i[0].line, 3);
        assert_eq!(i[0].original, "RUN dir c:\\     && echo done");
        // A trailing backslash is no continuation under backtick escaping.
        assert_eq!(
            i[1].command,
            Command::Copy(CopyArgs {
                sources: strings(&["a\\b"]),
                dest: "c:\\dest\\".into(),
                from: None,
                chown: None,
                chmod: None,
            })
        );
        assert_eq!(i[1].line, 5);
    }

    #[test]
    fn directives_only_count_before_anything_else() {
        // Case-insensitive names and blanks around `=`.
        assert_eq!(parse("#  ESCAPE = `\nFROM x").unwrap().escape, '`');
        // After a comment, a blank line or an instruction, a directive is just a comment.
        for text in [
            "# hello\n# escape=`\nFROM x",
            "\n# escape=`\nFROM x",
            "FROM x\n# escape=`\nRUN a \\\n b",
        ] {
            let d = parse(text).unwrap();
            assert_eq!(d.escape, '\\', "{text:?}");
            assert!(d.warnings.is_empty());
        }
        let d =
            parse("# syntax=docker/dockerfile:1\n# check=skip=all\n# escape=`\nFROM x").unwrap();
        assert_eq!(d.escape, '`');
        assert_eq!(
            d.warnings,
            strings(&[
                "# syntax= directive ignored (line 1)",
                "# check= directive ignored (line 2)"
            ])
        );
        // An unknown directive ends the directives.
        let d = parse("# foo=bar\n# escape=`\nFROM x").unwrap();
        assert_eq!(d.escape, '\\');
    }

    #[test]
    fn stages_global_args_and_lines() {
        let text = "ARG VERSION=1.2\nARG TAG\n\nFROM --platform=$BUILDPLATFORM golang:${VERSION} AS Build\nRUN make \\\n  all\n\nfrom scratch\nCOPY --from=build /out /\nCMD [\"/out\"]\n";
        let d = parse(text).unwrap();
        assert_eq!(
            d.global_args,
            vec![
                ArgDecl {
                    name: "VERSION".into(),
                    default: Some("1.2".into())
                },
                ArgDecl {
                    name: "TAG".into(),
                    default: None
                },
            ]
        );
        assert_eq!(d.stages.len(), 2);
        let build = &d.stages[0];
        assert_eq!(build.base, "golang:${VERSION}");
        assert_eq!(build.name.as_deref(), Some("build"));
        assert_eq!(build.platform.as_deref(), Some("$BUILDPLATFORM"));
        assert_eq!(build.line, 4);
        assert_eq!(
            build.original,
            "FROM --platform=$BUILDPLATFORM golang:${VERSION} AS Build"
        );
        assert_eq!(build.instructions[0].line, 5);
        assert_eq!(build.instructions[0].original, "RUN make   all");
        let last = &d.stages[1];
        assert_eq!(
            (last.base.as_str(), last.name.as_ref(), last.line),
            ("scratch", None, 8)
        );
        assert_eq!(
            last.instructions.iter().map(|i| i.line).collect::<Vec<_>>(),
            vec![9, 10]
        );
    }

    #[test]
    fn single_instructions_parse_for_commit_changes() {
        let i = parse_instruction("CMD [\"cat\",\"/x\"]", 1, '\\').unwrap();
        assert_eq!(i.command, Command::Cmd(exec(&["cat", "/x"])));
        assert_eq!(i.original, "CMD [\"cat\",\"/x\"]");
        assert!(parse_instruction("FROM x", 1, '\\').is_err());
        assert_eq!(
            parse_instruction("BOGUS 1", 3, '\\').unwrap_err(),
            ParseError::UnknownInstruction {
                line: 3,
                name: "BOGUS".into()
            }
        );
    }

    #[test]
    fn go_durations() {
        for (s, want) in [
            ("0", Some(0)),
            ("300ms", Some(300_000_000)),
            ("1.5h", Some(5_400_000_000_000)),
            ("2h45m", Some(9_900_000_000_000)),
            ("1us", Some(1_000)),
            ("1µs", Some(1_000)),
            ("10ns", Some(10)),
            ("", None),
            ("5", None),
            ("-1s", None),
            ("1d", None),
            ("1..2s", None),
        ] {
            assert_eq!(
                go_duration(s).ok().map(|d| d.as_nanos() as u64),
                want,
                "{s:?}"
            );
        }
    }
}

/// Any text gives a Dockerfile or a typed error naming a line of the text, never a panic.
/// `PROPTEST_CASES=10000` for the long run.
#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    /// Lines made of Dockerfile pieces, so that many texts parse and the rest fail late.
    fn dockerfile_like() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("FROM scratch".to_string()),
            Just("FROM img AS stage".to_string()),
            Just("ARG A=1".to_string()),
            Just("# escape=`".to_string()),
            Just("# syntax=x".to_string()),
            Just("# comment".to_string()),
            Just(String::new()),
            Just("\u{feff}".to_string()),
            "(RUN|CMD|ENTRYPOINT|SHELL|VOLUME|COPY|ADD|ENV|LABEL|ARG|EXPOSE|USER|WORKDIR|STOPSIGNAL|HEALTHCHECK|ONBUILD|MAINTAINER|FROM|run|Foo) ?(--[a-z-]{1,6}(=[a-z0-9]{0,3})? )?",
            "[\\[\\]\"'=`\\\\$ {}:,a-z0-9<-]{0,12}",
        ];
        prop::collection::vec(
            (
                piece.clone(),
                piece,
                prop_oneof![Just("\n"), Just("\r\n"), Just(" \\\n"), Just(" `\n")],
            ),
            0..8,
        )
        .prop_map(|lines| {
            lines
                .into_iter()
                .map(|(a, b, end)| format!("{a} {b}{end}"))
                .collect()
        })
    }

    fn check(text: &str) -> Result<(), TestCaseError> {
        let lines = text.split('\n').count();
        match parse(text) {
            Ok(d) => {
                prop_assert!(!d.stages.is_empty());
                prop_assert!(d.escape == '\\' || d.escape == '`');
                for stage in &d.stages {
                    prop_assert!(stage.line >= 1 && stage.line <= lines);
                    if let Some(name) = &stage.name {
                        prop_assert_eq!(name, &name.to_lowercase());
                    }
                    for i in &stage.instructions {
                        prop_assert!(i.line >= stage.line && i.line <= lines);
                        if let Command::Copy(c) | Command::Add(c) = &i.command {
                            prop_assert!(!c.sources.is_empty());
                        }
                    }
                }
            }
            Err(e) => {
                if let Some(line) = e.line() {
                    prop_assert!(line >= 1 && line <= lines, "{e} of {lines} lines");
                }
                prop_assert!(!e.to_string().is_empty());
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_text(text in "\\PC{0,200}") {
            check(&text)?;
        }

        #[test]
        fn dockerfile_like_text(text in dockerfile_like()) {
            check(&text)?;
        }

        #[test]
        fn any_single_instruction(text in "\\PC{0,80}", escape in prop_oneof![Just('\\'), Just('`')]) {
            if let Ok(i) = parse_instruction(&text, 1, escape) {
                prop_assert_eq!(i.line, 1);
            }
        }
    }
}
