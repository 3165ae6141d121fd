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
//! - [`sandbox`]: confinement. Given a [`SandboxPlan`], an agent runs under
//!   its own uid in a private mount namespace (host read-only, private
//!   folders empty, its workspace and kept paths visible, credentials in
//!   [`CREDENTIALS_DIR`], a /proc without other users' processes), with
//!   Landlock and a seccomp filter, optionally in a network namespace of
//!   its own ([`isolated_network`]). [`confine_command`] does the same for
//!   a one-shot command; [`probe`] says which layers the host has.
//!
//! # Using it from the node
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use osmoda_agentd::{AgentSpec, CgroupPlacement, Supervisor, SupervisorConfig};
//!
//! let mut config = SupervisorConfig::new("/var/lib/osmoda/agents");
//! config.cgroup = CgroupPlacement::Auto { scope: "node-1a2b".into() };
//! let (supervisor, mut events) = Supervisor::new(config)?;
//! println!("limits: {} ({})", supervisor.limit_mode(), supervisor.limit_mode_reason());
//!
//! let mut spec = AgentSpec::new("indexer", "/usr/bin/python3");
//! spec.args = vec!["-m".into(), "indexer".into()];
//! let extra = [("OSMODA_AGENT_SOCKET".to_string(), "/var/lib/osmoda/agent.sock".to_string())].into();
//! // Its own uid, the node's data folder hidden, egress only through the
//! // node's proxy listening inside the agent's network namespace.
//! let (namespace, _proxy_listener) = osmoda_agentd::isolated_network(8080)?;
//! let plan = osmoda_agentd::SandboxPlan {
//!     uid: 1_879_048_200,
//!     gid: 1_879_048_200,
//!     hide: vec!["/var/lib/osmoda".into()],
//!     network: Some(std::sync::Arc::new(namespace)),
//!     ..Default::default()
//! };
//! supervisor.start(spec, extra, Some(plan)).await?;
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
//! do, and does not allocate uids: the node picks each agent's uid and gid
//! and passes them in its [`SandboxPlan`]. With a plan, an agent runs as
//! that uid, owns its workspace and nothing else, and sees neither the
//! supervisor's base folder nor the node's processes; without one (`None`)
//! it runs as the node's user, unconfined. Its invariants: every process it
//! starts is reaped by it; a signal is only ever sent to a process group
//! whose leader it has not reaped yet, or to every process of a confined
//! agent's own uid once its leader has ended; a confined agent is never
//! started half-confined (any layer that fails fails the spawn, Landlock
//! aside where the kernel lacks it); logs, channels and spec fields are
//! bounded.

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
pub mod sandbox;
pub mod spec;
mod status;
mod supervisor;

pub use allow::{AllowEntry, AllowError, AllowHost};
pub use backoff::{Backoff, BackoffConfig, Decision, GiveUpReason};
pub use cgroup::CgroupPlacement;
pub use output::LogConfig;
pub use sandbox::{
    confine_command, isolated_network, kill_uid, probe, Keep, SandboxError, SandboxPlan,
    SandboxReport, CREDENTIALS_DIR,
};
pub use spec::{
    format_size, parse_size, validate_name, AgentSpec, Limits, RestartPolicy, SizeError, SpecError,
};
pub use status::{
    AgentEvent, AgentEventKind, AgentState, AgentStatus, AgentdError, ExitStatus, LimitMode,
    OomEvidence,
};
pub use supervisor::{AgentData, Supervisor, SupervisorConfig, EVENT_CAPACITY};
