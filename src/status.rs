//! Live state of a running space, as the supervisor reports it and as it
//! crosses the socket. Pure data: no IO.

use serde::{Deserialize, Serialize};

use crate::config::ProcKind;

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The lifecycle state of one process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ProcState {
    /// Waiting for its dependencies.
    Pending { waiting_for: Vec<String> },
    /// Spawned; readiness probe not yet decided (or initial delay running).
    Starting,
    /// Running, readiness probe still failing (only with a probe).
    Running,
    /// Running and ready (probe passed, or no probe).
    Ready,
    /// A stop was requested; waiting for the group to exit.
    Stopping { escalated: bool },
    /// Exited on its own with a code.
    Exited { code: i32 },
    /// Killed by a signal it did not ask for (not a mew stop).
    Killed { signal: i32 },
    /// Could not be started, or gave up restarting.
    Failed { reason: String },
    /// Waiting to be restarted.
    Backoff { until: Millis },
    /// Stopped by the user (or by mew stopping the space).
    Stopped,
    /// Defined but not started (auto_start: false, disabled).
    Idle,
}

impl ProcState {
    pub fn name(&self) -> &'static str {
        match self {
            ProcState::Pending { .. } => "pending",
            ProcState::Starting => "starting",
            ProcState::Running => "running",
            ProcState::Ready => "ready",
            ProcState::Stopping { .. } => "stopping",
            ProcState::Exited { .. } => "exited",
            ProcState::Killed { .. } => "killed",
            ProcState::Failed { .. } => "failed",
            ProcState::Backoff { .. } => "backoff",
            ProcState::Stopped => "stopped",
            ProcState::Idle => "idle",
        }
    }

    /// A process exists (or is about to) in this state.
    pub fn is_alive(&self) -> bool {
        matches!(
            self,
            ProcState::Starting
                | ProcState::Running
                | ProcState::Ready
                | ProcState::Stopping { .. }
        )
    }

    /// Nothing more will happen without a user action.
    pub fn is_settled(&self) -> bool {
        matches!(
            self,
            ProcState::Exited { .. }
                | ProcState::Killed { .. }
                | ProcState::Failed { .. }
                | ProcState::Stopped
                | ProcState::Idle
        )
    }

    /// A short human description, e.g. `exited 1`, `backoff 3s`.
    pub fn describe(&self, now: Millis) -> String {
        match self {
            ProcState::Pending { waiting_for } if !waiting_for.is_empty() => {
                format!("pending ({})", waiting_for.join(", "))
            }
            ProcState::Exited { code } => format!("exited {code}"),
            ProcState::Killed { signal } => format!("killed {}", signal_name(*signal)),
            ProcState::Failed { reason } => format!("failed: {reason}"),
            ProcState::Backoff { until } => {
                let secs = until.saturating_sub(now).div_ceil(1000);
                format!("backoff {secs}s")
            }
            ProcState::Stopping { escalated: true } => "stopping (killing)".into(),
            other => other.name().into(),
        }
    }
}

/// The name of a signal number, e.g. `SIGTERM`; `signal N` when unknown.
pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

/// One entry of a process's state history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub at: Millis,
    pub state: ProcState,
    /// Why it changed, e.g. "exit 1", "memory 612M over limit 500M".
    pub reason: String,
}

/// What status reports about one process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessStatus {
    pub name: String,
    pub kind: ProcKind,
    pub state: ProcState,
    pub pid: Option<u32>,
    /// Start time of the current (or last) run.
    pub started_at: Option<Millis>,
    pub restarts: u32,
    pub exit_code: Option<i32>,
    pub ready: bool,
    pub cpu_percent: Option<f32>,
    pub rss_bytes: Option<u64>,
    /// The command line, for display.
    pub command: String,
    pub cwd: String,
    /// The last transitions, newest last (bounded).
    pub history: Vec<Transition>,
    /// Last probe outcome, e.g. "GET http://127.0.0.1:8080/health: connection refused".
    pub probe: Option<String>,
    pub one_shot: bool,
    /// The health check's verdict: `None` without a `health:` check, or
    /// before its first verdict for this run (and when not running).
    #[serde(default)]
    pub healthy: Option<bool>,
    /// Why mew last restarted it for a reason of its own ("src/main.rs
    /// changed", by `watch:`); absent when it never was, or when the user
    /// restarted it since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_restart_reason: Option<String>,
}

impl ProcessStatus {
    /// A process in `state` that has not run yet: no pid, no counts, no
    /// command, no history.
    pub fn new(name: &str, kind: ProcKind, state: ProcState) -> ProcessStatus {
        ProcessStatus {
            name: name.to_owned(),
            kind,
            state,
            pid: None,
            started_at: None,
            restarts: 0,
            exit_code: None,
            ready: false,
            cpu_percent: None,
            rss_bytes: None,
            command: String::new(),
            cwd: String::new(),
            history: Vec::new(),
            probe: None,
            one_shot: false,
            healthy: None,
            last_restart_reason: None,
        }
    }
}

/// A participant without a process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantStatus {
    pub name: String,
    pub note: String,
}

impl From<&crate::config::ParticipantInfo> for ParticipantStatus {
    fn from(p: &crate::config::ParticipantInfo) -> ParticipantStatus {
        ParticipantStatus {
            name: p.name.clone(),
            note: p.note.clone(),
        }
    }
}

/// The whole space as status reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpaceStatus {
    pub space: SpaceInfo,
    pub server_pid: u32,
    pub gateway_url: Option<String>,
    pub processes: Vec<ProcessStatus>,
    pub participants: Vec<ParticipantStatus>,
    /// Set when log files cannot be written (disk full, permissions).
    pub logging_degraded: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceInfo {
    pub id: String,
    pub name: String,
    pub dir: String,
}

/// A lifecycle event, as printed by `--no-tui` and written to the log files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LifecycleEvent {
    pub at: Millis,
    pub process: String,
    pub state: ProcState,
    pub message: String,
}

/// The error for process names that are not in `known`, listing the valid
/// ones (`None` when every name is known).
pub fn unknown_names<S: AsRef<str>>(names: &[S], known: &[S]) -> Option<String> {
    let unknown: Vec<&str> = names
        .iter()
        .map(AsRef::as_ref)
        .filter(|n| !known.iter().any(|k| k.as_ref() == *n))
        .collect();
    if unknown.is_empty() {
        return None;
    }
    let valid: Vec<&str> = known.iter().map(AsRef::as_ref).collect();
    let hints: Vec<String> = unknown
        .iter()
        .filter_map(|u| crate::config::did_you_mean(u, &valid).map(|v| format!("`{v}`")))
        .collect();
    let hint = if hints.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", hints.join(", "))
    };
    Some(format!(
        "unknown process{} {}{hint}; valid names: {}",
        if unknown.len() > 1 { "es" } else { "" },
        unknown.join(", "),
        valid.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let known = ["web", "db"];
        assert_eq!(unknown_names(&["web"], &known), None);
        assert_eq!(
            unknown_names(&["wbe", "x"], &known).as_deref(),
            Some("unknown processes wbe, x (did you mean `web`?); valid names: web, db")
        );
        assert_eq!(
            unknown_names(&["x"], &known).as_deref(),
            Some("unknown process x; valid names: web, db")
        );
    }
}
