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
use crate::audit::AuditLog;
use crate::audit_remote::Mirrors;
use crate::datadir::DataDir;
use crate::docs::Docs;
use crate::emergency::Emergency;
use crate::heads::FleetHeads;
use crate::sync::Replicator;

/// How often the node stores a signed checkpoint of its audit log, when it grew.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);
/// How often the node considers gossiping its state summary.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(250);
/// How often the node gossips its knowledge summary even when unchanged.
const SUMMARY_EVERY: Duration = Duration::from_secs(5);
/// How often the node gossips its own latest checkpoint, when its log grew.
/// Every synced write adds an entry on every member, so this bounds the
/// fleet's checkpoint traffic to one message per node per second.
const HEADS_ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// How often the node gossips everything it knows of the fleet's heads.
const STATE_EVERY: Duration = Duration::from_secs(30);

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
/// Gossip checks for the topics the fabric cannot read itself: state and
/// audit gossip that does not even decode is dropped, not forwarded, and
/// counts against its sender's gossip score.
pub fn validators(heads: Arc<FleetHeads>) -> Vec<(&'static str, GossipValidator)> {
    vec![
        (
            topics::STATE,
            GossipValidator::new(|d| crate::sync::StateSummary::decode(d).is_some()),
        ),
        (
            topics::AUDIT,
            GossipValidator::new(move |d| heads.check_gossip(d)),
        ),
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
        let mut checkpoint_timer = tokio::time::interval(CHECKPOINT_EVERY);
        let mut checkpointed = 0;
        let mut announce_timer = tokio::time::interval(HEADS_ANNOUNCE_EVERY);
        let mut announced = None;
        let mut state_timer = tokio::time::interval(STATE_EVERY);
        let mut summary_timer = tokio::time::interval(ANNOUNCE_EVERY);
        // The local change counter when the summary was last sent, and when.
        let mut summary_sent: Option<(u64, std::time::Instant)> = None;
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
                _ = summary_timer.tick() => {
                    // On a change made here, and every few seconds so that
                    // peers that were away (or missed a message) catch up.
                    // Changes synced from a peer are not announced at once:
                    // the writer's own summary already reached everyone, and
                    // N nodes re-announcing each write costs N^2 messages.
                    let version = docs.local_version();
                    let stale = summary_sent.as_ref().is_none_or(|(last, at)| *last != version || at.elapsed() >= SUMMARY_EVERY);
                    if stale && fabric.publish(topics::STATE, replicator.summary()).await.is_ok() {
                        summary_sent = Some((version, std::time::Instant::now()));
                    }
                }
                _ = state_timer.tick() => {
                    for chunk in heads.chunks() {
                        let _ = fabric.publish(topics::AUDIT, chunk).await;
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
                    Some(FabricEvent::Request { id, request, .. }) => {
                        fabric.respond(id, answer(audit, mirrors, &self.node_key, request)).await;
                    }
                    Some(FabricEvent::Gossip { topic, data, source: Some(peer) }) if topic == topics::STATE => {
                        replicator.on_summary(peer, &data);
                    }
                    Some(FabricEvent::Gossip { topic, data, .. }) if topic == topics::EMERGENCY => {
                        if let Some((emergency, agents)) = self.emergency.clone() {
                            let (audit, membership) = (audit.clone(), membership.clone());
                            tokio::spawn(async move {
                                emergency.receive(&data, &membership, &agents, &audit).await;
                            });
                        }
                    }
                    Some(FabricEvent::Gossip { topic, data, source }) if topic == topics::AUDIT => {
                        match heads.merge_gossip(&data) {
                            Ok(forks) => report_forks(audit, forks).await,
                            Err(e) => debug!(?source, error = %e, "ignoring an invalid audit-heads message"),
                        }
                    }
                    Some(FabricEvent::PeerConnected(_)) => {
                        // Anti-entropy: a new neighbour hears our state summary
                        // and our own audit head soon instead of within five
                        // or thirty seconds. Both go to the whole fleet, so
                        // a burst of connections is paced by the timers:
                        // the summary at most once a second, the head at
                        // most once per HEADS_ANNOUNCE_EVERY.
                        if let Some((_, at)) = summary_sent.as_mut() {
                            if at.elapsed() >= Duration::from_secs(1) {
                                summary_sent = None;
                            }
                        }
                        announced = None;
                    }
                    Some(_) => {}
                    None => { warn!("the fabric stopped on its own"); break; }
                }
            }
        }
    }
}
