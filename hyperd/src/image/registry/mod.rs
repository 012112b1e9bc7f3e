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
mod endpoint;
mod manifest;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use oci_client::errors::{OciDistributionError, OciErrorCode};
use tokio::io::{AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::Reference;
use super::reference::DOCKER_HUB;
use crate::error::Kind;
pub use auth::Credentials;
use endpoint::{ClientKey, Endpoint, Scheme, login_registry, parse_mirror, subject};
use manifest::{ACCEPTED_MANIFESTS, check_digest, parse_manifest};
pub use manifest::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, Descriptor, OCI_INDEX, OCI_MANIFEST, PLATFORM_ARCH,
    PLATFORM_OS, Resolved,
};

/// Docker's default: `/etc/docker/certs.d/<host:port>/ca.crt`.
pub const DEFAULT_CERTS_DIR: &str = "/etc/docker/certs.d";
/// Docker Hub's registry API: where `docker.io` names go unless
/// [`RegistryConfig::docker_hub_host`] says otherwise.
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Per read, not per transfer: a big layer may take long, a stalled one may not.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the HTTPS probe of an insecure registry may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Chunk size when streaming a blob from a file to the registry.
const UPLOAD_CHUNK: usize = 1 << 20;
/// Clients (and their token caches) kept per host and credentials, dropped wholesale past this.
const MAX_CLIENTS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry refused the credentials, or wants some: `<what>: <the registry's reason>`
    /// (`login to 127.0.0.1:5000: unauthorized: authentication required`).
    #[error("{0}")]
    Unauthorized(String),
    /// No such repository, tag, manifest or blob (`manifest for x:1: manifest unknown: …`).
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
            Error::Unauthorized(_) => Kind::Unauthorized,
            Error::InvalidInput(_) => Kind::InvalidInput,
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
    /// `host[:port]` that `docker.io` names are pulled from and pushed to.
    pub docker_hub_host: String,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            mirrors: Vec::new(),
            certs_dir: DEFAULT_CERTS_DIR.into(),
            // Unit tests get a closed loopback port, so that no bug can send them off the machine.
            docker_hub_host: if cfg!(test) {
                "127.0.0.1:1".into()
            } else {
                DOCKER_HUB_HOST.into()
            },
        }
    }
}

/// A blob to push.
#[derive(Debug, Clone)]
pub enum BlobSource {
    Bytes(Bytes),
    /// Streamed from the file; its length is the blob's size.
    File(PathBuf),
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
        for (ep, creds) in self.pull_endpoints(r, creds).await? {
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
        for (ep, creds) in self.pull_endpoints(r, creds).await? {
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
        let creds = &self.exchange(&ep, r, creds, false).await?;
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
        let creds = &self.exchange(&ep, r, creds, true).await?;
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
        let creds = &self.exchange(&ep, r, creds, true).await?;
        let client = self.client(&ep, creds).await?;
        let what = subject(&ep, r, format!("push manifest {r}"));
        match client
            .push_manifest_raw(&ep.reference(r), bytes.to_vec(), content_type)
            .await
        {
            Ok(_) => Ok(crate::image::Digest::of(bytes).to_string()),
            Err(e) => Err(self.explain(&ep, creds, &what, e).await),
        }
    }

    /// `POST /auth`: checks `creds` against the registry at `server_address` (`host[:port]`,
    /// optionally with a scheme and path as `https://index.docker.io/v1/`; empty is Docker
    /// Hub), with Basic auth or the token flow it challenges with. Returns the identity token
    /// the registry's token service issued (Docker's `IdentityToken`), if it issued one.
    /// Errors: [`Error::Unauthorized`] with the registry's reason, [`Error::Unreachable`],
    /// [`Error::InvalidInput`] for a malformed address.
    pub async fn login(&self, server_address: &str, creds: &Credentials) -> Result<Option<String>> {
        let registry = login_registry(server_address)?;
        let ep = self.endpoint(&registry).await?;
        let http = self.http_client(&ep)?;
        auth::check(&ep, &http, creds).await.map_err(|e| match e {
            Error::Unauthorized(why) => Error::Unauthorized(format!("login to {}: {why}", ep.host)),
            e => e,
        })
    }

    /// `creds` as oci-client can send them: an identity token becomes a bearer token for
    /// `r`'s repository (`pull`, or `pull,push`) from the registry's token service.
    async fn exchange(
        &self,
        ep: &Endpoint,
        r: &Reference,
        creds: &Credentials,
        push: bool,
    ) -> Result<Credentials> {
        let Credentials::IdentityToken(_) = creds else {
            return Ok(creds.clone());
        };
        let http = self.http_client(ep)?;
        let actions = if push { "pull,push" } else { "pull" };
        let scope = format!("repository:{}:{actions}", r.repository());
        match auth::access_token(ep, &http, creds, &scope).await {
            Ok(token) => Ok(Credentials::RegistryToken(token)),
            Err(Error::Unauthorized(why)) => Err(Error::Unauthorized(format!(
                "{}: {why}",
                subject(ep, r, format!("{actions} access to {}", r.repo))
            ))),
            Err(e) => Err(e),
        }
    }

    /// The mirrors (anonymously: a mirror is not given Docker Hub credentials) for Docker Hub
    /// names, then the registry itself.
    async fn pull_endpoints(
        &self,
        r: &Reference,
        creds: &Credentials,
    ) -> Result<Vec<(Endpoint, Credentials)>> {
        let mut endpoints = Vec::new();
        if r.registry() == DOCKER_HUB {
            for mirror in &self.mirrors {
                endpoints.push((mirror.clone(), Credentials::Anonymous));
            }
        }
        endpoints.push((self.endpoint(r.registry()).await?, creds.clone()));
        Ok(endpoints)
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
        let creds = &self.exchange(ep, r, creds, false).await?;
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
        let creds = &self.exchange(ep, r, creds, false).await?;
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
                    Some(oci_client::errors::DigestError::VerificationError { actual, .. }) => {
                        Error::Protocol(format!(
                            "{what}: the registry sent content whose digest is {actual}"
                        ))
                    }
                    Some(other) => Error::Protocol(format!("{what}: {other}")),
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
                self.unauthorized(ep, creds, what, &url).await
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
                        let url = e.url().map_or_else(|| ep.url("/v2/"), |u| u.to_string());
                        self.unauthorized(ep, creds, what, &url).await
                    }
                    _ if e.is_status() => Error::Protocol(message),
                    _ => Error::Unreachable(message),
                }
            }
            OciDistributionError::IoError(e) => {
                Error::Unreachable(format!("{what}: {}", chain(&e)))
            }
            other => Error::Protocol(format!("{what}: {}", chain(&other))),
        }
    }

    /// A 401 with the registry's reason: why the credentials were refused (checked as `login`
    /// does), else what the registry says to the request `url` without them.
    async fn unauthorized(
        &self,
        ep: &Endpoint,
        creds: &Credentials,
        what: &str,
        url: &str,
    ) -> Error {
        if let Ok(http) = self.http_client(ep) {
            if !creds.is_anonymous()
                && let Err(Error::Unauthorized(why)) = auth::check(ep, &http, creds).await
            {
                return Error::Unauthorized(format!("{what}: {why}"));
            }
            if let Ok(response) = http.get(url).send().await {
                let why = auth::reason(response).await;
                return Error::Unauthorized(format!("{what}: {why}"));
            }
        }
        Error::Unauthorized(format!("{what}: unauthorized"))
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
