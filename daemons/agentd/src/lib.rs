//! Agent supervision: specs, processes, restarts with backoff, resource
//! limits, stop/freeze/kill.
//!
//! An agent is a program the node keeps running for the fleet. This crate
//! is the part that runs it:
//!
//! - [`spec`]: [`AgentSpec`], what an agent is, and its validation; the size
//!   parser for the CLI ([`parse_size`]).
//! - [`backoff`]: [`Backoff`], the restart decision as a pure state machine
//!   (time is an argument), exponential from 500 ms to 60 s, reset after
//!   30 s of health.
//! - [`Supervisor`]: the tokio shell. It owns the processes: each agent gets
//!   `BASE/NAME/workspace` (0700, kept across restarts) as its working
//!   folder, its output in `BASE/NAME/logs/output.log` (bounded, rotated),
//!   its own process group, and its limits ([`LimitMode`]) through cgroup v2
//!   where the cgroup2 mount offers memory, cpu and pids (systemd hosts with
//!   `Delegate=yes`), else through cgroup v1 where the memory and pids
//!   hierarchies are mounted and writable (many edge distributions; cpu and
//!   freezer when mounted too), else through rlimits;
//!   [`Supervisor::limit_mode_reason`] says why each earlier way was not
//!   taken. It restarts crashed agents by the backoff, stops (SIGTERM,
//!   grace, SIGKILL), freezes, kills, and reports what happens as
//!   [`AgentEvent`]s.
//!
//! # Using it from the node
//!
//! ```no_run
//! # async fn example() -> Result<(), osmoda_agentd::AgentdError> {
//! use osmoda_agentd::{AgentSpec, CgroupPlacement, Supervisor, SupervisorConfig};
//!
//! let mut config = SupervisorConfig::new("/var/lib/osmoda/agents");
//! config.cgroup = CgroupPlacement::Auto { scope: "node-1a2b".into() };
//! let (supervisor, mut events) = Supervisor::new(config)?;
//! println!("limits: {} ({})", supervisor.limit_mode(), supervisor.limit_mode_reason());
//!
//! let mut spec = AgentSpec::new("indexer", "/usr/bin/python3");
//! spec.args = vec!["-m".into(), "indexer".into()];
//! let extra = [("OSMODA_AGENT_TOKEN".to_string(), "…".to_string())].into();
//! supervisor.start(spec, extra).await?;
//!
//! tokio::spawn(async move {
//!     while let Some(event) = events.recv().await {
//!         // record an audit entry for event.name / event.kind
//!     }
//! });
//! supervisor.stop("indexer").await?;
//! # Ok(()) }
//! ```
//!
//! # Boundaries
//!
//! The crate does not persist specs (the node stores them and calls
//! `start` again after its own restart), does not decide what a ring may
//! do, and does not change users: agents run as the node's user. Its
//! invariants: every process it starts is reaped by it; a signal is only
//! ever sent to a process group whose leader it has not reaped yet; logs,
//! channels and spec fields are bounded.

// Outside bytes, files and answers are errors, never panics; tests may
// unwrap what they made themselves.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod actor;
mod agent;
pub mod allow;
pub mod backoff;
mod cgroup;
pub mod output;
mod process;
pub mod spec;
mod status;
mod supervisor;

pub use allow::{AllowEntry, AllowError, AllowHost};
pub use backoff::{Backoff, BackoffConfig, Decision, GiveUpReason};
pub use cgroup::CgroupPlacement;
pub use output::LogConfig;
pub use spec::{
    format_size, parse_size, validate_name, AgentSpec, Limits, RestartPolicy, SizeError, SpecError,
};
pub use status::{
    AgentEvent, AgentEventKind, AgentState, AgentStatus, AgentdError, ExitStatus, LimitMode,
    OomEvidence,
};
pub use supervisor::{AgentData, Supervisor, SupervisorConfig, EVENT_CAPACITY};
