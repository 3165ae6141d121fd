//! What happens without a request: a process ended, a restart is due, a
//! grace period ran out.

use std::time::{Instant, SystemTime};

use super::{Actor, ExitNotice};
use crate::agent::{Down, Phase};
use crate::backoff::Decision;
use crate::process;
use crate::status::{duration_ms, AgentEventKind, ExitStatus, OomEvidence};

impl Actor {
    /// A watcher saw a process end: finish it off, reap it, decide what next.
    pub(super) fn on_exit(&mut self, notice: ExitNotice) {
        let mode = self.mode();
        let Some(agent) = self.agents.get_mut(&notice.name) else {
            return;
        };
        let Phase::Running(running) = &agent.phase else {
            return;
        };
        if running.generation != notice.generation {
            return;
        }
        // Whatever the leader left behind in its group or cgroup goes with
        // it, before the reap frees the group id.
        process::signal_group(running.pid, libc::SIGKILL);
        if let Some(plan) = &agent.sandbox {
            super::kill_uid_or_warn(plan.uid);
        }
        if let Some(cgroup) = &agent.cgroup {
            let _ = cgroup.kill();
            let _ = cgroup.freeze(false);
        }
        let status = process::reap(running.pid);
        let now = Instant::now();
        agent.last_exit = Some(status);
        let name = notice.name;

        if let Some(stop) = &running.stop {
            let forced = stop.forced;
            agent.phase = Phase::Down(Down::Stopped);
            let snapshot = agent.status(mode);
            for waiter in agent.waiters.drain(..) {
                let _ = waiter.send(snapshot.clone());
            }
            self.emit(
                &name,
                AgentEventKind::Stopped {
                    status: Some(status),
                    forced,
                },
            );
            return;
        }

        let cgroup_oom = match (&agent.cgroup, running.oom_kills_before) {
            (Some(cgroup), Some(before)) => cgroup.oom_kills().is_some_and(|after| after > before),
            _ => false,
        };
        let evidence = if cgroup_oom {
            Some(OomEvidence::CgroupCounter)
        } else if agent.spec.limits.memory_bytes.is_some()
            && match &agent.cgroup {
                None => {
                    matches!(status, ExitStatus::Signal { signal } if signal == libc::SIGKILL || signal == libc::SIGSEGV)
                }
                // A cgroup v1 kernel without an OOM kill counter: the limit
                // was reached and the kernel's SIGKILL ended the agent.
                Some(cgroup) => {
                    status
                        == (ExitStatus::Signal {
                            signal: libc::SIGKILL,
                        })
                        && cgroup.hit_memory_limit_uncounted()
                }
            }
        {
            Some(OomEvidence::SignalUnderRlimit)
        } else {
            None
        };
        if evidence.is_some() {
            agent.oom_kills += 1;
        }
        let decision = agent.backoff.exited(status.success(), now);
        let restarts = agent.restarts;
        agent.phase = match decision {
            Decision::Restart { at, delay } => Phase::BackingOff {
                at,
                until: SystemTime::now() + delay,
            },
            Decision::GiveUp(_) => Phase::Down(Down::Exited(status)),
        };
        self.emit(&name, AgentEventKind::Exited { status });
        if let Some(evidence) = evidence {
            self.emit(&name, AgentEventKind::KilledOverMemory { evidence });
        }
        match decision {
            Decision::Restart { delay, .. } => self.emit(
                &name,
                AgentEventKind::Restarting {
                    after_ms: duration_ms(delay),
                    restarts: restarts + 1,
                },
            ),
            Decision::GiveUp(reason) => self.emit(&name, AgentEventKind::GaveUp { reason }),
        }
    }

    /// The earliest moment something is due: a SIGKILL after a grace
    /// period, or a restart (not while frozen).
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.agents
            .values()
            .filter_map(|agent| match &agent.phase {
                Phase::Running(running) => running.stop.as_ref().and_then(|s| s.kill_at),
                Phase::BackingOff { at, .. } if !self.frozen => Some(*at),
                _ => None,
            })
            .min()
    }

    pub(super) async fn on_deadline(&mut self, now: Instant) {
        let mut due = Vec::new();
        for (name, agent) in &mut self.agents {
            match &mut agent.phase {
                Phase::Running(running) => {
                    if let Some(stop) = &mut running.stop {
                        if stop.kill_at.is_some_and(|at| at <= now) {
                            stop.kill_at = None;
                            stop.forced = true;
                            process::signal_group(running.pid, libc::SIGKILL);
                            if let Some(cgroup) = &agent.cgroup {
                                let _ = cgroup.kill();
                            }
                        }
                    }
                }
                Phase::BackingOff { at, .. } if !self.frozen && *at <= now => {
                    due.push(name.clone())
                }
                _ => {}
            }
        }
        for name in due {
            if let Some(agent) = self.agents.get_mut(&name) {
                agent.restarts += 1;
            }
            // A failure is recorded on the agent and sent as an event.
            let _ = self.launch(&name).await;
        }
    }
}
