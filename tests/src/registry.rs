//! A real registry for tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1 with a
//! free port and its own storage, plain HTTP or TLS with htpasswd auth, killed and reaped when
//! its handle drops (and with the test's thread, through `PR_SET_PDEATHSIG`). Also small OCI
//! images built by the test (a real tar layer, a config, a manifest, optionally an index over
//! several platforms) and pushed into the registry with `skopeo copy` from an `oci:` layout.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::dies_with_test;

/// How long the registry may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A running `docker-registry serve`.
pub struct TestRegistry {
    dir: tempfile::TempDir,
    port: u16,
    process: Child,
    tls: bool,
    credentials: Option<(String, String)>,
}

impl TestRegistry {
    /// Plain HTTP, no auth.
    pub fn start_plain() -> Self {
        Self::start(None)
    }

    /// TLS with a certificate for IP 127.0.0.1 signed by a CA made for this registry, and
    /// htpasswd (bcrypt) basic auth with one user.
    pub fn start_tls_auth(user: &str, password: &str) -> Self {
        Self::start(Some((user.to_string(), password.to_string())))
    }

    fn start(credentials: Option<(String, String)>) -> Self {
        let mut dir = tempfile::Builder::new()
            .prefix("hyt-reg-")
            .tempdir()
            .expect("temp dir");
        let tls = credentials.is_some();
        if let Some((user, password)) = &credentials {
            make_certificates(dir.path());
            let out = run(Command::new("htpasswd").args(["-Bbn", user, password]));
            std::fs::write(dir.path().join("htpasswd"), out).unwrap();
        }
        // The port is free when asked, but another test may take it before the registry
        // binds it: then the registry exits at once and we try another.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            write_config(dir.path(), port, tls);
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let process = dies_with_test(&mut Command::new("docker-registry"))
                .arg("serve")
                .arg(dir.path().join("config.yml"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start docker-registry (apt-get install docker-registry)");
            let mut registry = TestRegistry {
                dir,
                port,
                process,
                tls,
                credentials: credentials.clone(),
            };
            if registry.wait_ready() {
                return registry;
            }
            last_log = registry.log();
            registry.kill();
            dir = std::mem::replace(&mut registry.dir, tempfile::tempdir().unwrap());
        }
        panic!("docker-registry did not start; its log:\n{last_log}");
    }

    /// Waits until `GET /v2/` answers (any status: 401 is an answer); false if the process
    /// exited first (its port was taken).
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.try_wait() {
                return false;
            }
            if self.v2_answers() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "docker-registry on {} did not answer within {START_TIMEOUT:?}; its log:\n{}",
            self.host(),
            self.log()
        );
    }

    /// Plain: an HTTP answer to `GET /v2/`. TLS: an accepted connection (Go's server answers
    /// as soon as it accepts; a handshake would need a TLS client here).
    fn v2_answers(&self) -> bool {
        use std::io::{Read as _, Write as _};
        let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) else {
            return false;
        };
        if self.tls {
            return true;
        }
        let mut status = [0u8; 12];
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_ok()
            && s.read_exact(&mut status).is_ok()
            && status.starts_with(b"HTTP/1.")
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user and password of a [`TestRegistry::start_tls_auth`] registry.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The CA that signed the server certificate (TLS registries only).
    pub fn ca_cert_path(&self) -> PathBuf {
        assert!(self.tls, "a plain registry has no CA");
        self.dir.path().join("ca.crt")
    }

    /// Docker's `certs.d` layout trusting this registry: `<dir>/127.0.0.1:PORT/ca.crt`.
    pub fn certs_dir(&self) -> PathBuf {
        let root = self.dir.path().join("certs.d");
        let host_dir = root.join(self.host());
        if self.tls && !host_dir.join("ca.crt").exists() {
            std::fs::create_dir_all(&host_dir).unwrap();
            std::fs::copy(self.ca_cert_path(), host_dir.join("ca.crt")).unwrap();
        }
        root
    }

    /// What the registry has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Pushes `image` as `<host>/<name_tag>` with `skopeo copy` from an `oci:` layout.
    /// `format` `None` keeps the OCI manifest (and so its digest); `Some("v2s2")` converts it to
    /// Docker's schema 2.
    pub fn push(&self, image: &OciImage, name_tag: &str, format: Option<&str>) {
        let layout = tempfile::tempdir().unwrap();
        let top = Descriptor::of(OCI_MANIFEST, &image.manifest);
        write_layout(layout.path(), &top, image.blobs());
        self.skopeo_copy(layout.path(), name_tag, format, false);
    }

    /// Pushes an image index over `images` (one manifest per platform) as `<host>/<name_tag>`,
    /// all platforms included (`skopeo copy --all`).
    pub fn push_index(&self, index: &OciIndex, name_tag: &str) {
        let layout = tempfile::tempdir().unwrap();
        let top = Descriptor::of(OCI_INDEX, &index.bytes);
        let mut blobs: Vec<&[u8]> = vec![&index.bytes];
        for image in &index.images {
            blobs.extend(image.blobs());
        }
        write_layout(layout.path(), &top, blobs);
        self.skopeo_copy(layout.path(), name_tag, None, true);
    }

    fn skopeo_copy(&self, layout: &Path, name_tag: &str, format: Option<&str>, all: bool) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["--insecure-policy", "copy", "--quiet"]);
        if all {
            cmd.arg("--all");
        }
        if let Some(format) = format {
            cmd.args(["--format", format]);
        }
        if self.tls {
            cmd.arg("--dest-cert-dir")
                .arg(self.certs_dir().join(self.host()));
        } else {
            cmd.arg("--dest-tls-verify=false");
        }
        if let Some((user, password)) = self.credentials() {
            cmd.arg(format!("--dest-creds={user}:{password}"));
        }
        cmd.arg(format!("oci:{}:{REF_NAME}", layout.display()))
            .arg(format!("docker://{}/{name_tag}", self.host()));
        run(&mut cmd);
    }

    /// `skopeo inspect --raw` of `<host>/<name_ref>`: the manifest bytes the registry serves.
    pub fn inspect_raw(&self, name_ref: &str) -> Vec<u8> {
        let mut cmd = Command::new("skopeo");
        cmd.args(["inspect", "--raw"]);
        if self.tls {
            cmd.arg("--cert-dir")
                .arg(self.certs_dir().join(self.host()));
        } else {
            cmd.arg("--tls-verify=false");
        }
        if let Some((user, password)) = self.credentials() {
            cmd.arg(format!("--creds={user}:{password}"));
        }
        cmd.arg(format!("docker://{}/{name_ref}", self.host()));
        run(&mut cmd)
    }

    fn kill(&mut self) {
        if let Err(e) = self.process.kill() {
            eprintln!("kill docker-registry: {e}");
        }
        if let Err(e) = self.process.wait() {
            eprintln!("reap docker-registry: {e}");
        }
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The ref name the layouts we write tag their one top-level manifest with.
const REF_NAME: &str = "img";

/// A free TCP port on 127.0.0.1 (free when asked).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn write_config(dir: &Path, port: u16, tls: bool) {
    let d = dir.display();
    let mut yml = format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {d}/data\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\n"
    );
    if tls {
        yml.push_str(&format!(
            "  tls:\n    certificate: {d}/server.crt\n    key: {d}/server.key\n\
             auth:\n  htpasswd:\n    realm: hyper-test\n    path: {d}/htpasswd\n"
        ));
    }
    std::fs::write(dir.join("config.yml"), yml).unwrap();
}

/// A CA, and a server certificate it signs for IP 127.0.0.1 (P-256 keys: quick to make).
fn make_certificates(dir: &Path) {
    std::fs::write(
        dir.join("ca.cnf"),
        "[req]\ndistinguished_name = dn\nx509_extensions = v3_ca\nprompt = no\n\
         [dn]\nCN = hyper-test-ca\n\
         [v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier = hash\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n\
         keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-x509", "-config", "ca.cnf", "-days", "2"])
        .args(ec)
        .args(["-keyout", "ca.key", "-out", "ca.crt"]));
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-subj", "/CN=127.0.0.1"])
        .args(ec)
        .args(["-keyout", "server.key", "-out", "server.csr"]));
    run(Command::new("openssl").current_dir(dir).args([
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ]));
}

/// Runs a tool the harness needs; its stdout, or a panic carrying its stderr.
fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// An uncompressed tar archive of regular files (mode 0644; parents are implied).
pub fn tar_layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, path, *data).expect("tar entry");
    }
    b.into_inner().expect("tar archive")
}

/// `data` gzip-compressed. Layers are pushed compressed: skopeo would compress an
/// uncompressed one on the way, and the manifest would no longer be ours.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("gzip");
    encoder.finish().expect("gzip")
}

/// A content descriptor as OCI writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

impl Descriptor {
    pub fn of(media_type: &str, data: &[u8]) -> Self {
        Self {
            media_type: media_type.into(),
            digest: sha256(data),
            size: data.len() as u64,
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        })
    }
}

/// A single-platform OCI image: its config, gzipped tar layers and manifest, as bytes.
#[derive(Debug, Clone)]
pub struct OciImage {
    pub os: String,
    pub architecture: String,
    pub config: Vec<u8>,
    /// The layer blobs (gzip), base first.
    pub layers: Vec<Vec<u8>>,
    /// The uncompressed tar archives: their digests are the config's `diff_ids`.
    pub tars: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
}

impl OciImage {
    /// A `linux/<architecture>` image of `tars` (tar archives, see [`tar_layer`]; pushed
    /// gzipped) whose config runs `cmd`.
    pub fn new(architecture: &str, tars: Vec<Vec<u8>>, cmd: &[&str]) -> Self {
        let diff_ids: Vec<String> = tars.iter().map(|t| sha256(t)).collect();
        let layers: Vec<Vec<u8>> = tars.iter().map(|t| gzip(t)).collect();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": architecture,
            "os": "linux",
            "config": { "Cmd": cmd, "Env": ["PATH=/bin"] },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": Descriptor::of(OCI_CONFIG, &config).json(),
            "layers": layers
                .iter()
                .map(|l| Descriptor::of(OCI_LAYER_GZIP, l).json())
                .collect::<Vec<_>>(),
        }))
        .unwrap();
        Self {
            os: "linux".into(),
            architecture: architecture.into(),
            config,
            layers,
            tars,
            manifest,
        }
    }

    /// `sha256:` of the manifest bytes: what the registry serves it under.
    pub fn digest(&self) -> String {
        sha256(&self.manifest)
    }

    pub fn config_descriptor(&self) -> Descriptor {
        Descriptor::of(OCI_CONFIG, &self.config)
    }

    pub fn layer_descriptors(&self) -> Vec<Descriptor> {
        self.layers
            .iter()
            .map(|l| Descriptor::of(OCI_LAYER_GZIP, l))
            .collect()
    }

    fn blobs(&self) -> Vec<&[u8]> {
        let mut blobs: Vec<&[u8]> = vec![&self.manifest, &self.config];
        blobs.extend(self.layers.iter().map(Vec::as_slice));
        blobs
    }
}

/// An OCI image index over single-platform images.
#[derive(Debug, Clone)]
pub struct OciIndex {
    pub images: Vec<OciImage>,
    pub bytes: Vec<u8>,
}

impl OciIndex {
    pub fn new(images: Vec<OciImage>) -> Self {
        let manifests: Vec<serde_json::Value> = images
            .iter()
            .map(|i| {
                let mut d = Descriptor::of(OCI_MANIFEST, &i.manifest).json();
                d["platform"] = serde_json::json!({ "os": i.os, "architecture": i.architecture });
                d
            })
            .collect();
        let bytes = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        }))
        .unwrap();
        Self { images, bytes }
    }

    pub fn digest(&self) -> String {
        sha256(&self.bytes)
    }
}

/// An OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`) whose index names `top`
/// with the ref name [`REF_NAME`].
fn write_layout<'a>(dir: &Path, top: &Descriptor, blobs: impl IntoIterator<Item = &'a [u8]>) {
    let blob_dir = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blob_dir).unwrap();
    for blob in blobs {
        let digest = sha256(blob);
        let hex = digest.trim_start_matches("sha256:");
        std::fs::write(blob_dir.join(hex), blob).unwrap();
    }
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut entry = top.json();
    entry["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": REF_NAME });
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": [entry] });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}
