//! Syncing a whole knowledge store with one peer: only the shards whose
//! heads digests differ get a [`SyncSession`].
//!
//! The flow: both nodes gossip [`HeadsSummary`]s; when a peer's summary
//! differs from ours, each side builds a `StoreSync` from the two summaries
//! (the comparison is symmetric, so both pick the same shards), then they
//! exchange `(shard, message)` pairs until neither has anything to send.
//! Framing the pairs on the wire is the caller's business.

use std::collections::BTreeMap;

use crate::error::SyncError;
use crate::knowledge::KnowledgeStore;
use crate::shard::ShardId;
use crate::summary::HeadsSummary;
use crate::sync::{SyncLimits, SyncSession, SyncStats};

/// Sync sessions for the differing shards of two stores.
#[derive(Debug)]
pub struct StoreSync {
    limits: SyncLimits,
    sessions: BTreeMap<ShardId, SyncSession>,
    failures: Vec<(ShardId, SyncError)>,
}

impl StoreSync {
    /// Sessions for every shard that differs between the summaries.
    pub fn new(local: &HeadsSummary, remote: &HeadsSummary, limits: SyncLimits) -> Self {
        let sessions = local
            .differing_shards(remote)
            .into_iter()
            .map(|s| (s, SyncSession::new(limits)))
            .collect();
        Self {
            limits,
            sessions,
            failures: Vec::new(),
        }
    }

    /// The shards being synced (failed ones excluded).
    pub fn shards(&self) -> Vec<ShardId> {
        self.sessions.keys().copied().collect()
    }

    /// Shards whose session failed, and why. Their sessions are dropped.
    pub fn failures(&self) -> &[(ShardId, SyncError)] {
        &self.failures
    }

    /// Every message to send now, one per shard with something to say.
    pub fn generate(&mut self, store: &mut KnowledgeStore) -> Vec<(ShardId, Vec<u8>)> {
        self.generate_within(store, usize::MAX)
    }

    /// The messages to send now, in shard order, at most `budget` bytes of
    /// them: a shard is asked for its message only while a message of the
    /// largest size still fits, so the rest wait for the next round with
    /// their sessions untouched.
    pub fn generate_within(
        &mut self,
        store: &mut KnowledgeStore,
        budget: usize,
    ) -> Vec<(ShardId, Vec<u8>)> {
        let mut out = Vec::new();
        let mut failed = Vec::new();
        let mut left = budget;
        for (&shard, session) in self.sessions.iter_mut() {
            if left < self.limits.max_message_bytes {
                break;
            }
            match session.generate_message(store.shard_mut(shard)) {
                Ok(Some(msg)) => {
                    left = left.saturating_sub(msg.len());
                    out.push((shard, msg));
                }
                Ok(None) => {}
                Err(e) => failed.push((shard, e)),
            }
        }
        for (shard, e) in failed {
            self.sessions.remove(&shard);
            self.failures.push((shard, e));
        }
        out
    }

    /// Applies a message for `shard`. A message for a shard not planned
    /// (our summary was older than the peer's view) opens a session for it.
    /// Returns whether the shard changed; to know which entries did, take
    /// [`KnowledgeStore::shard_heads`] before and ask the shard's
    /// [`Doc::changed_keys`](crate::Doc::changed_keys) after.
    pub fn receive(
        &mut self,
        store: &mut KnowledgeStore,
        shard: ShardId,
        bytes: &[u8],
    ) -> Result<bool, SyncError> {
        if let Some((_, e)) = self.failures.iter().find(|(s, _)| *s == shard) {
            return Err(SyncError::Failed(e.to_string()));
        }
        let limits = self.limits;
        let session = self
            .sessions
            .entry(shard)
            .or_insert_with(|| SyncSession::new(limits));
        match session.receive_message(store.shard_mut(shard), bytes) {
            Ok(changed) => Ok(changed),
            Err(e) => {
                self.sessions.remove(&shard);
                self.failures.push((shard, e.clone()));
                Err(e)
            }
        }
    }

    /// Totals over all sessions.
    pub fn stats(&self) -> SyncStats {
        let mut t = SyncStats::default();
        for s in self.sessions.values() {
            let s = s.stats();
            t.messages_sent += s.messages_sent;
            t.bytes_sent += s.bytes_sent;
            t.messages_received += s.messages_received;
            t.bytes_received += s.bytes_received;
        }
        t
    }
}
