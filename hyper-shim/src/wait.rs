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

/// Waits for a unix socket file to appear.
pub async fn socket_appears(
    path: &std::path::Path,
    deadline: Instant,
    owner: &Child,
) -> Result<()> {
    wait_until(
        &format!("{} to create {}", owner.name(), path.display()),
        deadline,
        &[owner],
        || async { path.exists().then_some(()) },
    )
    .await
}
