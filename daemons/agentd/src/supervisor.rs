//! [`Supervisor`]: the handle the node holds, and its configuration.
//!
//! The handle is cheap to clone; every method sends a request to the one
//! task that owns the agents (`actor.rs`) and awaits its answer. Events go
//! out on a bounded channel returned by [`Supervisor::new`]; when the node
//! does not drain it in time, events are dropped and counted
//! ([`Supervisor::events_dropped`]), never buffered without limit.
//!
//! When the last handle is dropped (or [`Supervisor::shutdown`] is called),
//! the task ends: every agent still running is killed, reaped, and its
//! cgroup removed. Agents also die if the whole process dies, through the
//! parent-death signal (see `process.rs`); under cgroups (v2 or v1) a
//! restarted supervisor with the same scope kills anything its predecessor
//! left.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::actor::{self, Actor, Request, StopTicket};
use crate::backoff::BackoffConfig;
use crate::cgroup::{self, CgroupPlacement, CgroupRoot};
use crate::output::{self, LogConfig};
use crate::sandbox::SandboxPlan;
use crate::spec::{validate_name, AgentSpec};
use crate::status::{AgentEvent, AgentStatus, AgentdError, LimitMode};

/// Default capacity of the event channel.
pub const EVENT_CAPACITY: usize = 1024;
/// Capacity of the request channel from handles to the supervisor task.
const REQUEST_CAPACITY: usize = 64;
/// Prefix of folders being deleted after `remove`; a name no agent can
/// have, so a leftover from a crash is recognised and finished at start.
pub(crate) const REMOVED_PREFIX: &str = ".removed-";

/// How to run the supervisor.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// Holds one folder per agent: `NAME/workspace` (the agent's working
    /// folder, kept across restarts) and `NAME/logs`.
    pub base: PathBuf,
    /// Where agent cgroups go; the default scope is `default`, which is
    /// fine for one node per host. Give each node its own scope otherwise.
    pub cgroup: CgroupPlacement,
    /// Time between SIGTERM and SIGKILL when stopping (10 s).
    pub stop_grace: Duration,
    pub backoff: BackoffConfig,
    pub log: LogConfig,
    /// Event channel capacity ([`EVENT_CAPACITY`]).
    pub event_capacity: usize,
}

impl SupervisorConfig {
    pub fn new(base: impl Into<PathBuf>) -> Self {
        Self {
            base: base.into(),
            cgroup: CgroupPlacement::Auto {
                scope: "default".into(),
            },
            stop_grace: Duration::from_secs(10),
            backoff: BackoffConfig::default(),
            log: LogConfig::default(),
            event_capacity: EVENT_CAPACITY,
        }
    }
}

/// What `remove` does with the agent's folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentData {
    /// Keep `NAME/workspace` and `NAME/logs`; a new agent of the same name
    /// finds them.
    Keep,
    /// Delete the agent's folder.
    Delete,
}

/// State shared between the handles and the task, fixed at start except
/// the counter.
#[derive(Debug)]
pub(crate) struct Shared {
    pub base: PathBuf,
    pub log: LogConfig,
    pub limit_mode: LimitMode,
    pub limit_reason: String,
    pub events_dropped: AtomicU64,
}

/// The node's handle to its agents. See the module docs.
#[derive(Debug, Clone)]
pub struct Supervisor {
    requests: mpsc::Sender<Request>,
    shared: Arc<Shared>,
}

impl Supervisor {
    /// Prepares the base folder, decides the limit mode (probing cgroup v2,
    /// then cgroup v1, unless disabled) and starts the supervisor task on
    /// the current tokio runtime. Returns the handle and the event stream.
    pub fn new(
        config: SupervisorConfig,
    ) -> Result<(Supervisor, mpsc::Receiver<AgentEvent>), AgentdError> {
        // Checked before anything touches the disk or the cgroup tree.
        tokio::runtime::Handle::try_current().map_err(|_| AgentdError::NoRuntime)?;
        let (cgroups, limit_mode, limit_reason) = match cgroup::probe(&config.cgroup) {
            Ok((root, reason)) => {
                let mode = root.mode();
                (Some(root), mode, reason)
            }
            Err(reason) => (None, LimitMode::Rlimits, reason),
        };
        Self::with_cgroups(config, cgroups, limit_mode, limit_reason)
    }

    /// `new` after the probe; tests call it with a cgroup root of their own.
    pub(crate) fn with_cgroups(
        config: SupervisorConfig,
        cgroups: Option<CgroupRoot>,
        limit_mode: LimitMode,
        limit_reason: String,
    ) -> Result<(Supervisor, mpsc::Receiver<AgentEvent>), AgentdError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| AgentdError::NoRuntime)?;
        create_private_dir(&config.base)?;
        finish_removals(&config.base);
        tracing::info!(mode = %limit_mode, reason = %limit_reason, "agent resource limits");
        let shared = Arc::new(Shared {
            base: config.base.clone(),
            log: config.log,
            limit_mode,
            limit_reason,
            events_dropped: AtomicU64::new(0),
        });
        let (events_tx, events) = mpsc::channel(config.event_capacity.max(1));
        let (requests, requests_rx) = mpsc::channel(REQUEST_CAPACITY);
        let actor = Actor::new(&config, shared.clone(), cgroups, events_tx).map_err(|source| {
            AgentdError::Io {
                what: "cannot start the agent spawner thread for",
                path: config.base.clone(),
                source,
            }
        })?;
        runtime.spawn(actor::run(actor, requests_rx));
        Ok((Supervisor { requests, shared }, events))
    }

    /// How limits are enforced here.
    pub fn limit_mode(&self) -> LimitMode {
        self.shared.limit_mode
    }

    /// Why: the cgroup folders in use, and why each version tried before
    /// the one in use (or before rlimits) was not usable.
    pub fn limit_mode_reason(&self) -> &str {
        &self.shared.limit_reason
    }

    /// Events dropped because the event channel was full.
    pub fn events_dropped(&self) -> u64 {
        self.shared.events_dropped.load(Ordering::Relaxed)
    }

    /// Registers the agent (or replaces the spec of a registered one that is
    /// not running) and starts it. `extra_env` is added last, over the
    /// spec's variables (the node's `OSMODA_AGENT_SOCKET`, proxy settings
    /// and the like; it is kept in memory for restarts and never written
    /// anywhere). An explicit start
    /// forgets earlier failures: restart delays begin at the initial one.
    ///
    /// With a `sandbox` plan the agent runs confined (see
    /// [`crate::sandbox`]), and so does every restart: its workspace is
    /// given to the plan's uid first, the supervisor's base folder is
    /// hidden from it besides the plan's `hide`, and before each start and
    /// whenever its process ends every process left under that uid is
    /// killed (a `host_exec` command of the agent's included). None runs it
    /// as the node's user, unconfined.
    pub async fn start(
        &self,
        spec: AgentSpec,
        extra_env: BTreeMap<String, String>,
        sandbox: Option<SandboxPlan>,
    ) -> Result<AgentStatus, AgentdError> {
        self.call(|reply| Request::Start {
            spec: Box::new(spec),
            extra_env,
            sandbox,
            reply,
        })
        .await?
    }

    /// Starts a registered agent again with its last spec, environment and
    /// sandbox plan (after `stop`, `kill_all`, a give-up or a failure).
    pub async fn start_existing(&self, name: &str) -> Result<AgentStatus, AgentdError> {
        let name = name.to_owned();
        self.call(|reply| Request::StartExisting { name, reply })
            .await?
    }

    /// Stops an agent: SIGTERM to its process group (thawed first if
    /// frozen), SIGKILL after the grace period. Returns once it has exited;
    /// it stays down until started again. Stopping a stopped agent is fine.
    pub async fn stop(&self, name: &str) -> Result<AgentStatus, AgentdError> {
        let name = name.to_owned();
        let ticket = self.call(|reply| Request::Stop { name, reply }).await??;
        ticket.wait().await
    }

    /// Stops the agent if needed, then forgets it and removes its cgroup;
    /// `data` says whether its folder goes too. Idempotent: a name the
    /// supervisor does not know (never started since the node started, or
    /// removed already) is fine, and with `Delete` its folder is deleted if
    /// there is one.
    pub async fn remove(&self, name: &str, data: AgentData) -> Result<(), AgentdError> {
        match self.stop(name).await {
            Ok(_) | Err(AgentdError::UnknownAgent { .. }) => {}
            Err(e) => return Err(e),
        }
        let owned = name.to_owned();
        let trash = self
            .call(|reply| Request::Remove {
                name: owned,
                data,
                reply,
            })
            .await??;
        if let Some(trash) = trash {
            let path = trash.clone();
            tokio::task::spawn_blocking(move || fs::remove_dir_all(&path))
                .await
                .map_err(|e| io::Error::other(e.to_string()))
                .and_then(|r| r)
                .map_err(|source| AgentdError::Io {
                    what: "cannot delete agent folder",
                    path: trash,
                    source,
                })?;
        }
        Ok(())
    }

    pub async fn status(&self, name: &str) -> Result<AgentStatus, AgentdError> {
        let name = name.to_owned();
        self.call(|reply| Request::Status { name, reply }).await?
    }

    /// Every registered agent, by name.
    pub async fn list(&self) -> Result<Vec<AgentStatus>, AgentdError> {
        self.call(|reply| Request::List { reply }).await
    }

    /// Freezes every running agent (cgroup v2's `cgroup.freeze` or the
    /// cgroup v1 freezer, else SIGSTOP to its group) and holds back restarts and new starts until `resume_all`.
    /// Returns how many agents were frozen.
    pub async fn freeze_all(&self) -> Result<usize, AgentdError> {
        self.call(|reply| Request::FreezeAll { reply }).await
    }

    /// Thaws every frozen agent and lets restarts due meanwhile happen.
    pub async fn resume_all(&self) -> Result<usize, AgentdError> {
        self.call(|reply| Request::ResumeAll { reply }).await
    }

    /// Stops every agent gracefully (as `stop`, all at once) and returns
    /// once all are down: for an emergency `stop`.
    pub async fn stop_all(&self) -> Result<Vec<AgentStatus>, AgentdError> {
        let tickets = self.call(|reply| Request::StopAll { reply }).await?;
        wait_all(tickets).await
    }

    /// SIGKILL to every agent now, no grace: for `lockdown`. Agents stay
    /// down until started again explicitly. Returns once all are reaped.
    pub async fn kill_all(&self) -> Result<Vec<AgentStatus>, AgentdError> {
        let tickets = self.call(|reply| Request::KillAll { reply }).await?;
        wait_all(tickets).await
    }

    /// The last `lines` lines of the agent's output (at most
    /// [`output::MAX_TAIL_LINES`]), oldest first.
    pub async fn output_tail(&self, name: &str, lines: usize) -> Result<Vec<String>, AgentdError> {
        let dir = self.logs_dir(name)?;
        let files = self.shared.log.files;
        let read_dir = dir.clone();
        tokio::task::spawn_blocking(move || output::read_tail(&read_dir, files, lines))
            .await
            .map_err(|e| io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map_err(|source| AgentdError::Io {
                what: "cannot read agent output in",
                path: dir,
                source,
            })
    }

    /// The agent's working folder (whether or not it exists yet).
    pub fn workspace_dir(&self, name: &str) -> Result<PathBuf, AgentdError> {
        validate_name(name)?;
        Ok(self.shared.base.join(name).join("workspace"))
    }

    /// The folder of the agent's output logs.
    pub fn logs_dir(&self, name: &str) -> Result<PathBuf, AgentdError> {
        validate_name(name)?;
        Ok(self.shared.base.join(name).join("logs"))
    }

    /// Stops every agent gracefully, then ends the supervisor task, which
    /// removes the cgroups. Other handles get `SupervisorGone` afterwards.
    pub async fn shutdown(self) -> Result<(), AgentdError> {
        self.stop_all().await?;
        self.call(|reply| Request::Shutdown { reply }).await
    }

    async fn call<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, AgentdError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(request(reply))
            .await
            .map_err(|_| AgentdError::SupervisorGone)?;
        answer.await.map_err(|_| AgentdError::SupervisorGone)
    }
}

async fn wait_all(tickets: Vec<StopTicket>) -> Result<Vec<AgentStatus>, AgentdError> {
    let mut statuses = Vec::with_capacity(tickets.len());
    for ticket in tickets {
        statuses.push(ticket.wait().await?);
    }
    Ok(statuses)
}

/// Creates `path` (and parents) and makes it 0700 whatever the umask was or
/// whoever created it before.
pub(crate) fn create_private_dir(path: &Path) -> Result<(), AgentdError> {
    let io_error = |source| AgentdError::Io {
        what: "cannot create folder",
        path: path.to_owned(),
        source,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io_error)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(io_error)
}

/// Deletes folders a crash left half-removed.
fn finish_removals(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(REMOVED_PREFIX)
        {
            if let Err(error) = fs::remove_dir_all(entry.path()) {
                tracing::warn!(path = %entry.path().display(), %error, "cannot delete a removed agent's folder");
            }
        }
    }
}

#[cfg(test)]
#[path = "supervisor_cgroup_tests.rs"]
mod cgroup_tests;

#[cfg(test)]
#[path = "supervisor_limits_tests.rs"]
mod limits_tests;
