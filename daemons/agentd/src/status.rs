//! What the supervisor reports: agent states and status snapshots, the
//! events it sends while things happen, and its errors.
//!
//! Everything here is plain data with serde, so the node can put it in an
//! API answer or an audit entry as is. Times are wall-clock milliseconds
//! since the Unix epoch (an `Instant` means nothing outside the process).

use std::fmt;
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::backoff::GiveUpReason;
use crate::spec::{AgentSpec, SpecError};

/// How resource limits are enforced on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LimitMode {
    /// Each agent runs in its own cgroup v2 with `memory.max` (and no
    /// swap), `cpu.max` and `pids.max`; the whole cgroup is frozen, killed
    /// and watched for OOM kills.
    CgroupV2,
    /// cgroup v2 is not usable but the memory and pids controllers are
    /// mounted as cgroup v1 (many edge distributions): each agent gets a
    /// folder in each hierarchy with `memory.limit_in_bytes` (and no swap),
    /// `pids.max` and, when the cpu hierarchy is mounted,
    /// `cpu.cfs_quota_us`; it is frozen through the freezer hierarchy when
    /// mounted (SIGSTOP otherwise), killed pid by pid, and watched for OOM
    /// kills through `memory.oom_control`.
    CgroupV1,
    /// Neither cgroup version is usable: memory is
    /// bounded by `RLIMIT_AS` (address space, which is larger than resident
    /// memory, so set it generously), processes by `RLIMIT_NPROC` (per user,
    /// and not for root), and the CPU limit is not enforced. Freezing uses
    /// SIGSTOP/SIGCONT on the agent's process group.
    Rlimits,
}

impl fmt::Display for LimitMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitMode::CgroupV2 => "cgroup-v2",
            LimitMode::CgroupV1 => "cgroup-v1",
            LimitMode::Rlimits => "rlimits",
        })
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ExitStatus {
    /// It called `exit(code)`.
    Code { code: i32 },
    /// A signal ended it.
    Signal { signal: i32 },
    /// Someone else in this process collected the status (a stray
    /// `waitpid(-1)`); the process is gone but how it ended is not known.
    Unknown,
}

impl ExitStatus {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Code { code: 0 })
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code { code } => write!(f, "exit code {code}"),
            ExitStatus::Signal { signal } => match signal_name(*signal) {
                Some(name) => write!(f, "signal {signal} ({name})"),
                None => write!(f, "signal {signal}"),
            },
            ExitStatus::Unknown => f.write_str("unknown exit status"),
        }
    }
}

fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        _ => return None,
    })
}

/// Where an agent is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum AgentState {
    /// Its process runs.
    Running { pid: u32, since_unix_ms: u64 },
    /// Its process exists but is frozen (`freeze_all`).
    Frozen { pid: u32, since_unix_ms: u64 },
    /// It was asked to stop and has not exited yet (SIGTERM sent, SIGKILL
    /// follows after the grace period).
    Stopping { pid: u32 },
    /// It exited and waits to be restarted.
    BackingOff { until_unix_ms: u64, restarts: u64 },
    /// An operator stopped it (`stop`, `stop_all`, `kill_all`); it stays
    /// down until started again.
    Stopped,
    /// It exited and its restart policy keeps it down.
    Exited { status: ExitStatus },
    /// It could not be started (the program is missing, a folder or cgroup
    /// could not be made); it stays down until started again.
    Failed { reason: String },
}

/// A snapshot of one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub spec: AgentSpec,
    pub state: AgentState,
    /// Automatic restarts since the last explicit start.
    pub restarts: u64,
    pub last_exit: Option<ExitStatus>,
    /// Times the agent was found killed over its memory limit.
    pub oom_kills: u64,
    pub limit_mode: LimitMode,
    /// The uid the agent runs as when confined (None: the node's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
}

/// Something that happened to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentEvent {
    pub name: String,
    pub at_unix_ms: u64,
    pub kind: AgentEventKind,
}

/// What happened. For one exit the order is: `Exited`, then
/// `KilledOverMemory` if that is why, then `Restarting` or `GaveUp`. An exit
/// an operator asked for is a single `Stopped`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum AgentEventKind {
    /// A process started; `restarts` counts automatic restarts since the
    /// last explicit start (0 for an explicit start).
    Started {
        pid: u32,
        restarts: u64,
    },
    /// The process ended on its own (or was killed by something other
    /// than the supervisor).
    Exited {
        status: ExitStatus,
    },
    /// The exit was the memory limit's doing.
    KilledOverMemory {
        evidence: OomEvidence,
    },
    /// It will be started again after `after_ms`.
    Restarting {
        after_ms: u64,
        restarts: u64,
    },
    /// Its policy keeps it down after that exit.
    GaveUp {
        reason: GiveUpReason,
    },
    /// It ended after an operator's stop or kill; `forced` when it took a
    /// SIGKILL (the grace period ran out, or `kill_all`). No status when no
    /// process was running (it was waiting to restart).
    Stopped {
        status: Option<ExitStatus>,
        forced: bool,
    },
    /// It could not be started.
    SpawnFailed {
        error: String,
    },
    Frozen,
    Resumed,
    /// It was removed from the supervisor.
    Removed,
}

/// How an OOM kill was recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OomEvidence {
    /// The cgroup's OOM kill counter went up (`oom_kill` in `memory.events`
    /// under cgroup v2, in `memory.oom_control` under v1): certain.
    CgroupCounter,
    /// Under rlimits: the process had a memory limit and died of SIGKILL
    /// (the kernel OOM killer) or SIGSEGV (a failed stack or heap growth)
    /// that the supervisor did not send: likely, not certain. Also under
    /// cgroup v1 on kernels before 4.13, which count no OOM kills: the
    /// agent died of SIGKILL after reaching its memory limit
    /// (`memory.failcnt`). Programs that
    /// handle a failed allocation themselves (Python's `MemoryError`) exit
    /// with an ordinary error code and are not recognised.
    SignalUnderRlimit,
}

/// What the supervisor refused or failed to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentdError {
    #[error("invalid agent spec: {0}")]
    Spec(#[from] SpecError),
    #[error("no agent named {name:?}")]
    UnknownAgent { name: String },
    #[error("agent {name:?} is running; stop it first")]
    Running { name: String },
    #[error("agents are frozen; resume them before starting one")]
    Frozen,
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start agent {name:?} ({command}): {source}")]
    Spawn {
        name: String,
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("the agent supervisor has shut down")]
    SupervisorGone,
    #[error("the agent supervisor must be created inside a tokio runtime")]
    NoRuntime,
}

/// Milliseconds since the Unix epoch (0 for a clock set before 1970).
pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_text_and_json() {
        assert_eq!(ExitStatus::Code { code: 1 }.to_string(), "exit code 1");
        assert_eq!(
            ExitStatus::Signal { signal: 9 }.to_string(),
            "signal 9 (SIGKILL)"
        );
        assert!(ExitStatus::Code { code: 0 }.success());
        assert!(!ExitStatus::Signal { signal: 15 }.success());
        let json = serde_json::to_string(&ExitStatus::Signal { signal: 9 }).expect("encode");
        assert_eq!(json, r#"{"kind":"signal","signal":9}"#);
        let state = AgentState::BackingOff {
            until_unix_ms: 5,
            restarts: 2,
        };
        let json = serde_json::to_string(&state).expect("encode");
        assert_eq!(
            json,
            r#"{"state":"backing-off","until_unix_ms":5,"restarts":2}"#
        );
        assert_eq!(
            serde_json::to_string(&LimitMode::CgroupV2).expect("encode"),
            r#""cgroup-v2""#
        );
        for mode in [LimitMode::CgroupV2, LimitMode::CgroupV1, LimitMode::Rlimits] {
            let json = serde_json::to_string(&mode).expect("encode");
            assert_eq!(json, format!("\"{mode}\""));
            assert_eq!(
                serde_json::from_str::<LimitMode>(&json).expect("decode"),
                mode
            );
        }
    }
}
