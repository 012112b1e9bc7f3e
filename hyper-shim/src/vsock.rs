//! Hybrid vsock: the host side of the guest's AF_VSOCK as a unix socket. Cloud Hypervisor has
//! it built in; for QEMU, `vhost-device-vsock` provides it. Both speak the same handshake, so
//! the agent is reached the same way under either VMM.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::child::Child;
use crate::error::{Error, Result};

/// The guest's context id; every VM has its own back-end, so they can all use 3.
pub const GUEST_CID: u32 = 3;

/// Opens a stream to `port` in the guest: `CONNECT <port>\n`, answered by `OK <host port>\n`.
pub async fn connect(uds: &Path, port: u32) -> std::io::Result<UnixStream> {
    let mut stream = UnixStream::connect(uds).await?;
    stream
        .write_all(format!("CONNECT {port}\n").as_bytes())
        .await?;
    // Byte by byte: whatever follows the reply line already belongs to the guest's stream.
    let mut line = Vec::with_capacity(32);
    while line.last() != Some(&b'\n') && line.len() < MAX_REPLY {
        line.push(stream.read_u8().await?);
    }
    let line = String::from_utf8_lossy(&line);
    if !is_ok_reply(&line) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            format!("vsock port {port}: handshake answered {:?}", line.trim()),
        ));
    }
    Ok(stream)
}

const MAX_REPLY: usize = 64;

fn is_ok_reply(line: &str) -> bool {
    line.strip_prefix("OK ")
        .is_some_and(|port| port.trim().parse::<u32>().is_ok())
}

/// The host side of connections the guest opens to `port`: by the hybrid-vsock convention the
/// back-end connects them to `<uds>_<port>`. The socket file goes when this drops.
pub struct GuestPortListener {
    listener: UnixListener,
    path: PathBuf,
}

impl GuestPortListener {
    pub fn bind(uds: &Path, port: u32) -> Result<Self> {
        let path = PathBuf::from(format!("{}_{port}", uds.display()));
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(format!("remove {}", path.display()), e));
            }
            _ => {}
        }
        let listener = UnixListener::bind(&path)
            .map_err(|e| Error::io(format!("bind {}", path.display()), e))?;
        Ok(Self { listener, path })
    }

    pub async fn accept(&self) -> std::io::Result<UnixStream> {
        Ok(self.listener.accept().await?.0)
    }
}

impl Drop for GuestPortListener {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!("remove {}: {e}", self.path.display());
        }
    }
}

/// The vhost-user vsock back-end QEMU needs (it has no userspace vsock of its own here).
pub struct VsockBackend {
    pub child: Child,
    /// vhost-user socket QEMU connects to.
    pub vhost_socket: PathBuf,
    /// Hybrid vsock socket the shim connects to.
    pub uds: PathBuf,
}

impl VsockBackend {
    pub async fn start(program: &Path, run_dir: &Path, deadline: Instant) -> Result<Self> {
        let vhost_socket = run_dir.join("vhost-vsock.sock");
        let uds = run_dir.join("vsock.sock");
        let args = vec![
            format!("--guest-cid={GUEST_CID}"),
            format!("--socket={}", vhost_socket.display()),
            format!("--uds-path={}", uds.display()),
        ];
        let child = Child::spawn(
            "vhost-device-vsock",
            program,
            &args,
            &run_dir.join("vsock.log"),
        )?;
        crate::wait::socket_listening(&vhost_socket, deadline, &child).await?;
        Ok(Self {
            child,
            vhost_socket,
            uds,
        })
    }

    pub async fn stop(&self) {
        self.child.stop(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    #[test]
    fn only_ok_with_a_port_is_accepted() {
        assert!(is_ok_reply("OK 1024\n"));
        assert!(is_ok_reply("OK 4294967295\n"));
        assert!(!is_ok_reply(""));
        assert!(!is_ok_reply("ERR\n"));
        assert!(!is_ok_reply("OK\n"));
    }

    /// A peer speaking the hybrid-vsock handshake, as CH and vhost-device-vsock do.
    #[tokio::test]
    async fn handshake_then_byte_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let peer = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0; 13];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(buf, b"CONNECT 1024\n");
            s.write_all(b"OK 1073741824\nping").await.unwrap();
        });
        // The peer sends data right behind the OK line: it must not be lost to buffering.
        let mut s = connect(&path, 1024).await.unwrap();
        peer.await.unwrap();
        let mut rest = String::new();
        s.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "ping");
    }

    #[tokio::test]
    async fn a_closed_connection_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.sock");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            drop(s);
        });
        assert!(connect(&path, 1024).await.is_err());
    }
}
