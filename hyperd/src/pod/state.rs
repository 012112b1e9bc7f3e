//! A pod's lifecycle as one enum with its legal moves.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    /// Created (or being started): no VM runs its containers yet.
    Pending,
    Running,
    /// Its VM is frozen (`/pod/pause`) until `/pod/unpause`.
    Paused,
    /// Stopped by the user, or every container exited; can be started again.
    Stopped,
    /// Its VM's shim died or could not be re-adopted; only removal is left.
    Failed,
}

impl PodState {
    pub fn can_start(self) -> bool {
        matches!(self, PodState::Pending | PodState::Stopped)
    }

    pub fn can_stop(self) -> bool {
        matches!(self, PodState::Running | PodState::Paused)
    }

    /// The `phase` of `/pod/info`.
    pub fn phase(self) -> &'static str {
        match self {
            PodState::Pending => "Pending",
            PodState::Running => "Running",
            PodState::Paused => "Paused",
            PodState::Stopped => "Succeeded",
            PodState::Failed => "Failed",
        }
    }
}

impl fmt::Display for PodState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PodState::Pending => "pending",
            PodState::Running => "running",
            PodState::Paused => "paused",
            PodState::Stopped => "stopped",
            PodState::Failed => "failed",
        })
    }
}

impl FromStr for PodState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "pending" => PodState::Pending,
            "running" => PodState::Running,
            "paused" => PodState::Paused,
            "stopped" => PodState::Stopped,
            "failed" => PodState::Failed,
            other => return Err(format!("unknown pod state {other:?}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_gate_moves() {
        for s in [
            PodState::Pending,
            PodState::Running,
            PodState::Paused,
            PodState::Stopped,
            PodState::Failed,
        ] {
            assert_eq!(s.to_string().parse::<PodState>().unwrap(), s);
        }
        assert!(PodState::Stopped.can_start() && !PodState::Running.can_start());
        assert!(!PodState::Failed.can_start() && !PodState::Failed.can_stop());
    }
}
