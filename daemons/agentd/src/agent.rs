//! One supervised agent as the supervisor task sees it: its spec, where it
//! is in its life ([`Phase`]), its folders, its environment, and the task
//! that copies its output into the log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

use crate::backoff::Backoff;
use crate::cgroup::AgentCgroup;
use crate::output::RotatingLog;
use crate::sandbox::SandboxPlan;
use crate::spec::AgentSpec;
use crate::status::{unix_ms, AgentState, AgentStatus, ExitStatus, LimitMode};

/// Default `PATH` when the node's own is not valid UTF-8.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Read size of the output pump.
const PUMP_CHUNK: usize = 8 * 1024;

pub(crate) struct Agent {
    pub spec: AgentSpec,
    /// The caller's extra variables (tokens): memory only.
    pub extra_env: BTreeMap<String, String>,
    /// Its confinement, applied again on every restart (None: unconfined).
    pub sandbox: Option<SandboxPlan>,
    pub backoff: Backoff,
    pub phase: Phase,
    /// Automatic restarts since the last explicit start.
    pub restarts: u64,
    pub last_exit: Option<ExitStatus>,
    pub oom_kills: u64,
    pub cgroup: Option<AgentCgroup>,
    pub log: Arc<Mutex<RotatingLog>>,
    /// Callers of `stop` waiting for the process to end.
    pub waiters: Vec<oneshot::Sender<AgentStatus>>,
}

pub(crate) enum Phase {
    Running(Running),
    /// Waiting to restart at `at` (`until` is the same moment on the wall
    /// clock, for status).
    BackingOff {
        at: Instant,
        until: SystemTime,
    },
    Down(Down),
}

pub(crate) enum Down {
    Stopped,
    Exited(ExitStatus),
    Failed(String),
}

/// A live process (or a zombie the supervisor has not reaped yet).
pub(crate) struct Running {
    /// Pid, and the process group id (the agent leads its own session).
    pub pid: i32,
    /// Tells this process's exit notice from a previous life's.
    pub generation: u64,
    pub since: SystemTime,
    pub frozen: Option<FreezeMethod>,
    pub stop: Option<StopInProgress>,
    /// `memory.events` oom_kill at start, to see whether it rose.
    pub oom_kills_before: Option<u64>,
}

/// How a running agent was frozen, so it is thawed the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FreezeMethod {
    Cgroup,
    Signal,
}

pub(crate) struct StopInProgress {
    /// When SIGKILL follows the SIGTERM; None once it was sent.
    pub kill_at: Option<Instant>,
    /// A SIGKILL was sent.
    pub forced: bool,
}

impl Agent {
    pub fn is_process_alive(&self) -> bool {
        matches!(self.phase, Phase::Running(_))
    }

    pub fn status(&self, limit_mode: LimitMode) -> AgentStatus {
        let state = match &self.phase {
            Phase::Running(running) => {
                let pid = u32::try_from(running.pid).unwrap_or(0);
                let since_unix_ms = unix_ms(running.since);
                if running.stop.is_some() {
                    AgentState::Stopping { pid }
                } else if running.frozen.is_some() {
                    AgentState::Frozen { pid, since_unix_ms }
                } else {
                    AgentState::Running { pid, since_unix_ms }
                }
            }
            Phase::BackingOff { until, .. } => AgentState::BackingOff {
                until_unix_ms: unix_ms(*until),
                restarts: self.restarts,
            },
            Phase::Down(Down::Stopped) => AgentState::Stopped,
            Phase::Down(Down::Exited(status)) => AgentState::Exited { status: *status },
            Phase::Down(Down::Failed(reason)) => AgentState::Failed {
                reason: reason.clone(),
            },
        };
        AgentStatus {
            spec: self.spec.clone(),
            state,
            restarts: self.restarts,
            last_exit: self.last_exit,
            oom_kills: self.oom_kills,
            limit_mode,
            uid: self.sandbox.as_ref().map(|plan| plan.uid),
        }
    }
}

/// An agent's folders under the base folder.
pub(crate) struct AgentPaths {
    pub root: PathBuf,
    pub workspace: PathBuf,
    pub logs: PathBuf,
}

impl AgentPaths {
    /// `name` must be a valid agent name (one path component).
    pub fn new(base: &Path, name: &str) -> Self {
        let root = base.join(name);
        Self {
            workspace: root.join("workspace"),
            logs: root.join("logs"),
            root,
        }
    }
}

/// The agent's whole environment. Nothing of the node's environment is
/// passed on except `PATH` (the node's may hold secrets); then come the
/// agent's own variables, the spec's, and the caller's, each overriding
/// the ones before.
pub(crate) fn environment(
    spec: &AgentSpec,
    extra_env: &BTreeMap<String, String>,
    workspace: &Path,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let path = std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_owned());
    env.insert("PATH".to_owned(), path);
    let workspace = workspace.to_string_lossy().into_owned();
    env.insert("HOME".to_owned(), workspace.clone());
    env.insert("OSMODA_AGENT_WORKSPACE".to_owned(), workspace);
    env.insert("OSMODA_AGENT_NAME".to_owned(), spec.name.clone());
    env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(extra_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// Copies one process's output into the log until the pipe closes (when
/// the process and everything it started that kept the pipe are gone).
pub(crate) async fn pump_output(
    name: String,
    output: std::os::fd::OwnedFd,
    log: Arc<Mutex<RotatingLog>>,
) {
    let mut pipe = match tokio::net::unix::pipe::Receiver::from_owned_fd(output) {
        Ok(pipe) => pipe,
        Err(error) => {
            tracing::warn!(agent = %name, %error, "cannot read agent output");
            return;
        }
    };
    let mut buffer = vec![0u8; PUMP_CHUNK];
    let mut warned = false;
    loop {
        let read = match pipe.read(&mut buffer).await {
            Ok(0) => return,
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => {
                tracing::warn!(agent = %name, %error, "agent output pipe failed");
                return;
            }
        };
        // A short, synchronous append: a few KiB to a local file. Output is
        // dropped (not buffered) while the disk refuses it.
        let result = log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write(&buffer[..read]);
        if let Err(error) = result {
            if !warned {
                tracing::warn!(agent = %name, %error, "cannot write agent output; dropping it");
                warned = true;
            }
        }
    }
}

/// Gives the workspace (recursively) to `uid:gid`, without following
/// symlinks, so the agent owns what it works on. Entries already owned
/// are left alone, so a restart walks but does not write.
pub(crate) fn give_workspace(root: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut pending = vec![root.to_owned()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path)?;
        if metadata.uid() != uid || metadata.gid() != gid {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
        }
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(())
}
