//! An interactive session on a hijacked connection (`run -i -t`, `attach`, `exec -i -t`):
//! our stdin to the process (half-closed at its end), its output to our stdout and stderr
//! (stdcopy frames, or raw bytes from a TTY). With a TTY on our side the terminal goes raw
//! for the session and is restored on every way out (the end, an error, a panic, SIGTERM,
//! SIGHUP); the window size is sent at the start and on every SIGWINCH.

use std::os::fd::AsFd;

use anyhow::Result;
use nix::sys::termios::{self, SetArg, Termios};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};

use crate::client::{Client, Hijacked};
use crate::stdcopy;

/// The terminal's settings before raw mode; restores them when dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Raw mode on stdin's terminal; `None` when stdin is not a terminal.
    pub fn enter() -> Option<Self> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _restored = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// Rows and columns of stdout's (else stdin's) terminal.
pub fn window_size() -> Option<(u16, u16)> {
    for fd in [libc::STDOUT_FILENO, libc::STDIN_FILENO] {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes a winsize into the struct we pass; fd is ours.
        let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
        if r == 0 && ws.ws_row > 0 && ws.ws_col > 0 {
            return Some((ws.ws_row, ws.ws_col));
        }
    }
    None
}

/// Docker's detach-key syntax (`ctrl-p,ctrl-q`, `ctrl-a,x`) as bytes; `None` when it does
/// not parse (the daemon then names what is wrong).
pub fn detach_bytes(spec: &str) -> Option<Vec<u8>> {
    spec.split(',')
        .map(|k| {
            let k = k.trim();
            match k.strip_prefix("ctrl-") {
                Some(c) if c.len() == 1 => match c.as_bytes()[0].to_ascii_lowercase() {
                    b @ b'a'..=b'z' => Some(b - b'a' + 1),
                    b'@' => Some(0),
                    b @ (b'[' | b'\\' | b']' | b'^' | b'_') => Some(b - b'@'),
                    _ => None,
                },
                Some(_) => None,
                None if k.len() == 1 => Some(k.as_bytes()[0]),
                None => None,
            }
        })
        .collect()
}

/// `-i -t` asked while our stdin is not a terminal: Docker refuses it (exit status 1) rather
/// than start a session nobody can type into.
#[derive(Debug, thiserror::Error)]
#[error("the input device is not a TTY")]
pub struct NotATty;

/// Refuses `-i -t` when stdin is not a terminal (`run -it`, `exec -it`; not `attach`, which
/// forwards piped stdin to a TTY container as Docker does).
pub fn check_tty(tty: bool, interactive: bool) -> Result<(), NotATty> {
    use std::io::IsTerminal;
    if tty && interactive && !std::io::stdin().is_terminal() {
        return Err(NotATty);
    }
    Ok(())
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The process closed its output.
    Closed,
    /// We typed the detach keys: the process runs on.
    Detached,
}

/// What a session relays.
pub struct Session<'a> {
    pub client: &'a Client,
    /// The process runs on a TTY: raw output, our terminal goes raw.
    pub tty: bool,
    /// Our stdin goes to the process.
    pub stdin: bool,
    /// `/tty/resize?container=…[&exec=…]` without h and w, when the window size matters.
    pub resize: Option<String>,
    /// The detach keys the daemon watches for (TTY sessions).
    pub detach_keys: Option<Vec<u8>>,
}

impl Session<'_> {
    /// Relays until the server closes the stream.
    pub async fn run(self, stream: Hijacked) -> Result<Ended> {
        let raw = if self.tty && self.stdin {
            RawMode::enter()
        } else {
            None
        };
        if let Some(path) = &self.resize {
            send_size(self.client, path).await;
        }
        let (mut rd, mut wr) = tokio::io::split(stream);
        let forward_stdin = self.stdin;
        let keys = self
            .detach_keys
            .clone()
            .filter(|k| self.tty && !k.is_empty());
        let detached = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let saw_keys = detached.clone();
        let stdin = tokio::spawn(async move {
            if forward_stdin {
                let mut stdin = tokio::io::stdin();
                let mut buf = vec![0u8; 32 * 1024];
                let mut matched = 0usize;
                loop {
                    match stdin.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            // The daemon detaches on the keys; knowing it here tells a detach
                            // from the process's end.
                            if let Some(k) = &keys {
                                for &b in &buf[..n] {
                                    matched = if k.get(matched) == Some(&b) {
                                        matched + 1
                                    } else {
                                        usize::from(k.first() == Some(&b))
                                    };
                                    if matched == k.len() {
                                        saw_keys.store(true, std::sync::atomic::Ordering::SeqCst);
                                        matched = 0;
                                    }
                                }
                            }
                            if wr.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
            // Half-close: the process sees the end of its stdin; we keep reading its output.
            let _closed = wr.shutdown().await;
        });
        let mut winch = signal(SignalKind::window_change())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        let output = async {
            if self.tty {
                let mut out = tokio::io::stdout();
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    let n = rd.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    out.write_all(&buf[..n]).await?;
                    out.flush().await?;
                }
                Ok::<_, anyhow::Error>(())
            } else {
                stdcopy::demux(rd, &mut tokio::io::stdout(), &mut tokio::io::stderr()).await
            }
        };
        tokio::pin!(output);
        let result = loop {
            tokio::select! {
                r = &mut output => break r,
                _ = winch.recv() => {
                    if let Some(path) = &self.resize {
                        send_size(self.client, path).await;
                    }
                }
                _ = term.recv() => break Err(anyhow::anyhow!("terminated")),
                _ = hup.recv() => break Err(anyhow::anyhow!("hung up")),
            }
        };
        stdin.abort();
        drop(raw);
        result?;
        if detached.load(std::sync::atomic::Ordering::SeqCst) {
            // As Docker says it, once the terminal is back to normal.
            eprintln!("read escape sequence");
            Ok(Ended::Detached)
        } else {
            Ok(Ended::Closed)
        }
    }
}

async fn send_size(client: &Client, path: &str) {
    if let Some((h, w)) = window_size()
        && let Err(e) = client
            .call(
                hyper::Method::POST,
                &format!("{path}&h={h}&w={w}"),
                None,
                bytes::Bytes::new(),
            )
            .await
    {
        eprintln!("hyperctl: resize the terminal: {e:#}");
    }
}

/// `/exitcode` of a container or exec; a 137 from a VM that died says so on stderr.
pub async fn exit_code(client: &Client, container: &str, exec: Option<&str>) -> Result<i32> {
    use crate::client::enc;
    let path = match exec {
        Some(e) => format!("/exitcode?container={}&exec={}", enc(container), enc(e)),
        None => format!("/exitcode?container={}", enc(container)),
    };
    let code: i32 = client.get(&path).await?;
    if code == 137 {
        let info = client.container_info(container).await;
        let pod = info.map(|i| i.pod_id).unwrap_or_default();
        let phase = client
            .get::<hyper_proto::rest::PodInfo>(&format!("/pod/info?podName={}", enc(&pod)))
            .await
            .map(|p| p.status.phase)
            .unwrap_or_default();
        if phase == "Failed" {
            eprintln!("hyperctl: the VM of pod {pod} died under the process (exit 137)");
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_as_docker_writes_them() {
        assert_eq!(detach_bytes("ctrl-p,ctrl-q"), Some(vec![16, 17]));
        assert_eq!(detach_bytes("ctrl-a,x,ctrl-_"), Some(vec![1, b'x', 31]));
        assert_eq!(detach_bytes("ctrl-pp"), None);
    }
}
