//! How the node confines its agents: the plan each agent starts under
//! (its own uid, what it sees, its secrets, its network namespace) and the
//! egress proxy that is its only way out. `Node::launch` is the one way an
//! agent starts: added, started by an operator, at node start, after an
//! unlock.
//!
//! Where the host cannot confine (not root, a kernel without a layer),
//! `osmoda status` names the missing layers and an agent starts only if
//! its operator added it `--unconfined`, which the audit log records.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, RwLock};

use osmoda_agentd::{AgentSpec, AgentStatus, AllowEntry, Keep, SandboxPlan, SandboxReport};

use super::Node;
use crate::api::LayerView;
use crate::egress::Egress;
use crate::error::{NodeError, NodeResult};

/// The egress proxy's port inside every agent's network namespace, where
/// nothing else listens.
pub const PROXY_PORT: u16 = 3128;

/// One confined agent's network: its namespace, its live allowlist and
/// the proxy task that serves it. Dropping it stops the proxy; the
/// namespace goes when the last process in it has.
struct AgentNetwork {
    netns: Arc<OwnedFd>,
    allow: Arc<RwLock<Vec<AllowEntry>>>,
    proxy: tokio::task::JoinHandle<()>,
}

impl Drop for AgentNetwork {
    fn drop(&mut self) {
        self.proxy.abort();
    }
}

/// What the node keeps to confine its agents.
pub struct Confinement {
    /// What this host offers, probed once at start.
    pub(crate) report: SandboxReport,
    pub(crate) egress: Arc<Egress>,
    networks: Mutex<HashMap<String, AgentNetwork>>,
}

impl Confinement {
    pub fn new(egress: Arc<Egress>) -> Self {
        Self {
            report: host_report(),
            egress,
            networks: Mutex::new(HashMap::new()),
        }
    }

    fn networks(&self) -> std::sync::MutexGuard<'_, HashMap<String, AgentNetwork>> {
        self.networks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What this host offers, probed once per process: it does not change
/// while the process runs, and the simulation starts hundreds of nodes in
/// one (each probe makes and drops a network namespace).
fn host_report() -> SandboxReport {
    static REPORT: std::sync::OnceLock<SandboxReport> = std::sync::OnceLock::new();
    REPORT.get_or_init(osmoda_agentd::probe).clone()
}

impl Node {
    /// Starts (or restarts) an agent, confined unless it was added
    /// `--unconfined`.
    pub(crate) async fn launch(&self, name: &str) -> NodeResult<AgentStatus> {
        let spec = self
            .agents
            .spec(name)?
            .ok_or_else(|| NodeError::not_found("agent", name))?;
        if spec.unconfined {
            return self.agents.start(name, BTreeMap::new(), None).await;
        }
        let missing: Vec<String> = self
            .confinement
            .report
            .required_missing()
            .into_iter()
            .map(|(layer, why)| format!("{layer} ({why})"))
            .collect();
        if !missing.is_empty() {
            return Err(NodeError::Unavailable(format!(
                "this host cannot confine agent {name:?}: {} missing. `osmoda status` lists every \
                 layer; add the agent with --unconfined to run it without them (audited)",
                missing.join("; ")
            )));
        }
        // The host's own addresses (they change: DHCP, new interfaces) are
        // refused by the proxy unless an entry names one literally.
        self.confinement.egress.set_own_addresses(host_addresses());
        let credentials = self.credentials_for(name).await?;
        let mut env = BTreeMap::new();
        let proxy = format!("http://127.0.0.1:{PROXY_PORT}");
        for key in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            env.insert(key.to_string(), proxy.clone());
        }
        if !credentials.is_empty() {
            env.insert(
                "CREDENTIALS_DIRECTORY".to_string(),
                osmoda_agentd::CREDENTIALS_DIR.to_string(),
            );
        }
        let plan = self.plan_for(&spec, credentials).await?;
        let result = self.agents.start(name, env, Some(plan)).await;
        if result.is_err() {
            self.agent_gone(name);
        }
        result
    }

    /// The confinement `spec`'s agent runs in; `host_exec` runs its
    /// commands in the same (without the secrets, which it does not need).
    pub(crate) async fn plan_for(
        &self,
        spec: &AgentSpec,
        credentials: Vec<(String, zeroize::Zeroizing<Vec<u8>>)>,
    ) -> NodeResult<SandboxPlan> {
        for path in spec.ro.iter().chain(&spec.rw) {
            if !path.exists() {
                return Err(NodeError::Invalid(format!(
                    "agent {:?}: host path {} (--ro/--rw) does not exist",
                    spec.name,
                    path.display()
                )));
            }
        }
        let uid = self.agents.uid(&spec.name).await?;
        let mut keep = vec![Keep {
            path: self.agents.socket().to_path_buf(),
            writable: true,
        }];
        // `osmoda mcp`, the agent's way to its tools, is this binary.
        if let Ok(exe) = std::env::current_exe() {
            keep.push(Keep {
                path: exe,
                writable: false,
            });
        }
        keep.extend(spec.ro.iter().map(|path| Keep {
            path: path.clone(),
            writable: false,
        }));
        keep.extend(spec.rw.iter().map(|path| Keep {
            path: path.clone(),
            writable: true,
        }));
        Ok(SandboxPlan {
            uid,
            gid: uid,
            // The data folder, and the agents' folder in it (as the
            // supervisor adds for the agent itself), so `host_exec` sees
            // exactly what the agent sees.
            hide: vec![self.agents.data_root(), self.agents.dir()],
            keep,
            credentials,
            network: Some(self.agent_network(spec)?),
        })
    }

    /// The agent's network namespace, made with its proxy on first use and
    /// kept while the agent is up (restarts by the supervisor reuse it).
    fn agent_network(&self, spec: &AgentSpec) -> NodeResult<Arc<OwnedFd>> {
        let mut networks = self.confinement.networks();
        if let Some(network) = networks.get(&spec.name) {
            *network.allow.write().unwrap_or_else(|e| e.into_inner()) = spec.allow.clone();
            return Ok(network.netns.clone());
        }
        let failed = |e: std::io::Error| {
            NodeError::Internal(format!(
                "cannot make agent {:?}'s network namespace: {e}",
                spec.name
            ))
        };
        let (netns, listener) = osmoda_agentd::isolated_network(PROXY_PORT).map_err(failed)?;
        listener.set_nonblocking(true).map_err(failed)?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(failed)?;
        let allow = Arc::new(RwLock::new(spec.allow.clone()));
        let proxy = self
            .confinement
            .egress
            .serve(spec.name.clone(), allow.clone(), listener);
        let netns = Arc::new(netns);
        networks.insert(
            spec.name.clone(),
            AgentNetwork {
                netns: netns.clone(),
                allow,
                proxy,
            },
        );
        Ok(netns)
    }

    /// Each confinement layer and whether this host has it, for `status`.
    pub(crate) fn confinement_layers(&self) -> Vec<LayerView> {
        self.confinement
            .report
            .layers()
            .into_iter()
            .map(|(layer, result)| {
                let (state, detail) = match (layer, result) {
                    ("landlock", Ok(())) => (
                        "ok",
                        format!(
                            "ABI {}",
                            self.confinement
                                .report
                                .landlock
                                .as_ref()
                                .copied()
                                .unwrap_or_default()
                        ),
                    ),
                    (_, Ok(())) => ("ok", String::new()),
                    // A second layer: agents still start without it.
                    ("landlock", Err(why)) => ("absent", why.to_string()),
                    (_, Err(why)) => ("missing", why.to_string()),
                };
                LayerView {
                    layer: layer.to_string(),
                    state: state.to_string(),
                    detail,
                }
            })
            .collect()
    }

    /// A running agent's proxy uses `spec.allow` from its next connection.
    pub(crate) fn egress_allowlist_changed(&self, spec: &AgentSpec) {
        if let Some(network) = self.confinement.networks().get(&spec.name) {
            *network.allow.write().unwrap_or_else(|e| e.into_inner()) = spec.allow.clone();
        }
    }

    /// The agent is down: its proxy stops.
    pub(crate) fn agent_gone(&self, name: &str) {
        self.confinement.networks().remove(name);
    }

    /// Every agent is down (an emergency stop, a lockdown).
    pub(crate) fn all_agents_gone(&self) {
        self.confinement.networks().clear();
    }

    /// Starts the stored agents `pick` chooses that are neither held nor
    /// up; returns those that failed, with why.
    pub(crate) async fn launch_where(
        &self,
        pick: impl Fn(&AgentSpec) -> bool,
    ) -> Vec<(String, NodeError)> {
        let names = match self.agents.startable(pick).await {
            Ok(names) => names,
            Err(e) => return vec![("(the stored agents)".to_string(), e)],
        };
        let mut failed = Vec::new();
        for name in names {
            if let Err(e) = self.launch(&name).await {
                failed.push((name, e));
            }
        }
        failed
    }

    /// Stops the agent and forgets it with its folder and network.
    pub(crate) async fn forget_agent(&self, name: &str) -> NodeResult<()> {
        self.agent_gone(name);
        self.agents.remove(name).await
    }
}

/// Every address of this host's interfaces (`getifaddrs`).
fn host_addresses() -> Vec<std::net::IpAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut found = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we free below; we
    // only read entries whose family says which sockaddr type they hold.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return found;
        }
        let mut entry = list;
        while !entry.is_null() {
            let addr = (*entry).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(addr as *const libc::sockaddr_in);
                        found.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(addr as *const libc::sockaddr_in6);
                        found.push(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            entry = (*entry).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found
}
