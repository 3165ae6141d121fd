//! Real nodes on the simulated network, for `osmoda sim`: each node is the
//! node's own core (fabric with the hybrid handshake, audit log, documents,
//! audit heads, replication, the same event loop as `osmoda run`) with its
//! own identity, certificate and store in a folder of its own; only the
//! transport is the simulation's. Agents and the control socket are left
//! out: they do not take part in replication.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use libp2p::core::transport::Transport as _;
use osmoda_crdt_state::{Actor, Outcome};
use osmoda_docs::{Action, NewRoutine, Target};
use osmoda_fabric::proto::{FleetCert, FleetRoot, Role};
use osmoda_fabric::{Credentials, FabricConfig, Membership, RawStream, StreamTransportSlot};
use osmoda_simulation::{
    Fleet, FleetError, HostId, Observation, OpKind, Operation, SimNetwork, StartSpec, VerifyOutcome,
};
use osmoda_store::Store;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::audit::AuditLog;
use crate::audit_remote::Mirrors;
use crate::core::Core;
use crate::docs::Docs;
use crate::heads::FleetHeads;
use crate::sync::Replicator;

const PORT: u16 = 4001;
/// Peers a simulated node dials from discovery.
const SIM_DIAL_TARGET: usize = 12;
/// Links a simulated node accepts or opens at most; it trims back to 30
/// (three quarters), so that newcomers always find room.
const SIM_MAX_LINKS: u32 = 40;

fn err(e: impl std::fmt::Display) -> FleetError {
    FleetError::new(e)
}

struct Running {
    core: Arc<Core>,
    stop: Option<oneshot::Sender<()>>,
    loop_task: JoinHandle<()>,
    fabric_task: JoinHandle<()>,
}

#[derive(Default)]
struct Seen {
    held: HashSet<u64>,
    reported: HashSet<u64>,
    docs_version: Option<u64>,
    heads_version: Option<u64>,
    inbox_len: Option<(usize, u64)>,
    state_digest: [u8; 16],
    heads_digest: [u8; 16],
    forks: usize,
}

struct Slot {
    identity: [u8; 32],
    cert: Option<FleetCert>,
    generation: u32,
    running: Option<Running>,
    seen: Seen,
}

/// Which node holds what, for the ops applied so far.
#[derive(Default)]
struct Applied {
    knowledge: Vec<(u64, String)>,
    routines: Vec<(u64, String)>,
    /// (op, the log's owner, the entry's sequence number)
    audit: Vec<(u64, [u8; 32], u64)>,
    broadcasts: Vec<(u64, String)>,
}

pub struct SimFleet {
    net: SimNetwork,
    root: FleetRoot,
    dir: PathBuf,
    slots: Vec<Slot>,
    applied: Applied,
}

impl SimFleet {
    pub fn new(net: SimNetwork, nodes: usize, dir: PathBuf) -> Self {
        let slots = (0..nodes)
            .map(|_| Slot {
                identity: [0; 32],
                cert: None,
                generation: 0,
                running: None,
                seen: Seen::default(),
            })
            .collect();
        Self {
            net,
            root: FleetRoot::generate(&mut rand::rngs::OsRng),
            dir,
            slots,
            applied: Applied::default(),
        }
    }

    fn slot(&mut self, node: usize) -> Result<&mut Slot, FleetError> {
        self.slots
            .get_mut(node)
            .ok_or_else(|| err(format!("no node {node}")))
    }

    fn core(&self, node: usize) -> Result<Arc<Core>, FleetError> {
        self.slots
            .get(node)
            .and_then(|s| s.running.as_ref())
            .map(|r| r.core.clone())
            .ok_or_else(|| err(format!("node {node} is down")))
    }

    fn host(node: usize) -> HostId {
        HostId(node as u32)
    }
}

/// The store of a restarted node may still be held for a moment by tasks
/// of the crashed one; redb refuses a second opener meanwhile.
async fn open_store(path: PathBuf) -> Result<Store, FleetError> {
    let mut tries = 0;
    loop {
        match Store::open(&path) {
            Ok(s) => return Ok(s),
            Err(e) if tries >= 50 => return Err(err(format!("cannot open the store: {e}"))),
            Err(_) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Op ids a node newly holds, checked only where something changed.
fn check(core: &Core, applied: &Applied, seen: &mut Seen, full: bool) {
    let docs_version = core.docs.version();
    if full || seen.docs_version != Some(docs_version) {
        seen.docs_version = Some(docs_version);
        let mut h = blake3::Hasher::new();
        h.update(&core.docs.summary().encode());
        h.update(&core.docs.routines_digest());
        seen.state_digest
            .copy_from_slice(&h.finalize().as_bytes()[..16]);
        for (op, id) in &applied.knowledge {
            if !seen.held.contains(op) && matches!(core.docs.get(id), Ok(Some(_))) {
                seen.held.insert(*op);
            }
        }
        if applied
            .routines
            .iter()
            .any(|(op, _)| !seen.held.contains(op))
        {
            let have: HashSet<String> = core.docs.routines().into_iter().map(|r| r.id).collect();
            for (op, id) in &applied.routines {
                if have.contains(id) {
                    seen.held.insert(*op);
                }
            }
        }
    }
    let heads_version = core.heads.version();
    if full || seen.heads_version != Some(heads_version) {
        seen.heads_version = Some(heads_version);
        (seen.heads_digest, seen.forks) = core.heads.digest();
        for (op, owner, seq) in &applied.audit {
            if !seen.held.contains(op) && core.heads.size_of(owner).is_some_and(|s| s > *seq) {
                seen.held.insert(*op);
            }
        }
    }
    if applied
        .broadcasts
        .iter()
        .any(|(op, _)| !seen.held.contains(op))
    {
        let inbox = core.fabric.inbox();
        let mark = (inbox.len(), inbox.last().map_or(0, |e| e.received_at_ms));
        if full || seen.inbox_len != Some(mark) {
            seen.inbox_len = Some(mark);
            let keys: HashSet<&str> = inbox
                .iter()
                .filter_map(|e| e.text.split(' ').next())
                .collect();
            for (op, key) in &applied.broadcasts {
                if keys.contains(key.as_str()) {
                    seen.held.insert(*op);
                }
            }
        }
    }
}

#[async_trait]
impl Fleet for SimFleet {
    async fn start(&mut self, node: usize, spec: StartSpec) -> Result<(), FleetError> {
        let root_key = self.root.public();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let fresh = {
            let slot = self.slot(node)?;
            if slot.running.is_some() {
                return Err(err(format!("node {node} runs already")));
            }
            spec.fresh_disk || slot.cert.is_none()
        };
        if fresh {
            // A node that lost its disk lost its identity too, and joins
            // again as a new member.
            let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
            let cert = self
                .root
                .issue(
                    key.verifying_key().to_bytes(),
                    &format!("sim-{node}"),
                    Role::Member,
                    now.saturating_sub(60),
                    now + 30 * 86_400,
                )
                .map_err(err)?;
            let slot = self.slot(node)?;
            slot.identity = key.to_bytes();
            slot.cert = Some(cert);
            slot.generation += 1;
        }
        let (identity, cert, generation) = {
            let slot = self.slot(node)?;
            let cert = slot.cert.clone().ok_or_else(|| err("no certificate"))?;
            (slot.identity, cert, slot.generation)
        };
        let folder = self.dir.join(format!("n{node}-g{generation}"));
        std::fs::create_dir_all(&folder).map_err(err)?;
        let store = open_store(folder.join("state.redb")).await?;
        let audit = Arc::new(
            AuditLog::open(&store, ed25519_dalek::SigningKey::from_bytes(&identity))
                .map_err(err)?,
        );
        let credentials = Credentials::new(&identity, cert.clone()).map_err(err)?;
        let peer_id = credentials.peer_id().to_string();
        let docs = Arc::new(Docs::open(&store, &peer_id).map_err(err)?);
        let membership = Membership::new(root_key);
        let transport = self
            .net
            .transport(Self::host(node))?
            .map(|s, _| Box::new(s) as Box<dyn RawStream>)
            .boxed();
        let bootstrap = spec
            .bootstrap
            .iter()
            .map(|j| self.net.host_addr(Self::host(*j), PORT))
            .collect::<Result<Vec<_>, _>>()?;
        let heads = Arc::new(FleetHeads::default());
        let config = FabricConfig {
            listen: vec![self.net.host_addr(Self::host(node), PORT)?],
            bootstrap,
            mdns: false,
            validators: crate::core::validators(heads.clone()),
            stream_transport: Some(StreamTransportSlot::new(transport)),
            // Hundreds of nodes share two cores here: a dozen links each
            // carry gossip as well as a full mesh does, at a fraction of
            // the per-connection work; idle extra links close.
            dial_target: SIM_DIAL_TARGET,
            idle_timeout: Duration::from_secs(30),
            // Kademlia connects to every peer it queries; without a cap a
            // forming fleet of a hundred had each node shake hands with
            // nearly every other one.
            limits: osmoda_fabric::behaviour::Limits {
                max_established: SIM_MAX_LINKS,
                ..Default::default()
            },
            ..FabricConfig::default()
        };
        let (fabric, mut events, fabric_task) =
            osmoda_fabric::start(credentials, membership.clone(), config).map_err(err)?;
        audit
            .record(Actor::Node, "node.start", &cert.name, Outcome::Ok, "")
            .await
            .map_err(err)?;
        let core = Arc::new(Core {
            fabric: fabric.clone(),
            membership,
            audit: audit.clone(),
            docs: docs.clone(),
            heads,
            mirrors: Mirrors::new(store),
            replicator: Replicator::new(docs, audit, fabric),
            node_key: cert.node,
            data: None,
            emergency: None,
        });
        let (stop, stopped) = oneshot::channel();
        let looping = core.clone();
        let loop_task = tokio::spawn(async move {
            looping
                .run(&mut events, async {
                    let _ = stopped.await;
                })
                .await;
        });
        let slot = self.slot(node)?;
        slot.seen = Seen::default();
        slot.running = Some(Running {
            core,
            stop: Some(stop),
            loop_task,
            fabric_task,
        });
        Ok(())
    }

    async fn crash(&mut self, node: usize) -> Result<(), FleetError> {
        let slot = self.slot(node)?;
        if let Some(mut r) = slot.running.take() {
            r.stop.take();
            r.loop_task.abort();
            r.fabric_task.abort();
            let _ = r.loop_task.await;
            let _ = r.fabric_task.await;
        }
        Ok(())
    }

    async fn apply(&mut self, node: usize, op: &Operation) -> Result<(), FleetError> {
        let core = self.core(node)?;
        match op.kind {
            OpKind::KnowledgePut => {
                let id = core
                    .docs
                    .put(op.key(), op.body(), Vec::new(), "sim".into())
                    .await
                    .map_err(err)?;
                core.audit
                    .record(Actor::Operator, "knowledge.put", &id, Outcome::Ok, "")
                    .await
                    .map_err(err)?;
                self.applied.knowledge.push((op.id, id));
            }
            OpKind::RoutineAdd => {
                let id = core
                    .docs
                    .add_routine(NewRoutine {
                        id: String::new(),
                        name: op.key(),
                        schedule: "every 5m".into(),
                        target: Target::All,
                        action: Action {
                            command: "true".into(),
                            args: Vec::new(),
                            timeout_secs: 60,
                        },
                        enabled: true,
                        created_by: "sim".into(),
                    })
                    .await
                    .map_err(err)?;
                self.applied.routines.push((op.id, id));
            }
            OpKind::AuditAppend => {
                let seq = core
                    .audit
                    .record(Actor::Operator, "sim.append", &op.key(), Outcome::Ok, "")
                    .await
                    .map_err(err)?;
                self.applied.audit.push((op.id, core.node_key, seq));
            }
            OpKind::Broadcast => {
                // The sender holds its own broadcast from the start.
                core.fabric.broadcast(op.body()).await.map_err(err)?;
                self.applied.broadcasts.push((op.id, op.key()));
                if let Some(slot) = self.slots.get_mut(node) {
                    slot.seen.held.insert(op.id);
                }
            }
        }
        Ok(())
    }

    fn observe(&mut self, node: usize) -> Option<Observation> {
        let applied = &self.applied;
        let slot = self.slots.get_mut(node)?;
        let core = slot.running.as_ref()?.core.clone();
        check(&core, applied, &mut slot.seen, false);
        let new_ops: Vec<u64> = slot
            .seen
            .held
            .difference(&slot.seen.reported)
            .copied()
            .collect();
        slot.seen.reported.extend(new_ops.iter().copied());
        Some(Observation {
            state_digest: slot.seen.state_digest,
            audit_heads_digest: slot.seen.heads_digest,
            new_ops,
            forks_known: slot.seen.forks,
        })
    }

    async fn verify(&mut self, node: usize) -> Result<VerifyOutcome, FleetError> {
        let core = self.core(node)?;
        let report =
            crate::audit::verify_stored(core.audit.store(), &core.node_key).map_err(err)?;
        let applied = &self.applied;
        let slot = self.slot_ref(node)?;
        let mut seen = Seen {
            held: slot.seen.held.clone(),
            ..Seen::default()
        };
        check(&core, applied, &mut seen, true);
        let mut held: Vec<u64> = seen.held.into_iter().collect();
        held.sort_unstable();
        Ok(VerifyOutcome {
            audit_ok: report.ok,
            audit_errors: report.problem.into_iter().collect(),
            forks_detected: seen.forks,
            held_ops: held,
        })
    }
}

impl SimFleet {
    fn slot_ref(&self, node: usize) -> Result<&Slot, FleetError> {
        self.slots
            .get(node)
            .ok_or_else(|| err(format!("no node {node}")))
    }

    /// Stops every node cleanly.
    pub async fn shutdown(&mut self) {
        for slot in &mut self.slots {
            if let Some(mut r) = slot.running.take() {
                if let Some(stop) = r.stop.take() {
                    let _ = stop.send(());
                }
                let _ = r.loop_task.await;
                r.core.fabric.shutdown().await;
                let _ = r.fabric_task.await;
            }
        }
    }
}
