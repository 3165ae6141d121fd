//! The node's agents: specs kept durably in the store, processes run by
//! `osmoda-agentd`, the agents an operator holds down, and how the node
//! knows which agent is calling.
//!
//! Each agent has a user id of its own (`agent_uids`), kept in the store
//! beside its spec. The agents' socket asks the kernel who connected
//! (`SO_PEERCRED`): a caller is the agent whose uid it runs under, never a
//! name it claims and never a secret it could leak or have stolen from its
//! environment. An agent run `--unconfined` on a host that cannot give it
//! a uid of its own shares the node's uid; it is told apart by its session
//! (the supervisor makes each agent a session leader, and its children
//! inherit the session).
//!
//! An agent is *held* when an operator stopped it (or a lockdown, an
//! emergency stop left it down): the node does not start it at its own
//! start, until an operator starts it again. Held names are stored beside
//! the specs, so a stop survives a restart of the node.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;

use osmoda_agentd::{
    AgentData, AgentEvent, AgentSpec, AgentStatus, AgentdError, CgroupPlacement, SandboxPlan,
    Supervisor, SupervisorConfig,
};
use osmoda_store::{Batch, Store};
use tokio::sync::mpsc;

use super::agent_uids::UidRange;
use super::cards::{Card, TABLE as CARDS};
use crate::error::{NodeError, NodeResult};

const SPECS: &str = "agents";
const HELD: &str = "agents-held";
/// Agent name → its user id (4 bytes, little-endian).
const UIDS: &str = "agents-uid";
/// Agents one node keeps.
pub const MAX_AGENTS: usize = 256;

/// Who is calling, as the node knows it from the caller's uid.
#[derive(Debug, Clone)]
pub struct AgentIdentity {
    pub name: String,
    pub ring: u8,
    pub workspace: PathBuf,
    /// The uid the agent runs under; None when it runs as the node's user.
    pub uid: Option<u32>,
}

/// Where the node's agents live and how they are identified.
#[derive(Debug, Clone)]
pub struct AgentsConfig {
    /// Agents' folders (`DATA/agents`).
    pub dir: PathBuf,
    /// The socket agents call their tools on.
    pub socket: PathBuf,
    /// Limits through cgroups when the host offers them.
    pub cgroups: bool,
    /// Where agents' uids come from.
    pub uids: UidRange,
}

pub struct Agents {
    supervisor: Supervisor,
    store: Store,
    socket: PathBuf,
    /// The folder the agents' folder lies in (the node's data folder),
    /// which a confined agent does not see.
    data_root: PathBuf,
    dir: PathBuf,
    uid_range: UidRange,
    /// Seeds where uid allocation starts (the node's id).
    uid_seed: Vec<u8>,
    /// Agent name → uid, as stored; read on every call, so kept here.
    uids: Mutex<BTreeMap<String, u32>>,
}

fn encode_card(card: &Card) -> NodeResult<Vec<u8>> {
    // Whether it runs is the supervisor's to say, never stored.
    let card = Card {
        running: false,
        ..card.clone()
    };
    serde_json::to_vec(&card).map_err(NodeError::internal)
}

fn damaged(e: serde_json::Error) -> NodeError {
    NodeError::Internal(format!("a stored agent spec is damaged: {e}"))
}

/// The cgroup scope of a node's agents: `node-` and the last 8 bytes of
/// its id in hex. Node ids are base64url, whose capitals and symbols a
/// cgroup name may not carry (a scope built from the id's characters was
/// refused, and every agent fell back to rlimits).
fn cgroup_scope(node_id: &str) -> String {
    let bytes = node_id.as_bytes();
    let tail = &bytes[bytes.len().saturating_sub(8)..];
    let hex: String = tail.iter().map(|b| format!("{b:02x}")).collect();
    format!("node-{hex}")
}

impl Agents {
    /// Opens the supervisor on `base`; agents' cgroups live in a scope
    /// named after the node, so that two nodes on one host never touch
    /// each other's. `cgroups: false` keeps every agent on rlimits (the
    /// simulation, where hundreds of nodes share one host).
    pub fn open(
        config: AgentsConfig,
        store: Store,
        node_id: &str,
    ) -> NodeResult<(Self, mpsc::Receiver<AgentEvent>)> {
        let mut supervisor_config = SupervisorConfig::new(&config.dir);
        supervisor_config.cgroup = match std::env::var("OSMODA_CGROUP").as_deref() {
            Ok("off") => CgroupPlacement::Disabled,
            _ if !config.cgroups => CgroupPlacement::Disabled,
            _ => CgroupPlacement::Auto {
                scope: cgroup_scope(node_id),
            },
        };
        let mut uids = BTreeMap::new();
        for (name, bytes) in store.scan_prefix(UIDS, b"", MAX_AGENTS)? {
            let uid = <[u8; 4]>::try_from(bytes.as_slice())
                .map(u32::from_le_bytes)
                .map_err(|_| NodeError::Internal("a stored agent uid is damaged".into()))?;
            uids.insert(String::from_utf8_lossy(&name).into_owned(), uid);
        }
        let (supervisor, events) = Supervisor::new(supervisor_config)?;
        Ok((
            Self {
                supervisor,
                store,
                data_root: config
                    .dir
                    .parent()
                    .map_or_else(|| config.dir.clone(), ToOwned::to_owned),
                dir: config.dir.clone(),
                socket: config.socket,
                uid_range: config.uids,
                uid_seed: node_id.as_bytes().to_vec(),
                uids: Mutex::new(uids),
            },
            events,
        ))
    }

    /// The agent's uid, allocating (and storing) one if it has none yet
    /// (an agent added before agents had their own).
    pub async fn uid(&self, name: &str) -> NodeResult<u32> {
        if let Some(uid) = self.uids_now().get(name) {
            return Ok(*uid);
        }
        let held: BTreeSet<u32> = self.uids_now().values().copied().collect();
        let uid = self
            .uid_range
            .allocate(&held, &self.uid_seed)
            .ok_or_else(|| {
                NodeError::Busy(format!(
                    "no free uid left in agent_uid_range {}",
                    self.uid_range
                ))
            })?;
        let mut batch = Batch::new();
        batch.put(UIDS, name.as_bytes(), &uid.to_le_bytes());
        self.store.submit_batch(batch)?.await?;
        self.uids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), uid);
        Ok(uid)
    }

    fn uids_now(&self) -> BTreeMap<String, u32> {
        self.uids.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// "cgroup-v2", "cgroup-v1" or "rlimits", and why.
    pub fn limit_mode(&self) -> (String, String) {
        (
            self.supervisor.limit_mode().to_string(),
            self.supervisor.limit_mode_reason().to_string(),
        )
    }

    pub fn specs(&self) -> NodeResult<Vec<AgentSpec>> {
        self.store
            .scan_prefix(SPECS, b"", MAX_AGENTS)?
            .into_iter()
            .map(|(_, bytes)| serde_json::from_slice(&bytes).map_err(damaged))
            .collect()
    }

    pub fn spec(&self, name: &str) -> NodeResult<Option<AgentSpec>> {
        match self.store.get(SPECS, name.as_bytes())? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(damaged)?)),
            None => Ok(None),
        }
    }

    fn known(&self, name: &str) -> NodeResult<AgentSpec> {
        self.spec(name)?
            .ok_or_else(|| NodeError::not_found("agent", name))
    }

    /// The uid an agent runs under; None when it runs as the node's user.
    pub fn uid_of(&self, spec: &AgentSpec) -> Option<u32> {
        if spec.unconfined {
            return None;
        }
        self.uids_now().get(&spec.name).copied()
    }

    /// Adds or removes allowlist entries in the stored spec; returns it.
    pub async fn change_allowlist(
        &self,
        name: &str,
        entries: &[osmoda_agentd::AllowEntry],
        add: bool,
    ) -> NodeResult<AgentSpec> {
        let mut spec = self.known(name)?;
        if add {
            for entry in entries {
                if !spec.allow.contains(entry) {
                    spec.allow.push(entry.clone());
                }
            }
        } else {
            spec.allow.retain(|e| !entries.contains(e));
        }
        spec.validate()?;
        let bytes = serde_json::to_vec(&spec).map_err(NodeError::internal)?;
        let mut batch = Batch::new();
        batch.put(SPECS, name.as_bytes(), &bytes);
        self.store.submit_batch(batch)?.await?;
        Ok(spec)
    }

    /// The agent's card; an agent added before cards has the default one.
    pub fn card(&self, name: &str) -> NodeResult<Card> {
        self.known(name)?;
        match self.store.get(CARDS, name.as_bytes())? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| NodeError::Internal(format!("a stored agent card is damaged: {e}"))),
            None => Ok(Card::new(name)),
        }
    }

    /// Replaces the agent's card, durably.
    pub async fn set_card(&self, card: &Card) -> NodeResult<()> {
        self.known(&card.name)?;
        card.check()?;
        let mut batch = Batch::new();
        batch.put(CARDS, card.name.as_bytes(), &encode_card(card)?);
        self.store.submit_batch(batch)?.await?;
        Ok(())
    }

    /// Names of the agents held down.
    pub fn held(&self) -> NodeResult<BTreeSet<String>> {
        Ok(self
            .store
            .scan_prefix(HELD, b"", MAX_AGENTS)?
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
            .collect())
    }

    /// Holds (or releases) agents, durably, in one commit.
    pub async fn set_held(&self, names: &[String], held: bool) -> NodeResult<()> {
        if names.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::new();
        for name in names {
            if held {
                batch.put(HELD, name.as_bytes(), b"");
            } else {
                batch.delete(HELD, name.as_bytes());
            }
        }
        self.store.submit_batch(batch)?.await?;
        Ok(())
    }

    /// Stores a new agent's spec (durably), with its uid unless it runs
    /// unconfined; a `held` agent is not started with the node until an
    /// operator starts it. Starting is the service's (`Node::launch`).
    pub async fn add(&self, spec: AgentSpec, card: &Card, held: bool) -> NodeResult<()> {
        spec.validate()?;
        card.check()?;
        if self.spec(&spec.name)?.is_some() {
            return Err(NodeError::Conflict(format!(
                "an agent named {:?} exists already",
                spec.name
            )));
        }
        if self.specs()?.len() >= MAX_AGENTS {
            return Err(NodeError::Busy(format!(
                "this node keeps at most {MAX_AGENTS} agents"
            )));
        }
        let bytes = serde_json::to_vec(&spec).map_err(NodeError::internal)?;
        let mut batch = Batch::new();
        batch.put(SPECS, spec.name.as_bytes(), &bytes);
        batch.put(CARDS, spec.name.as_bytes(), &encode_card(card)?);
        if held {
            batch.put(HELD, spec.name.as_bytes(), b"");
        }
        self.store.submit_batch(batch)?.await?;
        if !spec.unconfined {
            // Allocated with the agent, kept for its life: files it leaves
            // in its workspace stay its own across restarts.
            self.uid(&spec.name).await?;
        }
        Ok(())
    }

    /// Replaces a stored agent's spec (durably); its uid, workspace and
    /// held mark stay. The caller stops it first and starts it again.
    pub async fn replace(&self, spec: AgentSpec) -> NodeResult<()> {
        spec.validate()?;
        self.known(&spec.name)?;
        let bytes = serde_json::to_vec(&spec).map_err(NodeError::internal)?;
        let mut batch = Batch::new();
        batch.put(SPECS, spec.name.as_bytes(), &bytes);
        self.store.submit_batch(batch)?.await?;
        Ok(())
    }

    /// Starts (or restarts) an agent under `sandbox` (None: unconfined),
    /// with `env` on top of its own, and releases it if it was held.
    pub async fn start(
        &self,
        name: &str,
        env: BTreeMap<String, String>,
        sandbox: Option<SandboxPlan>,
    ) -> NodeResult<AgentStatus> {
        let spec = self.known(name)?;
        let mut env = env;
        env.insert("OSMODA_AGENT_NAME".to_string(), name.to_string());
        env.insert(
            "OSMODA_AGENT_SOCKET".to_string(),
            self.socket.display().to_string(),
        );
        let status = self.supervisor.start(spec, env, sandbox).await?;
        self.set_held(&[name.to_string()], false).await?;
        Ok(status)
    }

    /// The agents' folder (`DATA/agents`).
    pub fn dir(&self) -> PathBuf {
        self.dir.clone()
    }

    /// The node's data folder (the agents' folder's parent).
    pub fn data_root(&self) -> PathBuf {
        self.data_root.clone()
    }

    /// The socket agents call their tools on.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// The agent's workspace folder.
    pub fn workspace(&self, name: &str) -> NodeResult<PathBuf> {
        Ok(self.supervisor.workspace_dir(name)?)
    }

    /// The status of a stored agent the supervisor does not run.
    fn not_running(&self, spec: AgentSpec) -> AgentStatus {
        AgentStatus {
            spec,
            state: osmoda_agentd::AgentState::Stopped,
            restarts: 0,
            last_exit: None,
            oom_kills: 0,
            limit_mode: self.supervisor.limit_mode(),
            uid: None,
        }
    }

    /// Stops an agent and holds it down, across node restarts too.
    pub async fn stop(&self, name: &str) -> NodeResult<AgentStatus> {
        let spec = self.known(name)?;
        self.set_held(&[name.to_string()], true).await?;
        match self.supervisor.stop(name).await {
            Ok(status) => Ok(status),
            // Known but never started in this run: already down.
            Err(AgentdError::UnknownAgent { .. }) => Ok(self.not_running(spec)),
            Err(e) => Err(e.into()),
        }
    }

    /// Stops the agent, forgets its spec and deletes its folder.
    pub async fn remove(&self, name: &str) -> NodeResult<()> {
        self.known(name)?;
        match self.supervisor.remove(name, AgentData::Delete).await {
            Ok(()) | Err(AgentdError::UnknownAgent { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let mut batch = Batch::new();
        batch.delete(SPECS, name.as_bytes());
        batch.delete(HELD, name.as_bytes());
        batch.delete(UIDS, name.as_bytes());
        batch.delete(CARDS, name.as_bytes());
        self.store.submit_batch(batch)?.await?;
        self.uids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        Ok(())
    }

    /// One stored agent, running or not.
    pub async fn status(&self, name: &str) -> NodeResult<AgentStatus> {
        let spec = self.known(name)?;
        match self.supervisor.status(name).await {
            // The stored spec is the truth: the supervisor's copy is the
            // one it started with (an allowlist changed since applies to
            // the running agent at once).
            Ok(status) => Ok(AgentStatus { spec, ..status }),
            Err(AgentdError::UnknownAgent { .. }) => Ok(self.not_running(spec)),
            Err(e) => Err(e.into()),
        }
    }

    /// Every stored agent, running or not.
    pub async fn list(&self) -> NodeResult<Vec<AgentStatus>> {
        let running = self.supervisor.list().await?;
        let mut out = Vec::new();
        for spec in self.specs()? {
            match running.iter().find(|s| s.spec.name == spec.name) {
                Some(s) => out.push(AgentStatus { spec, ..s.clone() }),
                None => out.push(self.not_running(spec)),
            }
        }
        Ok(out)
    }

    pub async fn logs(&self, name: &str, lines: usize) -> NodeResult<Vec<String>> {
        self.known(name)?;
        match self.supervisor.output_tail(name, lines).await {
            Ok(lines) => Ok(lines),
            // Known, never run here: no output yet.
            Err(AgentdError::UnknownAgent { .. }) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// The stored agents that `pick` chooses, that are not held and not
    /// running: those the node starts (at its start, after an unlock).
    pub async fn startable(&self, pick: impl Fn(&AgentSpec) -> bool) -> NodeResult<Vec<String>> {
        let held = self.held()?;
        let mut names = Vec::new();
        for spec in self.specs()? {
            if held.contains(&spec.name) || !pick(&spec) || self.is_up(&spec.name).await {
                continue;
            }
            names.push(spec.name);
        }
        Ok(names)
    }

    /// Whether the supervisor runs the agent (or will restart it).
    pub async fn is_up(&self, name: &str) -> bool {
        use osmoda_agentd::AgentState;
        matches!(
            self.supervisor.status(name).await.map(|s| s.state),
            Ok(AgentState::Running { .. }
                | AgentState::Frozen { .. }
                | AgentState::Stopping { .. }
                | AgentState::BackingOff { .. })
        )
    }

    /// SIGTERM, a grace period, SIGKILL, for every agent.
    pub async fn stop_all(&self) -> NodeResult<usize> {
        Ok(self.supervisor.stop_all().await?.len())
    }

    /// SIGKILL for every agent, now.
    pub async fn kill_all(&self) -> NodeResult<usize> {
        Ok(self.supervisor.kill_all().await?.len())
    }

    pub async fn freeze_all(&self) -> NodeResult<usize> {
        Ok(self.supervisor.freeze_all().await?)
    }

    pub async fn resume_all(&self) -> NodeResult<usize> {
        Ok(self.supervisor.resume_all().await?)
    }

    /// The running agent a connected process belongs to, from the
    /// kernel's word on the caller (`SO_PEERCRED`): the agent that runs
    /// under `uid`, or, for the node's own uid, the unconfined agent whose
    /// session the caller is in. None for anyone else, and for an agent
    /// that is not running (a stopped agent has no say).
    pub async fn identify(&self, uid: u32, pid: Option<i32>) -> Option<AgentIdentity> {
        use osmoda_agentd::AgentState;
        // SAFETY: geteuid has no preconditions.
        let node_uid = unsafe { libc::geteuid() };
        let name = if uid == node_uid {
            // SAFETY: getsid only reads the process table.
            let session = pid.map(|pid| unsafe { libc::getsid(pid) })?;
            let running = self.supervisor.list().await.ok()?;
            running
                .into_iter()
                .find(|s| {
                    s.spec.unconfined
                        && matches!(s.state, AgentState::Running { pid, .. } if pid as i32 == session)
                })?
                .spec
                .name
        } else {
            let uids = self.uids_now();
            uids.into_iter().find(|(_, u)| *u == uid)?.0
        };
        if !self.is_up(&name).await {
            return None;
        }
        let spec = self.spec(&name).ok()??;
        let workspace = self.supervisor.workspace_dir(&name).ok()?;
        let uid = (uid != node_uid).then_some(uid);
        Some(AgentIdentity {
            name,
            ring: spec.ring,
            workspace,
            uid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::cgroup_scope;

    #[test]
    fn a_node_ids_cgroup_scope_is_a_usable_name_of_its_own() {
        let a = cgroup_scope("Nzt-Q9_xKp2LmZ0aB4cD8eF1gH3iJ5kL7mN9oP0qR2s");
        let b = cgroup_scope("Nzt-Q9_xKp2LmZ0aB4cD8eF1gH3iJ5kL7mN9oP0qR2t");
        osmoda_agentd::validate_name(&a).expect("a usable scope");
        assert_ne!(a, b, "two nodes, two scopes");
        osmoda_agentd::validate_name(&cgroup_scope("")).expect("even from nothing");
    }
}
