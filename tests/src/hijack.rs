//! Hijacked connections driven by hand over a daemon's unix socket, as a Docker client does:
//! the request with `Connection: Upgrade`, the `101 UPGRADED` head, then a raw stream (stdin
//! in; stdcopy frames or raw TTY bytes out). Reads time out (a hang fails the test).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::daemon::Http;

/// How long a read on a hijacked stream may block.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// An upgraded connection.
pub struct Hijacked {
    pub stream: UnixStream,
}

impl Hijacked {
    pub fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Half-closes our side: the process sees the end of its stdin.
    pub fn close_stdin(&mut self) {
        self.stream.shutdown(std::net::Shutdown::Write).unwrap();
    }

    /// Everything until the server closes the stream.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.stream
            .read_to_end(&mut out)
            .expect("the stream ends within the read timeout");
        out
    }

    /// Reads until `want` has been seen (raw bytes); returns all read so far.
    pub fn read_until(&mut self, want: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while !out.windows(want.len()).any(|w| w == want) {
            let n = self.stream.read(&mut buf).unwrap_or_else(|e| {
                panic!(
                    "waiting for {:?}: {e}; got {:?}",
                    String::from_utf8_lossy(want),
                    String::from_utf8_lossy(&out)
                )
            });
            assert!(
                n > 0,
                "stream ended before {:?}; got {:?}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(&out)
            );
            out.extend_from_slice(&buf[..n]);
        }
        out
    }
}

/// `POST path` as a hijack request: `Ok` after `101`, else the refusal (status and body).
pub fn hijack(socket: &Path, path: &str) -> Result<Hijacked, Http> {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: hyperd\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    // The head, byte by byte: nothing of the raw stream may be read with it.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream
            .read(&mut b)
            .expect("an answer to the hijack request");
        assert!(
            n > 0,
            "connection closed in the head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status == 101 {
        return Ok(Hijacked { stream });
    }
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).unwrap();
    Err(Http {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Docker stdcopy frames, strictly: (stream id, payload) each.
pub fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        assert!(bytes.len() >= 8, "a cut-off frame header: {bytes:?}");
        let len = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        assert_eq!(&bytes[1..4], &[0, 0, 0], "frame header {:?}", &bytes[..8]);
        assert!(bytes.len() >= 8 + len, "a cut-off frame");
        out.push((bytes[0], bytes[8..8 + len].to_vec()));
        bytes = &bytes[8 + len..];
    }
    out
}

/// The text of stream `id` (1 stdout, 2 stderr) in `frames`.
pub fn stream_text(frames: &[(u8, Vec<u8>)], id: u8) -> String {
    let bytes: Vec<u8> = frames
        .iter()
        .filter(|(s, _)| *s == id)
        .flat_map(|(_, d)| d.iter().copied())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}
