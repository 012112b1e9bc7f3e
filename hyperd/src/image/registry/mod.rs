//! The registry transport: manifests and blobs over the OCI distribution API (through the
//! `oci-client` crate), and the credential check of `POST /auth`. It keeps no files and no
//! records: callers store what it fetches and verify blob digests.
//!
//! How a registry is reached follows Docker: `docker.io` names go to `registry-1.docker.io`,
//! after the configured mirrors (tried in order, anonymously; any failure falls through to the
//! next, then to Docker Hub). HTTPS, trusting the system's roots plus every `*.crt` in
//! `<certs_dir>/<host[:port]>/` (Docker's `certs.d`). A host in `insecure`, or `localhost` or
//! 127.0.0.0/8 or `::1` without a CA in `certs.d`, is tried over HTTPS without verification
//! and, if it does not speak TLS, over plain HTTP, as Docker's `--insecure-registry` does.

mod auth;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use tokio::io::{AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::Reference;
use super::reference::DOCKER_HUB;
use crate::error::Kind;
pub use auth::Credentials;

/// Docker's default: `/etc/docker/certs.d/<host:port>/ca.crt`.
pub const DEFAULT_CERTS_DIR: &str = "/etc/docker/certs.d";
/// Where `docker.io` names are pulled from and pushed to. Unit tests get a dead loopback port
/// instead, so that no bug can send them off the machine.
const DOCKER_HUB_HOST: &str = if cfg!(test) {
    "127.0.0.1:1"
} else {
    "registry-1.docker.io"
};
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Per read, not per transfer: a big layer may take long, a stalled one may not.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the HTTPS probe of an insecure registry may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Chunk size when streaming a blob from a file to the registry.
const UPLOAD_CHUNK: usize = 1 << 20;
/// Clients (and their token caches) kept per host and credentials, dropped wholesale past this.
const MAX_CLIENTS: usize = 64;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const ACCEPTED_MANIFESTS: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// The platform hyperd's guests run.
pub const PLATFORM_OS: &str = "linux";
pub const PLATFORM_ARCH: &str = "amd64";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry refused the credentials, or wants some: `<host>: <the registry's reason>`.
    #[error("{0}")]
    Unauthorized(String),
    /// No such repository, tag, manifest or blob.
    #[error("{0}")]
    NotFound(String),
    /// An index without a `linux/amd64` manifest; names the platforms it has.
    #[error("{0}")]
    Platform(String),
    /// The registry could not be reached, or failed (5xx, a broken transfer).
    #[error("{0}")]
    Unreachable(String),
    /// The registry answered something the distribution spec does not allow, or content that
    /// does not match its digest.
    #[error("{0}")]
    Protocol(String),
    /// Our caller's mistake: a malformed digest, header or server address.
    #[error("{0}")]
    InvalidInput(String),
    /// Writing a fetched blob to the caller's writer failed.
    #[error("write blob {digest}: {source}")]
    Write {
        digest: String,
        #[source]
        source: std::io::Error,
    },
    /// Reading a blob to push failed.
    #[error("read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn kind(&self) -> Kind {
        match self {
            Error::Unauthorized(_) | Error::InvalidInput(_) => Kind::InvalidInput,
            Error::NotFound(_) | Error::Platform(_) => Kind::NotFound,
            Error::Unreachable(_) => Kind::Unavailable,
            Error::Protocol(_) | Error::Write { .. } | Error::Read { .. } => Kind::Internal,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// How registries are reached; see the module header.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// `host[:port]` reached over plain HTTP, or HTTPS without verification.
    pub insecure: Vec<String>,
    /// `http[s]://host[:port]` mirrors of Docker Hub, tried in order before it.
    pub mirrors: Vec<String>,
    /// Docker's `certs.d` layout: `<certs_dir>/<host[:port]>/*.crt` are trusted roots.
    pub certs_dir: PathBuf,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            mirrors: Vec::new(),
            certs_dir: DEFAULT_CERTS_DIR.into(),
        }
    }
}

/// A content descriptor (OCI image spec, `descriptor.md`); `digest` is `sha256:<64 hex>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// A single-platform image manifest as the registry serves it.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// `sha256:` of `bytes`.
    pub digest: String,
    /// OCI or Docker schema 2 image manifest media type.
    pub media_type: String,
    /// The manifest exactly as served: its digest is `digest`.
    pub bytes: Vec<u8>,
    pub config: Descriptor,
    /// Base layer first.
    pub layers: Vec<Descriptor>,
    /// The digest of the index (manifest list) the reference named, when it named one:
    /// what Docker shows as the pulled digest.
    pub index_digest: Option<String>,
}

/// A blob to push.
#[derive(Debug, Clone)]
pub enum BlobSource {
    Bytes(Bytes),
    /// Streamed from the file; its length is the blob's size.
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scheme {
    Http,
    Https,
}

/// One registry host as we reach it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Endpoint {
    /// `host[:port]`, as it goes into URLs.
    host: String,
    scheme: Scheme,
    /// Skip certificate verification (insecure registries over HTTPS).
    skip_verify: bool,
}

impl Endpoint {
    fn url(&self, path: &str) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        format!("{scheme}://{}{path}", self.host)
    }

    fn unreachable(&self, e: &reqwest::Error) -> Error {
        Error::Unreachable(format!("registry {}: {}", self.host, chain(e)))
    }

    fn reference(&self, r: &Reference) -> oci_client::Reference {
        let repository = r.repository();
        match (&r.digest, r.tag.as_str()) {
            (Some(digest), "") => {
                oci_client::Reference::with_digest(self.host.clone(), repository, digest.clone())
            }
            (Some(digest), tag) => oci_client::Reference::with_tag_and_digest(
                self.host.clone(),
                repository,
                tag.into(),
                digest.clone(),
            ),
            (None, tag) => {
                oci_client::Reference::with_tag(self.host.clone(), repository, tag.into())
            }
        }
    }
}

/// What an operation is about, naming the host when it is not in the reference (a mirror,
/// Docker Hub).
fn subject(ep: &Endpoint, r: &Reference, thing: String) -> String {
    if ep.host == r.registry() {
        thing
    } else {
        format!("{thing} from {}", ep.host)
    }
}

/// An error and its sources on one line (reqwest's own message omits the cause).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
    }
    s
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    endpoint: Endpoint,
    credentials: Credentials,
}

/// The registry client of the daemon: built once from [`RegistryConfig`]; holds one
/// `oci-client` client (and so one token cache) per host and credentials.
pub struct Registry {
    config: RegistryConfig,
    /// Parsed `mirrors`: scheme and host.
    mirrors: Vec<Endpoint>,
    /// What the probe found for insecure hosts.
    schemes: Mutex<HashMap<String, Scheme>>,
    clients: Mutex<HashMap<ClientKey, oci_client::Client>>,
}

impl Registry {
    /// Errors: a mirror that is not `http[s]://host[:port]` ([`Error::InvalidInput`]).
    pub fn new(config: RegistryConfig) -> Result<Self> {
        let mirrors = config
            .mirrors
            .iter()
            .map(|m| parse_mirror(m))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config,
            mirrors,
            schemes: Mutex::default(),
            clients: Mutex::default(),
        })
    }

    /// The manifest `r` names (by tag or digest). An image index or Docker manifest list is
    /// resolved to its `linux/amd64` manifest. OCI and Docker schema 2 manifests; schema 1 is
    /// refused. Errors: [`Error::NotFound`], [`Error::Platform`] (naming the platforms
    /// present), [`Error::Unauthorized`], [`Error::Unreachable`], [`Error::Protocol`] (also
    /// for a descriptor whose digest is not `sha256:<64 hex>`).
    pub async fn resolve(&self, r: &Reference, creds: &Credentials) -> Result<Resolved> {
        let mut last = None;
        for (ep, creds) in self.pull_endpoints(r, creds).await {
            match self.resolve_at(&ep, r, &creds).await {
                Ok(resolved) => return Ok(resolved),
                Err(e) => last = Some(self.fall_through(&ep, r, e)?),
            }
        }
        Err(last.expect("the origin is always tried"))
    }

    /// Streams blob `digest` of `r`'s repository into `out`, calling `progress(bytes so far)`
    /// after each chunk. oci-client checks the digest as the bytes go by (a mismatch is
    /// [`Error::Protocol`] after everything was written); callers verify what they store all
    /// the same. A mirror that fails before the first byte falls through to the next.
    pub async fn fetch_blob(
        &self,
        r: &Reference,
        digest: &str,
        creds: &Credentials,
        out: &mut (impl AsyncWrite + Unpin),
        mut progress: impl FnMut(u64),
    ) -> Result<()> {
        check_digest(digest).map_err(Error::InvalidInput)?;
        let mut last = None;
        for (ep, creds) in self.pull_endpoints(r, creds).await {
            let mut written = 0u64;
            match self
                .fetch_blob_at(&ep, r, digest, &creds, out, &mut written, &mut progress)
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if written > 0 => return Err(e),
                Err(e) => last = Some(self.fall_through(&ep, r, e)?),
            }
        }
        Err(last.expect("the origin is always tried"))
    }

    /// Whether `r`'s repository has blob `digest` (`HEAD /v2/<name>/blobs/<digest>`).
    pub async fn blob_exists(
        &self,
        r: &Reference,
        digest: &str,
        creds: &Credentials,
    ) -> Result<bool> {
        check_digest(digest).map_err(Error::InvalidInput)?;
        let ep = self.endpoint(r.registry()).await?;
        let client = self.client(&ep, creds).await?;
        let what = subject(&ep, r, format!("blob {digest} in {}", r.repo));
        match client.blob_exists(&ep.reference(r), digest).await {
            Ok(found) => Ok(found),
            Err(e) => Err(self.explain(&ep, creds, &what, e).await),
        }
    }

    /// Uploads blob `digest` into `r`'s repository in one streamed `PUT` (the distribution
    /// spec's monolithic upload), calling `progress(bytes so far)` as it is sent. The registry
    /// checks the digest (a mismatch is [`Error::Protocol`]).
    pub async fn push_blob(
        &self,
        r: &Reference,
        digest: &str,
        data: BlobSource,
        creds: &Credentials,
        progress: impl FnMut(u64) + Send + 'static,
    ) -> Result<()> {
        check_digest(digest).map_err(Error::InvalidInput)?;
        let ep = self.endpoint(r.registry()).await?;
        let client = self.client(&ep, creds).await?;
        let (stream, size) = upload_stream(data, progress).await?;
        let what = subject(&ep, r, format!("push blob {digest} to {}", r.repo));
        match client
            .push_blob_stream(&ep.reference(r), stream, digest, Some(size))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => Err(self.explain(&ep, creds, &what, e).await),
        }
    }

    /// Uploads a manifest (or index) under `r`'s tag (or digest); returns `sha256:` of
    /// `bytes`. The registry refuses a manifest whose blobs it lacks ([`Error::Protocol`]
    /// with its reason, `manifest blob unknown`).
    pub async fn push_manifest(
        &self,
        r: &Reference,
        bytes: &[u8],
        media_type: &str,
        creds: &Credentials,
    ) -> Result<String> {
        let content_type = reqwest::header::HeaderValue::from_str(media_type).map_err(|_| {
            Error::InvalidInput(format!("media type {media_type:?}: not a header value"))
        })?;
        let ep = self.endpoint(r.registry()).await?;
        let client = self.client(&ep, creds).await?;
        let what = subject(&ep, r, format!("push manifest {r}"));
        match client
            .push_manifest_raw(&ep.reference(r), bytes.to_vec(), content_type)
            .await
        {
            Ok(_) => Ok(sha256(bytes)),
            Err(e) => Err(self.explain(&ep, creds, &what, e).await),
        }
    }

    /// `POST /auth`: checks `creds` against the registry at `server_address` (`host[:port]`,
    /// optionally with a scheme and path as `https://index.docker.io/v1/`; empty is Docker
    /// Hub), with Basic auth or the token flow it challenges with. Errors:
    /// [`Error::Unauthorized`] with the registry's reason, [`Error::Unreachable`],
    /// [`Error::InvalidInput`] for a malformed address.
    pub async fn login(&self, server_address: &str, creds: &Credentials) -> Result<()> {
        let registry = login_registry(server_address)?;
        let ep = self.endpoint(&registry).await?;
        let http = self.http_client(&ep)?;
        auth::check(&ep, &http, creds).await.map_err(|e| match e {
            Error::Unauthorized(why) => Error::Unauthorized(format!("login to {}: {why}", ep.host)),
            e => e,
        })
    }

    /// The mirrors (anonymously: a mirror is not given Docker Hub credentials) for Docker Hub
    /// names, then the registry itself.
    async fn pull_endpoints(
        &self,
        r: &Reference,
        creds: &Credentials,
    ) -> Vec<(Endpoint, Credentials)> {
        let mut endpoints = Vec::new();
        if r.registry() == DOCKER_HUB {
            for mirror in &self.mirrors {
                endpoints.push((mirror.clone(), Credentials::Anonymous));
            }
        }
        match self.endpoint(r.registry()).await {
            Ok(ep) => endpoints.push((ep, creds.clone())),
            Err(e) => tracing::warn!(registry = r.registry(), "{e}"),
        }
        endpoints
    }

    /// Keeps `e` to return if nothing else works when `ep` is a mirror; returns it at once
    /// when `ep` is the registry itself or the error is ours.
    fn fall_through(&self, ep: &Endpoint, r: &Reference, e: Error) -> Result<Error> {
        if self.mirrors.contains(ep) && !matches!(e, Error::InvalidInput(_) | Error::Write { .. }) {
            tracing::warn!(mirror = %ep.host, reference = %r, "mirror failed, trying the next: {e}");
            Ok(e)
        } else {
            Err(e)
        }
    }

    async fn resolve_at(
        &self,
        ep: &Endpoint,
        r: &Reference,
        creds: &Credentials,
    ) -> Result<Resolved> {
        let client = self.client(ep, creds).await?;
        let reference = ep.reference(r);
        let what = subject(ep, r, format!("manifest for {r}"));
        let auth = creds.to_oci()?;
        let (bytes, digest) = match client
            .pull_manifest_raw(&reference, &auth, ACCEPTED_MANIFESTS)
            .await
        {
            Ok(found) => found,
            Err(e) => return Err(self.explain(ep, creds, &what, e).await),
        };
        let manifest = parse_manifest(&bytes, &what)?;
        if !manifest.is_index() {
            return manifest.into_resolved(bytes.to_vec(), digest, None, &what);
        }
        let chosen = manifest.choose_platform(&what)?;
        let what = subject(ep, r, format!("manifest {chosen} (linux/amd64) of {r}"));
        let (bytes, platform_digest) = match client
            .pull_manifest_raw(
                &reference.clone_with_digest(chosen.clone()),
                &auth,
                ACCEPTED_MANIFESTS,
            )
            .await
        {
            Ok(found) => found,
            Err(e) => return Err(self.explain(ep, creds, &what, e).await),
        };
        let platform_manifest = parse_manifest(&bytes, &what)?;
        if platform_manifest.is_index() {
            return Err(Error::Protocol(format!("{what}: an index inside an index")));
        }
        platform_manifest.into_resolved(bytes.to_vec(), platform_digest, Some(digest), &what)
    }

    #[allow(clippy::too_many_arguments)]
    async fn fetch_blob_at(
        &self,
        ep: &Endpoint,
        r: &Reference,
        digest: &str,
        creds: &Credentials,
        out: &mut (impl AsyncWrite + Unpin),
        written: &mut u64,
        progress: &mut impl FnMut(u64),
    ) -> Result<()> {
        let client = self.client(ep, creds).await?;
        let what = subject(ep, r, format!("blob {digest} of {}", r.repo));
        let mut stream = match client.pull_blob_stream(&ep.reference(r), digest).await {
            Ok(stream) => stream,
            Err(e) => return Err(self.explain(ep, creds, &what, e).await),
        };
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                match e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<oci_client::errors::DigestError>())
                {
                    Some(mismatch) => Error::Protocol(format!("{what}: {mismatch}")),
                    None => {
                        Error::Unreachable(format!("{what}: download broke off: {}", chain(&e)))
                    }
                }
            })?;
            out.write_all(&chunk).await.map_err(|source| Error::Write {
                digest: digest.into(),
                source,
            })?;
            *written += chunk.len() as u64;
            progress(*written);
        }
        out.flush().await.map_err(|source| Error::Write {
            digest: digest.into(),
            source,
        })
    }

    /// How `registry` (`host[:port]` or `docker.io`) is reached.
    async fn endpoint(&self, registry: &str) -> Result<Endpoint> {
        let host = if registry == DOCKER_HUB {
            DOCKER_HUB_HOST
        } else {
            registry
        };
        let ca_present = !self.ca_certificates(host)?.is_empty();
        let listed = self.config.insecure.iter().any(|h| h == host);
        if !listed && (ca_present || !is_loopback(host)) {
            return Ok(Endpoint {
                host: host.into(),
                scheme: Scheme::Https,
                skip_verify: false,
            });
        }
        let known = self
            .schemes
            .lock()
            .expect("schemes lock")
            .get(host)
            .copied();
        let scheme = match known {
            Some(scheme) => scheme,
            None => self.probe(host).await,
        };
        Ok(Endpoint {
            host: host.into(),
            scheme,
            skip_verify: scheme == Scheme::Https,
        })
    }

    /// HTTPS (unverified) if the host answers it, else plain HTTP. Remembered once either
    /// answers; a host that answers neither is tried over HTTP (and the request says why).
    async fn probe(&self, host: &str) -> Scheme {
        for scheme in [Scheme::Https, Scheme::Http] {
            let ep = Endpoint {
                host: host.into(),
                scheme,
                skip_verify: true,
            };
            let Ok(http) = self.http_client(&ep) else {
                continue;
            };
            let answered = http.get(ep.url("/v2/")).timeout(PROBE_TIMEOUT).send().await;
            match answered {
                Ok(_) => {
                    self.schemes
                        .lock()
                        .expect("schemes lock")
                        .insert(host.into(), scheme);
                    return scheme;
                }
                Err(e) => tracing::debug!(host, ?scheme, "probe: {}", chain(&e)),
            }
        }
        Scheme::Http
    }

    /// PEM files `<certs_dir>/<host>/*.crt`; none when the directory does not exist.
    fn ca_certificates(&self, host: &str) -> Result<Vec<Vec<u8>>> {
        let dir = self.config.certs_dir.join(host);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Read {
                    path: dir.display().to_string(),
                    source,
                });
            }
        };
        let mut certs = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|source| Error::Read {
                    path: dir.display().to_string(),
                    source,
                })?
                .path();
            if path.extension().is_some_and(|e| e == "crt") {
                certs.push(std::fs::read(&path).map_err(|source| Error::Read {
                    path: path.display().to_string(),
                    source,
                })?);
            }
        }
        Ok(certs)
    }

    /// A plain reqwest client for `ep` (probes, login, error reasons), with the TLS settings
    /// the oci-client of `ep` gets.
    fn http_client(&self, ep: &Endpoint) -> Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .danger_accept_invalid_certs(ep.skip_verify);
        let mut roots = Vec::new();
        for pem in self.ca_certificates(&ep.host)? {
            roots.push(reqwest::Certificate::from_pem(&pem).map_err(|e| {
                Error::InvalidInput(format!(
                    "{}/{}: not a PEM certificate: {e}",
                    self.config.certs_dir.display(),
                    ep.host
                ))
            })?);
        }
        if !roots.is_empty() {
            builder = builder.tls_certs_merge(roots);
        }
        builder.build().map_err(|e| {
            Error::Unreachable(format!(
                "registry {}: build HTTP client: {}",
                ep.host,
                chain(&e)
            ))
        })
    }

    /// The oci-client client for `ep` and `creds`, with the credentials stored in it.
    async fn client(&self, ep: &Endpoint, creds: &Credentials) -> Result<oci_client::Client> {
        let key = ClientKey {
            endpoint: ep.clone(),
            credentials: creds.clone(),
        };
        if let Some(client) = self.clients.lock().expect("clients lock").get(&key) {
            return Ok(client.clone());
        }
        let auth = creds.to_oci()?;
        let extra_root_certificates = self
            .ca_certificates(&ep.host)?
            .into_iter()
            .map(|data| Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            })
            .collect();
        let config = ClientConfig {
            protocol: match ep.scheme {
                Scheme::Http => ClientProtocol::Http,
                Scheme::Https => ClientProtocol::Https,
            },
            accept_invalid_certificates: ep.skip_verify,
            extra_root_certificates,
            use_monolithic_push: true,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            ..ClientConfig::default()
        };
        let client = oci_client::Client::try_from(config).map_err(|e| {
            Error::InvalidInput(format!(
                "registry {}: client configuration: {}",
                ep.host,
                chain(&e)
            ))
        })?;
        client.store_auth_if_needed(&ep.host, &auth).await;
        let mut clients = self.clients.lock().expect("clients lock");
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Sorts an oci-client error into ours, with the registry's reason. oci-client drops the
    /// body of a 401 (and the reason a token request failed), so an unauthorized answer is
    /// explained by checking the credentials as `login` does, or else by asking again.
    async fn explain(
        &self,
        ep: &Endpoint,
        creds: &Credentials,
        what: &str,
        e: OciDistributionError,
    ) -> Error {
        match e {
            OciDistributionError::UnauthorizedError { url } => {
                if let Ok(http) = self.http_client(ep) {
                    if !creds.is_anonymous()
                        && let Err(Error::Unauthorized(why)) = auth::check(ep, &http, creds).await
                    {
                        return Error::Unauthorized(format!("{what}: {why}"));
                    }
                    if let Ok(response) = http.get(&url).send().await {
                        let why = auth::reason(response).await;
                        return Error::Unauthorized(format!("{what}: {why}"));
                    }
                }
                Error::Unauthorized(format!("{what}: unauthorized"))
            }
            OciDistributionError::AuthenticationFailure(why) => {
                Error::Unauthorized(format!("{what}: {}", why.trim()))
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                let mut why: Vec<String> = envelope
                    .errors
                    .iter()
                    .map(|e| {
                        let code = serde_json::to_value(&e.code)
                            .ok()
                            .and_then(|v| v.as_str().map(auth::docker_code))
                            .unwrap_or_default();
                        format!("{code}: {}", e.message)
                    })
                    .collect();
                why.dedup();
                let message = format!("{what}: {}", why.join("; "));
                let code = envelope.errors.first().map(|e| &e.code);
                match code {
                    Some(
                        OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound,
                    ) => Error::NotFound(message),
                    Some(OciErrorCode::Unauthorized | OciErrorCode::Denied) => {
                        Error::Unauthorized(message)
                    }
                    Some(OciErrorCode::Toomanyrequests) => Error::Unreachable(message),
                    _ => Error::Protocol(message),
                }
            }
            OciDistributionError::ServerError { code, message, .. } => {
                let status = reqwest::StatusCode::from_u16(code)
                    .unwrap_or(reqwest::StatusCode::INTERNAL_SERVER_ERROR);
                let why = auth::reason_from_body(status, &message);
                let message = format!("{what}: {why}");
                match code {
                    404 => Error::NotFound(message),
                    401 | 403 => Error::Unauthorized(message),
                    500.. => Error::Unreachable(message),
                    _ => Error::Protocol(message),
                }
            }
            OciDistributionError::RequestError(e) => {
                let message = format!("{what}: {}", chain(&e));
                match e.status().map(|s| s.as_u16()) {
                    Some(404) => Error::NotFound(message),
                    Some(401 | 403) => {
                        Box::pin(
                            self.explain(
                                ep,
                                creds,
                                what,
                                OciDistributionError::UnauthorizedError {
                                    url: e
                                        .url()
                                        .map(|u| u.to_string())
                                        .unwrap_or_else(|| ep.url("/v2/")),
                                },
                            ),
                        )
                        .await
                    }
                    Some(_) | None if e.is_status() => Error::Protocol(message),
                    _ => Error::Unreachable(message),
                }
            }
            OciDistributionError::IoError(e) => {
                Error::Unreachable(format!("{what}: {}", chain(&e)))
            }
            other => Error::Protocol(format!("{what}: {}", chain(&other))),
        }
    }
}

/// `http[s]://host[:port][/]`.
fn parse_mirror(m: &str) -> Result<Endpoint> {
    let bad = || {
        Error::InvalidInput(format!(
            "registry mirror {m:?}: must be http[s]://host[:port]"
        ))
    };
    let (scheme, rest) = if let Some(rest) = m.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else if let Some(rest) = m.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else {
        return Err(bad());
    };
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.is_empty()
        || host.contains(['/', '?', '#', '@'])
        || host.chars().any(char::is_whitespace)
    {
        return Err(bad());
    }
    Ok(Endpoint {
        host: host.into(),
        scheme,
        skip_verify: false,
    })
}

/// The registry a `POST /auth` `serveraddress` names: scheme and path dropped, Docker Hub's
/// spellings (and empty) to `docker.io`.
fn login_registry(server_address: &str) -> Result<String> {
    let s = server_address.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or_default();
    let bad = || {
        Error::InvalidInput(format!(
            "server address {server_address:?}: must be host[:port]"
        ))
    };
    if host.contains(['?', '#', '@']) || host.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    Ok(match host {
        "" | "docker.io" | "index.docker.io" | DOCKER_HUB_HOST => DOCKER_HUB.into(),
        host => host.into(),
    })
}

/// `localhost`, 127.0.0.0/8 or `::1`, with or without a port: insecure by default, as Docker.
fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host
            }
        }),
    };
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(bytes);
    format!(
        "sha256:{}",
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// `sha256:` and 64 lowercase hex: digests become file names, so nothing else passes.
fn check_digest(digest: &str) -> std::result::Result<(), String> {
    let ok = digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "digest {digest:?}: must be sha256: followed by 64 lowercase hex digits"
        ))
    }
}

/// The fields of a manifest or index we read (OCI image spec `manifest.md`, `image-index.md`;
/// Docker's schema 2 has the same shape).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestJson {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<IndexEntry>>,
}

#[derive(serde::Deserialize)]
struct IndexEntry {
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(serde::Deserialize)]
struct Platform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = self.variant.as_deref().filter(|v| !v.is_empty()) {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

fn parse_manifest(bytes: &[u8], what: &str) -> Result<ManifestJson> {
    let m: ManifestJson = serde_json::from_slice(bytes)
        .map_err(|e| Error::Protocol(format!("{what}: not a manifest: {e}")))?;
    if m.schema_version == 1 || m.media_type.as_deref() == Some(DOCKER_MANIFEST_V1) {
        return Err(Error::Protocol(format!(
            "{what}: Docker schema 1 manifests are not supported; push the image again with a current client"
        )));
    }
    Ok(m)
}

impl ManifestJson {
    fn is_index(&self) -> bool {
        match self.media_type.as_deref() {
            Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => true,
            Some(_) => false,
            None => self.manifests.is_some(),
        }
    }

    /// The `linux/amd64` entry's digest; an error naming the platforms there are otherwise.
    fn choose_platform(&self, what: &str) -> Result<String> {
        let entries = self.manifests.as_deref().unwrap_or_default();
        let chosen = entries.iter().find(|e| {
            e.platform
                .as_ref()
                .is_some_and(|p| p.os == PLATFORM_OS && p.architecture == PLATFORM_ARCH)
        });
        match chosen {
            Some(entry) => {
                check_digest(&entry.digest)
                    .map_err(|why| Error::Protocol(format!("{what}: {why}")))?;
                Ok(entry.digest.clone())
            }
            None => {
                let present: Vec<String> = entries
                    .iter()
                    .map(|e| {
                        e.platform
                            .as_ref()
                            .map_or("unknown".into(), |p| p.to_string())
                    })
                    .collect();
                Err(Error::Platform(format!(
                    "{what}: no {PLATFORM_OS}/{PLATFORM_ARCH} image; the index has {}",
                    if present.is_empty() {
                        "no manifests".into()
                    } else {
                        present.join(", ")
                    }
                )))
            }
        }
    }

    fn into_resolved(
        self,
        bytes: Vec<u8>,
        digest: String,
        index_digest: Option<String>,
        what: &str,
    ) -> Result<Resolved> {
        let media_type = self
            .media_type
            .clone()
            .unwrap_or_else(|| OCI_MANIFEST.into());
        if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
            return Err(Error::Protocol(format!(
                "{what}: unsupported manifest media type {media_type:?}"
            )));
        }
        let config = self
            .config
            .ok_or_else(|| Error::Protocol(format!("{what}: the manifest has no config")))?;
        let layers = self.layers.unwrap_or_default();
        for d in std::iter::once(&config).chain(&layers) {
            check_digest(&d.digest).map_err(|why| Error::Protocol(format!("{what}: {why}")))?;
        }
        Ok(Resolved {
            digest,
            media_type,
            bytes,
            config,
            layers,
            index_digest,
        })
    }
}

/// The body of a blob upload, and its size.
async fn upload_stream(
    data: BlobSource,
    mut progress: impl FnMut(u64) + Send + 'static,
) -> Result<(
    futures::stream::BoxStream<'static, oci_client::errors::Result<Bytes>>,
    u64,
)> {
    let (stream, size): (
        futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
        u64,
    ) = match data {
        BlobSource::Bytes(bytes) => {
            let size = bytes.len() as u64;
            (
                futures::stream::once(async move { Ok(bytes) }).boxed(),
                size,
            )
        }
        BlobSource::File(path) => {
            let read_error = |source| Error::Read {
                path: path.display().to_string(),
                source,
            };
            let file = tokio::fs::File::open(&path).await.map_err(read_error)?;
            let size = file.metadata().await.map_err(read_error)?.len();
            let stream = futures::stream::try_unfold(file, |mut file| async move {
                let mut buf = vec![0u8; UPLOAD_CHUNK];
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    return Ok(None);
                }
                buf.truncate(n);
                Ok(Some((Bytes::from(buf), file)))
            });
            (stream.boxed(), size)
        }
    };
    let mut sent = 0u64;
    let stream = stream
        .map(move |chunk| {
            let chunk = chunk.map_err(OciDistributionError::IoError)?;
            sent += chunk.len() as u64;
            progress(sent);
            Ok(chunk)
        })
        .boxed();
    Ok((stream, size))
}

#[cfg(test)]
mod tests;
