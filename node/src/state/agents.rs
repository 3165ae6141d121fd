//! The node's agents: specs kept durably in the store, processes run by
//! `osmoda-agentd`, the agents an operator holds down, and the credentials
//! that tell the node which agent is calling.
//!
//! Every time the node starts an agent it issues a fresh random token
//! (`OSMODA_AGENT_TOKEN` in the agent's environment) and keeps only its
//! BLAKE3 hash. A tool call is attributed to the agent whose token it
//! carries, never to a name the caller claims. Tokens die with the process
//! that held them: a restart, a stop or a node restart issues new ones.
//!
//! An agent is *held* when an operator stopped it (or a lockdown, an
//! emergency stop left it down): the node does not start it at its own
//! start, until an operator starts it again. Held names are stored beside
//! the specs, so a stop survives a restart of the node.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use osmoda_agentd::{
    AgentData, AgentEvent, AgentSpec, AgentStatus, AgentdError, CgroupPlacement, Supervisor,
    SupervisorConfig,
};
use osmoda_store::{Batch, Store};
use rand::RngCore;
use tokio::sync::mpsc;

use crate::error::{NodeError, NodeResult};

const SPECS: &str = "agents";
const HELD: &str = "agents-held";
/// Agents one node keeps.
pub const MAX_AGENTS: usize = 256;

/// Who is calling, as the node knows it from the token.
#[derive(Debug, Clone)]
pub struct AgentIdentity {
    pub name: String,
    pub ring: u8,
    pub workspace: PathBuf,
}

pub struct Agents {
    supervisor: Supervisor,
    store: Store,
    socket: PathBuf,
    /// BLAKE3 of a live token → the agent it was issued to.
    tokens: Mutex<HashMap<[u8; 32], String>>,
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
        base: &Path,
        store: Store,
        node_id: &str,
        agent_socket: PathBuf,
        cgroups: bool,
    ) -> NodeResult<(Self, mpsc::Receiver<AgentEvent>)> {
        let mut config = SupervisorConfig::new(base);
        config.cgroup = match std::env::var("OSMODA_CGROUP").as_deref() {
            Ok("off") => CgroupPlacement::Disabled,
            _ if !cgroups => CgroupPlacement::Disabled,
            _ => CgroupPlacement::Auto {
                scope: cgroup_scope(node_id),
            },
        };
        let (supervisor, events) = Supervisor::new(config)?;
        Ok((
            Self {
                supervisor,
                store,
                socket: agent_socket,
                tokens: Mutex::new(HashMap::new()),
            },
            events,
        ))
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

    /// Stores a new agent's spec (durably) and, when `start`, starts it; a
    /// `held` agent is not started with the node until an operator starts
    /// it. An agent that cannot start is not kept: the operator corrects
    /// the command and adds it again.
    pub async fn add(&self, spec: AgentSpec, start: bool, held: bool) -> NodeResult<AgentStatus> {
        spec.validate()?;
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
        if held {
            batch.put(HELD, spec.name.as_bytes(), b"");
        }
        self.store.submit_batch(batch)?.await?;
        let name = spec.name.clone();
        if start {
            return match self.start(&name).await {
                Ok(status) => Ok(status),
                Err(e) => {
                    if let Err(cleanup) = self.remove(&name).await {
                        tracing::warn!(agent = %name, error = %cleanup, "cannot forget an agent that did not start");
                    }
                    Err(e)
                }
            };
        }
        Ok(self
            .supervisor
            .status(&name)
            .await
            .unwrap_or_else(|_| self.not_running(spec)))
    }

    /// Starts (or restarts) an agent with a fresh credential, and releases
    /// it if it was held.
    pub async fn start(&self, name: &str) -> NodeResult<AgentStatus> {
        let spec = self.known(name)?;
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let token = osmoda_fabric::proto::hex(&raw);
        let hash = *blake3::hash(token.as_bytes()).as_bytes();
        {
            let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            tokens.retain(|_, n| n != name);
            tokens.insert(hash, name.to_string());
        }
        let env = [
            ("OSMODA_AGENT_TOKEN".to_string(), token),
            ("OSMODA_AGENT_NAME".to_string(), name.to_string()),
            (
                "OSMODA_AGENT_SOCKET".to_string(),
                self.socket.display().to_string(),
            ),
        ]
        .into();
        let status = match self.supervisor.start(spec, env).await {
            Ok(status) => status,
            Err(e) => {
                self.revoke_token(name);
                return Err(e.into());
            }
        };
        self.set_held(&[name.to_string()], false).await?;
        Ok(status)
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
        }
    }

    /// Every agent is down: no token stays live.
    fn forget_tokens(&self) {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn revoke_token(&self, name: &str) {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, n| n != name);
    }

    /// Stops an agent and holds it down, across node restarts too.
    pub async fn stop(&self, name: &str) -> NodeResult<AgentStatus> {
        let spec = self.known(name)?;
        self.set_held(&[name.to_string()], true).await?;
        self.revoke_token(name);
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
        self.revoke_token(name);
        match self.supervisor.remove(name, AgentData::Delete).await {
            Ok(()) | Err(AgentdError::UnknownAgent { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let mut batch = Batch::new();
        batch.delete(SPECS, name.as_bytes());
        batch.delete(HELD, name.as_bytes());
        self.store.submit_batch(batch)?.await?;
        Ok(())
    }

    /// One stored agent, running or not.
    pub async fn status(&self, name: &str) -> NodeResult<AgentStatus> {
        let spec = self.known(name)?;
        match self.supervisor.status(name).await {
            Ok(status) => Ok(status),
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
                Some(s) => out.push(s.clone()),
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

    /// Starts the stored agents that `pick` chooses and that are not held;
    /// returns those that failed.
    pub async fn start_where(
        &self,
        pick: impl Fn(&AgentSpec) -> bool,
    ) -> NodeResult<Vec<(String, NodeError)>> {
        let held = self.held()?;
        let mut failed = Vec::new();
        for spec in self.specs()? {
            if held.contains(&spec.name) || !pick(&spec) || self.is_up(&spec.name).await {
                continue;
            }
            if let Err(e) = self.start(&spec.name).await {
                failed.push((spec.name, e));
            }
        }
        Ok(failed)
    }

    /// Whether the supervisor runs the agent (or will restart it).
    async fn is_up(&self, name: &str) -> bool {
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
        let n = self.supervisor.stop_all().await?.len();
        self.forget_tokens();
        Ok(n)
    }

    /// SIGKILL for every agent, now.
    pub async fn kill_all(&self) -> NodeResult<usize> {
        let n = self.supervisor.kill_all().await?.len();
        self.forget_tokens();
        Ok(n)
    }

    pub async fn freeze_all(&self) -> NodeResult<usize> {
        Ok(self.supervisor.freeze_all().await?)
    }

    pub async fn resume_all(&self) -> NodeResult<usize> {
        Ok(self.supervisor.resume_all().await?)
    }

    /// The agent a token was issued to, if it is still live.
    pub fn authenticate(&self, token: &str) -> Option<AgentIdentity> {
        let hash = *blake3::hash(token.as_bytes()).as_bytes();
        let name = self
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
            .cloned()?;
        let spec = self.spec(&name).ok()??;
        let workspace = self.supervisor.workspace_dir(&name).ok()?;
        Some(AgentIdentity {
            name,
            ring: spec.ring,
            workspace,
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
