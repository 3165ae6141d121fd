//! Operator requests on running agents: stop, kill, freeze, resume,
//! remove.

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use tokio::sync::oneshot;

use super::{Actor, StopTicket};
use crate::agent::{AgentPaths, Down, FreezeMethod, Phase, StopInProgress};
use crate::process;
use crate::spec::validate_name;
use crate::status::{AgentEventKind, AgentdError};
use crate::supervisor::{AgentData, REMOVED_PREFIX};

/// Most callers waiting for one agent to stop.
const MAX_STOP_WAITERS: usize = 256;

impl Actor {
    /// Begins stopping one agent; `force` sends SIGKILL at once.
    pub(super) fn stop(&mut self, name: &str, force: bool) -> Result<StopTicket, AgentdError> {
        let mode = self.mode();
        let grace = self.stop_grace;
        let Some(agent) = self.agents.get_mut(name) else {
            return Err(AgentdError::UnknownAgent { name: name.into() });
        };
        match &mut agent.phase {
            Phase::Running(running) => {
                let escalate = running.stop.as_ref().is_some_and(|s| !s.forced) && force;
                if running.stop.is_none() || escalate {
                    let signal = if force { libc::SIGKILL } else { libc::SIGTERM };
                    process::signal_group(running.pid, signal);
                    if force {
                        if let Some(cgroup) = &agent.cgroup {
                            let _ = cgroup.kill();
                        }
                    }
                    // A frozen agent must be thawed to act on SIGTERM (and
                    // to die promptly of SIGKILL under an older freezer).
                    match running.frozen.take() {
                        Some(FreezeMethod::Cgroup) => {
                            if let Some(cgroup) = &agent.cgroup {
                                let _ = cgroup.freeze(false);
                            }
                        }
                        Some(FreezeMethod::Signal) => {
                            process::signal_group(running.pid, libc::SIGCONT)
                        }
                        None => {}
                    }
                    running.stop = Some(StopInProgress {
                        kill_at: (!force).then(|| Instant::now() + grace),
                        forced: force,
                    });
                }
                if agent.waiters.len() >= MAX_STOP_WAITERS {
                    // Enough callers wait already; this one gets the
                    // current state (stopping) rather than a queue slot.
                    return Ok(StopTicket::Done(Box::new(agent.status(mode))));
                }
                let (waiter, answer) = oneshot::channel();
                agent.waiters.push(waiter);
                Ok(StopTicket::Pending(answer))
            }
            Phase::BackingOff { .. } => {
                agent.phase = Phase::Down(Down::Stopped);
                let status = agent.status(mode);
                self.emit(
                    name,
                    AgentEventKind::Stopped {
                        status: None,
                        forced: force,
                    },
                );
                Ok(StopTicket::Done(Box::new(status)))
            }
            Phase::Down(_) => Ok(StopTicket::Done(Box::new(agent.status(mode)))),
        }
    }

    pub(super) fn stop_every(&mut self, force: bool) -> Vec<StopTicket> {
        let names: Vec<String> = self.agents.keys().cloned().collect();
        names
            .iter()
            .filter_map(|name| self.stop(name, force).ok())
            .collect()
    }

    pub(super) fn freeze_all(&mut self) -> usize {
        self.frozen = true;
        let mut frozen = Vec::new();
        for (name, agent) in &mut self.agents {
            let Phase::Running(running) = &mut agent.phase else {
                continue;
            };
            if running.stop.is_some() || running.frozen.is_some() {
                continue;
            }
            let by_cgroup = agent.cgroup.as_ref().is_some_and(|cgroup| match cgroup.freeze(true) {
                Ok(()) => true,
                // No v1 freezer hierarchy: expected, and said once in the
                // limit mode's reason rather than at every freeze.
                Err(error) if error.kind() == std::io::ErrorKind::Unsupported => false,
                Err(error) => {
                    tracing::warn!(agent = %name, %error, "cgroup freeze failed; using SIGSTOP");
                    false
                }
            });
            running.frozen = Some(if by_cgroup {
                FreezeMethod::Cgroup
            } else {
                process::signal_group(running.pid, libc::SIGSTOP);
                FreezeMethod::Signal
            });
            frozen.push(name.clone());
        }
        for name in &frozen {
            self.emit(name, AgentEventKind::Frozen);
        }
        frozen.len()
    }

    pub(super) fn resume_all(&mut self) -> usize {
        self.frozen = false;
        let mut resumed = Vec::new();
        for (name, agent) in &mut self.agents {
            let Phase::Running(running) = &mut agent.phase else {
                continue;
            };
            match running.frozen.take() {
                Some(FreezeMethod::Cgroup) => {
                    if let Some(cgroup) = &agent.cgroup {
                        if let Err(error) = cgroup.freeze(false) {
                            tracing::warn!(agent = %name, %error, "cgroup thaw failed");
                        }
                    }
                }
                Some(FreezeMethod::Signal) => process::signal_group(running.pid, libc::SIGCONT),
                None => continue,
            }
            resumed.push(name.clone());
        }
        for name in &resumed {
            self.emit(name, AgentEventKind::Resumed);
        }
        resumed.len()
    }

    /// Forgets a stopped agent and removes its cgroup; with `Delete`, its
    /// folder is renamed out of the way here (instantly, so a new agent of
    /// the same name starts clean) and the caller deletes it.
    pub(super) fn remove(
        &mut self,
        name: &str,
        data: AgentData,
    ) -> Result<Option<PathBuf>, AgentdError> {
        // The name reaches the file system below even when no agent has it.
        validate_name(name)?;
        if self
            .agents
            .get(name)
            .is_some_and(|agent| agent.is_process_alive())
        {
            return Err(AgentdError::Running { name: name.into() });
        }
        if let Some(agent) = self.agents.remove(name) {
            if let Some(cgroup) = &agent.cgroup {
                if let Err(error) = cgroup.remove() {
                    tracing::warn!(agent = name, cgroup = %cgroup.path().display(), %error, "cannot remove agent cgroup");
                }
            }
            self.emit(name, AgentEventKind::Removed);
        }
        if data == AgentData::Keep {
            return Ok(None);
        }
        let paths = AgentPaths::new(&self.shared.base, name);
        self.next_generation += 1;
        let trash = self
            .shared
            .base
            .join(format!("{REMOVED_PREFIX}{name}-{}", self.next_generation));
        match fs::rename(&paths.root, &trash) {
            Ok(()) => Ok(Some(trash)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(AgentdError::Io {
                what: "cannot move away agent folder",
                path: paths.root,
                source,
            }),
        }
    }
}
