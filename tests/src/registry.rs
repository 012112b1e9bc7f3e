//! A real registry for tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1 with a
//! free port and its own storage: plain HTTP, TLS with htpasswd (Basic) auth, or plain HTTP
//! with Docker's token auth served by a small token service in the test ([`TokenService`]).
//! The registry is killed and reaped when its handle drops (and with the test's thread,
//! through `PR_SET_PDEATHSIG`). Images built with [`crate::oci`] are pushed into it by
//! [`crate::oci::skopeo_push`] from an `oci:` layout.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::oci::{PushOptions, TestImage, skopeo_push};
use crate::{dies_with_test, run_tool};

/// How long the registry may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `docker-registry serve`.
pub struct TestRegistry {
    dir: tempfile::TempDir,
    port: u16,
    process: Child,
    tls: bool,
    credentials: Option<(String, String)>,
    /// Dropped after the registry (fields drop in order).
    tokens: Option<TokenService>,
}

impl TestRegistry {
    /// Plain HTTP, no auth.
    pub fn start_plain() -> Self {
        Self::start(None, None)
    }

    /// TLS with a certificate for IP 127.0.0.1 signed by a CA made for this registry, and
    /// htpasswd (bcrypt) basic auth with one user.
    pub fn start_tls_auth(user: &str, password: &str) -> Self {
        Self::start(Some((user.to_string(), password.to_string())), None)
    }

    /// Plain HTTP with Docker's token auth (`WWW-Authenticate: Bearer realm=…`): a token
    /// service on another loopback port hands out signed tokens for `user:password` (all
    /// actions) and anonymous ones that grant nothing; a wrong password gets 401
    /// `{"details":"incorrect username or password"}`.
    pub fn start_token_auth(user: &str, password: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let tokens = TokenService::start(dir, user, password);
        Self::start(Some((user.to_string(), password.to_string())), Some(tokens))
    }

    fn start(credentials: Option<(String, String)>, tokens: Option<TokenService>) -> Self {
        let mut dir = tempfile::Builder::new()
            .prefix("hyt-reg-")
            .tempdir()
            .expect("temp dir");
        let tls = credentials.is_some() && tokens.is_none();
        let auth = match (&credentials, &tokens) {
            (Some(_), Some(tokens)) => Auth::Token(tokens),
            (Some((user, password)), None) => {
                make_certificates(dir.path());
                let out = run_tool(Command::new("htpasswd").args(["-Bbn", user, password]));
                std::fs::write(dir.path().join("htpasswd"), out).unwrap();
                Auth::Htpasswd
            }
            (None, _) => Auth::None,
        };
        // The port is free when asked, but another test may take it before the registry
        // binds it: then the registry exits at once and we try another.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            write_config(dir.path(), port, &auth);
            let process = spawn_registry(dir.path());
            let mut registry = TestRegistry {
                dir,
                port,
                process,
                tls,
                credentials: credentials.clone(),
                tokens: None,
            };
            if registry.wait_ready() {
                registry.tokens = tokens;
                return registry;
            }
            last_log = registry.log();
            registry.kill();
            dir = std::mem::replace(&mut registry.dir, tempfile::tempdir().unwrap());
        }
        panic!("docker-registry did not start; its log:\n{last_log}");
    }

    /// Stops the registry (its storage and port stay for [`TestRegistry::resume`]).
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts the registry again on the same port with the same storage.
    pub fn resume(&mut self) {
        self.process = spawn_registry(self.dir.path());
        assert!(
            self.wait_ready(),
            "docker-registry did not come back on port {}:\n{}",
            self.port,
            self.log()
        );
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

    /// The identity token the token service of a [`TestRegistry::start_token_auth`] registry
    /// hands its user at a login that asks for an offline token.
    pub fn identity_token(&self) -> Option<String> {
        self.tokens.as_ref().map(|t| t.refresh_token.clone())
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

    /// Where the registry keeps blob `digest` (distribution's filesystem driver layout), so a
    /// test can damage what it serves.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// What the registry has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Pushes `image` as `<host>/<name_tag>`, its OCI manifest kept (so the registry serves
    /// [`TestImage::manifest_digest`]).
    pub fn push_image(&self, image: &TestImage, name_tag: &str) {
        let layout = tempfile::tempdir().unwrap();
        image.write_oci_layout(layout.path(), LAYOUT_TAG);
        self.copy(layout.path(), name_tag, None);
    }

    /// Pushes `image` as `<host>/<name_tag>` converted by skopeo to manifest `format`
    /// (`v2s2`: Docker's schema 2); the registry serves another digest than
    /// [`TestImage::manifest_digest`].
    pub fn push_image_as(&self, image: &TestImage, name_tag: &str, format: &str) {
        let layout = tempfile::tempdir().unwrap();
        image.write_oci_layout(layout.path(), LAYOUT_TAG);
        self.copy(layout.path(), name_tag, Some(format));
    }

    /// Pushes an index over `images` (one manifest per platform, see
    /// [`TestImage::index_digest`]) as `<host>/<name_tag>`, every platform included.
    pub fn push_images(&self, images: &[TestImage], name_tag: &str) {
        let layout = tempfile::tempdir().unwrap();
        TestImage::write_oci_index(images, layout.path(), LAYOUT_TAG);
        self.copy(layout.path(), name_tag, None);
    }

    /// `skopeo copy` of the layout's [`LAYOUT_TAG`] to `<host>/<name_tag>`, trusting this
    /// registry's CA and with its credentials.
    fn copy(&self, layout: &Path, name_tag: &str, format: Option<&str>) {
        let cert_dir = self.tls.then(|| self.certs_dir().join(self.host()));
        let options = PushOptions {
            cert_dir: cert_dir.as_deref(),
            credentials: self.credentials(),
            format,
        };
        skopeo_push(
            layout,
            LAYOUT_TAG,
            &format!("{}/{name_tag}", self.host()),
            options,
        );
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
        run_tool(&mut cmd)
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

/// The tag the layouts we push name their one top-level manifest or index with.
const LAYOUT_TAG: &str = "img";

/// `docker-registry serve <dir>/config.yml`, logging (appending) to `<dir>/registry.log`.
fn spawn_registry(dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("registry.log"))
        .unwrap();
    dies_with_test(&mut Command::new("docker-registry"))
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start docker-registry (apt-get install docker-registry)")
}

/// A free TCP port on 127.0.0.1 (free when asked).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

enum Auth<'a> {
    None,
    Htpasswd,
    Token(&'a TokenService),
}

fn write_config(dir: &Path, port: u16, auth: &Auth) {
    let d = dir.display();
    let mut yml = format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {d}/data\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\n"
    );
    match auth {
        Auth::None => {}
        Auth::Htpasswd => yml.push_str(&format!(
            "  tls:\n    certificate: {d}/server.crt\n    key: {d}/server.key\n\
             auth:\n  htpasswd:\n    realm: hyper-test\n    path: {d}/htpasswd\n"
        )),
        Auth::Token(tokens) => yml.push_str(&format!(
            "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n\
             \x20   issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
            tokens.realm(),
            tokens.certificate().display()
        )),
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
    run_tool(
        Command::new("openssl")
            .current_dir(dir)
            .args(["req", "-x509", "-config", "ca.cnf", "-days", "2"])
            .args(ec)
            .args(["-keyout", "ca.key", "-out", "ca.crt"]),
    );
    run_tool(
        Command::new("openssl")
            .current_dir(dir)
            .args(["req", "-subj", "/CN=127.0.0.1"])
            .args(ec)
            .args(["-keyout", "server.key", "-out", "server.csr"]),
    );
    run_tool(Command::new("openssl").current_dir(dir).args([
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

/// The `service` and `issuer` a [`TokenService`] signs tokens for.
const TOKEN_SERVICE: &str = "hyper-test-registry";
const TOKEN_ISSUER: &str = "hyper-test-issuer";

/// Docker's token service, small: `GET /token?service=…&scope=repository:NAME:ACTIONS…` with
/// Basic auth answers `{"token": JWT}`, the JWT signed RS256 by `openssl` with a key whose
/// self-signed certificate the registry trusts (`rootcertbundle`) and sends in `x5c`.
/// Serves on its own thread until dropped.
pub struct TokenService {
    dir: tempfile::TempDir,
    port: u16,
    refresh_token: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TokenService {
    fn start(dir: tempfile::TempDir, user: &str, password: &str) -> Self {
        run_tool(Command::new("openssl").current_dir(dir.path()).args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=hyper-test-token",
            "-keyout",
            "token.key",
            "-out",
            "token.crt",
        ]));
        let der = run_tool(Command::new("openssl").current_dir(dir.path()).args([
            "x509",
            "-in",
            "token.crt",
            "-outform",
            "DER",
        ]));
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind token service");
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let refresh_token = format!("refresh-for-{user}");
        let signer = Signer {
            key: dir.path().join("token.key"),
            x5c: base64_std(&der),
            user: user.into(),
            password: password.into(),
            refresh_token: refresh_token.clone(),
        };
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(conn) = conn {
                        signer.answer(conn);
                    }
                }
            })
        };
        Self {
            dir,
            port,
            refresh_token,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    fn certificate(&self) -> PathBuf {
        self.dir.path().join("token.crt")
    }
}

impl Drop for TokenService {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok()
            && let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            eprintln!("token service thread panicked");
        }
    }
}

struct Signer {
    key: PathBuf,
    x5c: String,
    user: String,
    password: String,
    refresh_token: String,
}

impl Signer {
    /// One HTTP/1.1 request, one answer, connection closed.
    fn answer(&self, mut conn: TcpStream) {
        use std::io::{BufRead as _, BufReader, Write as _};
        let mut reader = BufReader::new(conn.try_clone().expect("clone stream"));
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            return;
        }
        let mut authorization = None;
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("authorization") {
                    authorization = Some(value.trim().to_string());
                } else if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut form = vec![0u8; content_length.min(64 * 1024)];
        if std::io::Read::read_exact(&mut reader, &mut form).is_err() {
            return;
        }
        let form = String::from_utf8_lossy(&form).into_owned();
        let target = request_line.split(' ').nth(1).unwrap_or_default();
        let query = target.split_once('?').map_or("", |(_, q)| q);
        let refused = |details: &str| {
            (
                "401 Unauthorized",
                serde_json::json!({ "details": details }).to_string(),
            )
        };
        let (status, body) = if request_line.starts_with("POST ") {
            // OAuth2 refresh grant: the identity token stands for the user.
            let grant = form_value(&form, "grant_type");
            let token = form_value(&form, "refresh_token");
            if grant.as_deref() == Some("refresh_token")
                && token.as_deref() == Some(self.refresh_token.as_str())
            {
                ("200 OK", self.token(Some(&self.user), &form))
            } else {
                refused("invalid refresh token")
            }
        } else {
            match authorization {
                None => ("200 OK", self.token(None, query)),
                Some(auth) if auth == basic_header(&self.user, &self.password) => {
                    ("200 OK", self.token(Some(&self.user), query))
                }
                Some(_) => refused("incorrect username or password"),
            }
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        if let Err(e) = conn.write_all(response.as_bytes()) {
            eprintln!("token service: {e}");
        }
    }

    /// `{"token", "access_token"}`: all requested actions for `user`, none for anonymous;
    /// with `refresh_token` when `user` asked for an offline token.
    fn token(&self, user: Option<&str>, query: &str) -> String {
        let mut access = Vec::new();
        for (key, value) in query.split('&').filter_map(|kv| kv.split_once('=')) {
            if key != "scope" || user.is_none() {
                continue;
            }
            let scope = percent_decode(value);
            let mut parts = scope.splitn(2, ':');
            let kind = parts.next().unwrap_or_default().to_string();
            let rest = parts.next().unwrap_or_default();
            let (name, actions) = rest.rsplit_once(':').unwrap_or((rest, ""));
            access.push(serde_json::json!({
                "type": kind,
                "name": name,
                "actions": actions.split(',').filter(|a| !a.is_empty()).collect::<Vec<_>>(),
            }));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let header = serde_json::json!({ "typ": "JWT", "alg": "RS256", "x5c": [self.x5c] });
        let claims = serde_json::json!({
            "iss": TOKEN_ISSUER,
            "sub": user.unwrap_or(""),
            "aud": TOKEN_SERVICE,
            "exp": now.as_secs() + 300,
            "nbf": now.as_secs() - 10,
            "iat": now.as_secs(),
            "jti": format!("{}", now.as_nanos()),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            base64_url(&serde_json::to_vec(&header).unwrap()),
            base64_url(&serde_json::to_vec(&claims).unwrap())
        );
        let signature = sign(&self.key, signing_input.as_bytes());
        let jwt = format!("{signing_input}.{}", base64_url(&signature));
        let mut answer =
            serde_json::json!({ "token": jwt, "access_token": jwt, "expires_in": 300 });
        if user.is_some() && form_value(query, "offline_token").as_deref() == Some("true") {
            answer["refresh_token"] = self.refresh_token.clone().into();
        }
        answer.to_string()
    }
}

/// RSASSA-PKCS1-v1_5 with SHA-256 of `data`, by `openssl dgst`.
fn sign(key: &Path, data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl dgst");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(data)
        .expect("write to openssl");
    let out = child.wait_with_output().expect("openssl dgst");
    assert!(
        out.status.success(),
        "openssl dgst: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn basic_header(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64_std(format!("{user}:{password}").as_bytes())
    )
}

fn base64_std(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn base64_url(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// The value of `key` in a query string or form body.
fn form_value(form: &str, key: &str) -> Option<String> {
    form.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
}

/// `%XX` escapes and `+` of a query value.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
