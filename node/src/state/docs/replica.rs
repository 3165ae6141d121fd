//! The documents as replication sees them: summaries to compare, sync
//! rounds to generate and receive, pushed changes to apply, and what a
//! peer's changes touched, for the audit log. Knowledge shards are
//! addressed by `ShardId`, single documents by their kind's wire number.

use osmoda_docs::{ChangedKeys, HeadsSummary, Pushed, ShardId, StoreSync, SyncSession};

#[cfg(doc)]
use super::kinds::MAX_SINGLES;
use super::kinds::{AnySingle, Kind, Refused, AUDITED_KEYS, KNOWLEDGE};
use super::{replica_batches, Docs, Result};
use crate::error::NodeError;

/// What a peer's sync round did here.
#[derive(Debug, Default, Clone)]
pub struct Received {
    /// Documents that changed.
    pub changed: usize,
    /// Messages that did not decode or apply (the peer's fault).
    pub refused: usize,
    /// The entries and routines the changes touched.
    pub touched: Touched,
}

/// The keys (entry ids, routine ids) a peer's changes touched, by kind of
/// document, for the audit log: at most [`AUDITED_KEYS`] of each kind
/// listed, the rest counted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Touched {
    by_kind: Vec<(&'static Kind, ChangedKeys)>,
}

impl Touched {
    pub fn add(&mut self, kind: &'static Kind, keys: ChangedKeys) {
        if keys.is_empty() {
            return;
        }
        match self.by_kind.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, have)) => have.merge(keys, AUDITED_KEYS),
            None => self.by_kind.push((kind, keys)),
        }
    }

    pub fn merge(&mut self, other: Touched) {
        for (kind, keys) in other.by_kind {
            self.add(kind, keys);
        }
    }

    /// One audit entry per kind touched: the action (`knowledge.sync`,
    /// `routine.push`, ...) for `how` (`sync`, `push`), and details that
    /// name the keys, e.g. `2 entries: k1, k2`.
    pub fn audit_entries(&self, how: &str) -> Vec<(String, String)> {
        self.by_kind
            .iter()
            .map(|(kind, keys)| (format!("{}.{how}", kind.action), describe(kind, keys)))
            .collect()
    }
}

fn describe(kind: &Kind, keys: &ChangedKeys) -> String {
    let noun = if keys.len() == 1 { kind.one } else { kind.many };
    let mut out = format!("{} {noun}: {}", keys.len(), keys.keys.join(", "));
    if keys.more > 0 {
        out.push_str(&format!(" and {} more", keys.more));
    }
    out
}

impl Docs {
    /// Every single document, in the order of the state summary and of
    /// sync sessions (at most [`MAX_SINGLES`], each with its own wire
    /// number). A new document type is listed here.
    pub fn singles(&self) -> [&dyn AnySingle; 1] {
        [&self.routines]
    }

    fn single(&self, wire: u16) -> Option<&dyn AnySingle> {
        self.singles().into_iter().find(|s| s.kind().wire == wire)
    }

    /// Whether `doc` names a document: a knowledge shard or a single one.
    pub fn is_document(&self, doc: u16) -> bool {
        ShardId::new(doc).is_some() || self.single(doc).is_some()
    }

    /// This node's heads summary of the knowledge shards, for gossip.
    pub fn summary(&self) -> HeadsSummary {
        // Every peer's summary is compared with ours: computed once per
        // change, not once per message.
        let version = self.version();
        let mut cache = self.summary_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((v, summary)) = cache.as_ref() {
            if *v == version {
                return summary.clone();
            }
        }
        let summary = self
            .knowledge
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .heads_summary();
        *cache = Some((version, summary.clone()));
        summary
    }

    /// Digests of the single documents' heads, in [`Docs::singles`] order.
    pub fn singles_digests(&self) -> Vec<[u8; 16]> {
        self.singles().iter().map(|s| s.digest()).collect()
    }

    /// The next round of `sync`'s messages for the knowledge shards, at
    /// most `budget` bytes of them.
    pub fn sync_generate(&self, sync: &mut StoreSync, budget: usize) -> Vec<(ShardId, Vec<u8>)> {
        let mut k = self.knowledge.lock().unwrap_or_else(|e| e.into_inner());
        sync.generate_within(&mut k, budget)
    }

    /// Applies a peer's round for the knowledge shards; stores the shards
    /// it changed. A bad message fails that shard's session only, and is
    /// counted as refused.
    pub fn sync_receive(
        &self,
        sync: &mut StoreSync,
        messages: Vec<(ShardId, Vec<u8>)>,
    ) -> Result<Received> {
        let mut k = self.knowledge.lock().unwrap_or_else(|e| e.into_inner());
        let mut received = Received::default();
        for (shard, bytes) in messages {
            let before = k.shard(shard).map(|d| d.heads()).unwrap_or_default();
            match sync.receive(&mut k, shard, &bytes) {
                Ok(true) => {
                    received.changed += 1;
                    let keys = k.shard_mut(shard).changed_keys(&before, AUDITED_KEYS);
                    received.touched.add(&KNOWLEDGE, keys);
                }
                Ok(false) => {}
                Err(e) => {
                    received.refused += 1;
                    tracing::debug!(shard = shard.index(), error = %e, "sync message refused")
                }
            }
        }
        if self.store_replicated(&mut k)? {
            self.changed();
            self.unheard();
        }
        Ok(received)
    }

    /// Applies a peer's sync message for one of [`Docs::singles`]; a
    /// message that does not decode is counted as refused.
    pub fn single_receive(
        &self,
        single: &dyn AnySingle,
        session: &mut SyncSession,
        bytes: &[u8],
    ) -> Result<Received> {
        match single.receive(session, bytes) {
            Ok(None) => Ok(Received::default()),
            Ok(Some(keys)) => {
                self.changed();
                self.unheard();
                let mut received = Received {
                    changed: 1,
                    ..Received::default()
                };
                received.touched.add(single.kind(), keys);
                Ok(received)
            }
            Err(Refused::Message(e)) => {
                tracing::debug!(kind = single.kind().action, error = %e, "sync message refused");
                Ok(Received {
                    refused: 1,
                    ..Received::default()
                })
            }
            Err(Refused::Store(e)) => Err(e),
        }
    }

    /// Judges a member's pushed change as every replica will, before it is
    /// relayed (`osmoda_docs::Doc::judge_pushed`).
    pub fn judge_pushed(&self, doc: u16, change: &[u8]) -> Result<()> {
        let refused = |e: osmoda_docs::DocError| NodeError::Invalid(e.to_string());
        if let Some(single) = self.single(doc) {
            return single.judge_pushed(change);
        }
        let shard =
            ShardId::new(doc).ok_or_else(|| NodeError::not_found("document", doc.to_string()))?;
        let k = self.knowledge.lock().unwrap_or_else(|e| e.into_inner());
        match k.shard(shard) {
            Some(d) => d.judge_pushed(change).map_err(refused),
            // Nothing here yet: only an entry's creation can apply, and
            // an empty shard judges it as well as any.
            None => osmoda_docs::Doc::empty(k.node())
                .judge_pushed(change)
                .map_err(refused),
        }
    }

    /// Stores the knowledge shards a peer's changes made dirty: queued in
    /// order under the lock, as replicated data need not wait for the disk.
    /// Says whether there were any.
    fn store_replicated(&self, k: &mut osmoda_docs::KnowledgeStore) -> Result<bool> {
        let saved = k.save_dirty();
        let any = !saved.is_empty();
        for batch in replica_batches(saved) {
            let _ack = self.store.submit_batch(batch)?;
        }
        Ok(any)
    }

    /// Applies a member's pushed change to a shard or a single document,
    /// and stores what changed. Says which entries or routines it touched.
    pub fn apply_pushed(&self, doc: u16, change: &[u8]) -> Result<(Pushed, Touched)> {
        let mut touched = Touched::default();
        if let Some(single) = self.single(doc) {
            let (pushed, keys) = single.apply_pushed(change)?;
            if pushed == Pushed::Applied {
                self.changed();
                touched.add(single.kind(), keys);
            }
            return Ok((pushed, touched));
        }
        let shard =
            ShardId::new(doc).ok_or_else(|| NodeError::not_found("document", doc.to_string()))?;
        let mut k = self.knowledge.lock().unwrap_or_else(|e| e.into_inner());
        let before = k.shard(shard).map(|d| d.heads()).unwrap_or_default();
        let pushed = k.shard_mut(shard).apply_pushed(change);
        if let Err(e) = pushed {
            // Changes taken before a refused one in the same push stay,
            // and are stored.
            if self.store_replicated(&mut k)? {
                self.changed();
            }
            return Err(NodeError::Invalid(e.to_string()));
        }
        let pushed = pushed.map_err(|e| NodeError::Invalid(e.to_string()))?;
        if pushed == Pushed::Applied {
            let keys = k.shard_mut(shard).changed_keys(&before, AUDITED_KEYS);
            touched.add(&KNOWLEDGE, keys);
            self.store_replicated(&mut k)?;
            self.changed();
        }
        Ok((pushed, touched))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::docs::MAX_SINGLES;

    #[tokio::test]
    async fn single_documents_fit_the_summary_and_have_their_own_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let store = osmoda_store::Store::open(dir.path().join("state.redb")).unwrap();
        let docs = Docs::open(&store, &"ab".repeat(32), None).unwrap();
        let wires: Vec<u16> = docs.singles().iter().map(|s| s.kind().wire).collect();
        assert!(wires.len() <= MAX_SINGLES);
        for (i, w) in wires.iter().enumerate() {
            assert!(ShardId::new(*w).is_none(), "{w} is a shard's number");
            assert!(!wires[..i].contains(w), "{w} is taken twice");
        }
    }

    #[test]
    fn touched_keys_are_described_per_kind() {
        let mut touched = Touched::default();
        let keys = |k: &[&str], more| ChangedKeys {
            keys: k.iter().map(|s| s.to_string()).collect(),
            more,
        };
        touched.add(&KNOWLEDGE, keys(&["a"], 0));
        touched.add(&super::super::ROUTINES, keys(&["r1", "r2"], 3));
        touched.add(&KNOWLEDGE, keys(&["b"], 0));
        touched.add(&KNOWLEDGE, ChangedKeys::default());
        assert_eq!(
            touched.audit_entries("sync"),
            [
                ("knowledge.sync".to_string(), "2 entries: a, b".to_string()),
                (
                    "routine.sync".to_string(),
                    "5 routines: r1, r2 and 3 more".to_string()
                ),
            ]
        );
    }
}
