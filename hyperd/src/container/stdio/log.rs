//! A container's log in Docker's json-file format: one JSON object a line,
//! `{"log":"…","stream":"stdout"|"stderr","time":"<RFC 3339, nanoseconds>"}`, in
//! `<container dir>/json.log`, rotated by size to `json.log.1` … `json.log.<max-file - 1>`
//! (Docker's `max-size` and `max-file`).
//!
//! Every output chunk of the guest has a sequence number; `log.state` holds the next one to
//! record and the size the log had then, written after each append (and, when a chunk's lines
//! straddle a rotation, how many of that chunk's lines the rotated files already hold). After a
//! hyperd restart (or kill -9) the log is cut back to that size and recording resumes from that
//! sequence number, so no line is lost or written twice; chunks the guest dropped meanwhile
//! leave a marker line.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use hyper_proto::rest::PodLogConfig;

const LOG: &str = "json.log";
const STATE: &str = "log.state";

/// Rotation limits; `max_size` 0 never rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// Bytes of the current file before it is rotated.
    pub max_size: u64,
    /// Files kept, the current one included (at least 1).
    pub max_file: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            max_size: 0,
            max_file: 1,
        }
    }
}

impl LogConfig {
    /// The pod spec's `log` over the daemon's default: `type` must be empty or `json-file`;
    /// `config` may set `max-size` (bytes, or with a `k`, `m` or `g` suffix, 1024-based) and
    /// `max-file` (an integer ≥ 1, Docker's rule: only with `max-size`).
    pub fn from_spec(log: &PodLogConfig, default: LogConfig) -> Result<Self, String> {
        if !matches!(log.kind.as_str(), "" | "json-file") {
            return Err(format!(
                "log.type: {:?}: only json-file is supported",
                log.kind
            ));
        }
        let mut config = default;
        for (key, value) in &log.config {
            match key.as_str() {
                "max-size" => {
                    config.max_size = parse_size(value)
                        .ok_or_else(|| format!("log.config.max-size: {value:?}: not a size"))?;
                }
                "max-file" => {
                    config.max_file = value.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        format!("log.config.max-file: {value:?}: not a count ≥ 1")
                    })?;
                }
                other => return Err(format!("log.config.{other}: not supported")),
            }
        }
        if config.max_file > 1 && config.max_size == 0 {
            return Err("log.config.max-file: needs max-size".into());
        }
        Ok(config)
    }
}

/// `10m` → 10 MiB; plain digits are bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (digits, unit) = match s.char_indices().last()? {
        (i, 'k') => (&s[..i], 1u64 << 10),
        (i, 'm') => (&s[..i], 1 << 20),
        (i, 'g') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(unit)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub log: String,
    pub stream: Stream,
    /// RFC 3339 with nanoseconds, UTC.
    pub time: String,
}

impl Entry {
    pub fn time(&self) -> Option<SystemTime> {
        humantime::parse_rfc3339_weak(self.time.trim_end_matches('Z')).ok()
    }
}

/// How far a live log has got: bumped on every append; `done` once the process closed its
/// output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub appended: u64,
    pub done: bool,
}

/// Appends to one container's log.
pub struct LogWriter {
    dir: PathBuf,
    config: LogConfig,
    file: File,
    state: File,
    size: u64,
    next_seq: u64,
    /// Lines of chunk `next_seq` already in the log (written before a rotation that a crash
    /// then cut short): skipped when the chunk comes again.
    skip: usize,
    progress: watch::Sender<Progress>,
}

impl LogWriter {
    /// Opens the log of `dir`. `resume`: continue from the recorded sequence number (a hyperd
    /// restart under a process that runs on), cutting off what was appended after the last
    /// state write; otherwise a new process starts at chunk 0 and its lines follow the old
    /// ones.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        resume: bool,
        progress: watch::Sender<Progress>,
    ) -> std::io::Result<Self> {
        let mut state = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(STATE))?;
        let mut text = String::new();
        state.read_to_string(&mut text)?;
        let (seq, size, skip) = parse_state(&text).unwrap_or((0, u64::MAX, 0));
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(dir.join(LOG))?;
        let len = file.metadata()?.len();
        // A rotation cut short leaves a current file shorter than recorded: keep it whole.
        let size = size.min(len);
        if size < len {
            file.set_len(size)?;
        }
        let mut w = Self {
            dir: dir.to_path_buf(),
            config,
            file,
            state,
            size,
            next_seq: if resume { seq } else { 0 },
            skip: if resume { skip } else { 0 },
            progress,
        };
        w.save_state(w.skip)?;
        Ok(w)
    }

    /// The sequence number of the next chunk to record.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Records chunk `seq`: a chunk already recorded is skipped, a jump past `next_seq`
    /// (chunks the guest dropped) first writes a marker line.
    pub fn append(&mut self, seq: u64, stream: Stream, data: &[u8]) -> std::io::Result<()> {
        if seq < self.next_seq {
            return Ok(());
        }
        // The same chunk again: its lines split the same way, the first `skip` are written.
        let skip = if seq == self.next_seq {
            std::mem::take(&mut self.skip)
        } else {
            self.skip = 0;
            0
        };
        let mut lines = Vec::new();
        let now = now();
        if seq > self.next_seq {
            let lost = seq - self.next_seq;
            lines.push(Entry {
                log: format!("[hyperd: {lost} chunk(s) of output lost: the guest dropped them before they were recorded]\n"),
                stream: Stream::Stderr,
                time: now.clone(),
            });
        }
        for piece in data.split_inclusive(|b| *b == b'\n') {
            lines.push(Entry {
                log: String::from_utf8_lossy(piece).into_owned(),
                stream,
                time: now.clone(),
            });
        }
        // Lines are written in runs; a line that would take the file past max-size goes to a
        // fresh one (Docker rotates by line too).
        let mut buf = Vec::new();
        for (i, e) in lines.iter().enumerate().skip(skip) {
            let mut line = serde_json::to_vec(e).map_err(std::io::Error::other)?;
            line.push(b'\n');
            let size = self.size + buf.len() as u64;
            if self.config.max_size > 0
                && size > 0
                && size + line.len() as u64 > self.config.max_size
            {
                self.file.write_all(&buf)?;
                buf.clear();
                self.rotate(i)?;
            }
            buf.extend_from_slice(&line);
        }
        self.file.write_all(&buf)?;
        self.size += buf.len() as u64;
        self.next_seq = seq + 1;
        self.save_state(0)?;
        self.progress.send_modify(|p| p.appended += 1);
        Ok(())
    }

    /// Starts a fresh current file; `written` lines of chunk `next_seq` are in the old ones.
    fn rotate(&mut self, written: usize) -> std::io::Result<()> {
        let path = |n: u32| match n {
            0 => self.dir.join(LOG),
            n => self.dir.join(format!("{LOG}.{n}")),
        };
        if self.config.max_file <= 1 {
            self.file.set_len(0)?;
        } else {
            for n in (1..self.config.max_file - 1).rev() {
                match std::fs::rename(path(n), path(n + 1)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::rename(path(0), path(1))?;
            self.file = OpenOptions::new().append(true).create(true).open(path(0))?;
        }
        self.size = 0;
        self.save_state(written)
    }

    /// Fixed width, written in place: one write(2), which a kill -9 cannot tear.
    fn save_state(&mut self, skip: usize) -> std::io::Result<()> {
        let text = format!("{:020} {:020} {:020}\n", self.next_seq, self.size, skip);
        self.state.write_all_at(text.as_bytes(), 0)
    }

    /// The process closed its output: followers end.
    pub fn finish(self) {
        self.progress.send_modify(|p| p.done = true);
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        // A writer dropped without finish (its task ended) must not leave followers waiting.
        self.progress.send_modify(|p| p.done = true);
    }
}

/// `seq size [skip]`.
fn parse_state(text: &str) -> Option<(u64, u64, usize)> {
    let mut fields = text.split_whitespace();
    let seq = fields.next()?.parse().ok()?;
    let size = fields.next()?.parse().ok()?;
    let skip = fields.next().map_or(Some(0), |s| s.parse().ok())?;
    Some((seq, size, skip))
}

pub fn now() -> String {
    humantime::format_rfc3339_nanos(SystemTime::now()).to_string()
}

/// What to read of a log.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Keep reading what is appended until the process closes its output.
    pub follow: bool,
    /// Only entries at or after this time.
    pub since: Option<SystemTime>,
    /// Only the last n entries of what is there when reading starts.
    pub tail: Option<usize>,
}

/// Reads a log (rotated files first) into a channel; with `progress` (a live log) and
/// `follow`, goes on until the writer is done.
pub fn read(
    dir: &Path,
    opts: ReadOptions,
    progress: Option<watch::Receiver<Progress>>,
) -> mpsc::Receiver<std::io::Result<Entry>> {
    let (tx, rx) = mpsc::channel(64);
    let dir = dir.to_path_buf();
    tokio::spawn(async move {
        if let Err(e) = read_into(&dir, opts, progress, &tx).await {
            let _gone = tx.send(Err(e)).await;
        }
    });
    rx
}

/// Splits complete lines off `carry` and parses them; an unparsable line is skipped (a line
/// torn by a crash before the state was written is cut off at the next open anyway).
fn complete_lines(carry: &mut Vec<u8>) -> Vec<Entry> {
    let Some(end) = carry.iter().rposition(|b| *b == b'\n') else {
        return Vec::new();
    };
    let rest = carry.split_off(end + 1);
    let lines = std::mem::replace(carry, rest);
    lines
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect()
}

/// The rotated files written after the one with inode `ino` (which was the current file
/// when a follower last read it), oldest first. When that file has been rotated out, every
/// rotated file left is newer than it.
fn newer_rotated(dir: &Path, ino: u64) -> Vec<PathBuf> {
    let mut newer = Vec::new();
    for n in 1.. {
        let p = dir.join(format!("{LOG}.{n}"));
        match std::fs::metadata(&p) {
            Ok(m) if m.ino() == ino => break,
            Ok(_) => newer.push(p),
            Err(_) => break,
        }
    }
    newer.reverse();
    newer
}

async fn read_into(
    dir: &Path,
    opts: ReadOptions,
    mut progress: Option<watch::Receiver<Progress>>,
    tx: &mpsc::Sender<std::io::Result<Entry>>,
) -> std::io::Result<()> {
    if let Some(p) = progress.as_mut() {
        p.borrow_and_update();
    }
    let keep = |e: &Entry| {
        opts.since
            .is_none_or(|since| e.time().is_some_and(|t| t >= since))
    };
    let mut rotated = Vec::new();
    for n in 1.. {
        let p = dir.join(format!("{LOG}.{n}"));
        if !p.exists() {
            break;
        }
        rotated.push(p);
    }
    let mut history: VecDeque<Entry> = VecDeque::new();
    let push = |e: Entry, history: &mut VecDeque<Entry>| {
        if keep(&e) {
            history.push_back(e);
            if let Some(n) = opts.tail
                && history.len() > n
            {
                history.pop_front();
            }
        }
    };
    for p in rotated.iter().rev() {
        let mut bytes = match std::fs::read(p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        bytes.push(b'\n');
        for e in complete_lines(&mut bytes) {
            push(e, &mut history);
        }
    }
    let current = dir.join(LOG);
    let mut file = match File::open(&current) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let mut carry = Vec::new();
    if let Some(f) = file.as_mut() {
        f.read_to_end(&mut carry)?;
        for e in complete_lines(&mut carry) {
            push(e, &mut history);
        }
    }
    for e in history {
        if tx.send(Ok(e)).await.is_err() {
            return Ok(());
        }
    }
    let Some(mut progress) = progress.filter(|_| opts.follow) else {
        return Ok(());
    };
    loop {
        let done = progress.borrow_and_update().done;
        // Read what was appended; if the file was rotated away, finish it and go on with the
        // new one.
        loop {
            if let Some(f) = file.as_mut() {
                f.read_to_end(&mut carry)?;
                for e in complete_lines(&mut carry) {
                    if keep(&e) && tx.send(Ok(e)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            let ino_now = std::fs::metadata(&current).ok().map(|m| m.ino());
            let ino_ours = match file.as_ref() {
                Some(f) => Some(f.metadata()?.ino()),
                None => None,
            };
            if ino_now.is_some() && ino_now != ino_ours {
                // Rotated (maybe more than once since the last read): the files newer than
                // ours, oldest first, then the new current one.
                if let Some(ours) = ino_ours {
                    for p in newer_rotated(dir, ours) {
                        let mut bytes = std::fs::read(&p).unwrap_or_default();
                        bytes.push(b'\n');
                        for e in complete_lines(&mut bytes) {
                            if keep(&e) && tx.send(Ok(e)).await.is_err() {
                                return Ok(());
                            }
                        }
                    }
                }
                file = Some(File::open(&current)?);
                carry.clear();
                continue;
            }
            // Truncated in place (max-file 1): start again at its beginning.
            if let Some(f) = file.as_mut()
                && f.stream_position()? > f.metadata()?.len()
            {
                f.seek(SeekFrom::Start(0))?;
                carry.clear();
                continue;
            }
            break;
        }
        if done {
            return Ok(());
        }
        // A notification can race the read: poll now and then as well.
        let _either =
            tokio::time::timeout(std::time::Duration::from_millis(500), progress.changed()).await;
        if progress.has_changed().is_err() {
            // The writer is gone: one last read.
            progress = watch::channel(Progress {
                appended: 0,
                done: true,
            })
            .1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(rx: &mut mpsc::Receiver<std::io::Result<Entry>>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(Some(e)) = rx.try_recv().map(|e| e.ok()) {
            out.push(e.log);
        }
        out
    }

    async fn all(dir: &Path, opts: ReadOptions) -> Vec<String> {
        let mut rx = read(dir, opts, None);
        let mut out = Vec::new();
        while let Some(e) = rx.recv().await {
            out.push(e.unwrap().log);
        }
        out
    }

    #[tokio::test]
    async fn lines_in_docker_format_resumed_without_loss_or_duplicates() {
        let d = tempfile::tempdir().unwrap();
        let (tx, _) = watch::channel(Progress::default());
        let mut w = LogWriter::open(d.path(), LogConfig::default(), true, tx.clone()).unwrap();
        w.append(0, Stream::Stdout, b"one\ntwo\n").unwrap();
        w.append(1, Stream::Stderr, b"three").unwrap();
        drop(w);
        let text = std::fs::read_to_string(d.path().join(LOG)).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["log"], "one\n");
        assert_eq!(first["stream"], "stdout");
        assert!(first["time"].as_str().unwrap().ends_with('Z'));
        // A torn append after the last state write is cut off on reopen.
        std::fs::OpenOptions::new()
            .append(true)
            .open(d.path().join(LOG))
            .unwrap()
            .write_all(b"{\"log\":\"torn")
            .unwrap();
        let mut w = LogWriter::open(d.path(), LogConfig::default(), true, tx.clone()).unwrap();
        assert_eq!(w.next_seq(), 2);
        w.append(1, Stream::Stderr, b"three").unwrap(); // a replayed chunk: skipped
        w.append(4, Stream::Stdout, b"five\n").unwrap(); // 2 and 3 were dropped
        drop(w);
        let got = all(d.path(), ReadOptions::default()).await;
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(&got[..3], ["one\n", "two\n", "three"]);
        assert!(got[3].contains("2 chunk(s) of output lost"), "{got:?}");
        assert_eq!(got[4], "five\n");
        let tail = all(
            d.path(),
            ReadOptions {
                tail: Some(2),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(tail.len(), 2);
        assert_eq!(tail[1], "five\n");
        let future = all(
            d.path(),
            ReadOptions {
                since: Some(SystemTime::now() + std::time::Duration::from_secs(5)),
                ..Default::default()
            },
        )
        .await;
        assert!(future.is_empty());
    }

    #[tokio::test]
    async fn rotation_keeps_max_file_files_and_a_follower_sees_every_line() {
        let d = tempfile::tempdir().unwrap();
        let (tx, rx) = watch::channel(Progress::default());
        let config = LogConfig {
            max_size: 300,
            max_file: 3,
        };
        let mut w = LogWriter::open(d.path(), config, false, tx).unwrap();
        let mut follower = read(
            d.path(),
            ReadOptions {
                follow: true,
                ..Default::default()
            },
            Some(rx),
        );
        let mut seen = Vec::new();
        for i in 0..40u64 {
            w.append(i, Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
            if i % 9 == 0 {
                // The follower reads now and then: several rotations may pass in between.
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                seen.extend(texts(&mut follower));
            }
        }
        w.finish();
        while let Some(e) = follower.recv().await {
            seen.push(e.unwrap().log);
        }
        let want: Vec<String> = (0..40).map(|i| format!("line {i}\n")).collect();
        assert_eq!(seen, want);
        let mut files: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(LOG))
            .collect();
        files.sort();
        assert_eq!(files, ["json.log", "json.log.1", "json.log.2"]);
        // What is kept is the newest lines, in order.
        let kept = all(d.path(), ReadOptions::default()).await;
        assert_eq!(kept.last().unwrap(), "line 39\n");
        assert!(kept.len() < 40);
    }

    #[tokio::test]
    async fn a_chunk_straddling_a_rotation_is_not_doubled_when_replayed() {
        let d = tempfile::tempdir().unwrap();
        let (tx, _) = watch::channel(Progress::default());
        let config = LogConfig {
            max_size: 200,
            max_file: 10,
        };
        let mut w = LogWriter::open(d.path(), config, false, tx.clone()).unwrap();
        w.append(0, Stream::Stdout, b"a\n").unwrap();
        // hyperd dies in the middle of chunk 1: its first line written, the file rotated,
        // the state saying so, and nothing more.
        let first = Entry {
            log: "line 0\n".into(),
            stream: Stream::Stdout,
            time: now(),
        };
        let mut line = serde_json::to_vec(&first).unwrap();
        line.push(b'\n');
        w.file.write_all(&line).unwrap();
        w.rotate(1).unwrap();
        drop(w);
        // The guest sends chunk 1 again, whole.
        let mut w = LogWriter::open(d.path(), config, true, tx).unwrap();
        assert_eq!((w.next_seq(), w.skip), (1, 1));
        let chunk: String = (0..6).map(|i| format!("line {i}\n")).collect();
        w.append(1, Stream::Stdout, chunk.as_bytes()).unwrap();
        drop(w);
        let got = all(d.path(), ReadOptions::default()).await;
        let want: Vec<String> = std::iter::once("a\n".to_string())
            .chain((0..6).map(|i| format!("line {i}\n")))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn log_config_from_the_pod_spec() {
        let spec = |kind: &str, kv: &[(&str, &str)]| PodLogConfig {
            kind: kind.into(),
            config: kv
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let c = LogConfig::from_spec(
            &spec("json-file", &[("max-size", "10k"), ("max-file", "3")]),
            LogConfig::default(),
        )
        .unwrap();
        assert_eq!((c.max_size, c.max_file), (10240, 3));
        for (kind, kv, field) in [
            ("syslog", vec![], "log.type"),
            ("", vec![("max-size", "ten")], "log.config.max-size"),
            (
                "",
                vec![("max-size", "1m"), ("max-file", "0")],
                "log.config.max-file",
            ),
            ("", vec![("compress", "true")], "log.config.compress"),
            ("", vec![("max-file", "2")], "log.config.max-file"),
        ] {
            let e = LogConfig::from_spec(&spec(kind, &kv), LogConfig::default()).unwrap_err();
            assert!(e.starts_with(field), "{e}");
        }
        assert_eq!(parse_size("2m"), Some(2 << 20));
        assert_eq!(parse_size("123"), Some(123));
    }
}
