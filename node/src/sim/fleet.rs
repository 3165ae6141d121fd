//! Real nodes on the simulated network, for `osmoda sim`: each node is
//! assembled by the same builder as `osmoda run` (fabric with the hybrid
//! handshake, audit log, documents, audit heads, replication, agents and
//! the emergency register, the same event loop) with its own identity,
//! certificate and store in a folder of its own; only the transport is the
//! simulation's, agents run without cgroups, and no socket is bound. The
//! workload goes through the service layer, as an operator's would.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use osmoda_crdt_state::{Actor, Outcome};
use osmoda_fabric::proto::{hex, FleetCert, FleetRoot, Role};
use osmoda_fabric::FabricConfig;
use osmoda_simulation::{
    Attack, AttackOutcome, Fleet, FleetError, HostId, Observation, OpKind, Operation, SimNetwork,
    StartSpec, VerifyOutcome,
};
use osmoda_store::Store;

use crate::api::{NewEntry, NewRoutine};
use crate::datadir::FleetInfo;
use crate::runtime::builder::Running;
use crate::service::{Caller, Node};
use crate::sim::rogue::{Mark, Rogue, Victim};
use crate::sim::SimHost;

const PORT: u16 = 4001;
/// Peers a simulated node dials from discovery.
const SIM_DIAL_TARGET: usize = 12;
/// Links a simulated node accepts or opens at most; it trims back to 30
/// (three quarters), so that newcomers always find room.
const SIM_MAX_LINKS: u32 = 40;

fn err(e: impl std::fmt::Display) -> FleetError {
    FleetError::new(e)
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

/// A knowledge op's entry as it was written: a node holds the op only
/// while its entry has this title and body.
struct Written {
    op: u64,
    id: String,
    title: String,
    body: String,
}

/// Which node holds what, for the ops applied so far.
#[derive(Default)]
struct Applied {
    knowledge: Vec<Written>,
    routines: Vec<(u64, String)>,
    /// (op, the log's owner, the entry's sequence number)
    audit: Vec<(u64, [u8; 32], u64)>,
    broadcasts: Vec<(u64, String)>,
    /// What rogue attempts would leave on a node that took them.
    rogue: Vec<Mark>,
    /// Rogue attempts so far, in all and per move.
    rogue_seq: u64,
    rogue_nth: std::collections::BTreeMap<Attack, u64>,
}

/// Entries of other nodes a rogue looks through for one it holds.
const VICTIM_SEARCH: usize = 64;

pub struct SimFleet {
    net: SimNetwork,
    root: FleetRoot,
    dir: PathBuf,
    slots: Vec<Slot>,
    applied: Applied,
    /// Nodes certified as members; every other node is an admin, so that
    /// any node of a workload may write routines (admins' alone).
    members: std::collections::BTreeSet<usize>,
}

impl SimFleet {
    /// The same fleet with `nodes` certified as members rather than
    /// admins: a rogue must be a member, or its edits of others' entries
    /// and its routines would be an admin's right.
    pub fn with_members(mut self, nodes: impl IntoIterator<Item = usize>) -> Self {
        self.members.extend(nodes);
        self
    }

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
            members: Default::default(),
        }
    }

    fn slot(&mut self, node: usize) -> Result<&mut Slot, FleetError> {
        self.slots
            .get_mut(node)
            .ok_or_else(|| err(format!("no node {node}")))
    }

    fn node(&self, node: usize) -> Result<Arc<Node>, FleetError> {
        self.slots
            .get(node)
            .and_then(|s| s.running.as_ref())
            .map(|r| r.node.clone())
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
fn check(core: &Node, applied: &Applied, seen: &mut Seen, full: bool) {
    let docs_version = core.docs.version();
    if full || seen.docs_version != Some(docs_version) {
        seen.docs_version = Some(docs_version);
        let mut h = blake3::Hasher::new();
        h.update(&core.docs.summary().encode());
        for digest in core.docs.singles_digests() {
            h.update(&digest);
        }
        seen.state_digest
            .copy_from_slice(&h.finalize().as_bytes()[..16]);
        for w in &applied.knowledge {
            if !seen.held.contains(&w.op)
                && matches!(core.docs.get(&w.id), Ok(Some(e)) if e.title == w.title && e.body == w.body)
            {
                seen.held.insert(w.op);
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
                    if self.members.contains(&node) {
                        Role::Member
                    } else {
                        Role::Admin
                    },
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
        let bootstrap = spec
            .bootstrap
            .iter()
            .map(|j| self.net.host_addr(Self::host(*j), PORT))
            .collect::<Result<Vec<_>, _>>()?;
        let fleet = FleetInfo {
            name: "sim".into(),
            id: hex(&root_key),
        };
        let at = SimHost {
            net: &self.net,
            host: Self::host(node),
            port: PORT,
        };
        let mut builder = at.builder(store, identity, cert, fleet, &folder)?;
        builder.fabric = FabricConfig {
            bootstrap,
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
            ..builder.fabric
        };
        let running = builder.start().await.map_err(err)?;
        let slot = self.slot(node)?;
        slot.seen = Seen::default();
        slot.running = Some(running);
        Ok(())
    }

    async fn crash(&mut self, node: usize) -> Result<(), FleetError> {
        let slot = self.slot(node)?;
        if let Some(running) = slot.running.take() {
            running.abort().await;
        }
        Ok(())
    }

    async fn apply(&mut self, node: usize, op: &Operation) -> Result<(), FleetError> {
        let core = self.node(node)?;
        match op.kind {
            OpKind::KnowledgePut => {
                let new = NewEntry {
                    title: op.key(),
                    body: op.body(),
                    tags: Vec::new(),
                };
                let id = core
                    .knowledge_put(Caller::Operator, new)
                    .await
                    .map_err(err)?
                    .id;
                self.applied.knowledge.push(Written {
                    op: op.id,
                    id,
                    title: op.key(),
                    body: op.body(),
                });
            }
            OpKind::RoutineAdd => {
                let new = NewRoutine {
                    name: op.key(),
                    schedule: "every 5m".into(),
                    target: "all".into(),
                    command: "true".into(),
                    args: Vec::new(),
                    timeout_secs: 60,
                    enabled: true,
                };
                let id = core
                    .routine_add(Caller::Operator, new)
                    .await
                    .map_err(err)?
                    .id;
                self.applied.routines.push((op.id, id));
            }
            OpKind::AuditAppend => {
                // Not an operation of the service: a bare entry, to measure
                // how the audit heads spread.
                let seq = core
                    .audit
                    .record(Actor::Operator, "sim.append", &op.key(), Outcome::Ok, "")
                    .await
                    .map_err(err)?;
                self.applied
                    .audit
                    .push((op.id, core.signer.cert().node, seq));
            }
            OpKind::Broadcast => {
                // The sender holds its own broadcast from the start.
                core.broadcast(Caller::Operator, op.body())
                    .await
                    .map_err(err)?;
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
        let core = slot.running.as_ref()?.node.clone();
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
        let core = self.node(node)?;
        let report =
            crate::state::audit_log::verify_stored(core.audit.store(), &core.signer.cert().node)
                .map_err(err)?;
        let applied = &self.applied;
        let slot = self.slot_ref(node)?;
        // Documents are looked at afresh: an entry seen earlier may have
        // been deleted or changed since. Audit heads only grow, and the
        // inbox forgets old broadcasts, so those sightings are kept.
        let documents: HashSet<u64> = applied
            .knowledge
            .iter()
            .map(|w| w.op)
            .chain(applied.routines.iter().map(|(op, _)| *op))
            .collect();
        let mut seen = Seen {
            held: slot
                .seen
                .held
                .iter()
                .copied()
                .filter(|op| !documents.contains(op))
                .collect(),
            ..Seen::default()
        };
        check(&core, applied, &mut seen, true);
        let rogue_held = rogue_held(&core, &applied.rogue);
        let mut held: Vec<u64> = seen.held.into_iter().collect();
        held.sort_unstable();
        Ok(VerifyOutcome {
            audit_ok: report.ok,
            audit_errors: report.problem.into_iter().collect(),
            forks_detected: seen.forks,
            held_ops: held,
            rogue_held,
        })
    }

    async fn attack(&mut self, node: usize, attack: Attack) -> Result<AttackOutcome, FleetError> {
        let rogue = Rogue::new(self.node(node)?);
        let victim = match attack {
            Attack::EditForeign | Attack::DeleteForeign | Attack::ForgeActor => {
                match self.victim(node)? {
                    Some(v) => Some(v),
                    None => return Ok(AttackOutcome::NoTarget),
                }
            }
            _ => None,
        };
        let applied = &mut self.applied;
        applied.rogue_seq += 1;
        let seq = applied.rogue_seq;
        let nth = applied.rogue_nth.entry(attack).or_insert(0);
        *nth += 1;
        let nth = *nth;
        // Noted before it is sent: whatever reaches a node is looked for.
        applied.rogue.extend(rogue.mark(attack, seq));
        rogue.attack(attack, victim.as_ref(), seq, nth).await
    }
}

/// What of the rogue attempts `marks` stand for this node holds: an
/// unsealed entry, a routine it added, or a lockdown (its junk included a
/// LOCKDOWN signed by a member).
fn rogue_held(core: &Node, marks: &[Mark]) -> Vec<String> {
    let mut out = Vec::new();
    let routines: HashSet<String> = core.docs.routines().into_iter().map(|r| r.name).collect();
    for mark in marks {
        match mark {
            Mark::Entry(id) if matches!(core.docs.get(id), Ok(Some(_))) => {
                out.push(format!("the rogue's unsealed entry {id}"))
            }
            Mark::Routine(name) if routines.contains(name) => {
                out.push(format!("the rogue's routine {name}"))
            }
            _ => {}
        }
    }
    if core.emergency.is_locked() {
        out.push("a lockdown (no admin issued one)".into());
    }
    out
}

impl SimFleet {
    fn slot_ref(&self, node: usize) -> Result<&Slot, FleetError> {
        self.slots
            .get(node)
            .ok_or_else(|| err(format!("no node {node}")))
    }

    /// The newest entry of another node that the rogue `node`'s replica
    /// holds: what it edits, deletes or forges a change to.
    fn victim(&self, node: usize) -> Result<Option<Victim>, FleetError> {
        let core = self.node(node)?;
        let me = core.fabric.local_peer_id().to_string();
        Ok(self
            .applied
            .knowledge
            .iter()
            .rev()
            .take(VICTIM_SEARCH)
            .find_map(|w| match core.docs.get(&w.id) {
                Ok(Some(e)) if e.author_node != me => Some(Victim {
                    id: w.id.clone(),
                    author: e.author_node,
                }),
                _ => None,
            }))
    }

    /// Stops every node cleanly.
    pub async fn shutdown(&mut self) {
        for slot in &mut self.slots {
            if let Some(running) = slot.running.take() {
                running.shutdown().await;
            }
        }
    }
}
