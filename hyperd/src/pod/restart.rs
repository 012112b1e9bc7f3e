//! Restart policies (the pod spec's `restartPolicy`, pod-wide and per container): what each
//! spelling means, whether an exit is restarted, and Docker's back-off between restarts. The
//! supervisor ([`super::supervise`]) acts on these decisions.

use std::time::Duration;

use hyper_proto::rest::{UserContainer, UserPod};

use super::spec::SpecError;

/// The first back-off delay (Docker's `backoffMultiplier` start).
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The back-off never grows past this.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long resets the back-off to [`FIRST_DELAY`].
pub const RESET_AFTER: Duration = Duration::from_secs(10);

/// A container's restart policy, after the pod's and the container's spellings are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// `""`, `never`, `no`: an exit is final (the default).
    #[default]
    Never,
    /// `onFailure`, `on-failure`, `on-failure:N`: restarted after a non-zero exit, at most
    /// `max_retries` times when set (Docker's `MaximumRetryCount`; `on-failure:0` sets none).
    OnFailure { max_retries: Option<u32> },
    /// `always`: restarted after every exit.
    Always,
    /// `unless-stopped` (Docker's): as `always` here; a container stopped through the API is
    /// never restarted under any policy.
    UnlessStopped,
}

impl Policy {
    /// Parses one `restartPolicy` value (hyperd 1.1's `never | onFailure | always`, and
    /// Docker's `no | on-failure[:N] | always | unless-stopped`). The error says what is
    /// accepted; the caller names the field.
    pub fn parse(s: &str) -> Result<Policy, String> {
        Ok(match s {
            "" | "never" | "no" => Policy::Never,
            "onFailure" | "on-failure" => Policy::OnFailure { max_retries: None },
            "always" => Policy::Always,
            "unless-stopped" => Policy::UnlessStopped,
            other => match other.strip_prefix("on-failure:") {
                // Docker's `MaximumRetryCount`: 0 is no limit.
                Some(n) => match n.parse::<u32>() {
                    Ok(n) => Policy::OnFailure {
                        max_retries: (n > 0).then_some(n),
                    },
                    Err(_) => {
                        return Err(format!(
                            "{other:?}: the retry count of on-failure:N must be a number"
                        ));
                    }
                },
                None => {
                    return Err(format!(
                        "{other:?}: must be never, no, onFailure, on-failure[:N], always or unless-stopped"
                    ));
                }
            },
        })
    }

    /// The policy of a container: its own `restartPolicy` when set, else the pod's. Both
    /// were checked by [`check_policies`]; a bad stored value counts as `never`.
    pub fn of(pod: &UserPod, container: Option<&UserContainer>) -> Policy {
        let own = container.map(|c| c.restart_policy.as_str()).unwrap_or("");
        let chosen = if own.is_empty() {
            pod.restart_policy.as_str()
        } else {
            own
        };
        Policy::parse(chosen).unwrap_or_default()
    }

    /// Whether a container that exited with `code`, after `restarts` restarts so far, is
    /// started again. `stopped_by_user`: it was stopped or killed through the API.
    pub fn restarts(self, code: i32, restarts: u32, stopped_by_user: bool) -> bool {
        if stopped_by_user {
            return false;
        }
        match self {
            Policy::Never => false,
            Policy::OnFailure { max_retries } => {
                code != 0 && max_retries.is_none_or(|max| restarts < max)
            }
            Policy::Always | Policy::UnlessStopped => true,
        }
    }
}

/// Checks the pod's and every container's `restartPolicy` (a 400 naming `restartPolicy` or
/// `containers[i].restartPolicy`).
pub fn check_policies(pod: &UserPod) -> Result<(), SpecError> {
    let bad = |field: String, message: String| SpecError { field, message };
    Policy::parse(&pod.restart_policy).map_err(|m| bad("restartPolicy".into(), m))?;
    for (i, c) in pod.containers.iter().enumerate() {
        Policy::parse(&c.restart_policy)
            .map_err(|m| bad(format!("containers[{i}].restartPolicy"), m))?;
    }
    Ok(())
}

/// Docker's restart back-off for one container: 100 ms, doubled after each restart up to one
/// minute, and back to 100 ms once a run lasted 10 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: FIRST_DELAY }
    }
}

impl Backoff {
    /// The delay before the restart that follows a run of `ran`, and the back-off after it.
    pub fn after_run(self, ran: Duration) -> (Duration, Backoff) {
        let delay = if ran >= RESET_AFTER {
            FIRST_DELAY
        } else {
            self.next
        };
        let next = (delay * 2).min(MAX_DELAY);
        (delay, Backoff { next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_parses_and_others_are_refused() {
        for s in ["", "never", "no"] {
            assert_eq!(Policy::parse(s), Ok(Policy::Never));
        }
        for s in ["onFailure", "on-failure"] {
            assert_eq!(
                Policy::parse(s),
                Ok(Policy::OnFailure { max_retries: None })
            );
        }
        assert_eq!(
            Policy::parse("on-failure:3"),
            Ok(Policy::OnFailure {
                max_retries: Some(3)
            })
        );
        assert_eq!(
            Policy::parse("on-failure:0"),
            Ok(Policy::OnFailure { max_retries: None })
        );
        assert_eq!(Policy::parse("always"), Ok(Policy::Always));
        assert_eq!(Policy::parse("unless-stopped"), Ok(Policy::UnlessStopped));
        for s in [
            "sometimes",
            "Always",
            "on-failure:",
            "on-failure:-1",
            "on-failure:x",
            "onFailure:2",
        ] {
            assert!(Policy::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn the_container_policy_overrides_the_pods() {
        let mut pod = UserPod {
            restart_policy: "always".into(),
            containers: vec![UserContainer::default(), UserContainer::default()],
            ..Default::default()
        };
        pod.containers[1].restart_policy = "no".into();
        assert_eq!(Policy::of(&pod, pod.containers.first()), Policy::Always);
        assert_eq!(Policy::of(&pod, pod.containers.get(1)), Policy::Never);
        assert_eq!(Policy::of(&pod, None), Policy::Always);
    }

    #[test]
    fn bad_policies_name_their_field() {
        let mut pod = UserPod {
            containers: vec![UserContainer::default(), UserContainer::default()],
            ..Default::default()
        };
        assert!(check_policies(&pod).is_ok());
        pod.containers[1].restart_policy = "sometimes".into();
        assert_eq!(
            check_policies(&pod).unwrap_err().field,
            "containers[1].restartPolicy"
        );
        pod.restart_policy = "bogus".into();
        assert_eq!(check_policies(&pod).unwrap_err().field, "restartPolicy");
    }

    #[test]
    fn which_exits_restart() {
        let on_failure = Policy::OnFailure { max_retries: None };
        let twice = Policy::OnFailure {
            max_retries: Some(2),
        };
        assert!(!Policy::Never.restarts(1, 0, false));
        assert!(!on_failure.restarts(0, 0, false));
        assert!(on_failure.restarts(1, 100, false));
        assert!(twice.restarts(1, 1, false) && !twice.restarts(1, 2, false));
        assert!(Policy::Always.restarts(0, 7, false));
        assert!(Policy::UnlessStopped.restarts(3, 0, false));
        for p in [Policy::Always, Policy::UnlessStopped, on_failure] {
            assert!(!p.restarts(1, 0, true), "{p:?}");
        }
    }

    #[test]
    fn backoff_doubles_to_a_minute_and_resets_after_ten_seconds() {
        let quick = Duration::from_secs(1);
        let mut b = Backoff::default();
        let mut delays = Vec::new();
        for _ in 0..12 {
            let (d, next) = b.after_run(quick);
            delays.push(d.as_millis());
            b = next;
        }
        assert_eq!(
            delays,
            [
                100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000
            ]
        );
        let (d, b) = b.after_run(RESET_AFTER);
        assert_eq!(d, FIRST_DELAY);
        assert_eq!(b.after_run(quick).0, Duration::from_millis(200));
    }
}
