//! Showing a JSON message stream (pull, push, load: one [`JsonMessage`] per line) as Docker's
//! CLI shows it. On a terminal, each id (a layer, a tag) gets one line that is rewritten in
//! place, with an `indicatif` bar while bytes move; elsewhere (a pipe, a log) the plain lines
//! `<id>: <status>` and `<status>` are printed, byte-count updates skipped, as Docker's
//! `jsonmessage` does for non-terminals. A message with `error` ends the stream with that error.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use hyper_proto::rest::JsonMessage;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The stream reported a failure (the daemon's `error` message).
    #[error("{0}")]
    Remote(String),
    #[error("read the daemon's answer")]
    Read(#[source] std::io::Error),
    #[error("unexpected line in the daemon's answer: {line}")]
    BadLine {
        line: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("write the progress")]
    Write(#[source] std::io::Error),
}

/// Which of the process' streams the progress goes to (`run` and `create` use stderr, so the
/// container's output on stdout stays clean).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Stdout,
    Stderr,
}

impl Output {
    fn is_terminal(self) -> bool {
        match self {
            Output::Stdout => std::io::stdout().is_terminal(),
            Output::Stderr => std::io::stderr().is_terminal(),
        }
    }

    fn writer(self) -> Box<dyn Write> {
        match self {
            Output::Stdout => Box::new(std::io::stdout()),
            Output::Stderr => Box::new(std::io::stderr()),
        }
    }

    /// Prints one line on this output.
    pub fn line(self, text: &str) -> Result<(), Error> {
        writeln!(self.writer(), "{text}").map_err(Error::Write)
    }
}

/// Shows messages one at a time.
pub trait Render {
    /// Shows `msg`; a message carrying an error is returned as [`Error::Remote`].
    fn show(&mut self, msg: &JsonMessage) -> Result<(), Error>;
    /// Leaves the last state on screen (bars are finished, not cleared).
    fn finish(&mut self) -> Result<(), Error>;
}

/// Bars on a terminal, plain lines elsewhere.
pub fn renderer(output: Output) -> Box<dyn Render> {
    if output.is_terminal() {
        Box::new(Bars::new(output))
    } else {
        Box::new(Plain(output.writer()))
    }
}

/// Reads `lines` (one JSON message each; blank lines skipped) until the end, showing each
/// message; stops at the first error message, which it returns.
pub async fn follow<R: AsyncBufRead + Unpin>(
    lines: R,
    render: &mut dyn Render,
) -> Result<(), Error> {
    let mut lines = lines.lines();
    let result = async {
        while let Some(line) = lines.next_line().await.map_err(Error::Read)? {
            if line.trim().is_empty() {
                continue;
            }
            let msg: JsonMessage =
                serde_json::from_str(&line).map_err(|source| Error::BadLine {
                    line: line.clone(),
                    source,
                })?;
            render.show(&msg)?;
        }
        Ok(())
    }
    .await;
    render.finish()?;
    result
}

/// The failure a message carries, if any.
fn failure(msg: &JsonMessage) -> Option<String> {
    if !msg.error.is_empty() {
        return Some(msg.error.clone());
    }
    msg.error_detail.as_ref().map(|d| d.message.clone())
}

/// A message only reporting bytes moved (nothing to show without a bar).
fn is_byte_count(msg: &JsonMessage) -> bool {
    msg.progress_detail
        .as_ref()
        .is_some_and(|p| p.current > 0 || p.total > 0)
}

/// The line a non-terminal shows for `msg`, without its newline; `None` for byte counts and
/// messages with nothing to show (`aux` alone).
pub fn plain_line(msg: &JsonMessage) -> Option<String> {
    if is_byte_count(msg) {
        return None;
    }
    if !msg.stream.is_empty() {
        return Some(msg.stream.trim_end_matches('\n').to_string());
    }
    if msg.status.is_empty() {
        return None;
    }
    Some(if msg.id.is_empty() {
        msg.status.clone()
    } else {
        format!("{}: {}", msg.id, msg.status)
    })
}

/// Plain lines into any writer.
pub struct Plain<W: Write>(pub W);

impl<W: Write> Render for Plain<W> {
    fn show(&mut self, msg: &JsonMessage) -> Result<(), Error> {
        if let Some(e) = failure(msg) {
            return Err(Error::Remote(e));
        }
        if let Some(line) = plain_line(msg) {
            writeln!(self.0, "{line}").map_err(Error::Write)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Error> {
        self.0.flush().map_err(Error::Write)
    }
}

/// One line per id on a terminal, a bar while bytes move.
pub struct Bars {
    output: Output,
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
}

/// `<id>: <status>` alone.
const TEXT_TEMPLATE: &str = "{prefix}: {wide_msg}";
/// `<id>: <status> [=====>     ] 1.2 MiB/3.4 MiB`.
const BAR_TEMPLATE: &str = "{prefix}: {msg:<12} [{bar:40}] {bytes}/{total_bytes}";
/// `<id>: <status> 1.2 MiB` when the total is unknown.
const BYTES_TEMPLATE: &str = "{prefix}: {msg:<12} {bytes}";

impl Bars {
    pub fn new(output: Output) -> Self {
        Self {
            output,
            multi: Self::multi(output),
            bars: HashMap::new(),
        }
    }

    fn multi(output: Output) -> MultiProgress {
        MultiProgress::with_draw_target(match output {
            Output::Stdout => ProgressDrawTarget::stdout(),
            Output::Stderr => ProgressDrawTarget::stderr(),
        })
    }

    fn style(template: &str) -> ProgressStyle {
        ProgressStyle::with_template(template)
            .expect("the templates are valid")
            .progress_chars("=> ")
    }

    /// Leaves every bar's last line on screen and starts a new group below them (Docker also
    /// forgets the ids once a line without one is printed).
    fn close_group(&mut self) {
        for bar in self.bars.values() {
            bar.finish();
        }
        self.bars.clear();
        self.multi = Self::multi(self.output);
    }
}

impl Render for Bars {
    fn show(&mut self, msg: &JsonMessage) -> Result<(), Error> {
        if let Some(e) = failure(msg) {
            self.close_group();
            return Err(Error::Remote(e));
        }
        if msg.id.is_empty() || !msg.stream.is_empty() {
            if let Some(line) = plain_line(msg) {
                self.close_group();
                self.output.line(&line)?;
            }
            return Ok(());
        }
        let bar = self.bars.entry(msg.id.clone()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new(0));
            bar.set_style(Self::style(TEXT_TEMPLATE));
            bar.set_prefix(msg.id.clone());
            bar
        });
        match &msg.progress_detail {
            Some(p) if p.total > 0 => {
                bar.set_style(Self::style(BAR_TEMPLATE));
                bar.set_length(p.total);
                bar.set_position(p.current.min(p.total));
            }
            Some(p) if p.current > 0 => {
                bar.set_style(Self::style(BYTES_TEMPLATE));
                bar.set_position(p.current);
            }
            _ => bar.set_style(Self::style(TEXT_TEMPLATE)),
        }
        bar.set_message(msg.status.clone());
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Error> {
        self.close_group();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pull as hyperd streams it (the contract of `POST /image/create?imageName=`).
    const PULL: &str = r#"{"status":"Pulling from library/busybox","id":"latest"}
{"status":"Pulling fs layer","progressDetail":{},"id":"9ad63333ebc9"}
{"status":"Downloading","progressDetail":{"current":1024,"total":2220094},"id":"9ad63333ebc9"}
{"status":"Downloading","progressDetail":{"current":2220094,"total":2220094},"id":"9ad63333ebc9"}
{"status":"Verifying Checksum","progressDetail":{},"id":"9ad63333ebc9"}
{"status":"Download complete","progressDetail":{},"id":"9ad63333ebc9"}
{"status":"Extracting","progressDetail":{"current":32768,"total":2220094},"id":"9ad63333ebc9"}
{"status":"Pull complete","progressDetail":{},"id":"9ad63333ebc9"}

{"status":"Digest: sha256:ba76950ac9eaa407512c9d859cea48114eeff8a6f12ebaa5d32ce79d4a017dd8"}
{"status":"Status: Downloaded newer image for busybox:latest"}
"#;

    async fn render(stream: &str) -> (String, Result<(), Error>) {
        let mut out = Plain(Vec::new());
        let result = follow(stream.as_bytes(), &mut out).await;
        (String::from_utf8(out.0).unwrap(), result)
    }

    #[tokio::test]
    async fn a_pull_becomes_docker_plain_lines() {
        let (out, result) = render(PULL).await;
        result.unwrap();
        assert_eq!(
            out,
            "latest: Pulling from library/busybox\n\
             9ad63333ebc9: Pulling fs layer\n\
             9ad63333ebc9: Verifying Checksum\n\
             9ad63333ebc9: Download complete\n\
             9ad63333ebc9: Pull complete\n\
             Digest: sha256:ba76950ac9eaa407512c9d859cea48114eeff8a6f12ebaa5d32ce79d4a017dd8\n\
             Status: Downloaded newer image for busybox:latest\n"
        );
    }

    #[tokio::test]
    async fn a_push_shows_its_digest_line_and_not_its_aux() {
        let push = r#"{"status":"The push refers to repository [127.0.0.1:5000/app]"}
{"status":"Preparing","progressDetail":{},"id":"3d24ee258efc"}
{"status":"Pushing","progressDetail":{"current":512,"total":4096},"id":"3d24ee258efc"}
{"status":"Layer already exists","progressDetail":{},"id":"0b86ee7e1c7d"}
{"status":"Pushed","progressDetail":{},"id":"3d24ee258efc"}
{"status":"1: digest: sha256:aaaa size: 527"}
{"progressDetail":{},"aux":{"Tag":"1","Digest":"sha256:aaaa","Size":527}}
"#;
        let (out, result) = render(push).await;
        result.unwrap();
        assert_eq!(
            out,
            "The push refers to repository [127.0.0.1:5000/app]\n\
             3d24ee258efc: Preparing\n\
             0b86ee7e1c7d: Layer already exists\n\
             3d24ee258efc: Pushed\n\
             1: digest: sha256:aaaa size: 527\n"
        );
    }

    #[tokio::test]
    async fn a_load_prints_its_stream_text() {
        let load = "{\"stream\":\"Loaded image: busybox:latest\\n\"}\n\
                    {\"stream\":\"Loaded image ID: sha256:abc\\n\"}\n";
        let (out, result) = render(load).await;
        result.unwrap();
        assert_eq!(
            out,
            "Loaded image: busybox:latest\nLoaded image ID: sha256:abc\n"
        );
    }

    #[tokio::test]
    async fn an_error_message_ends_the_stream_with_that_error() {
        let failing = r#"{"status":"Pulling from library/nope","id":"latest"}
{"error":"manifest unknown: busybox:nope","errorDetail":{"message":"manifest unknown: busybox:nope"}}
{"status":"never shown"}
"#;
        let (out, result) = render(failing).await;
        assert_eq!(out, "latest: Pulling from library/nope\n");
        let e = result.unwrap_err();
        assert!(matches!(e, Error::Remote(_)));
        assert_eq!(e.to_string(), "manifest unknown: busybox:nope");

        // errorDetail alone is a failure too.
        let (_, result) = render("{\"errorDetail\":{\"message\":\"denied\"}}\n").await;
        assert_eq!(result.unwrap_err().to_string(), "denied");
    }

    #[tokio::test]
    async fn a_line_that_is_not_json_is_an_error_naming_it() {
        let (_, result) = render("{\"status\":\"ok\"}\nnot json\n").await;
        let e = result.unwrap_err();
        assert_eq!(
            e.to_string(),
            "unexpected line in the daemon's answer: not json"
        );
    }
}
