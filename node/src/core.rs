//! The node's event loop, shared by `osmoda run` and the simulation: audit
//! checkpoints announced and stored, state summaries gossiped, peers'
//! requests answered, gossip merged, fleet emergency commands received.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use osmoda_crdt_state::{Actor, Outcome};
use osmoda_fabric::behaviour::{DirectRequest, DirectResponse, MAX_AUDIT_RECORDS_PER_REQUEST};
use osmoda_fabric::proto::hex;
use osmoda_fabric::{topics, FabricEvent, FabricHandle, GossipValidator, Membership};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::agents::Agents;
use crate::anti_entropy;
use crate::audit::AuditLog;
use crate::audit_remote::Mirrors;
use crate::datadir::DataDir;
use crate::docs::Docs;
use crate::emergency::Emergency;
use crate::heads::FleetHeads;
use crate::push;
use crate::sync::Replicator;

/// How often the node stores a signed checkpoint of its audit log, when it grew.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);
/// How often the node looks for changes that its neighbours did not get by
/// push (synced ones, or writes that could not be pushed) to tell them of.
const NOTIFY_EVERY: Duration = Duration::from_millis(100);
/// Neighbours told of a change, chosen at random each time. Each node that
/// pulls tells as many again, so a change reaches all but a fraction of
/// about e^-6 of the fleet by notices alone (push gossip's rule); periodic
/// anti-entropy finds the rest. Telling every link cost a request per link
/// per change, on up to 32 links.
const NOTIFY_FANOUT: usize = 6;
/// How often the node gossips its own latest checkpoint, when its log grew.
/// Every synced write adds an entry on every member, so every member
/// announces: this bounds the fleet's checkpoint gossip to N/5 messages a
/// second. Anti-entropy repairs what gossip misses.
const HEADS_ANNOUNCE_EVERY: Duration = Duration::from_secs(5);

/// Neighbours remembered for anti-entropy; more than the fabric keeps.
const MAX_NEIGHBOURS: usize = 1024;

/// A timer whose first tick falls at a random point of its first period.
/// Nodes started together (a fleet booted at once, or the simulation)
/// would otherwise all send their periodic traffic in the same instant:
/// in the simulation, ci-20's fleet sent 980 KB in one 50 ms window, 24
/// times its average.
fn jittered(period: Duration) -> tokio::time::Interval {
    let phase = period.mul_f64(rand::random::<f64>());
    let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer
}

/// Answers a peer's request that the fabric handed to the node.
fn answer(
    audit: &AuditLog,
    mirrors: &Mirrors,
    own: &[u8; 32],
    request: DirectRequest,
) -> DirectResponse {
    let refuse = |reason: String| DirectResponse::Refused { reason };
    let DirectRequest::AuditRange { node, start, count } = request else {
        return refuse("not answered by the node".into());
    };
    let count = count.min(MAX_AUDIT_RECORDS_PER_REQUEST);
    let served = if node == hex(own) {
        audit.serve_range(start, count).map(Some)
    } else {
        match osmoda_fabric::proto::parse_hex::<32>(&node) {
            Some(key) => mirrors.serve_range(&key, start, count),
            None => return refuse("not a node key".into()),
        }
    };
    match served {
        Ok(Some((cp, records))) => DirectResponse::AuditRange {
            checkpoint: hex(&cp.encode()),
            records: records.iter().map(|r| hex(r)).collect(),
        },
        Ok(None) => refuse("this node holds no copy of that log".into()),
        Err(e) => refuse(format!("cannot read the audit log: {e:#}")),
    }
}

/// Logs and audits fork evidence that is new here.
async fn report_forks(audit: &AuditLog, nodes: Vec<osmoda_crdt_state::NodeKey>) {
    for node in nodes {
        let id = osmoda_fabric::peer_id_of(&node)
            .map(|p| p.to_string())
            .unwrap_or_default();
        error!(node = %id, "fork evidence: this node signed two audit logs that cannot both be true");
        if let Err(e) = audit
            .record(
                Actor::Node,
                "audit.fork",
                &id,
                Outcome::Ok,
                "fork evidence received or found",
            )
            .await
        {
            warn!(error = %e, "cannot audit fork evidence");
        }
    }
}
/// Gossip checks for the topics the fabric cannot read itself: audit heads
/// and document pushes that do not even decode are dropped, not forwarded,
/// and count against their sender's gossip score.
pub fn validators(heads: Arc<FleetHeads>) -> Vec<(&'static str, GossipValidator)> {
    vec![
        (
            topics::AUDIT,
            GossipValidator::new(move |d| heads.check_gossip(d)),
        ),
        (topics::DOCS, push::validator()),
    ]
}

/// What the loop works on.
pub struct Core {
    pub fabric: FabricHandle,
    pub membership: Arc<Membership>,
    pub audit: Arc<AuditLog>,
    pub docs: Arc<Docs>,
    pub heads: Arc<FleetHeads>,
    pub mirrors: Mirrors,
    pub replicator: Arc<Replicator>,
    pub node_key: [u8; 32],
    /// Where revocations are kept (none in the simulation).
    pub data: Option<DataDir>,
    /// Agents to act on for fleet emergency commands (none in the simulation).
    pub emergency: Option<(Arc<Emergency>, Arc<Agents>)>,
}

impl Core {
    /// Compares state with `peer` off the loop (it takes a round trip or two).
    fn spawn_exchange(&self, states: &anti_entropy::States, peer: libp2p::PeerId, heads: bool) {
        let (states, fabric, audit) = (states.clone(), self.fabric.clone(), self.audit.clone());
        tokio::spawn(async move {
            match states.exchange(&fabric, peer, heads).await {
                Ok(forks) => report_forks(&audit, forks).await,
                Err(error) => debug!(%peer, %error, "anti-entropy exchange failed"),
            }
        });
    }

    /// Runs until `stop` completes or the fabric ends.
    pub async fn run(
        &self,
        events: &mut mpsc::Receiver<FabricEvent>,
        stop: impl Future<Output = ()>,
    ) {
        let (fabric, audit, heads, membership) =
            (&self.fabric, &self.audit, &self.heads, &self.membership);
        let (docs, mirrors, replicator) = (&self.docs, &self.mirrors, &self.replicator);
        tokio::pin!(stop);
        let mut checkpoint_timer = jittered(CHECKPOINT_EVERY);
        let mut checkpointed = 0;
        let mut announce_timer = jittered(HEADS_ANNOUNCE_EVERY);
        let mut announced = None;
        let mut notify_timer = jittered(NOTIFY_EVERY);
        // The documents' unheard-change counter when neighbours were last told.
        let mut notified = docs.unheard_version();
        if let Some(outbox) = docs.take_outbox() {
            tokio::spawn(push::publish(fabric.clone(), Arc::downgrade(docs), outbox));
        }
        let mut anti_entropy_timer = jittered(anti_entropy::EVERY);
        let states = anti_entropy::States {
            replicator: replicator.clone(),
            heads: heads.clone(),
            pulling: Default::default(),
        };
        let mut neighbours: Vec<libp2p::PeerId> = Vec::new();
        loop {
            tokio::select! {
                _ = announce_timer.tick() => {
                    let size = audit.len();
                    if announced != Some(size) {
                        match heads.insert(audit.signed_checkpoint()) {
                            Ok((message, forks)) => {
                                report_forks(audit, forks).await;
                                // Announced only once someone heard it.
                                if fabric.publish(topics::AUDIT, message).await.is_ok() {
                                    announced = Some(size);
                                }
                            }
                            Err(e) => warn!(error = %e, "own audit checkpoint refused"),
                        }
                    }
                }
                _ = notify_timer.tick() => {
                    let version = docs.unheard_version();
                    if version != notified {
                        notified = version;
                        use rand::seq::SliceRandom;
                        let told = neighbours.choose_multiple(&mut rand::thread_rng(), NOTIFY_FANOUT);
                        for peer in told {
                            let (states, fabric, peer) = (states.clone(), fabric.clone(), *peer);
                            tokio::spawn(async move { states.notify(&fabric, peer).await });
                        }
                    }
                }
                _ = anti_entropy_timer.tick() => {
                    if !neighbours.is_empty() {
                        let peer = neighbours[rand::random::<usize>() % neighbours.len()];
                        self.spawn_exchange(&states, peer, true);
                    }
                }
                _ = checkpoint_timer.tick() => {
                    if audit.len() != checkpointed {
                        match audit.checkpoint() {
                            Ok(cp) => checkpointed = cp.size,
                            Err(e) => warn!(error = %e, "cannot sign an audit checkpoint"),
                        }
                    }
                }
                _ = &mut stop => break,
                event = events.recv() => match event {
                    Some(FabricEvent::Revoked { revocation, from }) => {
                        info!(node = %hex(&revocation.node), "revocation recorded");
                        if let Some(data) = &self.data {
                            if let Err(e) = data.write_revocations(&membership.revocations()) {
                                warn!(error = %e, "cannot store revocations");
                            }
                        }
                        // Revocations made here are audited by the API handler.
                        if let Some(peer) = from {
                            let actor = osmoda_fabric::node_key_of(&peer).map(Actor::Peer).unwrap_or(Actor::Node);
                            let target = osmoda_fabric::peer_id_of(&revocation.node).map(|p| p.to_string()).unwrap_or_default();
                            if let Err(e) = audit.record(actor, "fleet.revocation", &target, Outcome::Ok, "received from a peer").await {
                                warn!(error = %e, "cannot audit a revocation");
                            }
                        }
                    }
                    Some(FabricEvent::Request { id, peer, request: DirectRequest::DocSync { messages, start } }) => {
                        // Answered off the loop: a round may take a while.
                        let (replicator, fabric) = (replicator.clone(), fabric.clone());
                        tokio::spawn(async move {
                            let response = replicator.answer(peer, messages, start).await;
                            fabric.respond(id, response).await;
                        });
                    }
                    Some(FabricEvent::Request { id, peer, request: DirectRequest::AntiEntropy(notice) }) if notice.summary.is_empty() => {
                        fabric.respond(id, DirectResponse::Ack).await;
                        let (states, fabric) = (states.clone(), fabric.clone());
                        tokio::spawn(async move { states.pull(&fabric, peer, &notice).await });
                    }
                    Some(FabricEvent::Request { id, peer, request: DirectRequest::AntiEntropy(offer) }) => {
                        let (answer, forks) = states.answer(peer, &offer);
                        fabric.respond(id, answer).await;
                        report_forks(audit, forks).await;
                    }
                    Some(FabricEvent::Request { id, request, .. }) => {
                        fabric.respond(id, answer(audit, mirrors, &self.node_key, request)).await;
                    }
                    Some(FabricEvent::Gossip { topic, data, .. }) if topic == topics::EMERGENCY => {
                        if let Some((emergency, agents)) = self.emergency.clone() {
                            let (audit, membership) = (audit.clone(), membership.clone());
                            tokio::spawn(async move {
                                emergency.receive(&data, &membership, &agents, &audit).await;
                            });
                        }
                    }
                    Some(FabricEvent::Gossip { topic, data, source }) if topic == topics::DOCS => {
                        // Applied in arrival order, on the loop: a spawned
                        // task could apply a change before the one it
                        // depends on, and leave it to sync.
                        push::receive(docs, audit, source, &data);
                    }
                    Some(FabricEvent::Gossip { topic, data, source }) if topic == topics::AUDIT => {
                        match heads.merge_gossip(&data) {
                            Ok(forks) => report_forks(audit, forks).await,
                            Err(e) => debug!(?source, error = %e, "ignoring an invalid audit-heads message"),
                        }
                    }
                    Some(FabricEvent::PeerConnected(peer)) => {
                        // A new neighbour may have been away: compare now,
                        // with it alone, instead of telling the whole fleet.
                        if !neighbours.contains(&peer) && neighbours.len() < MAX_NEIGHBOURS {
                            neighbours.push(peer);
                        }
                        self.spawn_exchange(&states, peer, true);
                    }
                    Some(FabricEvent::PeerDisconnected(peer)) => {
                        neighbours.retain(|p| *p != peer);
                    }
                    Some(_) => {}
                    None => { warn!("the fabric stopped on its own"); break; }
                }
            }
        }
    }
}
