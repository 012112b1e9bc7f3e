//! `hyperctl login [-u USER] [-p PASS | --password-stdin] [SERVER]`: checks the credentials
//! with `POST /auth` (the daemon asks the registry), then keeps them in Docker's credential
//! store (see [`crate::credentials`]). Without flags it first tries the kept credentials, as
//! Docker does; what is missing is prompted for on a terminal (the password without echo).

use std::io::{BufRead, IsTerminal, Read, Write};

use anyhow::{Context, Result, bail};
use hyper::StatusCode;

use hyper_proto::rest::{AuthConfig, AuthResponse};

use crate::client::{Client, refused_status};
use crate::credentials::{INDEX_SERVER, Store, Stored, server_key};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The username.
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// The password (other users can see it in the process list: prefer --password-stdin).
    #[arg(short = 'p', long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from stdin (one line; the final newline is dropped).
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// The registry (HOST[:PORT]) [default: Docker Hub, https://index.docker.io/v1/].
    pub server: Option<String>,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    let server = server_key(args.server.as_deref().unwrap_or(INDEX_SERVER));
    let store = Store::from_env()?;
    if args.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    let kept = store.get(&server)?;
    if args.username.is_none()
        && args.password.is_none()
        && let Some(kept) = &kept
    {
        println!("Authenticating with existing credentials...");
        match authenticate(client, kept).await {
            Ok(resp) => return finish(&store, &server, kept.clone(), resp),
            // Stale credentials: ask for new ones.
            Err(e) if refused_status(&e) == Some(StatusCode::UNAUTHORIZED) => {
                eprintln!("Login did not succeed, error: {e:#}");
            }
            Err(e) => return Err(e),
        }
    }
    let username = match args.username {
        Some(u) => u,
        None => prompt_username(kept.as_ref().map(|k| k.username.as_str()))?,
    };
    if username.is_empty() {
        bail!("a username is required");
    }
    let password = if args.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("read the password from stdin")?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = args.password {
        p
    } else {
        prompt_password()?
    };
    if password.is_empty() {
        bail!("a password is required");
    }
    let auth = AuthConfig {
        username,
        password,
        serveraddress: server.clone(),
        ..AuthConfig::default()
    };
    let resp = authenticate(client, &auth).await?;
    finish(&store, &server, auth, resp)
}

async fn authenticate(client: &Client, auth: &AuthConfig) -> Result<AuthResponse> {
    client.post_json("/auth", serde_json::to_vec(auth)?).await
}

/// Keeps the credentials that worked (an identity token instead of the password when the
/// registry gave one) and says so.
fn finish(store: &Store, server: &str, mut auth: AuthConfig, resp: AuthResponse) -> Result<i32> {
    if !resp.identity_token.is_empty() {
        auth.password.clear();
        auth.identitytoken = resp.identity_token;
    }
    auth.serveraddress = server.into();
    if let Stored::File(path) = store.store(server, &auth)? {
        eprintln!(
            "WARNING! Your password will be stored unencrypted in {}.",
            path.display()
        );
    }
    println!(
        "{}",
        if resp.status.is_empty() {
            "Login Succeeded"
        } else {
            &resp.status
        }
    );
    Ok(0)
}

fn prompt_username(default: Option<&str>) -> Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("cannot prompt for a username: stdin is not a terminal (give --username)");
    }
    match default.filter(|d| !d.is_empty()) {
        Some(d) => print!("Username ({d}): "),
        None => print!("Username: "),
    }
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let typed = line.trim();
    Ok(match (typed, default) {
        ("", Some(d)) => d.to_string(),
        _ => typed.to_string(),
    })
}

fn prompt_password() -> Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("cannot prompt for a password: stdin is not a terminal (give --password-stdin)");
    }
    rpassword::prompt_password("Password: ").context("read the password")
}
