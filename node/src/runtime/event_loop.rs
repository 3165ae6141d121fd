//! The node's event loop, one per node (`osmoda run` and every simulated
//! node): audit checkpoints announced and stored, notices of change sent to
//! neighbours, peers' requests answered. Gossip does not pass through it:
//! each topic of the table in `topics.rs` has its own tasks, started here.
//!
//! Nothing slow runs on the loop itself: fsyncs (checkpoints, audit
//! entries), signature batches (audit heads from anti-entropy) and sync
//! rounds go to tasks, each kind bounded.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use osmoda_crdt_state::{Actor, NodeKey};
use osmoda_fabric::behaviour::{DirectRequest, DirectResponse, MAX_AUDIT_RECORDS_PER_REQUEST};
use osmoda_fabric::proto::hex;
use osmoda_fabric::FabricEvent;
use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, error, warn};

use crate::replication::{anti_entropy, push};
use crate::runtime::topics::{self, Registered};
use crate::service::Node;

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
/// Peers' anti-entropy offers and audit-range requests answered at once;
/// each may check a batch of signatures or read the store.
const MAX_ANSWERS: usize = 8;

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

/// Answers a peer's request for a range of an audit log: this node's own,
/// or a verified copy it keeps of another node's.
fn answer_audit_range(node: &Node, request: DirectRequest) -> DirectResponse {
    let refuse = |reason: String| DirectResponse::Refused { reason };
    let DirectRequest::AuditRange {
        node: owner,
        start,
        count,
    } = request
    else {
        return refuse("not answered by the node".into());
    };
    let count = count.min(MAX_AUDIT_RECORDS_PER_REQUEST);
    let served = if owner == hex(&node.signer.cert.node) {
        node.audit.serve_range(start, count).map(Some)
    } else {
        match osmoda_fabric::proto::parse_hex::<32>(&owner) {
            Some(key) => node.mirrors.serve_range(&key, start, count),
            None => return refuse("not a node key".into()),
        }
    };
    match served {
        Ok(Some((cp, records))) => DirectResponse::AuditRange {
            checkpoint: hex(&cp.encode()),
            records: records.iter().map(|r| hex(r)).collect(),
        },
        Ok(None) => refuse("this node holds no copy of that log".into()),
        Err(e) => refuse(format!("cannot read the audit log: {e}")),
    }
}

/// Logs and audits fork evidence that is new here, in the background.
pub(crate) fn report_forks(node: &Node, nodes: Vec<NodeKey>) {
    for key in nodes {
        let id = osmoda_fabric::peer_id_of(&key)
            .map(|p| p.to_string())
            .unwrap_or_default();
        error!(node = %id, "fork evidence: this node signed two audit logs that cannot both be true");
        node.audit_later(
            Actor::Node,
            "audit.fork",
            id,
            "fork evidence received or found".into(),
        );
    }
}

/// Runs until `stop` completes or the fabric ends.
pub async fn run(
    node: Arc<Node>,
    events: &mut mpsc::Receiver<FabricEvent>,
    topics: Registered,
    stop: impl Future<Output = ()>,
) {
    let fabric = node.fabric.clone();
    tokio::pin!(stop);
    let mut checkpoint_timer = jittered(CHECKPOINT_EVERY);
    let checkpointing = Arc::new(AtomicBool::new(false));
    let mut checkpointed = 0;
    let mut announce_timer = jittered(HEADS_ANNOUNCE_EVERY);
    let mut announced = None;
    let mut notify_timer = jittered(NOTIFY_EVERY);
    // The documents' unheard-change counter when neighbours were last told.
    let mut notified = node.docs.unheard_version();
    if let Some(outbox) = node.docs.take_outbox() {
        tokio::spawn(push::publish(
            fabric.clone(),
            Arc::downgrade(&node.docs),
            outbox,
        ));
    }
    topics.run(&node);
    let answers = Arc::new(Semaphore::new(MAX_ANSWERS));
    let mut anti_entropy_timer = jittered(anti_entropy::EVERY);
    let states = anti_entropy::States {
        replicator: node.replicator.clone(),
        heads: node.heads.clone(),
        pulling: Default::default(),
    };
    let spawn_exchange = |peer: libp2p::PeerId| {
        let (states, fabric, node) = (states.clone(), fabric.clone(), node.clone());
        tokio::spawn(async move {
            match states.exchange(&fabric, peer, true).await {
                Ok(forks) => report_forks(&node, forks),
                Err(error) => debug!(%peer, %error, "anti-entropy exchange failed"),
            }
        });
    };
    let mut neighbours: Vec<libp2p::PeerId> = Vec::new();
    loop {
        tokio::select! {
            _ = announce_timer.tick() => {
                let size = node.audit.len();
                if announced != Some(size) {
                    match node.heads.insert(node.audit.signed_checkpoint()) {
                        Ok((message, forks)) => {
                            report_forks(&node, forks);
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
                let version = node.docs.unheard_version();
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
                    spawn_exchange(neighbours[rand::random::<usize>() % neighbours.len()]);
                }
            }
            _ = checkpoint_timer.tick() => {
                let size = node.audit.len();
                if size != checkpointed && !checkpointing.swap(true, Ordering::AcqRel) {
                    checkpointed = size;
                    let (node, checkpointing) = (node.clone(), checkpointing.clone());
                    tokio::spawn(async move {
                        if let Err(e) = node.audit.checkpoint().await {
                            warn!(error = %e, "cannot sign an audit checkpoint");
                        }
                        checkpointing.store(false, Ordering::Release);
                    });
                }
            }
            _ = &mut stop => break,
            event = events.recv() => match event {
                Some(FabricEvent::Revoked { revocation, from }) => {
                    tracing::info!(node = %hex(&revocation.node), "revocation recorded");
                    let node = node.clone();
                    tokio::spawn(async move { node.on_revoked(&revocation, from).await });
                }
                Some(FabricEvent::Request { id, peer, request: DirectRequest::DocSync { messages, start } }) => {
                    // Answered off the loop: a round may take a while.
                    let (replicator, fabric) = (node.replicator.clone(), fabric.clone());
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
                Some(FabricEvent::Request { id, peer, request }) => {
                    let Ok(permit) = answers.clone().try_acquire_owned() else {
                        fabric.respond(id, DirectResponse::Refused { reason: "busy".into() }).await;
                        continue;
                    };
                    let (node, states, fabric) = (node.clone(), states.clone(), fabric.clone());
                    tokio::spawn(async move {
                        let worker = node.clone();
                        let answered = tokio::task::spawn_blocking(move || match request {
                            DirectRequest::AntiEntropy(offer) => states.answer(peer, &offer),
                            other => (answer_audit_range(&worker, other), Vec::new()),
                        })
                        .await;
                        drop(permit);
                        let (response, forks) = answered.unwrap_or_else(|e| {
                            (DirectResponse::Refused { reason: format!("failed: {e}") }, Vec::new())
                        });
                        fabric.respond(id, response).await;
                        report_forks(&node, forks);
                    });
                }
                Some(FabricEvent::PeerConnected(peer)) => {
                    // A new neighbour may have been away: compare now,
                    // with it alone, instead of telling the whole fleet.
                    if !neighbours.contains(&peer) && neighbours.len() < MAX_NEIGHBOURS {
                        neighbours.push(peer);
                    }
                    spawn_exchange(peer);
                }
                Some(FabricEvent::PeerDisconnected(peer)) => {
                    neighbours.retain(|p| *p != peer);
                }
                None => { warn!("the fabric stopped on its own"); break; }
            }
        }
    }
}
