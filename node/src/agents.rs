//! The node's agents: specs kept durably in the store, processes run by
//! `osmoda-agentd`, and the credentials that tell the node which agent is
//! calling.
//!
//! Every time the node starts an agent it issues a fresh random token
//! (`OSMODA_AGENT_TOKEN` in the agent's environment) and keeps only its
//! BLAKE3 hash. A tool call is attributed to the agent whose token it
//! carries, never to a name the caller claims. Tokens die with the process
//! that held them: a restart, a stop or a node restart issues new ones.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use osmoda_agentd::{
    AgentData, AgentEvent, AgentSpec, AgentStatus, CgroupPlacement, Supervisor, SupervisorConfig,
};
use osmoda_store::Store;
use rand::RngCore;
use tokio::sync::mpsc;

const SPECS: &str = "agents";
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

impl Agents {
    /// Opens the supervisor on `DATA/agents`; agents' cgroups live in a
    /// scope named after the node, so that two nodes on one host never
    /// touch each other's.
    pub fn open(
        base: &Path,
        store: Store,
        node_id: &str,
        agent_socket: PathBuf,
    ) -> Result<(Self, mpsc::Receiver<AgentEvent>)> {
        let mut config = SupervisorConfig::new(base);
        let scope: String = node_id.chars().rev().take(16).collect();
        config.cgroup = match std::env::var("OSMODA_CGROUP").as_deref() {
            Ok("off") => CgroupPlacement::Disabled,
            _ => CgroupPlacement::Auto {
                scope: format!("node-{scope}"),
            },
        };
        let (supervisor, events) =
            Supervisor::new(config).context("cannot start agent supervision")?;
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

    /// "cgroup-v2" or "rlimits", and why.
    pub fn limit_mode(&self) -> (String, String) {
        (
            self.supervisor.limit_mode().to_string(),
            self.supervisor.limit_mode_reason().to_string(),
        )
    }

    pub fn specs(&self) -> Result<Vec<AgentSpec>> {
        self.store
            .scan_prefix(SPECS, b"", MAX_AGENTS)?
            .into_iter()
            .map(|(_, bytes)| {
                serde_json::from_slice(&bytes).context("a stored agent spec is damaged")
            })
            .collect()
    }

    pub fn spec(&self, name: &str) -> Result<Option<AgentSpec>> {
        match self.store.get(SPECS, name.as_bytes())? {
            Some(bytes) => Ok(Some(
                serde_json::from_slice(&bytes).context("a stored agent spec is damaged")?,
            )),
            None => Ok(None),
        }
    }

    /// Stores a new agent's spec (durably) and, unless `start` is false,
    /// starts it.
    pub async fn add(&self, spec: AgentSpec, start: bool) -> Result<AgentStatus> {
        spec.validate()?;
        if self.spec(&spec.name)?.is_some() {
            bail!("an agent named {:?} exists already", spec.name);
        }
        if self.specs()?.len() >= MAX_AGENTS {
            bail!("this node keeps at most {MAX_AGENTS} agents");
        }
        let bytes = serde_json::to_vec(&spec)?;
        self.store.put(SPECS, spec.name.as_bytes(), &bytes)?;
        let name = spec.name.clone();
        if start {
            return self.start(&name).await;
        }
        Ok(self
            .supervisor
            .status(&name)
            .await
            .unwrap_or_else(|_| self.not_running(spec)))
    }

    /// Starts (or restarts) an agent with a fresh credential.
    pub async fn start(&self, name: &str) -> Result<AgentStatus> {
        let spec = self
            .spec(name)?
            .with_context(|| format!("no agent named {name:?}"))?;
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
        Ok(self.supervisor.start(spec, env).await?)
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

    pub async fn stop(&self, name: &str) -> Result<AgentStatus> {
        let status = self.supervisor.stop(name).await?;
        self.revoke_token(name);
        Ok(status)
    }

    /// Stops the agent, forgets its spec and deletes its folder.
    pub async fn remove(&self, name: &str) -> Result<()> {
        if self.spec(name)?.is_none() {
            bail!("no agent named {name:?}");
        }
        self.revoke_token(name);
        match self.supervisor.remove(name, AgentData::Delete).await {
            Ok(()) | Err(osmoda_agentd::AgentdError::UnknownAgent { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.store.delete(SPECS, name.as_bytes())?;
        Ok(())
    }

    pub async fn status(&self, name: &str) -> Result<AgentStatus> {
        Ok(self.supervisor.status(name).await?)
    }

    /// Every stored agent, running or not.
    pub async fn list(&self) -> Result<Vec<AgentStatus>> {
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

    pub async fn logs(&self, name: &str, lines: usize) -> Result<Vec<String>> {
        Ok(self.supervisor.output_tail(name, lines).await?)
    }

    /// Starts every stored agent (at node start, when not locked down).
    pub async fn start_all(&self) -> Vec<(String, anyhow::Error)> {
        let mut failed = Vec::new();
        for spec in self.specs().unwrap_or_default() {
            if let Err(e) = self.start(&spec.name).await {
                failed.push((spec.name, e));
            }
        }
        failed
    }

    /// SIGTERM, a grace period, SIGKILL, for every agent.
    pub async fn stop_all(&self) -> Result<usize> {
        let n = self.supervisor.stop_all().await?.len();
        self.forget_tokens();
        Ok(n)
    }

    /// SIGKILL for every agent, now.
    pub async fn kill_all(&self) -> Result<usize> {
        let n = self.supervisor.kill_all().await?.len();
        self.forget_tokens();
        Ok(n)
    }

    pub async fn freeze_all(&self) -> Result<usize> {
        Ok(self.supervisor.freeze_all().await?)
    }

    pub async fn resume_all(&self) -> Result<usize> {
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
