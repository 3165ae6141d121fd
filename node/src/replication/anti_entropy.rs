//! Pairwise anti-entropy: how state spreads between neighbours, and how a
//! node repairs what it missed (a dropped message, a partition, a restart),
//! one neighbour at a time, the way Serf pairs gossip with push-pull.
//!
//! - **News**: when a node's documents change (a local write, or changes
//!   synced from a peer), it sends a *notice* (the digest of its state
//!   summary, ~100 bytes) to each neighbour. A neighbour whose summary
//!   differs pulls: it asks for the full summary and runs a document sync.
//!   A write thus floods the connection graph hop by hop, each node pulling
//!   once from whichever neighbour told it first, so no node (the writer
//!   least) serves the whole fleet.
//! - **Repair**: every [`EVERY`], and with every new neighbour, a node sends
//!   an *offer*: its summary and the digests of the audit heads and of the
//!   emergency registers it holds. The answer carries the peer's summary,
//!   and its heads or registers when the digests differ; the initiator
//!   syncs documents if the summaries differ and *pushes* heads and
//!   registers the peer lacks. A member that was away thus takes the
//!   fleet's emergency state (a lockdown still in force) from its first
//!   neighbour, however long it was gone.
//!
//! Traffic per node is a few hundred bytes per change and per period,
//! whatever the fleet's size; gossiping whole states to everyone grew with
//! the square of the fleet.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::PeerId;
use osmoda_crdt_state::NodeKey;
use osmoda_fabric::FabricHandle;
use tracing::debug;

use crate::replication::sync::Replicator;
use crate::replication::wire::{
    self, AntiEntropy, Failure, Request, Response, MAX_EMERGENCY_COMMANDS, MAX_HEADS_CHUNKS,
};
use crate::state::emergency::holds_newer;
use crate::state::heads::FleetHeads;

/// How often a node compares with one random neighbour.
pub const EVERY: Duration = Duration::from_secs(5);

/// The emergency registers, as anti-entropy sees them: the signed
/// commands held, their digest, and where a peer's go.
pub trait Registers: Send + Sync {
    fn held(&self) -> Vec<Vec<u8>>;
    fn digest(&self) -> [u8; 16];
    /// A peer's registers: those newer than ours are checked and applied
    /// as gossip would be, off the caller.
    fn take(&self, peer: PeerId, commands: Vec<Vec<u8>>);
}

/// The replicated states an exchange compares.
#[derive(Clone)]
pub struct States {
    pub replicator: Arc<Replicator>,
    pub heads: Arc<FleetHeads>,
    pub emergency: Arc<dyn Registers>,
    /// Summary digests being pulled: when several neighbours tell of the
    /// same state, one of them is asked.
    pub pulling: Arc<Mutex<HashSet<[u8; 16]>>>,
}

/// Pulls in flight at once; notices beyond wait for the next comparison.
const MAX_PULLS: usize = 16;

impl States {
    fn heads_digest(&self) -> [u8; 16] {
        self.heads.digest().0
    }

    fn offer(&self, compare_heads: bool) -> AntiEntropy {
        let summary = self.replicator.summary();
        AntiEntropy {
            summary_digest: summary_digest(&summary),
            summary,
            heads_digest: compare_heads.then(|| self.heads_digest()),
            heads: Vec::new(),
            // Registers ride with the heads: compared in offers, not in
            // the pulls that notices start.
            emergency_digest: compare_heads.then(|| self.emergency.digest()),
            emergency: Vec::new(),
        }
    }

    /// What a node sends its neighbours when its documents changed.
    pub fn notice(&self) -> AntiEntropy {
        AntiEntropy {
            summary_digest: summary_digest(&self.replicator.summary()),
            ..AntiEntropy::default()
        }
    }

    /// After a neighbour's notice: pulls its state if it differs from ours
    /// and nobody is pulling that state already.
    pub async fn pull(&self, fabric: &FabricHandle, peer: PeerId, notice: &AntiEntropy) {
        if notice.summary_digest == summary_digest(&self.replicator.summary()) {
            return;
        }
        {
            let mut pulling = self.pulling.lock().unwrap_or_else(|e| e.into_inner());
            if pulling.len() >= MAX_PULLS || !pulling.insert(notice.summary_digest) {
                return;
            }
        }
        if let Err(error) = self.exchange(fabric, peer, false).await {
            debug!(%peer, %error, "pull failed");
        }
        self.pulling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&notice.summary_digest);
    }

    fn with_heads(&self, mut message: AntiEntropy) -> AntiEntropy {
        message.heads = self.heads.chunks();
        message.heads.truncate(MAX_HEADS_CHUNKS);
        message
    }

    /// Takes the registers a peer sent, if any.
    fn take_registers(&self, peer: PeerId, message: &AntiEntropy) {
        if !message.emergency.is_empty() {
            let commands = message.emergency.iter().take(MAX_EMERGENCY_COMMANDS);
            self.emergency.take(peer, commands.cloned().collect());
        }
    }

    /// Merges the heads a peer sent; returns nodes whose fork evidence is new.
    fn merge_heads(&self, peer: PeerId, message: &AntiEntropy) -> Vec<NodeKey> {
        let mut forks = Vec::new();
        for chunk in message.heads.iter().take(MAX_HEADS_CHUNKS) {
            match self.heads.merge_gossip(chunk) {
                Ok(new) => forks.extend(new),
                Err(error) => debug!(%peer, %error, "ignoring invalid audit heads"),
            }
        }
        forks
    }

    /// Answers a peer's offer or push; returns the answer and the nodes
    /// whose fork evidence is new here.
    pub fn answer(&self, peer: PeerId, offer: &AntiEntropy) -> (Response, Vec<NodeKey>) {
        let forks = self.merge_heads(peer, offer);
        self.take_registers(peer, offer);
        let compare = offer.heads_digest.is_some();
        let mut mine = self.offer(compare);
        // A push already carried what the peer had to give, and the peer
        // has ours.
        if compare && !offer.is_push() {
            if mine.heads_digest != offer.heads_digest {
                mine = self.with_heads(mine);
            }
            if offer.emergency_digest.is_some() && mine.emergency_digest != offer.emergency_digest {
                mine.emergency = self.emergency.held();
            }
        }
        (Response::AntiEntropy(mine), forks)
    }

    /// Tells `peer` that our documents changed.
    pub async fn notify(&self, fabric: &FabricHandle, peer: PeerId) {
        let notice = Request::AntiEntropy(self.notice());
        if let Err(error) = wire::request(fabric, peer, &notice).await {
            debug!(%peer, %error, "notice not delivered");
        }
    }

    /// Compares with `peer`: documents always, audit heads when
    /// `compare_heads`. Returns the nodes whose fork evidence is new here.
    pub async fn exchange(
        &self,
        fabric: &FabricHandle,
        peer: PeerId,
        compare_heads: bool,
    ) -> Result<Vec<NodeKey>, Failure> {
        let offer = Request::AntiEntropy(self.offer(compare_heads));
        let Response::AntiEntropy(reply) = wire::request(fabric, peer, &offer).await? else {
            debug!(%peer, "anti-entropy answered with something else");
            return Ok(Vec::new());
        };
        self.replicator.on_summary(peer, &reply.summary);
        let mut forks = self.merge_heads(peer, &reply);
        self.take_registers(peer, &reply);
        if !compare_heads {
            return Ok(forks);
        }
        let mut push = self.offer(true);
        if Some(self.heads_digest()) != reply.heads_digest {
            push = self.with_heads(push);
        }
        // What we hold that the peer's registers lack (theirs are taken
        // off this call, so our digest may not show them yet).
        let held = self.emergency.held();
        if reply.emergency_digest.is_some()
            && reply.emergency_digest != push.emergency_digest
            && holds_newer(&held, &reply.emergency)
        {
            push.emergency = held;
        }
        if push.is_push() {
            let push = Request::AntiEntropy(push);
            if let Response::AntiEntropy(answer) = wire::request(fabric, peer, &push).await? {
                forks.extend(self.merge_heads(peer, &answer));
            }
        }
        Ok(forks)
    }
}

fn summary_digest(summary: &[u8]) -> [u8; 16] {
    let mut out = [0; 16];
    out.copy_from_slice(&blake3::hash(summary).as_bytes()[..16]);
    out
}
