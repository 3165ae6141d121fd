//! The supervisor task: one loop owns every agent.
//!
//! A single `select!` over three inputs: requests from handles, exit
//! notices from the per-process watcher tasks, and the earliest deadline
//! (a restart that is due, or a SIGKILL after a stop's grace period). Each
//! branch runs to completion before the next input is looked at, so the
//! agent table needs no lock, and every state change happens in one place.
//!
//! Processes are reaped here and nowhere else: the watcher only says that a
//! process ended, and this loop kills the rest of its group before reaping
//! it, while the zombie still holds the group id.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};

use crate::agent::{self, Agent, AgentPaths, Down, Phase, Running};
use crate::backoff::{Backoff, BackoffConfig};
use crate::cgroup::CgroupRoot;
use crate::output::RotatingLog;
use crate::process::{self, Confinement, Spawner};
use crate::sandbox::{self, SandboxPlan};
use crate::spec::{validate_env_key, AgentSpec, SpecError, MAX_ENV};
use crate::status::{unix_ms, AgentEvent, AgentEventKind, AgentStatus, AgentdError, LimitMode};
use crate::supervisor::{create_private_dir, AgentData, Shared, SupervisorConfig};

/// Capacity of the exit-notice channel; watchers wait when it is full.
const EXIT_CAPACITY: usize = 256;

mod control;
mod exits;

pub(crate) enum Request {
    Start {
        // Boxed: a spec is far larger than any other request, and every
        // slot of the request channel is as large as the largest one.
        spec: Box<AgentSpec>,
        extra_env: BTreeMap<String, String>,
        sandbox: Option<SandboxPlan>,
        reply: oneshot::Sender<Result<AgentStatus, AgentdError>>,
    },
    StartExisting {
        name: String,
        reply: oneshot::Sender<Result<AgentStatus, AgentdError>>,
    },
    Stop {
        name: String,
        reply: oneshot::Sender<Result<StopTicket, AgentdError>>,
    },
    Remove {
        name: String,
        data: AgentData,
        /// The renamed folder for the caller to delete, if any.
        reply: oneshot::Sender<Result<Option<PathBuf>, AgentdError>>,
    },
    Status {
        name: String,
        reply: oneshot::Sender<Result<AgentStatus, AgentdError>>,
    },
    List {
        reply: oneshot::Sender<Vec<AgentStatus>>,
    },
    FreezeAll {
        reply: oneshot::Sender<usize>,
    },
    ResumeAll {
        reply: oneshot::Sender<usize>,
    },
    StopAll {
        reply: oneshot::Sender<Vec<StopTicket>>,
    },
    KillAll {
        reply: oneshot::Sender<Vec<StopTicket>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// The answer to a stop: the agent is down already, or will be.
pub(crate) enum StopTicket {
    Done(Box<AgentStatus>),
    Pending(oneshot::Receiver<AgentStatus>),
}

impl StopTicket {
    pub(crate) async fn wait(self) -> Result<AgentStatus, AgentdError> {
        match self {
            StopTicket::Done(status) => Ok(*status),
            StopTicket::Pending(answer) => answer.await.map_err(|_| AgentdError::SupervisorGone),
        }
    }
}

struct ExitNotice {
    name: String,
    generation: u64,
}

pub(crate) struct Actor {
    shared: Arc<Shared>,
    stop_grace: Duration,
    backoff: BackoffConfig,
    cgroups: Option<CgroupRoot>,
    spawner: Spawner,
    agents: BTreeMap<String, Agent>,
    events: mpsc::Sender<AgentEvent>,
    exits: mpsc::Sender<ExitNotice>,
    exits_rx: Option<mpsc::Receiver<ExitNotice>>,
    /// `freeze_all` is in force: no restarts, no starts.
    frozen: bool,
    next_generation: u64,
}

/// The loop; ends when every handle is gone or on `Shutdown`.
pub(crate) async fn run(mut actor: Actor, mut requests: mpsc::Receiver<Request>) {
    let Some(mut exits) = actor.exits_rx.take() else {
        return;
    };
    loop {
        let deadline = actor.next_deadline();
        let sleep = async move {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            request = requests.recv() => match request {
                Some(Request::Shutdown { reply }) => {
                    let _ = reply.send(());
                    break;
                }
                Some(request) => actor.handle(request).await,
                None => break,
            },
            Some(notice) = exits.recv() => actor.on_exit(notice),
            () = sleep => actor.on_deadline(Instant::now()).await,
        }
    }
    // Dropping the actor kills and reaps what is left and removes cgroups.
}

impl Actor {
    pub(crate) fn new(
        config: &SupervisorConfig,
        shared: Arc<Shared>,
        cgroups: Option<CgroupRoot>,
        events: mpsc::Sender<AgentEvent>,
    ) -> std::io::Result<Self> {
        let (exits, exits_rx) = mpsc::channel(EXIT_CAPACITY);
        Ok(Self {
            shared,
            stop_grace: config.stop_grace,
            backoff: config.backoff,
            cgroups,
            spawner: Spawner::new()?,
            agents: BTreeMap::new(),
            events,
            exits,
            exits_rx: Some(exits_rx),
            frozen: false,
            next_generation: 0,
        })
    }

    async fn handle(&mut self, request: Request) {
        match request {
            Request::Start {
                spec,
                extra_env,
                sandbox,
                reply,
            } => {
                let _ = reply.send(self.start(*spec, extra_env, sandbox).await);
            }
            Request::StartExisting { name, reply } => {
                let result = match self.agents.get(&name) {
                    Some(agent) => {
                        let (spec, env) = (agent.spec.clone(), agent.extra_env.clone());
                        let plan = agent.sandbox.clone();
                        self.start(spec, env, plan).await
                    }
                    None => Err(AgentdError::UnknownAgent { name }),
                };
                let _ = reply.send(result);
            }
            Request::Stop { name, reply } => {
                let _ = reply.send(self.stop(&name, false));
            }
            Request::Remove { name, data, reply } => {
                let _ = reply.send(self.remove(&name, data));
            }
            Request::Status { name, reply } => {
                let status = self
                    .agents
                    .get(&name)
                    .map(|agent| agent.status(self.mode()))
                    .ok_or(AgentdError::UnknownAgent { name });
                let _ = reply.send(status);
            }
            Request::List { reply } => {
                let _ = reply.send(
                    self.agents
                        .values()
                        .map(|a| a.status(self.mode()))
                        .collect(),
                );
            }
            Request::FreezeAll { reply } => {
                let _ = reply.send(self.freeze_all());
            }
            Request::ResumeAll { reply } => {
                let _ = reply.send(self.resume_all());
            }
            Request::StopAll { reply } => {
                let _ = reply.send(self.stop_every(false));
            }
            Request::KillAll { reply } => {
                let _ = reply.send(self.stop_every(true));
            }
            // Handled by the loop.
            Request::Shutdown { reply } => {
                let _ = reply.send(());
            }
        }
    }

    fn mode(&self) -> LimitMode {
        self.shared.limit_mode
    }

    fn emit(&self, name: &str, kind: AgentEventKind) {
        tracing::debug!(agent = name, event = ?kind, "agent event");
        let event = AgentEvent {
            name: name.to_owned(),
            at_unix_ms: unix_ms(SystemTime::now()),
            kind,
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = self.events.try_send(event) {
            self.shared.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Registers or updates the agent, then launches it.
    async fn start(
        &mut self,
        spec: AgentSpec,
        extra_env: BTreeMap<String, String>,
        sandbox: Option<SandboxPlan>,
    ) -> Result<AgentStatus, AgentdError> {
        spec.validate()?;
        if extra_env.len() > MAX_ENV {
            return Err(SpecError::TooManyEnv {
                count: extra_env.len(),
            }
            .into());
        }
        for (key, value) in &extra_env {
            validate_env_key(key)?;
            if value.contains('\0') {
                return Err(SpecError::Nul {
                    field: format!("environment variable {key}"),
                }
                .into());
            }
        }
        if self.frozen {
            return Err(AgentdError::Frozen);
        }
        let name = spec.name.clone();
        if self.agents.get(&name).is_some_and(Agent::is_process_alive) {
            return Err(AgentdError::Running { name });
        }
        let paths = AgentPaths::new(&self.shared.base, &name);
        for dir in [&paths.root, &paths.workspace, &paths.logs] {
            create_private_dir(dir)?;
        }
        match self.agents.get_mut(&name) {
            Some(agent) => {
                agent.backoff.set_policy(spec.restart);
                agent.backoff.reset();
                agent.spec = spec;
                agent.extra_env = extra_env;
                agent.sandbox = sandbox;
                agent.restarts = 0;
            }
            None => {
                let log = RotatingLog::open(&paths.logs, self.shared.log).map_err(|source| {
                    AgentdError::Io {
                        what: "cannot open agent log in",
                        path: paths.logs.clone(),
                        source,
                    }
                })?;
                let agent = Agent {
                    backoff: Backoff::new(spec.restart, self.backoff),
                    spec,
                    extra_env,
                    sandbox,
                    phase: Phase::Down(Down::Stopped),
                    restarts: 0,
                    last_exit: None,
                    oom_kills: 0,
                    cgroup: self.cgroups.as_ref().map(|root| root.agent(&name)),
                    log: Arc::new(Mutex::new(log)),
                    waiters: Vec::new(),
                };
                self.agents.insert(name.clone(), agent);
            }
        }
        self.launch(&name).await?;
        self.agents
            .get(&name)
            .map(|agent| agent.status(self.mode()))
            .ok_or(AgentdError::UnknownAgent { name })
    }

    /// Starts a registered agent's process; on failure the agent is
    /// `Failed` and a `SpawnFailed` event is sent.
    async fn launch(&mut self, name: &str) -> Result<(), AgentdError> {
        let Some(agent) = self.agents.get(name) else {
            return Err(AgentdError::UnknownAgent { name: name.into() });
        };
        let paths = AgentPaths::new(&self.shared.base, name);
        let spec = agent.spec.clone();
        let env = agent::environment(&spec, &agent.extra_env, &paths.workspace);
        let mut confinement = Confinement::default();
        let mut oom_kills_before = None;
        let prepared = match &agent.cgroup {
            Some(cgroup) => (|| {
                cgroup.create()?;
                cgroup.apply_limits(&spec.limits)?;
                // A cgroup frozen in an earlier life must not freeze this one.
                cgroup.freeze(false)?;
                oom_kills_before = cgroup.oom_kills();
                confinement.cgroup_procs = cgroup.open_procs()?;
                Ok(())
            })(),
            None => {
                confinement.rlimits = Some(spec.limits);
                Ok(())
            }
        };
        // The workspace may have been deleted under us; recreate quietly.
        let prepared = prepared.and_then(|()| {
            for dir in [&paths.root, &paths.workspace, &paths.logs] {
                create_private_dir(dir).map_err(|e| std::io::Error::other(e.to_string()))?;
            }
            Ok(())
        });
        let workspace = paths.workspace.clone();
        // The supervisor's base holds every agent's folder and logs: a
        // confined agent sees none of it but its own workspace.
        confinement.sandbox = agent.sandbox.clone().map(|mut plan| {
            plan.hide.push(self.shared.base.clone());
            plan
        });
        let launched = match prepared {
            Ok(()) => {
                let job_spec = spec.clone();
                self.spawner
                    .run(move || {
                        if let Some(plan) = &confinement.sandbox {
                            // Whatever an earlier life (or a node that
                            // crashed) left under this uid goes first, so
                            // nothing of it races the chown or lives on.
                            sandbox::kill_uid(plan.uid)?;
                            agent::give_workspace(&workspace, plan.uid, plan.gid)?;
                        }
                        process::launch(&job_spec, &env, &workspace, confinement)
                    })
                    .await
                    .and_then(|result| result)
            }
            Err(e) => Err(e),
        };
        let Some(agent) = self.agents.get_mut(name) else {
            return Err(AgentdError::UnknownAgent { name: name.into() });
        };
        let launched = match launched {
            Ok(launched) => launched,
            Err(source) => {
                let error = AgentdError::Spawn {
                    name: name.into(),
                    command: spec.command.clone(),
                    source,
                };
                agent.phase = Phase::Down(Down::Failed(error.to_string()));
                self.emit(
                    name,
                    AgentEventKind::SpawnFailed {
                        error: error.to_string(),
                    },
                );
                return Err(error);
            }
        };
        self.next_generation += 1;
        let generation = self.next_generation;
        let pid = launched.pid;
        let exits = self.exits.clone();
        let notice_name = name.to_owned();
        tokio::spawn(async move {
            process::wait_exit(pid).await;
            let _ = exits
                .send(ExitNotice {
                    name: notice_name,
                    generation,
                })
                .await;
        });
        tokio::spawn(agent::pump_output(
            name.to_owned(),
            launched.output,
            agent.log.clone(),
        ));
        agent.backoff.started(Instant::now());
        agent.phase = Phase::Running(Running {
            pid,
            generation,
            since: SystemTime::now(),
            frozen: None,
            stop: None,
            oom_kills_before,
        });
        let restarts = agent.restarts;
        self.emit(
            name,
            AgentEventKind::Started {
                pid: u32::try_from(pid).unwrap_or(0),
                restarts,
            },
        );
        Ok(())
    }
}

impl Drop for Actor {
    /// Kills and reaps every process left, then removes the cgroups. Blocks
    /// for at most about a second per stubborn cgroup; this runs once, when
    /// the supervisor ends.
    fn drop(&mut self) {
        let mut alive = Vec::new();
        for agent in self.agents.values() {
            if let Phase::Running(running) = &agent.phase {
                process::signal_group(running.pid, libc::SIGKILL);
                if let Some(plan) = &agent.sandbox {
                    kill_uid_or_warn(plan.uid);
                }
                if let Some(cgroup) = &agent.cgroup {
                    let _ = cgroup.kill();
                }
                alive.push(running.pid);
            }
        }
        for _ in 0..100 {
            alive.retain(|&pid| !process::try_reap(pid));
            if alive.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for agent in self.agents.values() {
            if let Some(cgroup) = &agent.cgroup {
                if let Err(error) = cgroup.remove() {
                    tracing::warn!(cgroup = %cgroup.path().display(), %error, "cannot remove agent cgroup");
                }
            }
        }
        if let Some(root) = &mut self.cgroups {
            root.remove();
        }
    }
}

/// Kills whatever still runs under a confined agent's uid: daemons that
/// left its process group (and, without cgroup v2, its reach).
pub(crate) fn kill_uid_or_warn(uid: u32) {
    if let Err(error) = sandbox::kill_uid(uid) {
        tracing::warn!(uid, %error, "cannot kill the processes of a confined agent's uid");
    }
}
