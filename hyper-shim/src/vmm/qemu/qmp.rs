//! A minimal QMP client: line-delimited JSON on QEMU's control socket.

use std::path::Path;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::error::{Error, Result};

pub struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

/// What one line from QEMU means for a pending command.
#[derive(Debug, PartialEq)]
pub enum Reply {
    Return(Value),
    Error(String),
    /// An event or greeting: not the answer.
    Other,
}

pub fn parse_line(line: &str) -> Result<Reply> {
    let v: Value = serde_json::from_str(line)
        .map_err(|e| qmp_error(format!("unreadable reply {line:?}: {e}")))?;
    if let Some(r) = v.get("return") {
        return Ok(Reply::Return(r.clone()));
    }
    if let Some(e) = v.get("error") {
        let class = e.get("class").and_then(Value::as_str).unwrap_or("Error");
        let desc = e.get("desc").and_then(Value::as_str).unwrap_or("");
        return Ok(Reply::Error(format!("{class}: {desc}")));
    }
    Ok(Reply::Other)
}

fn qmp_error(message: String) -> Error {
    Error::Vmm {
        vmm: "qemu",
        message,
    }
}

impl Qmp {
    pub async fn connect(path: &Path) -> Result<Self> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| Error::io(format!("connect {}", path.display()), e))?;
        let (read, writer) = stream.into_split();
        let mut qmp = Self {
            reader: BufReader::new(read),
            writer,
        };
        qmp.execute("qmp_capabilities").await?;
        Ok(qmp)
    }

    pub async fn execute(&mut self, command: &str) -> Result<Value> {
        let mut request = json!({ "execute": command }).to_string();
        request.push('\n');
        self.writer
            .write_all(request.as_bytes())
            .await
            .map_err(|e| Error::io(format!("qmp {command}"), e))?;
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .reader
                .read_line(&mut line)
                .await
                .map_err(|e| Error::io(format!("qmp {command}"), e))?;
            if n == 0 {
                return Err(qmp_error(format!("{command}: control socket closed")));
            }
            match parse_line(&line)? {
                Reply::Return(v) => return Ok(v),
                Reply::Error(e) => return Err(qmp_error(format!("{command}: {e}"))),
                Reply::Other => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_events_and_errors() {
        assert_eq!(
            parse_line(r#"{"return": {"status": "running"}}"#).unwrap(),
            Reply::Return(json!({"status": "running"}))
        );
        assert_eq!(
            parse_line(r#"{"QMP": {"version": {}}}"#).unwrap(),
            Reply::Other
        );
        assert_eq!(
            parse_line(r#"{"event": "STOP", "timestamp": {}}"#).unwrap(),
            Reply::Other
        );
        assert_eq!(
            parse_line(r#"{"error": {"class": "CommandNotFound", "desc": "nope"}}"#).unwrap(),
            Reply::Error("CommandNotFound: nope".into())
        );
        assert!(parse_line("garbage").is_err());
    }
}
