//! The HTTP client of hyperd's REST API, over a unix socket or TCP: plain requests, streamed
//! ones (a request body read from a file, an answer read as it arrives), and hijacked ones
//! (`101 UPGRADED`, then a raw stream). Non-2xx answers become [`Error::Refused`], carrying the
//! status and the daemon's message.

use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyDataStream, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_stream::StreamExt as _;
use tokio_util::io::{ReaderStream, StreamReader};

/// hyperctl's API prefix (any `/v<digits.dots>` works).
const API_PREFIX: &str = "/v1.1.0";

/// A request body: bytes in memory, or a file or stdin read as it is sent (chunked).
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The daemon answered with a non-2xx status; `message` is its body (or the status' reason
    /// when the body is empty).
    #[error("{message}")]
    Refused { status: StatusCode, message: String },
}

/// The HTTP status of a refused request, if `e` is one.
pub fn refused_status(e: &anyhow::Error) -> Option<StatusCode> {
    e.downcast_ref::<Error>()
        .map(|Error::Refused { status, .. }| *status)
}

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body streamed from `reader` as it is sent.
pub fn streamed(reader: impl AsyncRead + Send + 'static) -> Body {
    StreamBody::new(ReaderStream::new(reader).map(|chunk| chunk.map(Frame::data))).boxed_unsync()
}

/// An answer's body as a buffered reader (for line-by-line JSON streams).
/// A body cut short (the daemon stopped or closed the connection mid-answer) reads as
/// "the daemon closed the connection" rather than hyper's chunk-decoding message.
pub fn reader(body: Incoming) -> impl AsyncBufRead + Unpin {
    StreamReader::new(BodyDataStream::new(body).map(|chunk| chunk.map_err(body_error)))
}

/// hyper's error for a body that could not be read, as our reader's I/O error.
fn body_error(e: hyper::Error) -> std::io::Error {
    use std::error::Error as _;
    let eof = e
        .source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof);
    if eof || e.is_incomplete_message() || e.is_closed() {
        // Not UnexpectedEof: readers take that for a clean end between frames.
        std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "the daemon closed the connection",
        )
    } else {
        std::io::Error::other(e)
    }
}

#[derive(Debug, Clone)]
pub enum Host {
    Unix(PathBuf),
    Tcp(String),
}

impl Host {
    pub fn parse(s: &str) -> Result<Self> {
        if let Some(p) = s.strip_prefix("unix://") {
            return Ok(Host::Unix(p.into()));
        }
        if let Some(a) = s.strip_prefix("tcp://") {
            return Ok(Host::Tcp(a.into()));
        }
        if s.starts_with('/') {
            return Ok(Host::Unix(s.into()));
        }
        bail!("host {s:?}: expected unix:///path or tcp://HOST:PORT")
    }
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub struct Client {
    host: Host,
}

/// The upgraded connection of a hijacked request.
pub type Hijacked = TokioIo<hyper::upgrade::Upgraded>;

impl Client {
    pub fn new(host: Host) -> Self {
        Self { host }
    }

    async fn connect(&self) -> Result<Stream> {
        Ok(match &self.host {
            Host::Unix(p) => Stream::Unix(UnixStream::connect(p).await.with_context(|| {
                format!(
                    "cannot connect to hyperd at unix://{}; is it running?",
                    p.display()
                )
            })?),
            Host::Tcp(a) => Stream::Tcp(TcpStream::connect(a).await.with_context(|| {
                format!("cannot connect to hyperd at tcp://{a}; is it running?")
            })?),
        })
    }

    async fn send(&self, req: Request<Body>, upgrade: bool) -> Result<Response<Incoming>> {
        let io = TokioIo::new(self.connect().await?);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(async move {
            let conn = conn.with_upgrades();
            if let Err(e) = conn.await
                && !upgrade
            {
                eprintln!("hyperctl: connection: {e}");
            }
        });
        Ok(sender.send_request(req).await?)
    }

    fn request(
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Body,
    ) -> Result<Request<Body>> {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{API_PREFIX}{path}"))
            .header("host", "hyperd")
            .header(
                "user-agent",
                concat!("Hyper-Client/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
        }
        Ok(b.body(body)?)
    }

    /// Sends a request; a non-2xx answer is an error with the daemon's message.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Bytes> {
        let resp = self
            .send(
                Self::request(method, path, content_type, full(body))?,
                false,
            )
            .await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        check(status, &body)?;
        Ok(body)
    }

    /// Sends a request with extra `headers` and returns the answer's body unread, for answers
    /// that stream (progress messages, a tar archive). A non-2xx answer is read whole and
    /// becomes an error with the daemon's message.
    pub async fn open(
        &self,
        method: Method,
        path: &str,
        headers: &[(&'static str, String)],
        content_type: Option<&str>,
        body: Body,
    ) -> Result<Incoming> {
        let mut req = Self::request(method, path, content_type, body)?;
        for (name, value) in headers {
            req.headers_mut().insert(*name, value.parse()?);
        }
        let resp = self.send(req, false).await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp.into_body());
        }
        let body = resp.into_body().collect().await?.to_bytes();
        Err(refused(status, &body))
    }

    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let body = self.call(Method::GET, path, None, Bytes::new()).await?;
        serde_json::from_slice(&body).with_context(|| format!("unexpected answer to {path}"))
    }

    /// `GET /container/info` of a container name, id or id prefix.
    pub async fn container_info(
        &self,
        container: &str,
    ) -> Result<hyper_proto::rest::ContainerInfoResponse> {
        self.get(&format!("/container/info?container={}", enc(container)))
            .await
    }

    pub async fn post<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let body = self.call(Method::POST, path, None, Bytes::new()).await?;
        serde_json::from_slice(&body).with_context(|| format!("unexpected answer to {path}"))
    }

    pub async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        json: Vec<u8>,
    ) -> Result<T> {
        let body = self
            .call(Method::POST, path, Some("application/json"), json.into())
            .await?;
        serde_json::from_slice(&body).with_context(|| format!("unexpected answer to {path}"))
    }

    /// A hijacked request: after `101 UPGRADED` the connection is a raw stream.
    pub async fn hijack(&self, path: &str) -> Result<Hijacked> {
        let mut req = Self::request(Method::POST, path, Some("text/plain"), full(Bytes::new()))?;
        req.headers_mut().insert("connection", "Upgrade".parse()?);
        req.headers_mut().insert("upgrade", "tcp".parse()?);
        let resp = self.send(req, true).await?;
        let status = resp.status();
        if status != StatusCode::SWITCHING_PROTOCOLS {
            let body = resp.into_body().collect().await?.to_bytes();
            check(status, &body)?;
            bail!("{path}: expected 101 UPGRADED, got {status}");
        }
        Ok(TokioIo::new(hyper::upgrade::on(resp).await?))
    }
}

fn check(status: StatusCode, body: &[u8]) -> Result<()> {
    if status.is_success() {
        return Ok(());
    }
    Err(refused(status, body))
}

fn refused(status: StatusCode, body: &[u8]) -> anyhow::Error {
    let msg = String::from_utf8_lossy(body).trim().to_string();
    Error::Refused {
        status,
        message: if msg.is_empty() {
            status.to_string()
        } else {
            msg
        },
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};
    use tokio::io::AsyncReadExt as _;

    /// The body of an answer from a daemon that sends one chunk, `chunk`, then dies mid-body.
    async fn cut_body(chunk: &'static [u8]) -> Incoming {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("hyper.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = [0u8; 4096];
            let _n = conn.read(&mut head).unwrap();
            let head = format!(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n",
                chunk.len()
            );
            conn.write_all(head.as_bytes()).unwrap();
            conn.write_all(chunk).unwrap();
            conn.write_all(b"\r\n").unwrap();
        });
        let client = Client::new(Host::Unix(sock));
        let body = client
            .open(
                Method::GET,
                "/container/logs",
                &[],
                None,
                full(Bytes::new()),
            )
            .await
            .unwrap();
        server.join().unwrap();
        body
    }

    /// `logs -f` of a non-TTY container when hyperd stops: an error, not a clean end.
    #[tokio::test]
    async fn stdcopy_frames_cut_short_are_an_error() {
        let body = cut_body(b"\x01\0\0\0\0\0\0\x03hi\n").await;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let e = crate::stdcopy::demux(reader(body), &mut out, &mut err)
            .await
            .unwrap_err();
        assert_eq!(out, b"hi\n");
        assert_eq!(e.to_string(), "the daemon closed the connection");
    }

    #[tokio::test]
    async fn a_body_cut_short_says_the_daemon_closed_the_connection() {
        let body = cut_body(b"hello").await;
        let mut input = reader(body);
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        let e = loop {
            match input.read(&mut buf).await {
                Ok(0) => panic!("a clean end after {got:?}"),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break e,
            }
        };
        assert_eq!(got, b"hello");
        assert_eq!(e.to_string(), "the daemon closed the connection");
    }
}
