//! Cloud Hypervisor's REST API (`--api-socket`): HTTP/1.1 on a unix socket, one connection
//! per request (CH's server answers one request at a time per connection anyway). Typed
//! bodies for the subset of `cloud-hypervisor-openapi.yaml` we use; CH's error bodies (a JSON
//! list of messages, outermost first) end up in our errors, classified by status code.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::net::UnixStream;

use crate::error::{Error, Result};

/// Our name for CH in errors and logs.
pub const VMM: &str = "cloud-hypervisor";
/// One API call may take this long (vm.boot loads the kernel; everything else is quick).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

// ---- request bodies -------------------------------------------------------------------------

/// `VmConfig`: the body of `vm.create`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmConfig {
    pub payload: PayloadConfig,
    pub cpus: CpusConfig,
    pub memory: MemoryConfig,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fs: Vec<FsConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub net: Vec<NetConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<DiskConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vsock: Option<VsockConfig>,
    /// The 8250 UART, `ttyS0` in the guest.
    pub serial: ConsoleConfig,
    /// The virtio console, `hvc0`; CH's default writes to its own stdout.
    pub console: ConsoleConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PayloadConfig {
    pub kernel: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initramfs: Option<PathBuf>,
    pub cmdline: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpusConfig {
    pub boot_vcpus: u32,
    pub max_vcpus: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryConfig {
    /// Bytes.
    pub size: u64,
    /// vhost-user devices (virtiofsd) need guest memory they can map.
    pub shared: bool,
}

/// `FsConfig`: a virtio-fs device backed by virtiofsd (`vm.create` or `vm.add-fs`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FsConfig {
    pub tag: String,
    pub socket: PathBuf,
    pub num_queues: u32,
    pub queue_size: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// `NetConfig`: a tap the host prepared (`vm.add-net`), named by `tap` or, with no name,
/// sent as an fd with the request ([`ApiClient::add_net_with_fd`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tap: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_queues: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl NetConfig {
    /// The body for a tap sent as an fd: one rx/tx queue pair of 256 descriptors (CH's
    /// defaults, spelled out so the request says what the guest gets).
    pub fn for_tap_fd(mac: &str, mtu: u32) -> Self {
        Self {
            tap: None,
            mac: Some(mac.to_string()),
            mtu: Some(mtu),
            num_queues: Some(2),
            queue_size: Some(256),
            id: None,
        }
    }
}

/// `DiskConfig`: a virtio-blk disk. `path` is the shim's descriptor of the image
/// (`/proc/<shim pid>/fd/<n>`), so CH uses the inode the shim opened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiskConfig {
    pub path: PathBuf,
    pub readonly: bool,
    /// O_DIRECT: QEMU's cache modes `none` and `directsync`.
    pub direct: bool,
    pub serial: String,
    pub id: String,
    /// "Raw" | "Qcow2": said, never probed from the image's content.
    pub image_type: String,
    /// A qcow2's backing file is never opened.
    pub backing_files: bool,
}

/// `VsockConfig`: CH's built-in hybrid vsock, served on `socket`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VsockConfig {
    pub cid: u64,
    pub socket: PathBuf,
}

/// `SerialConfig` / `ConsoleConfig` (the fields both share).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConsoleConfig {
    pub mode: ConsoleMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

impl ConsoleConfig {
    pub fn off() -> Self {
        Self {
            mode: ConsoleMode::Off,
            file: None,
        }
    }

    pub fn file(path: &Path) -> Self {
        Self {
            mode: ConsoleMode::File,
            file: Some(path.to_path_buf()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ConsoleMode {
    Off,
    File,
}

/// `VmRemoveDevice`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmRemoveDevice {
    pub id: String,
}

// ---- response bodies ------------------------------------------------------------------------

/// `VmmPingResponse`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VmmPingResponse {
    /// The crate version, e.g. `54.0.0` (older releases prefix a `v`).
    pub version: String,
    /// `git describe` of the build, e.g. `v53.0-246-gae44c2971-dirty`.
    #[serde(default)]
    pub build_version: String,
    #[serde(default)]
    pub pid: Option<i64>,
    #[serde(default)]
    pub features: Vec<String>,
}

/// `VmInfo` (the VM's full config is kept as JSON: we only read the state).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VmInfo {
    pub state: VmState,
    pub config: serde_json::Value,
    #[serde(default)]
    pub memory_actual_size: Option<u64>,
}

/// `VmState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum VmState {
    Created,
    Running,
    Shutdown,
    Paused,
    BreakPoint,
}

/// `PciDeviceInfo`: what a hot-plug answers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PciDeviceInfo {
    pub id: String,
    pub bdf: String,
}

/// `VmCounters`: device id → counter name → value.
pub type VmCounters = BTreeMap<String, BTreeMap<String, u64>>;

// ---- the client -----------------------------------------------------------------------------

/// What went wrong with one API call, before it is classified into the shim's [`Error`].
#[derive(Debug, PartialEq)]
pub enum Failure {
    /// The socket refused or dropped the connection: CH is gone or not up yet.
    Unreachable(String),
    /// No answer within the request timeout.
    NoAnswer(Duration),
    /// CH answered with an error status; `messages` is its error chain.
    Status {
        status: StatusCode,
        messages: Vec<String>,
    },
    /// CH answered 2xx with a body we cannot read.
    BadBody(String),
}

/// The shim's error for a failed call to `endpoint`. The status says whose mistake it was:
/// 400 a config CH refused, 404 a VM or device that does not exist, 405/409 a call that does
/// not fit the VM's state or a duplicate device, 429 "try again", anything else CH's own.
pub fn classify(endpoint: &str, failure: Failure) -> Error {
    let vmm = |message: String| Error::Vmm { vmm: VMM, message };
    match failure {
        Failure::Unreachable(e) => Error::Unavailable(format!("{VMM}: {endpoint}: {e}")),
        Failure::NoAnswer(after) => Error::Timeout(format!(
            "{VMM}: {endpoint}: no answer after {:.1}s",
            after.as_secs_f64()
        )),
        Failure::BadBody(e) => vmm(format!("{endpoint}: unreadable answer: {e}")),
        Failure::Status { status, messages } => {
            let chain = if messages.is_empty() {
                status.to_string()
            } else {
                format!("{} ({})", messages.join(": "), status.as_u16())
            };
            let message = format!("{VMM}: {endpoint}: {chain}");
            match status {
                StatusCode::BAD_REQUEST => Error::InvalidArgument(message),
                StatusCode::NOT_FOUND => Error::NotFound(message),
                StatusCode::METHOD_NOT_ALLOWED | StatusCode::CONFLICT => Error::Conflict(message),
                StatusCode::TOO_MANY_REQUESTS => Error::Unavailable(message),
                _ => vmm(format!("{endpoint}: {chain}")),
            }
        }
    }
}

/// CH's error body: a JSON list of messages (current releases) or plain text (older ones).
pub fn error_messages(body: &[u8]) -> Vec<String> {
    if let Ok(list) = serde_json::from_slice::<Vec<String>>(body) {
        return list;
    }
    let text = String::from_utf8_lossy(body).trim().to_string();
    if text.is_empty() { vec![] } else { vec![text] }
}

#[derive(Debug, Clone)]
pub struct ApiClient {
    socket: PathBuf,
    timeout: Duration,
}

impl ApiClient {
    pub fn new(socket: PathBuf) -> Self {
        Self::with_timeout(socket, REQUEST_TIMEOUT)
    }

    pub fn with_timeout(socket: PathBuf, timeout: Duration) -> Self {
        Self { socket, timeout }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// One request on a fresh connection; the 2xx body, or why not.
    pub async fn call(
        &self,
        method: Method,
        endpoint: &str,
        body: Option<Vec<u8>>,
    ) -> std::result::Result<Bytes, Failure> {
        match tokio::time::timeout(self.timeout, self.exchange(method, endpoint, body)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::NoAnswer(self.timeout)),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        endpoint: &str,
        body: Option<Vec<u8>>,
    ) -> std::result::Result<Bytes, Failure> {
        let unreachable = |e: &dyn std::fmt::Display| Failure::Unreachable(e.to_string());
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| Failure::Unreachable(format!("connect {}: {e}", self.socket.display())))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        // Drives the connection; it ends with the exchange (or when this call is dropped).
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::trace!("cloud-hypervisor api connection: {e}");
            }
        });
        let mut request = Request::builder()
            .method(method)
            .uri(format!("/api/v1/{endpoint}"))
            .header(hyper::header::HOST, "localhost")
            .header(hyper::header::ACCEPT, "application/json");
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| Failure::BadBody(format!("building the request: {e}")))?;
        let answered = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| unreachable(&e))?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(&e))?
                .to_bytes();
            Ok::<_, Failure>((status, bytes))
        }
        .await;
        driver.abort();
        let (status, bytes) = answered?;
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(Failure::Status {
                status,
                messages: error_messages(&bytes),
            })
        }
    }

    async fn put<B: Serialize>(&self, endpoint: &str, body: Option<&B>) -> Result<Bytes> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| classify(endpoint, Failure::BadBody(e.to_string())))?;
        self.call(Method::PUT, endpoint, body)
            .await
            .map_err(|f| classify(endpoint, f))
    }

    async fn put_empty(&self, endpoint: &str) -> Result<()> {
        self.put::<()>(endpoint, None).await.map(drop)
    }

    async fn get<T: DeserializeOwned>(&self, endpoint: &str) -> Result<T> {
        let body = self
            .call(Method::GET, endpoint, None)
            .await
            .map_err(|f| classify(endpoint, f))?;
        parse(endpoint, &body)
    }

    pub async fn ping(&self) -> Result<VmmPingResponse> {
        self.get("vmm.ping").await
    }

    pub async fn create(&self, config: &VmConfig) -> Result<()> {
        self.put("vm.create", Some(config)).await.map(drop)
    }

    pub async fn boot(&self) -> Result<()> {
        self.put_empty("vm.boot").await
    }

    pub async fn info(&self) -> Result<VmInfo> {
        self.get("vm.info").await
    }

    pub async fn counters(&self) -> Result<VmCounters> {
        self.get("vm.counters").await
    }

    pub async fn pause(&self) -> Result<()> {
        self.put_empty("vm.pause").await
    }

    pub async fn resume(&self) -> Result<()> {
        self.put_empty("vm.resume").await
    }

    pub async fn shutdown_vm(&self) -> Result<()> {
        self.put_empty("vm.shutdown").await
    }

    pub async fn delete_vm(&self) -> Result<()> {
        self.put_empty("vm.delete").await
    }

    /// Makes the CH process exit.
    pub async fn shutdown_vmm(&self) -> Result<()> {
        self.put_empty("vmm.shutdown").await
    }

    /// Hot-plugs a device into a booted VM (`Some`), or adds it to a created one (`None`).
    async fn add(&self, endpoint: &str, body: &impl Serialize) -> Result<Option<PciDeviceInfo>> {
        let answer = self.put(endpoint, Some(body)).await?;
        if answer.is_empty() {
            Ok(None)
        } else {
            parse(endpoint, &answer).map(Some)
        }
    }

    pub async fn add_fs(&self, fs: &FsConfig) -> Result<Option<PciDeviceInfo>> {
        self.add("vm.add-fs", fs).await
    }

    pub async fn add_net(&self, net: &NetConfig) -> Result<Option<PciDeviceInfo>> {
        self.add("vm.add-net", net).await
    }

    /// `vm.add-net` with the tap's fd attached (SCM_RIGHTS) to the request bytes, as CH reads
    /// fds from the API socket together with the request (Kata does the same). CH takes its
    /// own copy of the fd; the caller may close `tap` afterwards.
    pub async fn add_net_with_fd(
        &self,
        net: &NetConfig,
        tap: BorrowedFd<'_>,
    ) -> Result<Option<PciDeviceInfo>> {
        const ENDPOINT: &str = "vm.add-net";
        let body = serde_json::to_vec(net)
            .map_err(|e| classify(ENDPOINT, Failure::BadBody(e.to_string())))?;
        let request = raw_request("PUT", ENDPOINT, &body);
        let socket = self.socket.clone();
        let tap = tap
            .try_clone_to_owned()
            .map_err(|e| Error::io("dup the tap fd", e))?;
        let timeout = self.timeout;
        let exchange = tokio::task::spawn_blocking(move || {
            exchange_with_fd(&socket, &request, tap.as_fd(), timeout)
        });
        let (status, answer) = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(result)) => result.map_err(|f| classify(ENDPOINT, f))?,
            Ok(Err(e)) => return Err(classify(ENDPOINT, Failure::Unreachable(e.to_string()))),
            Err(_) => return Err(classify(ENDPOINT, Failure::NoAnswer(self.timeout))),
        };
        if !status.is_success() {
            return Err(classify(
                ENDPOINT,
                Failure::Status {
                    status,
                    messages: error_messages(&answer),
                },
            ));
        }
        if answer.is_empty() {
            Ok(None)
        } else {
            parse(ENDPOINT, &answer).map(Some)
        }
    }

    pub async fn remove_device(&self, id: &str) -> Result<()> {
        self.put("vm.remove-device", Some(&VmRemoveDevice { id: id.into() }))
            .await
            .map(drop)
    }
}

/// An HTTP/1.1 request with a JSON body, as bytes (it has to go out in one `sendmsg` with the
/// fds, so hyper cannot write it).
pub fn raw_request(method: &str, endpoint: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "{method} /api/v1/{endpoint} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// Reads an HTTP/1.1 response from `bytes`: `None` until the head and `Content-Length` bytes of
/// body are all there; then the status and the body.
pub fn parse_response(bytes: &[u8]) -> std::result::Result<Option<(StatusCode, Bytes)>, Failure> {
    let Some(head_end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    let bad = |what: &str| Failure::BadBody(format!("{what}: {head:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| bad("no status line"))?;
    let length = head
        .lines()
        .skip(1)
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>())
        })
        .transpose()
        .map_err(|_| bad("unreadable content-length"))?
        .unwrap_or(0);
    let body = &bytes[head_end + 4..];
    if body.len() < length {
        return Ok(None);
    }
    Ok(Some((status, Bytes::copy_from_slice(&body[..length]))))
}

/// One request on a fresh blocking connection, `fd` attached to its first bytes.
fn exchange_with_fd(
    socket: &Path,
    request: &[u8],
    fd: BorrowedFd<'_>,
    timeout: Duration,
) -> std::result::Result<(StatusCode, Bytes), Failure> {
    use std::io::{IoSlice, Read, Write};
    use std::os::unix::net::UnixStream as StdUnixStream;

    let unreachable = |e: &dyn std::fmt::Display| Failure::Unreachable(e.to_string());
    let mut stream = StdUnixStream::connect(socket)
        .map_err(|e| Failure::Unreachable(format!("connect {}: {e}", socket.display())))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| unreachable(&e))?;
    let fds = [fd.as_raw_fd()];
    let sent = nix::sys::socket::sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(request)],
        &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .map_err(|e| unreachable(&e))?;
    stream
        .write_all(&request[sent..])
        .map_err(|e| unreachable(&e))?;
    let mut answer = Vec::new();
    loop {
        if let Some(response) = parse_response(&answer)? {
            return Ok(response);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(Failure::Unreachable(
                    "connection closed before the answer".into(),
                ));
            }
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Failure::NoAnswer(timeout));
            }
            Err(e) => return Err(unreachable(&e)),
        }
    }
}

fn parse<T: DeserializeOwned>(endpoint: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        classify(
            endpoint,
            Failure::BadBody(format!("{e}: {:?}", String::from_utf8_lossy(body))),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::cloud_hypervisor::openapi_check::Schema;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixListener;

    /// What the fake CH saw: method, path, body.
    type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

    /// A fake CH API server that answers each connection with the next scripted response
    /// (`None`: accept, read the request, then hang up without answering).
    fn fake_ch(dir: &Path, script: Vec<Option<(u16, &'static str)>>) -> (ApiClient, Seen) {
        let socket = dir.join("api.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let seen: Seen = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            for answer in script {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                let head_end = loop {
                    let mut chunk = [0u8; 1024];
                    let n = s.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    let mut chunk = [0u8; 1024];
                    let n = s.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                }
                let mut words = head.split_whitespace();
                let (method, path) = (words.next().unwrap(), words.next().unwrap());
                log.lock().unwrap().push((
                    method.to_string(),
                    path.to_string(),
                    String::from_utf8_lossy(&buf[head_end..]).to_string(),
                ));
                let Some((status, body)) = answer else {
                    drop(s);
                    continue;
                };
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        (
            ApiClient::with_timeout(socket, Duration::from_secs(2)),
            seen,
        )
    }

    #[tokio::test]
    async fn calls_go_to_api_v1_with_their_bodies() {
        let dir = tempfile::tempdir().unwrap();
        let (api, seen) = fake_ch(
            dir.path(),
            vec![
                Some((
                    200,
                    r#"{"build_version":"v53.0","version":"54.0.0","pid":7,"features":["kvm"]}"#,
                )),
                Some((204, "")),
                Some((200, r#"{"id":"_fs1","bdf":"0000:00:06.0"}"#)),
                Some((204, "")),
                Some((200, r#"{"_net2":{"rx_bytes":10,"tx_bytes":3}}"#)),
            ],
        );
        let pong = api.ping().await.unwrap();
        assert_eq!(pong.version, "54.0.0");
        assert_eq!(pong.features, ["kvm"]);
        api.boot().await.unwrap();
        let fs = FsConfig {
            tag: "extra".into(),
            socket: "/r/fs2.sock".into(),
            num_queues: 1,
            queue_size: 1024,
            id: None,
        };
        let added = api.add_fs(&fs).await.unwrap().unwrap();
        assert_eq!(added.bdf, "0000:00:06.0");
        api.remove_device("_fs1").await.unwrap();
        let counters = api.counters().await.unwrap();
        assert_eq!(counters["_net2"]["rx_bytes"], 10);
        let seen = seen.lock().unwrap().clone();
        let calls: Vec<_> = seen.iter().map(|(m, p, _)| format!("{m} {p}")).collect();
        assert_eq!(
            calls,
            [
                "GET /api/v1/vmm.ping",
                "PUT /api/v1/vm.boot",
                "PUT /api/v1/vm.add-fs",
                "PUT /api/v1/vm.remove-device",
                "GET /api/v1/vm.counters",
            ]
        );
        let body: serde_json::Value = serde_json::from_str(&seen[2].2).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"tag":"extra","socket":"/r/fs2.sock","num_queues":1,"queue_size":1024})
        );
        assert_eq!(seen[3].2, r#"{"id":"_fs1"}"#);
        // Every call exists in CH's schema, with that method, and the bodies match it.
        let schema = Schema::load();
        for (method, path, _) in &seen {
            schema.check_operation(method, path);
        }
        schema.check("FsConfig", &body);
        schema.check(
            "VmRemoveDevice",
            &serde_json::from_str::<serde_json::Value>(&seen[3].2).unwrap(),
        );
    }

    #[tokio::test]
    async fn lifecycle_calls_use_the_schemas_methods() {
        let dir = tempfile::tempdir().unwrap();
        let (api, seen) = fake_ch(dir.path(), vec![Some((204, "")); 8]);
        let config = VmConfig {
            payload: PayloadConfig {
                kernel: "/k".into(),
                initramfs: None,
                cmdline: String::new(),
            },
            cpus: CpusConfig {
                boot_vcpus: 1,
                max_vcpus: 1,
            },
            memory: MemoryConfig {
                size: 1 << 28,
                shared: false,
            },
            fs: vec![],
            net: vec![],
            disks: vec![],
            vsock: None,
            serial: ConsoleConfig::off(),
            console: ConsoleConfig::off(),
        };
        api.create(&config).await.unwrap();
        api.pause().await.unwrap();
        api.resume().await.unwrap();
        api.shutdown_vm().await.unwrap();
        api.delete_vm().await.unwrap();
        api.shutdown_vmm().await.unwrap();
        let net = NetConfig {
            tap: Some("tap0".into()),
            mac: Some("52:54:00:12:34:56".into()),
            mtu: Some(1500),
            num_queues: None,
            queue_size: None,
            id: Some("net0".into()),
        };
        assert_eq!(api.add_net(&net).await.unwrap(), None);
        let seen = seen.lock().unwrap().clone();
        let schema = Schema::load();
        for (method, path, _) in &seen {
            schema.check_operation(method, path);
        }
        let paths: Vec<_> = seen.iter().map(|(_, p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/api/v1/vm.create",
                "/api/v1/vm.pause",
                "/api/v1/vm.resume",
                "/api/v1/vm.shutdown",
                "/api/v1/vm.delete",
                "/api/v1/vmm.shutdown",
                "/api/v1/vm.add-net",
            ]
        );
        let body = |i: usize| serde_json::from_str::<serde_json::Value>(&seen[i].2).unwrap();
        schema.check("VmConfig", &body(0));
        assert_eq!(seen[1].2, "", "no body on state changes");
        schema.check("NetConfig", &body(6));
    }

    #[test]
    fn response_types_read_only_schema_fields() {
        let schema = Schema::load();
        schema.check_response_fields(
            "VmmPingResponse",
            &["version", "build_version", "pid", "features"],
            &["version"],
        );
        schema.check_response_fields(
            "VmInfo",
            &["state", "config", "memory_actual_size"],
            &["config", "state"],
        );
        schema.check_response_fields("PciDeviceInfo", &["id", "bdf"], &["id", "bdf"]);
    }

    /// The add-net body CH gets for a tap fd, with the fd itself arriving as SCM_RIGHTS on the
    /// same message as the request.
    #[tokio::test]
    async fn add_net_sends_the_tap_fd_with_the_request() {
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
        use std::io::{IoSliceMut, Write};
        use std::os::fd::{FromRawFd, OwnedFd};
        use std::os::unix::fs::MetadataExt;

        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("api.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 4096];
            let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 2]);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg =
                recvmsg::<()>(s.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty()).unwrap();
            let fds: Vec<OwnedFd> = msg
                .cmsgs()
                .unwrap()
                .flat_map(|c| match c {
                    ControlMessageOwned::ScmRights(fds) => fds,
                    _ => vec![],
                })
                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
                .collect();
            let n = msg.bytes;
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
            (request, fds)
        });
        let tap = std::fs::File::open(dir.path()).unwrap();
        let api = ApiClient::with_timeout(socket, Duration::from_secs(5));
        let net = NetConfig::for_tap_fd("52:54:00:12:34:56", 1400);
        assert_eq!(api.add_net_with_fd(&net, tap.as_fd()).await.unwrap(), None);
        let (request, fds) = server.join().unwrap();
        assert!(
            request.starts_with("PUT /api/v1/vm.add-net HTTP/1.1\r\n"),
            "{request}"
        );
        let body: serde_json::Value =
            serde_json::from_str(request.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"mac":"52:54:00:12:34:56","mtu":1400,"num_queues":2,"queue_size":256})
        );
        Schema::load().check("NetConfig", &body);
        assert_eq!(fds.len(), 1, "one fd, with the request");
        let got = std::fs::File::from(fds.into_iter().next().unwrap());
        let (want, got) = (tap.metadata().unwrap(), got.metadata().unwrap());
        assert_eq!((got.dev(), got.ino()), (want.dev(), want.ino()));
    }

    #[test]
    fn responses_are_read_once_complete() {
        assert_eq!(
            parse_response(b"HTTP/1.1 204 No Content\r\n").unwrap(),
            None
        );
        let (status, body) = parse_response(b"HTTP/1.1 204 No Content\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((status, body.len()), (StatusCode::NO_CONTENT, 0));
        let partial = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 10\r\n\r\n[\"bad";
        assert_eq!(parse_response(partial).unwrap(), None);
        let (status, body) =
            parse_response(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 7\r\n\r\n[\"bad\"]")
                .unwrap()
                .unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(error_messages(&body), ["bad"]);
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
    }

    #[tokio::test]
    async fn a_cold_add_answers_no_device() {
        let dir = tempfile::tempdir().unwrap();
        let (api, _) = fake_ch(dir.path(), vec![Some((204, ""))]);
        let net = NetConfig {
            tap: Some("tap0".into()),
            mac: None,
            mtu: None,
            num_queues: None,
            queue_size: None,
            id: None,
        };
        assert_eq!(api.add_net(&net).await.unwrap(), None);
    }

    /// Every status class CH uses becomes the error kind that says whose mistake it was,
    /// with CH's own error chain in the message.
    #[tokio::test]
    async fn error_statuses_are_classified_with_chs_messages() {
        let dir = tempfile::tempdir().unwrap();
        let chain = r#"["Error creating VM","Invalid memory size"]"#;
        let (api, _) = fake_ch(
            dir.path(),
            vec![
                Some((400, chain)),
                Some((404, "")),
                Some((405, r#"["VM is not running"]"#)),
                Some((409, r#"["Identifier _fs1 already exists"]"#)),
                Some((429, "")),
                Some((500, "Error booting VM: VmAlreadyCreated")),
                Some((503, "[]")),
            ],
        );
        let e = api.boot().await.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "cloud-hypervisor: vm.boot: Error creating VM: Invalid memory size (400)"
        );
        let e = api.info().await.unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e:?}");
        assert_eq!(e.to_string(), "cloud-hypervisor: vm.info: 404 Not Found");
        let e = api.pause().await.unwrap_err();
        assert!(matches!(e, Error::Conflict(_)), "{e:?}");
        assert!(e.to_string().contains("VM is not running (405)"), "{e}");
        let e = api.remove_device("_fs1").await.unwrap_err();
        assert!(matches!(e, Error::Conflict(_)), "{e:?}");
        let e = api.resume().await.unwrap_err();
        assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
        let e = api.delete_vm().await.unwrap_err();
        assert!(matches!(e, Error::Vmm { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "cloud-hypervisor: vm.delete: Error booting VM: VmAlreadyCreated (500)"
        );
        let e = api.shutdown_vm().await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "cloud-hypervisor: vm.shutdown: 503 Service Unavailable"
        );
        assert_eq!(e.code(), tonic::Code::Internal);
    }

    #[tokio::test]
    async fn unreadable_answers_and_hang_ups_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (api, _) = fake_ch(
            dir.path(),
            vec![Some((200, "not json")), Some((200, r#"{"pid":1}"#)), None],
        );
        let e = api.ping().await.unwrap_err();
        assert!(matches!(e, Error::Vmm { .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("cloud-hypervisor: vmm.ping: unreadable answer"),
            "{e}"
        );
        // `version` is required by the schema.
        let e = api.ping().await.unwrap_err();
        assert!(e.to_string().contains("missing field `version`"), "{e}");
        let e = api.boot().await.unwrap_err();
        assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
    }

    #[tokio::test]
    async fn no_socket_is_unavailable_and_silence_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let api = ApiClient::new(dir.path().join("none.sock"));
        let e = api.ping().await.unwrap_err();
        assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
        assert!(e.to_string().contains("none.sock"), "{e}");

        // Accepts, never answers.
        let socket = dir.path().join("mute.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let hold = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(s);
        });
        let api = ApiClient::with_timeout(socket, Duration::from_millis(300));
        let e = api.boot().await.unwrap_err();
        assert!(matches!(e, Error::Timeout(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "cloud-hypervisor: vm.boot: no answer after 0.3s"
        );
        hold.abort();
    }

    #[test]
    fn vm_info_reads_the_state() {
        let info: VmInfo = serde_json::from_str(
            r#"{"config":{"payload":{}},"state":"Running","memory_actual_size":268435456,
                "device_tree":{}}"#,
        )
        .unwrap();
        assert_eq!(info.state, VmState::Running);
        assert_eq!(info.memory_actual_size, Some(268_435_456));
    }
}
