//! The node's gossip topics, in one table ([`table`]): each topic's name,
//! the check its messages must pass before gossipsub forwards them, and
//! what the node does with those that pass. Adding a topic is one entry.
//!
//! Checks run off both loops: the fabric hands each message to its
//! topic's queue ([`register`]) and holds it unforwarded; one task per
//! topic checks up to `concurrency` messages at once (on the blocking pool
//! when the check verifies signatures), reports each verdict to the
//! fabric in arrival order, and passes valid messages, still in arrival
//! order, to a second task that runs the handler. A full queue, a verdict
//! later than `osmoda_fabric::topics::VALIDATION_TIMEOUT` or a full
//! backlog drops the message and the fabric counts it; what is lost this
//! way anti-entropy repairs.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::StreamExt;
use libp2p::PeerId;
use osmoda_crdt_state::AuditHeads;
use osmoda_fabric::{GossipMessage, TopicSpec, Validator, Verdict};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::replication::push::{self, Push};
use crate::runtime::event_loop::report_forks;
use crate::service::{Node, Via};

/// Signed audit-log checkpoints (the fleet's audit heads).
pub const AUDIT: &str = "osmoda/audit/1";
/// STOP, FREEZE, RESUME, LOCKDOWN and UNLOCK, signed by an admin.
pub const EMERGENCY: &str = "osmoda/emergency/1";
/// One local write's document change, pushed to every replica at once.
/// Whatever a push misses travels between neighbours (anti-entropy and
/// sync over direct requests).
pub const DOCS: &str = "osmoda/docs/1";
/// Each node's agent cards (`state/cards.rs`), the newest set per node.
pub const CARDS: &str = "osmoda/cards/1";

/// Every topic of the node.
pub fn table() -> Vec<NodeTopic> {
    vec![
        // Signatures of checkpoints not held yet are verified before a
        // message is forwarded; merged once valid.
        NodeTopic::new(
            AUDIT,
            Limits::new(256, 2, 256),
            Cost::Blocking,
            |node, data, _| node.heads.check(data).map_err(|_| Verdict::Reject),
            |node, heads: AuditHeads, _| async move {
                let forks = node.heads.merge_checked(heads);
                report_forks(&node, forks);
            },
        ),
        // Judged before a push is relayed, as every replica will judge it
        // (seal, author, what the author may change; signatures on the
        // blocking pool); applied in arrival order, since a change applied
        // before the one it depends on would be left to sync.
        NodeTopic::new(
            DOCS,
            Limits::new(256, 1, 256),
            Cost::Blocking,
            |node, data, from| {
                // Over its rate, a member's push waits for sync: ignored,
                // not refused (`replication/rates.rs`).
                if !node
                    .push_rates
                    .allow(from.origin, std::time::Instant::now())
                {
                    return Err(Verdict::Ignore);
                }
                push::check(&node.docs, data).ok_or(Verdict::Reject)
            },
            |node, push: Push, from| async move {
                if push::receive(&node.docs, &node.audit, Some(from.origin), push) {
                    node.replicator
                        .metrics()
                        .refused(crate::metrics::Via::Push, 1);
                }
            },
        ),
        // Only genuine news is forwarded: a command that decodes, is
        // signed by an admin of this fleet who is not revoked, is newer
        // than this node's register for its flag and recent. Junk stops at
        // the first hop, and is counted there rather than audited per
        // message. Applied one at a time, in arrival order.
        NodeTopic::new(
            EMERGENCY,
            Limits::new(64, 1, 64),
            Cost::Blocking,
            |node, data, from| {
                node.check_news(data, from.origin)?;
                Ok(data.to_vec())
            },
            |node, command: Vec<u8>, from| async move {
                let via = Via::Gossip {
                    origin: from.origin,
                    source: from.source,
                };
                node.receive_emergency(&command, via).await;
            },
        ),
        // A set that decodes within its bounds and is newer than the one
        // held from its node; the envelope's signer is that node.
        NodeTopic::new(
            CARDS,
            Limits::new(128, 4, 128),
            Cost::Cheap,
            |node, data, from| node.check_cards(data, from.origin),
            |node, set: crate::state::cards::CardSet, from| async move {
                node.cards.insert(from.origin, set);
            },
        ),
    ]
}

/// Where a gossip message came from: the member that signed its envelope,
/// and the neighbour that relayed it here (the same one when it came
/// straight from its origin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provenance {
    pub origin: PeerId,
    pub source: PeerId,
}

/// How much a topic's check costs.
#[derive(Debug, Clone, Copy)]
pub enum Cost {
    /// Decoding and structure: runs in the topic's task.
    Cheap,
    /// Signatures: runs on tokio's blocking pool.
    Blocking,
}

/// The bounds of one topic's path through the node.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Messages waiting for their check.
    pub queue: usize,
    /// Checks running at once (verdicts still go out in arrival order).
    pub concurrency: usize,
    /// Valid messages waiting for the handler.
    pub backlog: usize,
}

impl Limits {
    pub const fn new(queue: usize, concurrency: usize, backlog: usize) -> Self {
        Self {
            queue,
            concurrency,
            backlog,
        }
    }
}

/// What a valid message leads to, not started yet.
type Handling = BoxFuture<'static, ()>;
/// A check under way: a verdict for gossipsub, or the handling of a valid
/// message.
type Checking = BoxFuture<'static, Result<Handling, Verdict>>;
type Check = Box<dyn Fn(Arc<Node>, Vec<u8>, Provenance) -> Checking + Send + Sync>;

/// One gossip topic the node speaks: its check and its handler, joined
/// through the value the check decoded so that nothing is decoded (or
/// verified) twice.
pub struct NodeTopic {
    pub name: &'static str,
    pub limits: Limits,
    check: Check,
}

impl NodeTopic {
    pub fn new<V, H>(
        name: &'static str,
        limits: Limits,
        cost: Cost,
        validate: fn(&Node, &[u8], Provenance) -> Result<V, Verdict>,
        handle: fn(Arc<Node>, V, Provenance) -> H,
    ) -> Self
    where
        V: Send + 'static,
        H: Future<Output = ()> + Send + 'static,
    {
        let check = move |node: Arc<Node>, data: Vec<u8>, from: Provenance| -> Checking {
            Box::pin(async move {
                let valid = match cost {
                    Cost::Cheap => validate(&node, &data, from),
                    Cost::Blocking => {
                        let worker = node.clone();
                        tokio::task::spawn_blocking(move || validate(&worker, &data, from))
                            .await
                            .unwrap_or(Err(Verdict::Ignore))
                    }
                }?;
                Ok(Box::pin(handle(node, valid, from)) as Handling)
            })
        };
        Self {
            name,
            limits,
            check: Box::new(check),
        }
    }
}

/// The table's topics with the queues their messages arrive on, until the
/// node runs ([`Registered::run`]).
pub struct Registered {
    topics: Vec<(NodeTopic, mpsc::Receiver<GossipMessage>)>,
}

/// Registers every topic of the table: what the fabric is given, and what
/// the node runs once it exists.
pub fn register() -> (Vec<TopicSpec>, Registered) {
    let mut specs = Vec::new();
    let mut topics = Vec::new();
    for topic in table() {
        let (validator, queue) = Validator::queue(topic.limits.queue);
        specs.push(TopicSpec::new(topic.name, validator));
        topics.push((topic, queue));
    }
    (specs, Registered { topics })
}

impl Registered {
    /// Starts each topic's two tasks; they end when the fabric stops.
    pub fn run(self, node: &Arc<Node>) {
        for (topic, queue) in self.topics {
            let (backlog_tx, backlog) = mpsc::channel(topic.limits.backlog.max(1));
            tokio::spawn(check_each(topic, node.clone(), queue, backlog_tx));
            tokio::spawn(handle_each(backlog));
        }
    }
}

/// Checks a topic's messages, reports each verdict in arrival order and
/// passes the valid ones on.
async fn check_each(
    topic: NodeTopic,
    node: Arc<Node>,
    queue: mpsc::Receiver<GossipMessage>,
    backlog: mpsc::Sender<Handling>,
) {
    let fabric = node.fabric.clone();
    let messages = futures::stream::unfold(queue, |mut queue| async move {
        queue.recv().await.map(|message| (message, queue))
    });
    let checks = messages
        // The fabric gave up on these and ignored them already.
        .filter(|message| std::future::ready(!message.ticket.expired()))
        .map(|message| {
            let from = Provenance {
                origin: message.origin,
                source: message.ticket.source(),
            };
            let checking = (topic.check)(node.clone(), message.data, from);
            async move { (message.ticket, checking.await) }
        })
        .buffered(topic.limits.concurrency.max(1));
    tokio::pin!(checks);
    while let Some((ticket, checked)) = checks.next().await {
        match checked {
            Ok(handling) => {
                fabric.report(ticket, Verdict::Accept).await;
                if backlog.try_send(handling).is_err() {
                    // Forwarded, but not handled here; anti-entropy repairs
                    // audit heads, documents and emergency registers.
                    warn!(
                        topic = topic.name,
                        "a valid message dropped: too many waiting"
                    );
                }
            }
            Err(verdict) => {
                debug!(
                    topic = topic.name,
                    ?verdict,
                    "a gossip message not forwarded"
                );
                fabric.report(ticket, verdict).await;
            }
        }
    }
}

/// Runs a topic's handler on each valid message, one at a time.
async fn handle_each(mut backlog: mpsc::Receiver<Handling>) {
    while let Some(handling) = backlog.recv().await {
        handling.await;
    }
}
