//! Replication of the knowledge shards between nodes.
//!
//! Nodes learn of each other's changes from anti-entropy
//! (`anti_entropy.rs`): a neighbour's notice, or a periodic comparison. A
//! node that sees a summary that differs from its own runs rounds of
//! Automerge sync with that peer over
//! direct requests (`wire::Request::DocSync`) until neither side has anything to send; the
//! peer answers each round from a session it keeps for the requester.
//! Shards that differ are the only ones synced. Single documents (the
//! routine book) ride in the same rounds under their kind's wire number
//! (`state::docs::Kind::wire`).
//!
//! The state summary is `0x02 || one heads digest (16 bytes) per single
//! document, in `Docs::singles` order || knowledge heads summary`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use osmoda_crdt_state::{Actor, Outcome};
use osmoda_docs::{HeadsSummary, ShardId, StoreSync, SyncLimits, SyncSession};
use osmoda_fabric::FabricHandle;
use tracing::{debug, info, warn};

use crate::metrics::{Direction, SyncMetrics, Via};
use crate::replication::conduct::{Conduct, Verdict};
use crate::replication::wire::{
    self, Request, Response, ShardMessage, MAX_ROUND_BYTES, MAX_SHARD_MESSAGE,
};
use crate::state::audit_log::AuditLog;
use crate::state::docs::{Docs, Received, Touched};

/// Rounds one sync may take before it gives up (it is retried on the next
/// summary). A round carries up to `MAX_ROUND_BYTES` (8 MiB), so a node
/// that joins catches up on 2 GiB of documents in one sync.
const MAX_ROUNDS: usize = 256;
/// Peers a node answers sync rounds for at once; sessions idle this long go.
const MAX_RESPONDERS: usize = 64;
const RESPONDER_IDLE: Duration = Duration::from_secs(60);
/// Syncs a node runs as the initiator at once.
const MAX_OUTBOUND_SYNCS: usize = 2;

const STATE_VERSION: u8 = 2;

/// A node's state summary, compared in anti-entropy.
pub struct StateSummary {
    /// One digest per single document, in `Docs::singles` order.
    pub singles: Vec<[u8; 16]>,
    pub knowledge: HeadsSummary,
}

impl StateSummary {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![STATE_VERSION];
        for digest in &self.singles {
            out.extend_from_slice(digest);
        }
        out.extend_from_slice(&self.knowledge.encode());
        out
    }

    /// A summary of a node that holds `singles` single documents, as this
    /// one does (the fleet's nodes hold the same kinds).
    pub fn decode(bytes: &[u8], singles: usize) -> Option<Self> {
        let (&version, rest) = bytes.split_first()?;
        if version != STATE_VERSION || rest.len() < 16 * singles {
            return None;
        }
        let (digests, knowledge) = rest.split_at(16 * singles);
        Some(Self {
            singles: digests
                .chunks_exact(16)
                .map(|d| d.try_into().ok())
                .collect::<Option<_>>()?,
            knowledge: HeadsSummary::decode(knowledge).ok()?,
        })
    }
}

/// One side's sessions with one peer: the knowledge shards, and one per
/// single document.
struct Sessions {
    shards: StoreSync,
    singles: Vec<SyncSession>,
}

impl Sessions {
    fn new(docs: &Docs, local: &HeadsSummary, remote: &HeadsSummary) -> Self {
        Self {
            shards: StoreSync::new(local, remote, limits()),
            singles: docs
                .singles()
                .iter()
                .map(|_| SyncSession::new(limits()))
                .collect(),
        }
    }
}

fn limits() -> SyncLimits {
    SyncLimits {
        max_message_bytes: MAX_SHARD_MESSAGE,
        ..SyncLimits::default()
    }
}

fn encode(messages: Vec<(ShardId, Vec<u8>)>) -> Vec<ShardMessage> {
    messages
        .into_iter()
        .map(|(shard, data)| ShardMessage {
            shard: shard.index(),
            data,
        })
        .collect()
}

/// Bytes of sync messages in a round.
fn round_bytes(messages: &[ShardMessage]) -> usize {
    messages.iter().map(|m| m.data.len()).sum()
}

/// Whether a round is so full that its sender may have withheld messages
/// for the next one (`Replicator::generate`).
fn may_withhold(messages: &[ShardMessage]) -> bool {
    MAX_ROUND_BYTES.saturating_sub(round_bytes(messages)) < MAX_SHARD_MESSAGE
}

/// A round's messages, decoded: the knowledge shards', the single
/// documents' (by index into `Docs::singles`), and how many were not even
/// well-formed.
#[derive(Default)]
struct Round {
    shards: Vec<(ShardId, Vec<u8>)>,
    singles: Vec<(usize, Vec<u8>)>,
    garbage: usize,
}

fn decode(docs: &Docs, messages: Vec<ShardMessage>) -> Round {
    let wires: Vec<u16> = docs.singles().iter().map(|s| s.kind().wire).collect();
    let mut round = Round::default();
    for ShardMessage { shard, data } in messages {
        if let Some(i) = wires.iter().position(|w| *w == shard) {
            round.singles.push((i, data));
        } else if let Some(shard) = ShardId::new(shard) {
            round.shards.push((shard, data));
        } else {
            round.garbage += 1;
        }
    }
    round
}

pub struct Replicator {
    docs: Arc<Docs>,
    audit: Arc<AuditLog>,
    fabric: FabricHandle,
    /// Peers being synced, with a newer summary of theirs to sync next.
    running: Mutex<HashMap<PeerId, Option<StateSummary>>>,
    /// Syncs this node starts at once. When several neighbours tell of the
    /// same change together, the first sync brings it and the others find
    /// nothing left to do.
    outbound: tokio::sync::Semaphore,
    responders: Mutex<HashMap<PeerId, (Sessions, Instant)>>,
    conduct: Mutex<Conduct>,
    metrics: SyncMetrics,
}

impl Replicator {
    pub fn new(docs: Arc<Docs>, audit: Arc<AuditLog>, fabric: FabricHandle) -> Arc<Self> {
        Arc::new(Self {
            docs,
            audit,
            fabric,
            running: Mutex::new(HashMap::new()),
            outbound: tokio::sync::Semaphore::new(MAX_OUTBOUND_SYNCS),
            responders: Mutex::new(HashMap::new()),
            conduct: Mutex::new(Conduct::default()),
            metrics: SyncMetrics::default(),
        })
    }

    /// Sync rounds, their bytes and summary disagreements, for the metrics.
    pub fn metrics(&self) -> &SyncMetrics {
        &self.metrics
    }

    pub fn summary(&self) -> Vec<u8> {
        StateSummary {
            singles: self.docs.singles_digests(),
            knowledge: self.docs.summary(),
        }
        .encode()
    }

    /// Decodes a peer's state summary.
    pub fn decode_summary(&self, bytes: &[u8]) -> Option<StateSummary> {
        StateSummary::decode(bytes, self.docs.singles().len())
    }

    /// The next round: messages for differing shards, then the single
    /// documents', at most `MAX_ROUND_BYTES` of them; documents that do
    /// not fit speak in a later round.
    fn generate(&self, sessions: &mut Sessions) -> Vec<ShardMessage> {
        let mut out = encode(
            self.docs
                .sync_generate(&mut sessions.shards, MAX_ROUND_BYTES),
        );
        for (single, session) in self.docs.singles().into_iter().zip(&mut sessions.singles) {
            if MAX_ROUND_BYTES.saturating_sub(round_bytes(&out)) < MAX_SHARD_MESSAGE {
                break;
            }
            if let Some(data) = single.generate(session) {
                out.push(ShardMessage {
                    shard: single.kind().wire,
                    data,
                });
            }
        }
        if !out.is_empty() {
            self.metrics.round(Direction::Sent, round_bytes(&out));
        }
        out
    }

    /// Applies a peer's round; says how many documents changed, what they
    /// touched, and how many messages were garbage.
    fn receive(
        &self,
        sessions: &mut Sessions,
        messages: Vec<ShardMessage>,
    ) -> crate::error::NodeResult<Received> {
        if !messages.is_empty() {
            self.metrics
                .round(Direction::Received, round_bytes(&messages));
        }
        let round = decode(&self.docs, messages);
        let mut received = self.docs.sync_receive(&mut sessions.shards, round.shards)?;
        received.refused += round.garbage;
        let singles = self.docs.singles();
        for (i, data) in round.singles {
            let (Some(single), Some(session)) = (singles.get(i), sessions.singles.get_mut(i))
            else {
                continue;
            };
            let r = self.docs.single_receive(*single, session, &data)?;
            received.changed += r.changed;
            received.refused += r.refused;
            received.touched.merge(r.touched);
        }
        if received.refused > 0 {
            self.metrics.refused(Via::Sync, received.refused as u64);
        }
        Ok(received)
    }

    /// Notes a peer's misbehaviour; cuts it off when it is one too many.
    async fn strike(&self, peer: PeerId, reason: &str) {
        let verdict = self
            .conduct
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .strike(peer, Instant::now());
        debug!(%peer, reason, ?verdict, "sync misbehaviour");
        if verdict != Verdict::CutOff {
            return;
        }
        warn!(%peer, reason, "cutting off a peer that keeps misbehaving in sync");
        self.fabric.penalize(peer, reason).await;
        let actor = osmoda_fabric::node_key_of(&peer)
            .map(Actor::Peer)
            .unwrap_or(Actor::Node);
        let details = format!("cut off for a while: {reason}");
        if let Err(e) = self
            .audit
            .record(
                actor,
                "peer.penalize",
                &peer.to_string(),
                Outcome::Ok,
                &details,
            )
            .await
        {
            warn!(error = %e, "cannot audit a penalty");
        }
    }

    /// Whether `remote` holds anything we lack, or lacks anything we hold.
    fn differs(&self, remote: &StateSummary) -> bool {
        !self
            .docs
            .summary()
            .differing_shards(&remote.knowledge)
            .is_empty()
            || remote.singles != self.docs.singles_digests()
    }

    /// A peer's summary: start a sync with it if we differ.
    pub fn on_summary(self: &Arc<Self>, peer: PeerId, bytes: &[u8]) {
        let Some(remote) = self.decode_summary(bytes) else {
            debug!(%peer, "ignoring a malformed state summary");
            return;
        };
        if !self.differs(&remote) {
            return;
        }
        self.metrics.disagreements.inc();
        {
            // One sync per peer at a time; a summary that arrives meanwhile
            // is kept and synced right after, not dropped.
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(pending) = running.get_mut(&peer) {
                *pending = Some(remote);
                return;
            }
            running.insert(peer, None);
        }
        let this = self.clone();
        tokio::spawn(async move {
            let mut remote = remote;
            loop {
                // Checked again once it is our turn: a sync with another
                // peer may have brought the same changes meanwhile.
                if let Ok(_permit) = this.outbound.acquire().await {
                    if this.differs(&remote) {
                        this.run(peer, this.docs.summary(), remote.knowledge).await;
                    }
                }
                let next = {
                    let mut running = this.running.lock().unwrap_or_else(|e| e.into_inner());
                    match running.get_mut(&peer).and_then(Option::take) {
                        Some(next) => Some(next),
                        None => {
                            running.remove(&peer);
                            None
                        }
                    }
                };
                match next {
                    Some(next) => remote = next,
                    None => break,
                }
            }
        });
    }

    async fn run(&self, peer: PeerId, local: HeadsSummary, remote: HeadsSummary) {
        let mut sessions = Sessions::new(&self.docs, &local, &remote);
        let mut changed = 0;
        let mut touched = Touched::default();
        let mut finished = false;
        // Whether the peer's last answer may have left documents for the
        // next round: then a round is sent even with nothing to say.
        let mut peer_withheld = false;
        for round in 0..MAX_ROUNDS {
            let out = self.generate(&mut sessions);
            if out.is_empty() && !peer_withheld {
                finished = true;
                break;
            }
            let request = Request::DocSync {
                messages: out,
                start: round == 0,
            };
            let messages = match wire::request(&self.fabric, peer, &request).await {
                Ok(Response::DocSync { messages }) => {
                    peer_withheld = may_withhold(&messages);
                    messages
                }
                Ok(_) => {
                    debug!(%peer, "sync answered with something else");
                    return;
                }
                Err(e) => {
                    debug!(%peer, error = %e, "sync round failed");
                    return;
                }
            };
            match self.receive(&mut sessions, messages) {
                Ok(r) if r.refused > 0 => {
                    self.strike(peer, "sent sync messages refused or that do not decode")
                        .await;
                    return;
                }
                Ok(r) => {
                    changed += r.changed;
                    touched.merge(r.touched);
                }
                Err(e) => {
                    debug!(%peer, error = %e, "cannot store synced shards");
                    return;
                }
            }
        }
        if !finished {
            self.strike(peer, "sync rounds that do not end").await;
        }
        if changed > 0 {
            info!(%peer, documents = changed, "documents synced");
            self.audit_sync(peer, touched);
        }
    }

    /// Audits a sync that changed documents, one entry for knowledge and
    /// one for routines, each naming what changed. Written in the
    /// background: a replica's sync is not an acknowledged change, and
    /// waiting for the audit log's fsync would put a disk flush into a
    /// sync round.
    fn audit_sync(&self, peer: PeerId, touched: Touched) {
        let audit = self.audit.clone();
        tokio::spawn(async move {
            let actor = osmoda_fabric::node_key_of(&peer)
                .map(Actor::Peer)
                .unwrap_or(Actor::Node);
            for (action, details) in touched.audit_entries("sync") {
                if let Err(e) = audit
                    .record(
                        actor.clone(),
                        &action,
                        &peer.to_string(),
                        Outcome::Ok,
                        &details,
                    )
                    .await
                {
                    tracing::warn!(error = %e, "cannot audit a sync");
                }
            }
        });
    }

    /// A peer's request that does not even decode: a strike, and the
    /// reason to refuse it with.
    pub async fn malformed(&self, peer: PeerId, error: wire::WireError) -> String {
        self.strike(peer, "sent a request that does not decode")
            .await;
        format!("the request does not decode: {error}")
    }

    /// Answers a peer's round from the session kept for it, or says why not.
    pub async fn answer(
        &self,
        peer: PeerId,
        messages: Vec<ShardMessage>,
        start: bool,
    ) -> Result<Response, String> {
        let allowed = self
            .conduct
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow_answer(peer, Instant::now());
        if !allowed {
            self.strike(peer, "too many sync rounds").await;
            return Err("too many sync rounds; slow down".into());
        }
        let mut sessions = {
            let mut responders = self.responders.lock().unwrap_or_else(|e| e.into_inner());
            responders.retain(|_, (_, used)| used.elapsed() < RESPONDER_IDLE);
            let kept = responders.remove(&peer);
            match kept.filter(|_| !start) {
                Some((sessions, _)) => sessions,
                None if responders.len() >= MAX_RESPONDERS => return Err("busy".into()),
                None => {
                    let local = self.docs.summary();
                    Sessions::new(&self.docs, &local, &local)
                }
            }
        };
        let received = match self.receive(&mut sessions, messages) {
            Ok(r) if r.refused > 0 => {
                self.strike(peer, "sent sync messages refused or that do not decode")
                    .await;
                return Err(format!("{} sync message(s) did not decode", r.refused));
            }
            Ok(r) => r,
            Err(e) => return Err(format!("{e:#}")),
        };
        let reply = self.generate(&mut sessions);
        self.responders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer, (sessions, Instant::now()));
        if received.changed > 0 {
            self.audit_sync(peer, received.touched);
        }
        Ok(Response::DocSync { messages: reply })
    }
}
