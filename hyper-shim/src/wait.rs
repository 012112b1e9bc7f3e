//! The shim's one polling helper, for conditions that have no event: a socket appearing, the
//! agent starting to listen. It gives up at the deadline, or at once when a child it depends
//! on has exited.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::child::Child;
use crate::error::{Error, Result};

const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `check` until it yields a value. `what` names the condition in the timeout error.
pub async fn wait_until<T, F, Fut>(
    what: &str,
    deadline: Instant,
    watched: &[&Child],
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if let Some(dead) = watched.iter().find(|c| c.exit_status().is_some()) {
            return Err(dead.exited_error());
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout(format!(
                "{what}: no answer after {:.1}s",
                started.elapsed().as_secs_f64()
            )));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Whether a unix socket at `path` is listening, from /proc/net/unix. Connecting to find out
/// would use up the one connection a vhost-user back-end accepts; and the socket file exists
/// a moment before its owner listens, so its presence is not enough.
pub fn is_listening(path: &std::path::Path, proc_net_unix: &str) -> bool {
    const SO_ACCEPTCON: u32 = 0x0001_0000;
    let path = path.to_string_lossy();
    proc_net_unix.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() >= 8
            && fields[7] == path
            && u32::from_str_radix(fields[3], 16).is_ok_and(|flags| flags & SO_ACCEPTCON != 0)
    })
}

/// Waits until `owner` listens on the unix socket `path`.
pub async fn socket_listening(
    path: &std::path::Path,
    deadline: Instant,
    owner: &Child,
) -> Result<()> {
    wait_until(
        &format!("{} to listen on {}", owner.name(), path.display()),
        deadline,
        &[owner],
        || async {
            let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
            is_listening(path, &table).then_some(())
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 4242 /run/x/fs.sock
0000000000000000: 00000002 00000000 00000000 0001 03 4243 /run/x/qmp.sock
0000000000000000: 00000002 00000000 00000000 0001 03 4244
";

    #[test]
    fn only_a_listening_socket_counts() {
        assert!(is_listening(std::path::Path::new("/run/x/fs.sock"), TABLE));
        // Bound or connected, not listening.
        assert!(!is_listening(
            std::path::Path::new("/run/x/qmp.sock"),
            TABLE
        ));
        assert!(!is_listening(
            std::path::Path::new("/run/x/none.sock"),
            TABLE
        ));
    }

    #[test]
    fn a_real_listener_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sock");
        let table = || std::fs::read_to_string("/proc/net/unix").unwrap();
        let _bound_only =
            std::os::unix::net::UnixDatagram::bind(dir.path().join("d.sock")).unwrap();
        assert!(!is_listening(&path, &table()));
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(is_listening(&path, &table()));
    }
}
