//! Registry credentials, kept exactly as the Docker CLI keeps them, so `docker login` and
//! `hyperctl login` share them: `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`),
//!
//! ```json
//! {"auths": {"<server>": {"auth": "base64(user:password)"}},
//!  "credsStore": "<name>", "credHelpers": {"<server>": "<name>"}}
//! ```
//!
//! With a `credHelpers` entry for the server, or else a `credsStore`, the secret lives in the
//! program `docker-credential-<name>` (Docker's credential helper protocol: `store` reads
//! `{"ServerURL","Username","Secret"}` on stdin; `get` and `erase` read the server URL; `get`
//! prints the same JSON; a missing entry is exit 1 with `credentials not found in native
//! keychain`), and `auths` keeps an empty entry for the server, as Docker does. An identity
//! token is the username `<token>` there, and `identitytoken` in the file.
//!
//! Servers are keyed as Docker keys them: Docker Hub is `https://index.docker.io/v1/`, any
//! other registry its host (`127.0.0.1:5000`); older `https://host/v1/` keys still match. The
//! file is rewritten atomically (temp file, fsync, rename) with mode 0600, keeping every key it
//! does not know.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use hyper_proto::rest::AuthConfig;

use crate::reference::ImageRef;

/// Docker Hub's key in `auths` (and the server `login` uses by default).
pub const INDEX_SERVER: &str = "https://index.docker.io/v1/";

/// What a credential helper prints (exit status 1) when it has no entry for the server.
const HELPER_NOT_FOUND: &str = "credentials not found in native keychain";

/// The username a credential helper stores an identity token under.
const TOKEN_USERNAME: &str = "<token>";

const CONFIG_FILE: &str = "config.json";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot find the docker config directory: neither $DOCKER_CONFIG nor $HOME is set")]
    NoConfigDir,
    #[error("read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parse {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the auth of {server} in {path} is not base64 of user:password")]
    BadAuth { server: String, path: PathBuf },
    #[error("run {program}")]
    HelperStart {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} {action}: {message}")]
    Helper {
        program: String,
        action: &'static str,
        message: String,
    },
    #[error("{program} get: unexpected answer")]
    HelperAnswer {
        program: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Where credentials were stored: the plain file, or a helper program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    File(PathBuf),
    Helper(String),
}

/// The key of a registry or of a `login` argument: [`INDEX_SERVER`] for Docker Hub (any of
/// its spellings, and the empty string), else the bare host (`https://reg:5000/v2/` →
/// `reg:5000`).
pub fn server_key(server: &str) -> String {
    match hostname(server) {
        "" | "docker.io" | "index.docker.io" | "registry-1.docker.io" => INDEX_SERVER.into(),
        host => host.into(),
    }
}

/// The key an image's credentials are looked up under (`busybox` → [`INDEX_SERVER`],
/// `127.0.0.1:5000/x` → `127.0.0.1:5000`).
pub fn registry_key(image: &ImageRef) -> String {
    server_key(&image.registry)
}

/// The host of a server URL: no scheme, no path.
fn hostname(server: &str) -> &str {
    let rest = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    rest.split('/').next().unwrap_or(rest)
}

/// Docker's config directory: `$DOCKER_CONFIG` when set and not empty, else `$HOME/.docker`.
pub fn config_dir(
    docker_config: Option<OsString>,
    home: Option<OsString>,
) -> Result<PathBuf, Error> {
    match (docker_config, home) {
        (Some(dir), _) if !dir.is_empty() => Ok(dir.into()),
        (_, Some(home)) if !home.is_empty() => Ok(PathBuf::from(home).join(".docker")),
        _ => Err(Error::NoConfigDir),
    }
}

/// The typed part of `config.json` this module reads.
#[derive(Debug, Default, Deserialize)]
struct Config {
    #[serde(default)]
    auths: BTreeMap<String, FileAuth>,
    #[serde(rename = "credsStore", default)]
    creds_store: String,
    #[serde(rename = "credHelpers", default)]
    cred_helpers: BTreeMap<String, String>,
}

/// One `auths` entry.
#[derive(Debug, Default, Serialize, Deserialize)]
struct FileAuth {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    auth: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    email: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    identitytoken: String,
}

/// The credential helper protocol's record.
#[derive(Debug, Serialize, Deserialize)]
struct HelperCredentials {
    #[serde(rename = "ServerURL", default)]
    server_url: String,
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Docker's credential store: one config directory, and the `PATH` its helpers are found on.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    search_path: Option<OsString>,
}

impl Store {
    /// The store of this user ([`config_dir`] from the environment), helpers found on `$PATH`.
    pub fn from_env() -> Result<Self, Error> {
        Ok(Self::new(config_dir(
            std::env::var_os("DOCKER_CONFIG"),
            std::env::var_os("HOME"),
        )?))
    }

    /// The store in `dir` (holding `config.json`), helpers found on `$PATH`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            search_path: None,
        }
    }

    /// Finds `docker-credential-*` programs on `path` (a `PATH` value) instead of `$PATH`.
    #[cfg(test)]
    pub fn with_search_path(mut self, path: OsString) -> Self {
        self.search_path = Some(path);
        self
    }

    /// `config.json`.
    pub fn file(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    /// The credentials kept for `server` (a key from [`server_key`]), `None` when there are
    /// none; `serveraddress` is set to `server`.
    pub fn get(&self, server: &str) -> Result<Option<AuthConfig>, Error> {
        let (_, config) = self.load()?;
        let found = match helper_of(&config, server) {
            Some(helper) => self.helper_get(helper, server)?,
            None => match lookup(&config.auths, server) {
                Some((key, entry)) => self.decode(key, entry)?,
                None => None,
            },
        };
        Ok(found.map(|auth| AuthConfig {
            serveraddress: server.into(),
            ..auth
        }))
    }

    /// Keeps `auth`'s username and password (or identity token) for `server`, in its helper
    /// if it has one, else in the file.
    pub fn store(&self, server: &str, auth: &AuthConfig) -> Result<Stored, Error> {
        let (mut raw, config) = self.load()?;
        let helper = helper_of(&config, server).map(str::to_string);
        let entry = match &helper {
            Some(helper) => {
                let record = if auth.identitytoken.is_empty() {
                    HelperCredentials {
                        server_url: server.into(),
                        username: auth.username.clone(),
                        secret: auth.password.clone(),
                    }
                } else {
                    HelperCredentials {
                        server_url: server.into(),
                        username: TOKEN_USERNAME.into(),
                        secret: auth.identitytoken.clone(),
                    }
                };
                let input = serde_json::to_vec(&record).expect("strings serialise");
                self.run_helper(helper, "store", &input)?
                    .map_err(|message| self.helper_error(helper, "store", message))?;
                // Docker keeps an empty entry, so the file still lists the server.
                FileAuth {
                    email: auth.email.clone(),
                    ..FileAuth::default()
                }
            }
            None => {
                // With an identity token the password is not kept (as Docker does).
                let password = if auth.identitytoken.is_empty() {
                    auth.password.as_str()
                } else {
                    ""
                };
                FileAuth {
                    auth: STANDARD.encode(format!("{}:{password}", auth.username)),
                    email: auth.email.clone(),
                    identitytoken: auth.identitytoken.clone(),
                }
            }
        };
        let auths = raw
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        if let Value::Object(auths) = auths {
            auths.insert(
                server.into(),
                serde_json::to_value(entry).expect("strings serialise"),
            );
        }
        self.save(&raw)?;
        Ok(match helper {
            Some(h) => Stored::Helper(program(&h)),
            None => Stored::File(self.file()),
        })
    }

    /// Forgets the credentials of `server` (its helper's entry, and every `auths` key that
    /// names it); `false` when there were none.
    pub fn erase(&self, server: &str) -> Result<bool, Error> {
        let (mut raw, config) = self.load()?;
        let mut erased = false;
        if let Some(helper) = helper_of(&config, server) {
            match self.run_helper(helper, "erase", server.as_bytes())? {
                Ok(_) => erased = true,
                Err(message) if message == HELPER_NOT_FOUND => {}
                Err(message) => return Err(self.helper_error(helper, "erase", message)),
            }
        }
        if let Some(Value::Object(auths)) = raw.get_mut("auths") {
            let before = auths.len();
            auths.retain(|key, _| server_key(key) != server && key != server);
            if auths.len() != before {
                erased = true;
                self.save(&raw)?;
            }
        }
        Ok(erased)
    }

    /// The `X-Registry-Auth` header for pulling or pushing `image`: base64url of the JSON
    /// [`AuthConfig`] of its registry (only `serveraddress` when there are no credentials).
    pub fn registry_auth(&self, image: &ImageRef) -> Result<String, Error> {
        let key = registry_key(image);
        let auth = self.get(&key)?.unwrap_or_else(|| AuthConfig {
            serveraddress: key,
            ..AuthConfig::default()
        });
        Ok(encode_auth(&auth))
    }

    /// The raw file (every key kept) and its typed view; both empty when there is no file.
    fn load(&self) -> Result<(Map<String, Value>, Config), Error> {
        let path = self.file();
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Map::new(), Config::default()));
            }
            Err(source) => return Err(Error::Read { path, source }),
        };
        let parse = |source| Error::Parse {
            path: path.clone(),
            source,
        };
        let raw: Map<String, Value> = serde_json::from_slice(&text).map_err(parse)?;
        let config: Config = serde_json::from_value(Value::Object(raw.clone())).map_err(parse)?;
        Ok((raw, config))
    }

    /// Writes `raw` to a temp file beside `config.json` (0600), fsyncs it and renames it over
    /// the file (over a symlink's target, so a linked config stays linked).
    fn save(&self, raw: &Map<String, Value>) -> Result<(), Error> {
        let path = self.file();
        let write = |source| Error::Write {
            path: path.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(write)?;
        let target = match std::fs::canonicalize(&path) {
            Ok(target) => target,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => path.clone(),
            Err(e) => return Err(write(e)),
        };
        let dir = target.parent().unwrap_or(Path::new("."));
        // NamedTempFile is created 0600.
        let mut tmp = tempfile::Builder::new()
            .prefix(".config.json")
            .tempfile_in(dir)
            .map_err(write)?;
        // Docker indents with tabs.
        let mut ser = serde_json::Serializer::with_formatter(
            Vec::new(),
            serde_json::ser::PrettyFormatter::with_indent(b"\t"),
        );
        raw.serialize(&mut ser).expect("a JSON map serialises");
        let mut bytes = ser.into_inner();
        bytes.push(b'\n');
        tmp.write_all(&bytes).map_err(write)?;
        tmp.as_file().sync_all().map_err(write)?;
        tmp.persist(&target).map_err(|e| write(e.error))?;
        Ok(())
    }

    fn decode(&self, key: &str, entry: &FileAuth) -> Result<Option<AuthConfig>, Error> {
        let (username, password) = if entry.auth.is_empty() {
            (String::new(), String::new())
        } else {
            let bad = || Error::BadAuth {
                server: key.into(),
                path: self.file(),
            };
            let decoded = STANDARD.decode(entry.auth.trim()).map_err(|_| bad())?;
            let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
            let (u, p) = decoded.split_once(':').ok_or_else(bad)?;
            (u.to_string(), p.to_string())
        };
        if username.is_empty() && password.is_empty() && entry.identitytoken.is_empty() {
            return Ok(None);
        }
        Ok(Some(AuthConfig {
            username,
            password,
            email: entry.email.clone(),
            identitytoken: entry.identitytoken.clone(),
            ..AuthConfig::default()
        }))
    }

    fn helper_get(&self, helper: &str, server: &str) -> Result<Option<AuthConfig>, Error> {
        let out = match self.run_helper(helper, "get", server.as_bytes())? {
            Ok(out) => out,
            Err(message) if message == HELPER_NOT_FOUND => return Ok(None),
            Err(message) => return Err(self.helper_error(helper, "get", message)),
        };
        let record: HelperCredentials =
            serde_json::from_slice(&out).map_err(|source| Error::HelperAnswer {
                program: program(helper),
                source,
            })?;
        Ok(Some(if record.username == TOKEN_USERNAME {
            AuthConfig {
                identitytoken: record.secret,
                ..AuthConfig::default()
            }
        } else {
            AuthConfig {
                username: record.username,
                password: record.secret,
                ..AuthConfig::default()
            }
        }))
    }

    /// Runs `docker-credential-<helper> <action>` with `input` on stdin: `Ok(stdout)` when it
    /// succeeds, `Err(message)` (its output, trimmed) when it exits non-zero.
    fn run_helper(
        &self,
        helper: &str,
        action: &'static str,
        input: &[u8],
    ) -> Result<Result<Vec<u8>, String>, Error> {
        let program = program(helper);
        let start = |source| Error::HelperStart {
            program: program.clone(),
            source,
        };
        let mut command = Command::new(&program);
        command
            .arg(action)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = &self.search_path {
            // std looks the program up on the child's PATH when it is set.
            command.env("PATH", path);
        }
        let mut child = command.spawn().map_err(start)?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // A helper that exits without reading its input is answered by its exit status.
        let written = stdin.write_all(input);
        drop(stdin);
        let out = child.wait_with_output().map_err(start)?;
        if out.status.success() {
            written.map_err(start)?;
            return Ok(Ok(out.stdout));
        }
        let mut message = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if message.is_empty() {
            message = String::from_utf8_lossy(&out.stderr).trim().to_string();
        }
        if message.is_empty() {
            message = out.status.to_string();
        }
        Ok(Err(message))
    }

    fn helper_error(&self, helper: &str, action: &'static str, message: String) -> Error {
        Error::Helper {
            program: program(helper),
            action,
            message,
        }
    }
}

/// The `X-Registry-Auth` header for `image` from this user's store ([`Store::from_env`]);
/// without a config directory (no `$HOME`), the anonymous header.
pub fn registry_auth(image: &ImageRef) -> Result<String, Error> {
    match Store::from_env() {
        Ok(store) => store.registry_auth(image),
        Err(Error::NoConfigDir) => Ok(encode_auth(&AuthConfig {
            serveraddress: registry_key(image),
            ..AuthConfig::default()
        })),
        Err(e) => Err(e),
    }
}

/// The JSON of `auth`, base64url-encoded (with padding, as Docker sends `X-Registry-Auth`).
pub fn encode_auth(auth: &AuthConfig) -> String {
    URL_SAFE.encode(serde_json::to_vec(auth).expect("strings serialise"))
}

fn program(helper: &str) -> String {
    format!("docker-credential-{helper}")
}

/// The helper for `server`: its `credHelpers` entry, else `credsStore`.
fn helper_of<'a>(config: &'a Config, server: &str) -> Option<&'a str> {
    lookup(&config.cred_helpers, server)
        .map(|(_, helper)| helper.as_str())
        .or((!config.creds_store.is_empty()).then_some(config.creds_store.as_str()))
}

/// The entry keyed `server`, or else one whose key names the same server.
fn lookup<'a, T>(map: &'a BTreeMap<String, T>, server: &str) -> Option<(&'a str, &'a T)> {
    map.get_key_value(server)
        .or_else(|| map.iter().find(|(key, _)| server_key(key) == server))
        .map(|(k, v)| (k.as_str(), v))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::sync::Mutex;

    use super::*;

    /// Held while a test writes a helper program or runs one: a child forked by another
    /// test while a script is still open for writing would make exec fail with ETXTBSY.
    static HELPERS: Mutex<()> = Mutex::new(());

    fn auth(user: &str, password: &str) -> AuthConfig {
        AuthConfig {
            username: user.into(),
            password: password.into(),
            ..AuthConfig::default()
        }
    }

    fn read_json(path: &Path) -> Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// A credential helper `docker-credential-<name>` in `bin`, implementing the protocol
    /// over one file per server in `vault`.
    fn write_helper(bin: &Path, name: &str, vault: &Path) {
        std::fs::create_dir_all(vault).unwrap();
        let script = format!(
            r#"#!/bin/sh
vault='{vault}'
# One file per server, named by the hex of its URL.
key() {{ printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }}
case "$1" in
store)
    input=$(cat)
    server=$(printf '%s' "$input" | sed -n 's/.*"ServerURL":"\([^"]*\)".*/\1/p')
    printf '%s' "$input" > "$vault/$(key "$server")" ;;
get|erase)
    server=$(cat)
    f="$vault/$(key "$server")"
    if [ ! -f "$f" ]; then echo "credentials not found in native keychain"; exit 1; fi
    if [ "$1" = get ]; then cat "$f"; else rm "$f"; fi ;;
*)
    echo "unknown action $1" >&2; exit 1 ;;
esac
"#,
            vault = vault.display()
        );
        std::fs::create_dir_all(bin).unwrap();
        let path = bin.join(format!("docker-credential-{name}"));
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn search_path(bin: &Path) -> OsString {
        let mut path = bin.as_os_str().to_owned();
        path.push(":/usr/bin:/bin");
        path
    }

    /// A store in `<dir>/conf` whose `config.json` is `config`, finding helper `helper`
    /// (see [`write_helper`]) in `<dir>/bin`; also the helper's vault and the config dir.
    fn store_with_helper(dir: &Path, helper: &str, config: &str) -> (Store, PathBuf, PathBuf) {
        let (bin, vault, conf) = (dir.join("bin"), dir.join("vault"), dir.join("conf"));
        write_helper(&bin, helper, &vault);
        std::fs::create_dir(&conf).unwrap();
        std::fs::write(conf.join("config.json"), config).unwrap();
        let store = Store::new(conf.clone()).with_search_path(search_path(&bin));
        (store, vault, conf)
    }

    #[test]
    fn file_round_trip_keeps_unknown_keys_and_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        std::fs::write(
            &file,
            r#"{"psFormat": "table {{.ID}}", "auths": {"quay.io": {"auth": "cTp4"}},
                "proxies": {"default": {"httpProxy": "http://127.0.0.1:3128"}}}"#,
        )
        .unwrap();
        let store = Store::new(dir.path().into());

        assert_eq!(store.get("127.0.0.1:5000").unwrap(), None);
        let stored = store
            .store("127.0.0.1:5000", &auth("alice", "s3:cret"))
            .unwrap();
        assert_eq!(stored, Stored::File(file.clone()));

        let json = read_json(&file);
        assert_eq!(
            json["auths"]["127.0.0.1:5000"]["auth"],
            STANDARD.encode("alice:s3:cret")
        );
        assert_eq!(json["psFormat"], "table {{.ID}}");
        assert_eq!(
            json["proxies"]["default"]["httpProxy"],
            "http://127.0.0.1:3128"
        );
        assert_eq!(json["auths"]["quay.io"]["auth"], "cTp4");
        assert_eq!(mode(&file), 0o600);
        // The temp file was renamed, not left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let got = store.get("127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(
            (got.username.as_str(), got.password.as_str()),
            ("alice", "s3:cret")
        );
        assert_eq!(got.serveraddress, "127.0.0.1:5000");
        let quay = store.get("quay.io").unwrap().unwrap();
        assert_eq!((quay.username.as_str(), quay.password.as_str()), ("q", "x"));

        assert!(store.erase("127.0.0.1:5000").unwrap());
        assert_eq!(store.get("127.0.0.1:5000").unwrap(), None);
        assert!(!store.erase("127.0.0.1:5000").unwrap());
        let json = read_json(&file);
        assert!(json["auths"].get("127.0.0.1:5000").is_none());
        assert_eq!(json["auths"]["quay.io"]["auth"], "cTp4");
        assert_eq!(json["psFormat"], "table {{.ID}}");
    }

    #[test]
    fn a_missing_directory_is_created_and_a_symlinked_config_stays_linked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("new/.docker"));
        store.store(INDEX_SERVER, &auth("bob", "pw")).unwrap();
        assert_eq!(
            read_json(&store.file())["auths"][INDEX_SERVER]["auth"],
            STANDARD.encode("bob:pw")
        );

        let real = dir.path().join("real.json");
        std::fs::write(&real, "{}").unwrap();
        let linked = dir.path().join("linked");
        std::fs::create_dir(&linked).unwrap();
        std::os::unix::fs::symlink(&real, linked.join("config.json")).unwrap();
        Store::new(linked.clone())
            .store("reg:5000", &auth("u", "p"))
            .unwrap();
        assert!(
            std::fs::symlink_metadata(linked.join("config.json"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            read_json(&real)["auths"]["reg:5000"]["auth"],
            STANDARD.encode("u:p")
        );
    }

    #[test]
    fn legacy_url_keys_and_identity_tokens() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            format!(
                r#"{{"auths": {{"https://127.0.0.1:5000/v1/": {{"auth": "{}"}},
                    "docker.io": {{"auth": "{}"}}}}}}"#,
                STANDARD.encode("old:pw"),
                STANDARD.encode("hub:pw")
            ),
        )
        .unwrap();
        let store = Store::new(dir.path().into());
        assert_eq!(
            store.get("127.0.0.1:5000").unwrap().unwrap().username,
            "old"
        );
        assert_eq!(store.get(INDEX_SERVER).unwrap().unwrap().username, "hub");

        let token = AuthConfig {
            identitytoken: "tok".into(),
            ..auth("carol", "ignored")
        };
        store.store("reg.example:443", &token).unwrap();
        let json = read_json(&store.file());
        assert_eq!(
            json["auths"]["reg.example:443"]["auth"],
            STANDARD.encode("carol:")
        );
        assert_eq!(json["auths"]["reg.example:443"]["identitytoken"], "tok");
        let got = store.get("reg.example:443").unwrap().unwrap();
        assert_eq!(
            (
                got.username.as_str(),
                got.password.as_str(),
                got.identitytoken.as_str()
            ),
            ("carol", "", "tok")
        );

        // Logout forgets every spelling of the server.
        assert!(store.erase("127.0.0.1:5000").unwrap());
        assert!(
            read_json(&store.file())["auths"]
                .get("https://127.0.0.1:5000/v1/")
                .is_none()
        );
    }

    #[test]
    fn a_corrupt_auth_is_an_error_naming_the_server() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths": {"reg:5000": {"auth": "not base64!"}}}"#,
        )
        .unwrap();
        let e = Store::new(dir.path().into()).get("reg:5000").unwrap_err();
        assert!(e.to_string().starts_with("the auth of reg:5000 in "), "{e}");
    }

    #[test]
    fn creds_store_keeps_secrets_in_the_helper() {
        let _serial = HELPERS.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let (store, vault, conf) = store_with_helper(
            dir.path(),
            "testvault",
            r#"{"credsStore": "testvault", "detachKeys": "ctrl-p"}"#,
        );

        assert_eq!(store.get("127.0.0.1:5000").unwrap(), None);
        let stored = store
            .store("127.0.0.1:5000", &auth("dave", "pa ss\"word"))
            .unwrap();
        assert_eq!(stored, Stored::Helper("docker-credential-testvault".into()));
        // The file lists the server without its secret.
        let json = read_json(&conf.join("config.json"));
        assert_eq!(json["auths"]["127.0.0.1:5000"], serde_json::json!({}));
        assert_eq!(json["detachKeys"], "ctrl-p");
        assert_eq!(std::fs::read_dir(&vault).unwrap().count(), 1);

        let got = store.get("127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(
            (got.username.as_str(), got.password.as_str()),
            ("dave", "pa ss\"word")
        );

        let token = AuthConfig {
            identitytoken: "tok".into(),
            ..auth("dave", "")
        };
        store.store("quay.io", &token).unwrap();
        let got = store.get("quay.io").unwrap().unwrap();
        assert_eq!(
            (got.username.as_str(), got.identitytoken.as_str()),
            ("", "tok")
        );

        assert!(store.erase("127.0.0.1:5000").unwrap());
        assert_eq!(store.get("127.0.0.1:5000").unwrap(), None);
        assert!(!store.erase("127.0.0.1:5000").unwrap());
        assert!(
            read_json(&conf.join("config.json"))["auths"]
                .get("127.0.0.1:5000")
                .is_none()
        );
    }

    #[test]
    fn cred_helpers_pick_the_helper_per_server() {
        let _serial = HELPERS.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let (store, vault, conf) = store_with_helper(
            dir.path(),
            "local",
            r#"{"credHelpers": {"127.0.0.1:5000": "local"}}"#,
        );

        store
            .store("127.0.0.1:5000", &auth("erin", "in-helper"))
            .unwrap();
        let stored = store.store("quay.io", &auth("erin", "in-file")).unwrap();
        assert_eq!(stored, Stored::File(conf.join("config.json")));
        let json = read_json(&conf.join("config.json"));
        assert_eq!(json["auths"]["127.0.0.1:5000"], serde_json::json!({}));
        assert_eq!(
            json["auths"]["quay.io"]["auth"],
            STANDARD.encode("erin:in-file")
        );
        assert_eq!(std::fs::read_dir(&vault).unwrap().count(), 1);

        assert_eq!(
            store.get("127.0.0.1:5000").unwrap().unwrap().password,
            "in-helper"
        );
        assert_eq!(store.get("quay.io").unwrap().unwrap().password, "in-file");

        // The pull header of an image on that registry carries the helper's credentials.
        let header = store
            .registry_auth(&ImageRef::parse("127.0.0.1:5000/app:1").unwrap())
            .unwrap();
        let sent: AuthConfig = serde_json::from_slice(&URL_SAFE.decode(header).unwrap()).unwrap();
        assert_eq!(
            (
                sent.username.as_str(),
                sent.password.as_str(),
                sent.serveraddress.as_str()
            ),
            ("erin", "in-helper", "127.0.0.1:5000")
        );
    }

    #[test]
    fn a_failing_or_missing_helper_is_an_error_naming_it() {
        let _serial = HELPERS.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let broken = bin.join("docker-credential-broken");
        std::fs::write(&broken, "#!/bin/sh\necho 'vault is locked' >&2\nexit 3\n").unwrap();
        std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"credHelpers": {"a:1": "broken", "b:1": "absent"}}"#,
        )
        .unwrap();
        let store = Store::new(dir.path().into()).with_search_path(search_path(&bin));
        let e = store.get("a:1").unwrap_err();
        assert_eq!(
            e.to_string(),
            "docker-credential-broken get: vault is locked"
        );
        let e = store.store("b:1", &auth("u", "p")).unwrap_err();
        assert_eq!(e.to_string(), "run docker-credential-absent");
    }

    #[test]
    fn registry_keys_follow_docker() {
        let table = [
            ("busybox", INDEX_SERVER),
            ("library/busybox:1.36", INDEX_SERVER),
            ("docker.io/x/y", INDEX_SERVER),
            ("index.docker.io/x/y", INDEX_SERVER),
            ("127.0.0.1:5000/x", "127.0.0.1:5000"),
            ("127.0.0.1:5000/a/b:2", "127.0.0.1:5000"),
            ("localhost/app", "localhost"),
            ("localhost:5000/app", "localhost:5000"),
            ("quay.io/ns/img", "quay.io"),
            ("registry.example.com/ns/img", "registry.example.com"),
        ];
        for (image, key) in table {
            assert_eq!(
                registry_key(&ImageRef::parse(image).unwrap()),
                key,
                "{image}"
            );
        }
        let login = [
            ("", INDEX_SERVER),
            ("docker.io", INDEX_SERVER),
            ("https://index.docker.io/v1/", INDEX_SERVER),
            ("registry-1.docker.io", INDEX_SERVER),
            ("127.0.0.1:5000", "127.0.0.1:5000"),
            ("https://127.0.0.1:5000/v2/", "127.0.0.1:5000"),
            ("http://reg.example", "reg.example"),
        ];
        for (server, key) in login {
            assert_eq!(server_key(server), key, "{server}");
        }
    }

    #[test]
    fn config_dir_honours_docker_config() {
        assert_eq!(
            config_dir(Some("/etc/dc".into()), Some("/root".into())).unwrap(),
            PathBuf::from("/etc/dc")
        );
        assert_eq!(
            config_dir(Some("".into()), Some("/home/u".into())).unwrap(),
            PathBuf::from("/home/u/.docker")
        );
        assert!(matches!(config_dir(None, None), Err(Error::NoConfigDir)));
    }

    #[test]
    fn the_header_without_credentials_names_only_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().into());
        let header = store
            .registry_auth(&ImageRef::parse("busybox").unwrap())
            .unwrap();
        let sent: AuthConfig = serde_json::from_slice(&URL_SAFE.decode(header).unwrap()).unwrap();
        assert_eq!(
            sent,
            AuthConfig {
                serveraddress: INDEX_SERVER.into(),
                ..AuthConfig::default()
            }
        );
    }
}
