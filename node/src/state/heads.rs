//! The fleet's audit heads as this node knows them: for every node, its
//! latest signed checkpoints and any evidence that it forked its log. Kept
//! in memory, exchanged over gossip (`osmoda/audit/1`): this node's own
//! checkpoint whenever its log grows, and the whole state now and then, so
//! that nodes that were away catch up.
//!
//! Only members' checkpoints and fork evidence get in: a node key counts
//! when the fabric holds a certificate for it from the fleet root, valid
//! now and not revoked (`Membership::is_member`; certificates are learned
//! in handshakes and from every gossip envelope). Without that rule keys
//! ground by anyone would fill the bounded state and evict the members.

use std::sync::{Arc, Mutex};

use crate::api::{ForkView, HeadView};
use osmoda_crdt_state::{AuditHeads, Checkpoint, ForkEvidence, HeadsError, NodeKey};
use osmoda_fabric::{unix_now, Membership};

/// Largest gossip message a chunk of the state may take.
pub const MAX_CHUNK: usize = 60 * 1024;

fn node_id(key: &NodeKey) -> String {
    osmoda_fabric::peer_id_of(key)
        .map(|p| p.to_string())
        .unwrap_or_else(|| osmoda_fabric::proto::hex(key))
}

pub struct FleetHeads {
    inner: Mutex<AuditHeads>,
    /// Moves whenever the state changes (for cheap polling).
    version: std::sync::atomic::AtomicU64,
    /// Who counts as a member.
    membership: Arc<Membership>,
}

impl FleetHeads {
    pub fn new(membership: Arc<Membership>) -> Self {
        Self {
            inner: Mutex::default(),
            version: Default::default(),
            membership,
        }
    }

    /// Whether `node` is a member now.
    fn member_check(&self) -> impl Fn(&NodeKey) -> bool + '_ {
        let now = unix_now();
        move |node| self.membership.is_member(node, now)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AuditHeads> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds one checkpoint (this node's own, or one a fetched log was
    /// verified against); returns the gossip message that announces it,
    /// and the nodes whose fork evidence is new. Refused unless a member
    /// signed it.
    pub fn insert(&self, cp: Checkpoint) -> Result<(Vec<u8>, Vec<NodeKey>), HeadsError> {
        let mut one = AuditHeads::new();
        one.insert_member_checkpoint(cp, self.member_check())?;
        let message = one.encode();
        Ok((message, self.merge(one)))
    }

    /// Adds fork evidence this node built itself (a fetched log that
    /// contradicts a known checkpoint); returns the nodes whose fork
    /// evidence is new. Refused unless a member forked.
    pub fn insert_evidence(&self, ev: ForkEvidence) -> Result<Vec<NodeKey>, HeadsError> {
        if !(self.member_check())(ev.node()) {
            return Err(HeadsError::NotMember);
        }
        let mut one = AuditHeads::new();
        one.insert_evidence(ev)?;
        Ok(self.merge(one))
    }

    /// The checkpoints of `node` held here, ascending: what a fetched copy
    /// of its log is compared with.
    pub fn known(&self, node: &NodeKey) -> Vec<Checkpoint> {
        self.lock().recent(node).to_vec()
    }

    /// Merges a gossiped state or delta; returns the nodes whose fork
    /// evidence is new here.
    pub fn merge_gossip(&self, data: &[u8]) -> Result<Vec<NodeKey>, HeadsError> {
        let theirs = self.check(data)?;
        Ok(self.merge(theirs))
    }

    /// A gossiped state or delta, decoded and verified (only what is new
    /// here, and only what members signed: the rest is skipped unchecked),
    /// not merged yet: [`Self::merge_checked`] merges it.
    pub fn check(&self, data: &[u8]) -> Result<AuditHeads, HeadsError> {
        AuditHeads::decode_members(data, &self.lock(), &self.member_check())
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
        // `theirs` came through the member rule already; checked again
        // here because a certificate may have expired or been revoked
        // between the check and the merge.
        if heads.merge_members(&theirs, self.member_check()) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use osmoda_fabric::proto::{FleetRoot, Role};

    #[test]
    fn only_members_checkpoints_are_kept() {
        let root = FleetRoot::from_secret([3; 32]);
        let membership = Membership::new(root.public());
        let member = SigningKey::from_bytes(&[4; 32]);
        let cert = root
            .issue(
                member.verifying_key().to_bytes(),
                "m",
                Role::Member,
                0,
                u64::MAX,
            )
            .unwrap();
        membership.admit(&cert.encode(), &cert, unix_now()).unwrap();
        let heads = FleetHeads::new(membership);
        let stranger = SigningKey::from_bytes(&[5; 32]);
        assert_eq!(
            heads
                .insert(Checkpoint::sign(&stranger, 1, [1; 32], 1))
                .unwrap_err(),
            HeadsError::NotMember
        );
        heads
            .insert(Checkpoint::sign(&member, 1, [1; 32], 1))
            .unwrap();
        // A gossiped state holding a stranger's checkpoints adds nothing.
        let mut theirs = AuditHeads::new();
        theirs
            .insert_checkpoint(Checkpoint::sign(&stranger, 2, [2; 32], 1))
            .unwrap();
        theirs
            .insert_checkpoint(Checkpoint::sign(&stranger, 2, [3; 32], 1))
            .unwrap();
        assert!(heads.merge_gossip(&theirs.encode()).unwrap().is_empty());
        assert_eq!(heads.heads().len(), 1);
        assert!(heads.forks().is_empty());
    }
}
