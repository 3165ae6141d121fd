//! The node's event loop, one per node (`osmoda run` and every simulated
//! node): audit checkpoints announced and stored, notices of change sent to
//! neighbours, peers' requests answered, peers' addresses remembered. Gossip does not pass through it:
//! each topic of the table in `topics.rs` has its own tasks, started here.
//!
//! Nothing slow runs on the loop itself: fsyncs (checkpoints, audit
//! entries), signature batches (audit heads from anti-entropy) and sync
//! rounds go to tasks, each kind bounded.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use osmoda_crdt_state::{Actor, NodeKey};
use osmoda_fabric::proto::hex;
use osmoda_fabric::{DirectResponse, FabricEvent};
use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, error, info, warn};

use crate::replication::wire::{self, Request, Response, MAX_AUDIT_RECORDS_PER_REQUEST};
use crate::replication::{anti_entropy, push};
use crate::runtime::topics::{self, Registered};
use crate::service::Node;
use crate::state::address_book::AddressBook;
use crate::state::refusals::SUMMARY_EVERY;

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
fn answer_audit_range(
    node: &Node,
    owner: &NodeKey,
    start: u64,
    count: u32,
    proofs: bool,
) -> Result<Response, String> {
    let count = count.min(MAX_AUDIT_RECORDS_PER_REQUEST);
    let served = if *owner == node.signer.cert().node {
        node.audit.serve_range(start, count, proofs).map(Some)
    } else {
        node.mirrors.serve_range(owner, start, count, proofs)
    };
    match served {
        Ok(Some(served)) => Ok(Response::AuditRange {
            checkpoint: served.checkpoint,
            records: served.records,
            proofs: served.proofs,
        }),
        Ok(None) => Err("this node holds no copy of that log".into()),
        Err(e) => Err(format!("cannot read the audit log: {e}")),
    }
}

/// What answering a request takes on the blocking pool: the answer, and
/// nodes whose fork evidence is new here.
type Blocking = Box<dyn FnOnce() -> (Result<Response, String>, Vec<NodeKey>) + Send>;

/// Answers a peer's request on one of the node's protocols (`wire.rs`),
/// off the loop: decoding a large body, a sync round, a batch of
/// signatures or a read of the store all take a while.
async fn answer(
    node: Arc<Node>,
    states: anti_entropy::States,
    answers: Arc<Semaphore>,
    (id, peer, protocol, body): (u64, PeerId, u16, Vec<u8>),
) {
    let fabric = node.fabric.clone();
    let request = match Request::decode(protocol, &body) {
        Ok(request) => request,
        Err(error) => {
            let reason = node.replicator.malformed(peer, error).await;
            fabric.respond(id, DirectResponse::Refused { reason }).await;
            return;
        }
    };
    drop(body);
    let blocking: Blocking = match request {
        Request::DocSync { messages, start } => {
            let answer = node.replicator.answer(peer, messages, start).await;
            fabric.respond(id, wire::answer(answer)).await;
            return;
        }
        Request::Renewal => {
            let answer = node.renew_for(peer).await;
            fabric.respond(id, wire::answer(answer)).await;
            return;
        }
        Request::Task(body) => {
            let answer = node.task_receive(peer, &body).await;
            fabric
                .respond(id, wire::answer(answer.map(Response::Task)))
                .await;
            return;
        }
        Request::AntiEntropy(notice) if notice.is_notice() => {
            fabric.respond(id, wire::answer(Ok(Response::Ack))).await;
            states.pull(&fabric, peer, &notice).await;
            return;
        }
        Request::AntiEntropy(offer) => Box::new(move || {
            let (response, forks) = states.answer(peer, &offer);
            (Ok(response), forks)
        }),
        Request::AuditRange {
            node: owner,
            start,
            count,
            proofs,
        } => {
            let worker = node.clone();
            Box::new(move || {
                let answer = answer_audit_range(&worker, &owner, start, count, proofs);
                (answer, Vec::new())
            })
        }
    };
    let Ok(permit) = answers.try_acquire_owned() else {
        let busy = DirectResponse::Refused {
            reason: "busy".into(),
        };
        fabric.respond(id, busy).await;
        return;
    };
    let answered = tokio::task::spawn_blocking(blocking).await;
    drop(permit);
    let (answer, forks) = answered.unwrap_or_else(|e| (Err(format!("failed: {e}")), Vec::new()));
    fabric.respond(id, wire::answer(answer)).await;
    report_forks(&node, forks);
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

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Keeps where a peer listens in the address book; the write is awaited
/// off the loop.
fn remember(node: &Node, book: &AddressBook, peer: PeerId, listen_addrs: &[libp2p::Multiaddr]) {
    let new = book.get(&peer).is_none();
    let name = node.name_of(&peer).unwrap_or_default();
    match book.learn(&peer, name, listen_addrs, now_ms()) {
        Ok(Some(write)) => {
            tokio::spawn(async move {
                match write.await {
                    Ok(_) if new => info!(%peer, "a new peer is in the address book"),
                    Ok(_) => {}
                    Err(e) => warn!(%peer, error = %e, "cannot keep a peer's addresses"),
                }
            });
        }
        Ok(None) => {}
        Err(e) => warn!(%peer, error = %e, "cannot keep a peer's addresses"),
    }
}

/// Runs until `stop` completes or the fabric ends.
pub async fn run(
    node: Arc<Node>,
    events: &mut mpsc::Receiver<FabricEvent>,
    topics: Registered,
    book: Arc<AddressBook>,
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
    let mut refusals_timer = jittered(SUMMARY_EVERY);
    let states = anti_entropy::States {
        replicator: node.replicator.clone(),
        heads: node.heads.clone(),
        emergency: Arc::new(node.clone()),
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
            _ = refusals_timer.tick() => node.audit_refusals_due(),
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
                Some(FabricEvent::Request { id, peer, protocol, body }) => {
                    let (node, states) = (node.clone(), states.clone());
                    tokio::spawn(answer(node, states, answers.clone(), (id, peer, protocol, body)));
                }
                Some(FabricEvent::PeerIdentified { peer, listen_addrs }) => {
                    remember(&node, &book, peer, &listen_addrs);
                }
                Some(FabricEvent::PeerConnected(peer)) => {
                    book.seen(&peer, now_ms());
                    // A new neighbour may have been away: compare now,
                    // with it alone, instead of telling the whole fleet.
                    if !neighbours.contains(&peer) && neighbours.len() < MAX_NEIGHBOURS {
                        neighbours.push(peer);
                    }
                    spawn_exchange(peer);
                    // A newcomer learns this node's agents without waiting
                    // for the next round of advertisements.
                    node.cards_changed();
                    node.tasks_kick.notify_one();
                }
                Some(FabricEvent::PeerDisconnected(peer)) => {
                    book.seen(&peer, now_ms());
                    neighbours.retain(|p| *p != peer);
                }
                None => { warn!("the fabric stopped on its own"); break; }
            }
        }
    }
}
