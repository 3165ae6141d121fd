//! The fleet's audit heads as this node knows them: for every node, its
//! latest signed checkpoints and any evidence that it forked its log. Kept
//! in memory, exchanged over gossip (`osmoda/audit/1`): this node's own
//! checkpoint whenever its log grows, and the whole state now and then, so
//! that nodes that were away catch up.

use std::sync::Mutex;

use crate::api::{ForkView, HeadView};
use osmoda_crdt_state::{AuditHeads, Checkpoint, HeadsError, NodeKey};

/// Largest gossip message a chunk of the state may take.
pub const MAX_CHUNK: usize = 60 * 1024;

fn node_id(key: &NodeKey) -> String {
    osmoda_fabric::peer_id_of(key)
        .map(|p| p.to_string())
        .unwrap_or_else(|| osmoda_fabric::proto::hex(key))
}

#[derive(Default)]
pub struct FleetHeads {
    inner: Mutex<AuditHeads>,
    /// Moves whenever the state changes (for cheap polling).
    version: std::sync::atomic::AtomicU64,
}

impl FleetHeads {
    fn lock(&self) -> std::sync::MutexGuard<'_, AuditHeads> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds one checkpoint (this node's own); returns the gossip message
    /// that announces it, and the nodes whose fork evidence is new.
    pub fn insert(&self, cp: Checkpoint) -> Result<(Vec<u8>, Vec<NodeKey>), HeadsError> {
        let mut one = AuditHeads::new();
        one.insert_checkpoint(cp)?;
        let message = one.encode();
        Ok((message, self.merge(one)))
    }

    /// Merges a gossiped state or delta; returns the nodes whose fork
    /// evidence is new here.
    pub fn merge_gossip(&self, data: &[u8]) -> Result<Vec<NodeKey>, HeadsError> {
        let theirs = AuditHeads::decode_known(data, &self.lock())?;
        Ok(self.merge(theirs))
    }

    /// A gossiped state or delta, decoded and verified (only what is new
    /// here), not merged yet: [`Self::merge_checked`] merges it.
    pub fn check(&self, data: &[u8]) -> Result<AuditHeads, HeadsError> {
        AuditHeads::decode_known(data, &self.lock())
    }

    /// Merges a state [`Self::check`] returned; returns the nodes whose
    /// fork evidence is new here.
    pub fn merge_checked(&self, theirs: AuditHeads) -> Vec<NodeKey> {
        self.merge(theirs)
    }

    fn merge(&self, theirs: AuditHeads) -> Vec<NodeKey> {
        let mut heads = self.lock();
        let nodes: Vec<NodeKey> = theirs
            .heads()
            .map(|c| c.node)
            .chain(theirs.forks().map(|(n, _)| *n))
            .collect();
        let before: Vec<usize> = nodes.iter().map(|n| heads.evidence(n).len()).collect();
        if heads.merge(&theirs) {
            self.version
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        let mut new: Vec<NodeKey> = nodes
            .iter()
            .zip(before)
            .filter(|(n, b)| heads.evidence(n).len() > *b)
            .map(|(n, _)| *n)
            .collect();
        new.sort();
        new.dedup();
        new
    }

    /// The whole state, cut into gossip-sized messages.
    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The largest checkpoint size known for `node`.
    pub fn size_of(&self, node: &NodeKey) -> Option<u64> {
        self.lock()
            .heads()
            .filter(|c| &c.node == node)
            .map(|c| c.size)
            .max()
    }

    /// A digest of what matters for agreement: the largest checkpoint per
    /// node and the nodes with fork evidence. Equal on two members iff they
    /// agree on every log's head.
    pub fn digest(&self) -> ([u8; 16], usize) {
        let heads = self.lock();
        let mut best: std::collections::BTreeMap<NodeKey, (u64, [u8; 32])> = Default::default();
        for c in heads.heads() {
            let e = best.entry(c.node).or_insert((c.size, c.root));
            if c.size > e.0 {
                *e = (c.size, c.root);
            }
        }
        let mut h = blake3::Hasher::new();
        for (node, (size, root)) in &best {
            h.update(node);
            h.update(&size.to_be_bytes());
            h.update(root);
        }
        let forks: Vec<&NodeKey> = heads.forks().map(|(n, _)| n).collect();
        for n in &forks {
            h.update(n.as_slice());
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.finalize().as_bytes()[..16]);
        (out, forks.len())
    }

    pub fn chunks(&self) -> Vec<Vec<u8>> {
        self.lock().encode_chunks(MAX_CHUNK)
    }

    pub fn heads(&self) -> Vec<HeadView> {
        self.lock()
            .heads()
            .map(|c| HeadView {
                node_id: node_id(&c.node),
                name: None,
                size: c.size,
                root: osmoda_fabric::proto::hex(&c.root),
                time_ms: c.time_ms,
            })
            .collect()
    }

    pub fn forks(&self) -> Vec<ForkView> {
        self.lock()
            .forks()
            .map(|(node, evidence)| ForkView {
                node_id: node_id(node),
                evidence: evidence
                    .iter()
                    .map(|e| osmoda_fabric::proto::hex(&e.encode()))
                    .collect(),
            })
            .collect()
    }
}
