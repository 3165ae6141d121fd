//! Assembles a running node from its parts: the one way a node comes to
//! life, for `osmoda run` (`run.rs`) and for every simulated node
//! (`sim/fleet.rs`). Both get the same service, the same event loop and the
//! same emergency path; the simulation only swaps the transport, keeps no
//! data folder and runs its agents without cgroups.

use std::path::PathBuf;
use std::sync::Arc;

use osmoda_crdt_state::{Actor, Outcome};
use osmoda_fabric::proto::{FleetCert, Revocation};
use osmoda_fabric::{
    Credentials, FabricConfig, FabricHandle, LiveCredentials, Membership, StartError,
};
use osmoda_store::Store;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use crate::api::NodeInfo;
use crate::datadir::{DataDir, FleetInfo};
use crate::egress::{Egress, EgressLimits};
use crate::error::{NodeError, NodeResult};
use crate::metrics::Metrics;
use crate::replication::sync::Replicator;
use crate::runtime::topics;
use crate::service::Confinement;
use crate::service::{audit_agent_events, Node, Signer};
use crate::state::address_book::AddressBook;
use crate::state::agents::{Agents, AgentsConfig};
use crate::state::approvals::Approvals;
use crate::state::audit_log::AuditLog;
use crate::state::docs::Docs;
use crate::state::emergency::Emergency;
use crate::state::heads::FleetHeads;
use crate::state::invites::{EnrollDesk, Invites};
use crate::state::mirrors::Mirrors;
use crate::state::vault::Vault;

/// Everything a node is made of, before it runs.
pub struct NodeBuilder {
    pub store: Store,
    pub identity: Zeroizing<[u8; 32]>,
    pub cert: FleetCert,
    pub fleet: FleetInfo,
    pub holds_root_key: bool,
    pub fabric: FabricConfig,
    /// Listen addresses to fall back to when `fabric.listen` is taken (the
    /// default port, with another node on the host).
    pub fallback_listen: Option<Vec<libp2p::Multiaddr>>,
    pub revocations: Vec<Revocation>,
    /// Where agents' folders live (`DATA/agents`).
    pub agents: AgentsConfig,
    /// The node's folder, where revocations are kept; none in simulation.
    pub data: Option<DataDir>,
    /// The vault's key file (`DATA/vault.key`), made on first use.
    pub vault_key: PathBuf,
    /// How long the member certificates this node issues last, when it is
    /// an admin that may issue.
    pub cert_lifetime: std::time::Duration,
    /// `config.toml`'s labels, checked; shown by `status`.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A node whose loop runs.
pub struct Running {
    pub node: Arc<Node>,
    stop: Option<oneshot::Sender<()>>,
    /// `None` once the loop ended and was awaited.
    loop_task: Option<JoinHandle<()>>,
    fabric_task: JoinHandle<()>,
    /// Renews the certificate when it is due; ends with the node.
    renewal_task: JoinHandle<()>,
}

impl NodeBuilder {
    /// Starts the fabric, assembles the node, records `node.start` and
    /// starts its event loop. Agents are not started: the caller does that
    /// once the agents' socket is up (`Node::start_agents`).
    pub async fn start(self) -> NodeResult<Running> {
        let credentials: LiveCredentials = Credentials::new(&self.identity, self.cert.clone())
            .map_err(|e| NodeError::Invalid(format!("identity key and certificate disagree: {e}")))?
            .into();
        let audit = Arc::new(AuditLog::open(
            &self.store,
            ed25519_dalek::SigningKey::from_bytes(&self.identity),
        )?);
        let membership = Membership::new(self.cert.fleet);
        for rev in &self.revocations {
            if let Err(e) = membership.apply_revocation(rev) {
                tracing::warn!(error = %e, "ignoring a stored revocation");
            }
        }
        if let Some(data) = &self.data {
            // Subscribed after the stored ones were applied: only new
            // revocations rewrite the file.
            tokio::spawn(crate::service::persist_revocations(
                data.clone(),
                Arc::downgrade(&membership),
                membership.watch_revocations(),
            ));
        }
        let heads = Arc::new(FleetHeads::new(membership.clone()));
        let mut fabric_config = self.fabric;
        let (topic_specs, topics) = topics::register();
        fabric_config.topics = topic_specs;
        fabric_config.protocols = crate::replication::wire::protocols();
        let book = Arc::new(
            AddressBook::open(self.store.clone())
                .map_err(|e| NodeError::Internal(format!("cannot read the address book: {e}")))?,
        );
        // Dialed besides the bootstrap addresses: a node back on new ports
        // finds the peers it knew, and they learn where it is now.
        fabric_config.known_peers = book.to_dial(fabric_config.dial_target);
        // An admin node takes enrollments for the tokens it issued.
        let invites = self
            .cert
            .may_issue()
            .then(|| Arc::new(Invites::new(self.store.clone())));
        if let Some(invites) = &invites {
            // The node that keeps the root key in its folder enrolls admins.
            let root = self
                .data
                .as_ref()
                .filter(|_| self.holds_root_key)
                .and_then(|data| data.fleet_root(None).ok())
                .map(Arc::new);
            fabric_config.enroller = Some(Arc::new(EnrollDesk {
                invites: invites.clone(),
                key: ed25519_dalek::SigningKey::from_bytes(&self.identity),
                credentials: credentials.clone(),
                lifetime: self.cert_lifetime,
                audit: audit.clone(),
                root,
            }));
        }
        let started = match osmoda_fabric::start(
            credentials.clone(),
            membership.clone(),
            fabric_config.clone(),
        ) {
            Err(StartError::Listen { addr, reason }) if self.fallback_listen.is_some() => {
                tracing::warn!(%addr, %reason, "the default port is taken (another node on this host?); using random ports");
                let fallback = FabricConfig {
                    listen: self.fallback_listen.unwrap_or_default(),
                    ..fabric_config
                };
                osmoda_fabric::start(credentials.clone(), membership.clone(), fallback)
            }
            other => other,
        };
        let (fabric, mut events, fabric_task) =
            started.map_err(|e| NodeError::Internal(format!("cannot start the fabric: {e}")))?;
        let node_id = credentials.current().peer_id().to_string();
        let authority = crate::state::authority::NodeAuthority::new(
            credentials.current().signing_key().clone(),
            credentials.clone(),
            membership.clone(),
        );
        let docs = Arc::new(Docs::open(
            &self.store,
            &node_id,
            Some(Arc::new(authority)),
        )?);
        let (agents, agent_events) = Agents::open(self.agents, self.store.clone(), &node_id)?;
        tokio::spawn(audit_agent_events(agent_events, audit.clone()));
        let info = NodeInfo {
            node_id,
            name: self.cert.name.clone(),
            role: self.cert.role.to_string(),
            fleet: self.fleet,
            certificate_expires_at: self.cert.expires_at,
            holds_root_key: self.holds_root_key,
            version: env!("CARGO_PKG_VERSION").into(),
        };
        let emergency = Emergency::open(self.store.clone())?;
        let replicator = Replicator::new(docs.clone(), audit.clone(), fabric.clone());
        let node = Arc::new(Node {
            info,
            labels: self.labels,
            fabric: fabric.clone(),
            membership,
            metrics: Metrics::new(audit.metrics(), replicator.metrics()),
            replicator,
            mirrors: Mirrors::new(self.store.clone()),
            confinement: Confinement::new(Arc::new(Egress::new(
                audit.clone(),
                emergency.lock_check(),
                EgressLimits::default(),
            ))),
            emergency,
            vault: Vault::new(self.store.clone(), self.vault_key),
            audit: audit.clone(),
            heads,
            docs,
            agents,
            approvals: Approvals::default(),
            emergency_order: tokio::sync::Mutex::new(()),
            refusals: Default::default(),
            register_intake: Arc::new(tokio::sync::Semaphore::new(crate::service::REGISTER_INTAKE)),
            invites,
            signer: Signer {
                credentials,
                identity: self.identity,
                lifetime: self.cert_lifetime,
                data: self.data.clone(),
            },
            push_rates: Default::default(),
            cards: Default::default(),
            cards_kick: Default::default(),
            tasks: crate::state::tasks::Tasks::open(self.store.clone())?,
            tasks_kick: Default::default(),
            unreachable: Default::default(),
        });
        tokio::spawn(crate::service::cards::advertise(Arc::downgrade(&node)));
        tokio::spawn(crate::service::deliver_tasks(Arc::downgrade(&node)));
        tokio::spawn(crate::service::failover::watch(Arc::downgrade(&node)));
        let name = node.info.name.clone();
        audit
            .record(Actor::Node, "node.start", &name, Outcome::Ok, "")
            .await
            .map_err(|e| NodeError::Audit(e.to_string()))?;
        let renewal_task = tokio::spawn(crate::service::keep_renewed(Arc::downgrade(&node)));
        let (stop, stopped) = oneshot::channel::<()>();
        let looping = node.clone();
        let loop_task = tokio::spawn(async move {
            crate::runtime::event_loop::run(looping, &mut events, topics, book, async {
                let _ = stopped.await;
            })
            .await;
        });
        Ok(Running {
            node,
            stop: Some(stop),
            loop_task: Some(loop_task),
            fabric_task,
            renewal_task,
        })
    }
}

impl Running {
    pub fn fabric(&self) -> &FabricHandle {
        &self.node.fabric
    }

    /// Waits until the event loop ends on its own (the fabric stopped).
    pub async fn wait_loop(&mut self) {
        match self.loop_task.as_mut() {
            Some(task) => {
                let _ = task.await;
                self.loop_task = None;
            }
            None => std::future::pending().await,
        }
    }

    /// Stops cleanly: the loop, the agents, the fabric; then records
    /// `node.stop` and signs a last checkpoint.
    pub async fn shutdown(mut self) {
        self.renewal_task.abort();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.loop_task.take() {
            let _ = task.await;
        }
        let node = &self.node;
        node.approvals.expire_all();
        if let Err(e) = node.agents.stop_all().await {
            tracing::warn!(error = %e, "cannot stop the agents");
        }
        node.fabric.shutdown().await;
        let _ = (&mut self.fabric_task).await;
        if let Err(e) = node
            .audit
            .record(Actor::Node, "node.stop", &node.info.name, Outcome::Ok, "")
            .await
        {
            tracing::warn!(error = %e, "cannot audit the stop");
        }
        if let Err(e) = node.audit.checkpoint().await {
            tracing::warn!(error = %e, "cannot sign the final audit checkpoint");
        }
    }

    /// Stops at once, as a crash would: nothing is flushed or recorded.
    pub async fn abort(mut self) {
        self.renewal_task.abort();
        self.stop.take();
        if let Some(task) = self.loop_task.take() {
            task.abort();
            let _ = task.await;
        }
        self.fabric_task.abort();
        let _ = (&mut self.fabric_task).await;
    }
}
