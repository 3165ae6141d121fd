//! `AuditHeads`: a state CRDT of every node's latest signed checkpoint and
//! of the fork evidence anyone found.
//!
//! Per node the state keeps two bounded, sorted sets:
//!
//! - `recent`: the [`RECENT_PER_NODE`] largest validly signed checkpoints in
//!   checkpoint order (size, then root bytes, time and signature, so ties
//!   between equal sizes are broken deterministically). The head is the
//!   largest. Keeping a few, not just the head, lets a same-size fork be
//!   caught even after the head moved on.
//! - `evidence`: at most [`MAX_EVIDENCE_PER_NODE`] verified [`ForkEvidence`]
//!   items, the smallest in evidence order. One proves the fork; a few show
//!   its extent.
//!
//! **Members only.** This crate does not know the fleet; the caller says
//! who is a member (a predicate over node keys: a certificate from the
//! fleet root, valid, not revoked), and everything that comes from the
//! network goes through the `*_members` functions, which drop what any
//! other key signed before checking a signature. Were any key admitted,
//! keys ground below the honest ones would fill [`MAX_NODES`] and evict
//! every member, and with them fork detection. Admission happens when an
//! item enters and is never undone, so merge stays a join: for a fixed
//! predicate, states built only by admitted inserts and merges are closed
//! under merge, and the laws below hold for them unchanged (a property
//! test checks this). A node revoked later keeps what it signed while it
//! was a member, and adds nothing more.
//!
//! At most [`MAX_NODES`] nodes are kept, the smallest keys: a bound for
//! memory that only a fleet that large reaches, since only members count.
//!
//! **Merge** of two states is, per node: `recent` = the largest
//! `RECENT_PER_NODE` of the union; `evidence` = the smallest
//! `MAX_EVIDENCE_PER_NODE` of the union of both evidence sets and of every
//! same-size pair found in the union of both `recent` sets (before it is
//! cut down, so a fork is flagged even if one side is about to be evicted).
//! Inserting an item is merging with the state that holds only that item.
//!
//! **Laws.** Merge is commutative and idempotent on every state this type
//! can hold (they are built only by verified inserts, merges and canonical
//! decoding). It is associative, and the set of flagged nodes is the same
//! whatever the merge order, whenever the union of the merged states has at
//! most `RECENT_PER_NODE` distinct checkpoints per node and at most
//! `MAX_NODES` nodes. Beyond that, bounded memory must forget: the `recent`
//! sets are still exactly associative (top-k of a union is a semilattice),
//! but a same-size fork between a checkpoint already evicted and one arriving
//! later is flagged only in the orders where the two meet. Evidence, once
//! present, is never lost (a nonempty set stays nonempty), and fetchers
//! cover deep forks with [`ForkEvidence::Inconsistent`]. Honest nodes sign a
//! new checkpoint only when their log grew, so eight checkpoints span real
//! history rather than repeats.
//!
//! **Encoding** (a whole state or a delta, which is just a smaller state):
//!
//! | field | size |
//! |---|---|
//! | version | 1 (`0x01`) |
//! | n_checkpoints | 4 |
//! | checkpoints | 145 each, ascending in checkpoint order (so by node) |
//! | n_evidence | 4 |
//! | evidence | (len: 2, bytes: len) each; by node, then evidence order |
//!
//! Decoding verifies every signature and proof, rebuilds the state by
//! merging, and accepts only the canonical encoding of the result (so
//! `encode(decode(b)) == b`), at most [`MAX_STATE_LEN`] bytes. Larger states
//! travel as several chunks ([`AuditHeads::encode_chunks`]).

use std::collections::BTreeMap;

use osmoda_wire::{Reader, Truncated};

use crate::checkpoint::{Checkpoint, CheckpointError, CHECKPOINT_LEN};
use crate::evidence::{EvidenceError, ForkEvidence, MAX_EVIDENCE_LEN};
use crate::NodeKey;

const STATE_VERSION: u8 = 1;

/// Checkpoints kept per node.
pub const RECENT_PER_NODE: usize = 8;
/// Fork evidence items kept per node.
pub const MAX_EVIDENCE_PER_NODE: usize = 4;
/// Nodes kept; as many as a fleet has members at most.
pub const MAX_NODES: usize = 100_000;
/// Longest encoded state accepted by [`AuditHeads::decode`].
pub const MAX_STATE_LEN: usize = 4 << 20;

/// Why an insert or a decode was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadsError {
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("evidence: {0}")]
    Evidence(#[from] EvidenceError),
    #[error("already tracking {MAX_NODES} nodes with smaller keys")]
    TooManyNodes,
    #[error("signed by a key that is not a fleet member")]
    NotMember,
    #[error("truncated encoding or trailing bytes")]
    Malformed,
    #[error("unsupported state version {0}")]
    Version(u8),
    #[error("encoded state of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("not the canonical encoding of a state")]
    NonCanonical,
}

impl From<Truncated> for HeadsError {
    fn from(_: Truncated) -> Self {
        HeadsError::Malformed
    }
}

/// What an insert changed; gossip forwards the item only if [`Self::changed`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InsertOutcome {
    /// The inserted checkpoint is now its node's head.
    pub new_head: bool,
    /// The inserted checkpoint is now among its node's recent checkpoints.
    pub stored: bool,
    /// Evidence kept by this insert (found by it, or the inserted item).
    pub new_evidence: Vec<ForkEvidence>,
}

impl InsertOutcome {
    pub fn changed(&self) -> bool {
        self.stored || !self.new_evidence.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct NodeState {
    /// Ascending, distinct, at most RECENT_PER_NODE.
    recent: Vec<Checkpoint>,
    /// Ascending, distinct, at most MAX_EVIDENCE_PER_NODE.
    evidence: Vec<ForkEvidence>,
}

impl NodeState {
    /// The per-node join described in the module doc.
    fn join(&self, other: &NodeState) -> NodeState {
        let mut recent: Vec<Checkpoint> =
            self.recent.iter().chain(&other.recent).cloned().collect();
        recent.sort_unstable();
        recent.dedup();
        let mut evidence: Vec<ForkEvidence> = self
            .evidence
            .iter()
            .chain(&other.evidence)
            .cloned()
            .chain(same_size_forks(&recent))
            .collect();
        evidence.sort_unstable();
        evidence.dedup();
        evidence.truncate(MAX_EVIDENCE_PER_NODE);
        let cut = recent.len().saturating_sub(RECENT_PER_NODE);
        recent.drain(..cut);
        NodeState { recent, evidence }
    }

    fn encoded_len(&self) -> usize {
        CHECKPOINT_LEN * self.recent.len()
            + self
                .evidence
                .iter()
                .map(|e| 2 + e.encode().len())
                .sum::<usize>()
    }
}

/// Every pair of one size with different roots in a sorted list of one
/// node's checkpoints. Equal sizes are adjacent, and the list is short.
fn same_size_forks(sorted: &[Checkpoint]) -> impl Iterator<Item = ForkEvidence> + '_ {
    sorted.iter().enumerate().flat_map(move |(i, x)| {
        sorted[i + 1..]
            .iter()
            .take_while(move |y| y.size == x.size)
            .filter_map(move |y| ForkEvidence::same_size(x.clone(), y.clone()))
    })
}

/// The audit heads of a fleet. See the module doc for the design and laws.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditHeads {
    nodes: BTreeMap<NodeKey, NodeState>,
}

impl AuditHeads {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of nodes with a checkpoint or evidence.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node's largest known checkpoint.
    pub fn head(&self, node: &NodeKey) -> Option<&Checkpoint> {
        self.nodes.get(node).and_then(|s| s.recent.last())
    }

    /// Every node's head, by node key.
    pub fn heads(&self) -> impl Iterator<Item = &Checkpoint> {
        self.nodes.values().filter_map(|s| s.recent.last())
    }

    /// The node's kept checkpoints, ascending.
    pub fn recent(&self, node: &NodeKey) -> &[Checkpoint] {
        self.nodes.get(node).map_or(&[], |s| &s.recent)
    }

    /// The fork evidence kept against the node, if any.
    pub fn evidence(&self, node: &NodeKey) -> &[ForkEvidence] {
        self.nodes.get(node).map_or(&[], |s| &s.evidence)
    }

    /// Every node proven to have forked, with its evidence.
    pub fn forks(&self) -> impl Iterator<Item = (&NodeKey, &[ForkEvidence])> {
        self.nodes
            .iter()
            .filter(|(_, s)| !s.evidence.is_empty())
            .map(|(k, s)| (k, s.evidence.as_slice()))
    }

    /// Verifies a checkpoint and merges it in.
    pub fn insert_checkpoint(&mut self, cp: Checkpoint) -> Result<InsertOutcome, HeadsError> {
        cp.verify()?;
        self.insert_verified(cp)
    }

    /// Like [`Self::insert_checkpoint`], for a checkpoint from outside:
    /// refused, before its signature is checked, unless a member signed it.
    pub fn insert_member_checkpoint(
        &mut self,
        cp: Checkpoint,
        is_member: impl Fn(&NodeKey) -> bool,
    ) -> Result<InsertOutcome, HeadsError> {
        if !is_member(&cp.node) {
            return Err(HeadsError::NotMember);
        }
        self.insert_checkpoint(cp)
    }

    /// Whether exactly this checkpoint is held (so it was verified).
    fn holds(&self, cp: &Checkpoint) -> bool {
        self.nodes
            .get(&cp.node)
            .is_some_and(|s| s.recent.contains(cp))
    }

    fn insert_verified(&mut self, cp: Checkpoint) -> Result<InsertOutcome, HeadsError> {
        let node = cp.node;
        let before = self.nodes.get(&node).cloned().unwrap_or_default();
        let single = NodeState {
            recent: vec![cp.clone()],
            evidence: Vec::new(),
        };
        let after = self.put(node, before.join(&single))?;
        Ok(InsertOutcome {
            new_head: after.recent.last() == Some(&cp) && before.recent.last() != Some(&cp),
            stored: after.recent.contains(&cp) && !before.recent.contains(&cp),
            new_evidence: added(&before.evidence, &after.evidence),
        })
    }

    /// Verifies fork evidence and merges it in.
    pub fn insert_evidence(&mut self, ev: ForkEvidence) -> Result<InsertOutcome, HeadsError> {
        ev.verify()?;
        let node = *ev.node();
        let before = self.nodes.get(&node).cloned().unwrap_or_default();
        let single = NodeState {
            recent: Vec::new(),
            evidence: vec![ev],
        };
        let after = self.put(node, before.join(&single))?;
        Ok(InsertOutcome {
            new_evidence: added(&before.evidence, &after.evidence),
            ..InsertOutcome::default()
        })
    }

    /// Stores a node's joined state, applying the node bound the way merge
    /// does: the largest keys go first. Fails if that removes `node` itself.
    fn put(&mut self, node: NodeKey, state: NodeState) -> Result<&NodeState, HeadsError> {
        self.nodes.insert(node, state);
        self.enforce_node_bound();
        self.nodes.get(&node).ok_or(HeadsError::TooManyNodes)
    }

    fn enforce_node_bound(&mut self) {
        while self.nodes.len() > MAX_NODES {
            self.nodes.pop_last();
        }
    }

    /// Joins `other` into `self`; returns whether anything changed.
    pub fn merge(&mut self, other: &AuditHeads) -> bool {
        self.merge_members(other, |_| true)
    }

    /// Joins the part of `other` that members signed into `self`; returns
    /// whether anything changed.
    pub fn merge_members(
        &mut self,
        other: &AuditHeads,
        is_member: impl Fn(&NodeKey) -> bool,
    ) -> bool {
        let mut changed = false;
        for (node, theirs) in other.nodes.iter().filter(|(k, _)| is_member(k)) {
            let joined = match self.nodes.get(node) {
                Some(ours) => ours.join(theirs),
                None => NodeState::default().join(theirs),
            };
            if self.nodes.get(node) != Some(&joined) {
                self.nodes.insert(*node, joined);
                changed = true;
            }
        }
        self.enforce_node_bound();
        changed
    }

    /// The part of the state about `nodes`: a delta to gossip.
    pub fn subset<'a>(&self, nodes: impl IntoIterator<Item = &'a NodeKey>) -> AuditHeads {
        let nodes = nodes
            .into_iter()
            .filter_map(|k| self.nodes.get(k).map(|s| (*k, s.clone())))
            .collect();
        AuditHeads { nodes }
    }

    /// The canonical encoding of the whole state (no size limit: for local
    /// snapshots; use [`Self::encode_chunks`] for the network).
    pub fn encode(&self) -> Vec<u8> {
        let states: Vec<&NodeState> = self.nodes.values().collect();
        encode_nodes(&states)
    }

    /// The state split by node into canonical encodings of at most `max_len`
    /// bytes each (a node's part is never split, and one node always fits in
    /// 11 KiB). Decoding and merging them all gives back this state.
    pub fn encode_chunks(&self, max_len: usize) -> Vec<Vec<u8>> {
        let mut chunks = Vec::new();
        let mut group: Vec<&NodeState> = Vec::new();
        let mut len = 9;
        for state in self.nodes.values() {
            let add = state.encoded_len();
            if !group.is_empty() && len + add > max_len {
                chunks.push(encode_nodes(&group));
                group.clear();
                len = 9;
            }
            group.push(state);
            len += add;
        }
        if !group.is_empty() {
            chunks.push(encode_nodes(&group));
        }
        chunks
    }

    /// Parses, verifies and rebuilds a state; see the module doc.
    pub fn decode(bytes: &[u8]) -> Result<Self, HeadsError> {
        Self::decode_inner(bytes, None, &|_| true)
    }

    /// Like [`decode`](Self::decode), but checkpoints byte-for-byte equal to
    /// one `known` holds are not verified again: gossiped states repeat
    /// mostly what a member already verified, and signature checks were
    /// most of the cost of receiving them.
    pub fn decode_known(bytes: &[u8], known: &AuditHeads) -> Result<Self, HeadsError> {
        Self::decode_inner(bytes, Some(known), &|_| true)
    }

    /// Like [`decode_known`](Self::decode_known), keeping only what members
    /// signed: checkpoints and evidence of other keys are skipped unchecked
    /// (a relay may pass on a member this node has not heard of yet, so
    /// they do not make the state invalid). What is kept must still be in
    /// canonical order.
    pub fn decode_members(
        bytes: &[u8],
        known: &AuditHeads,
        is_member: &dyn Fn(&NodeKey) -> bool,
    ) -> Result<Self, HeadsError> {
        Self::decode_inner(bytes, Some(known), is_member)
    }

    fn decode_inner(
        bytes: &[u8],
        known: Option<&AuditHeads>,
        is_member: &dyn Fn(&NodeKey) -> bool,
    ) -> Result<Self, HeadsError> {
        if bytes.len() > MAX_STATE_LEN {
            return Err(HeadsError::TooLarge(bytes.len()));
        }
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != STATE_VERSION {
            return Err(HeadsError::Version(version));
        }
        let mut state = AuditHeads::new();
        // What was admitted, in the order it came, for the canonical check.
        let (mut cps, mut evs) = (Vec::new(), Vec::new());
        let n_cp = r.u32()? as usize;
        if n_cp.saturating_mul(CHECKPOINT_LEN) > r.remaining() {
            return Err(HeadsError::Malformed);
        }
        for _ in 0..n_cp {
            let raw = r.bytes(CHECKPOINT_LEN)?;
            let cp = Checkpoint::decode(raw)?;
            if !is_member(&cp.node) {
                continue;
            }
            cps.push(raw);
            if known.is_some_and(|k| k.holds(&cp)) {
                state.insert_verified(cp)?;
            } else {
                state.insert_checkpoint(cp)?;
            }
        }
        let n_ev = r.u32()? as usize;
        if n_ev.saturating_mul(2 + 2 + 2 * CHECKPOINT_LEN) > r.remaining() {
            return Err(HeadsError::Malformed);
        }
        for _ in 0..n_ev {
            let len = r.u16()? as usize;
            if len > MAX_EVIDENCE_LEN {
                return Err(HeadsError::Malformed);
            }
            let raw = r.bytes(len)?;
            let ev = ForkEvidence::decode(raw)?;
            if !is_member(ev.node()) {
                continue;
            }
            evs.push(raw);
            state.insert_evidence(ev)?;
        }
        r.finish()?;
        if state.encode() != encode_raw(&cps, &evs) {
            return Err(HeadsError::NonCanonical);
        }
        Ok(state)
    }
}

fn encode_nodes(states: &[&NodeState]) -> Vec<u8> {
    let cps: Vec<[u8; CHECKPOINT_LEN]> = states
        .iter()
        .flat_map(|s| &s.recent)
        .map(Checkpoint::encode)
        .collect();
    let evs: Vec<Vec<u8>> = states
        .iter()
        .flat_map(|s| &s.evidence)
        .map(ForkEvidence::encode)
        .collect();
    encode_raw(&cps, &evs)
}

/// The state encoding of these encoded items, in this order.
fn encode_raw(cps: &[impl AsRef<[u8]>], evs: &[impl AsRef<[u8]>]) -> Vec<u8> {
    let len = CHECKPOINT_LEN * cps.len() + evs.iter().map(|e| 2 + e.as_ref().len()).sum::<usize>();
    let mut out = Vec::with_capacity(9 + len);
    out.push(STATE_VERSION);
    // At most MAX_NODES × RECENT_PER_NODE items, or what one message of at
    // most MAX_STATE_LEN bytes held: far below u32::MAX.
    out.extend_from_slice(&(cps.len() as u32).to_be_bytes());
    for cp in cps {
        out.extend_from_slice(cp.as_ref());
    }
    out.extend_from_slice(&(evs.len() as u32).to_be_bytes());
    for ev in evs.iter().map(AsRef::as_ref) {
        // Verified evidence is at most MAX_EVIDENCE_LEN (2,373) bytes.
        out.extend_from_slice(&(ev.len() as u16).to_be_bytes());
        out.extend_from_slice(ev);
    }
    out
}

fn added(before: &[ForkEvidence], after: &[ForkEvidence]) -> Vec<ForkEvidence> {
    after
        .iter()
        .filter(|e| !before.contains(e))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests;
