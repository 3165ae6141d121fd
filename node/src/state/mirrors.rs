//! Copies of other nodes' audit logs, each verified in full against the
//! checkpoint its owner signed before it was kept (`state/remote.rs`
//! fetches and checks them), served on to peers that ask for a log whose
//! owner they cannot reach.
//!
//! A relay cannot forge anything: every range it serves carries the
//! owner's signed checkpoint and, when asked for, an inclusion proof per
//! entry, and the fetcher checks both. What a relay can do is serve an
//! older checkpoint; the fetcher compares it with its audit heads.

use osmoda_crdt_state::merkle::leaf_hash;
use osmoda_crdt_state::{Checkpoint, Hash, NodeKey};
use osmoda_store::{LogHandle, Store};

use crate::error::NodeError;
use crate::state::audit_log::{proofs_for, split, Served};

type Result<T, E = NodeError> = std::result::Result<T, E>;

/// Checkpoints of mirrored logs, keyed by the owner's key.
const MIRROR_META: &str = "audit-mirror";

/// Store log names allow 64 bytes of `[A-Za-z0-9_.-]`: the key in base64url.
fn mirror_log(node: &NodeKey) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    format!("mirror.{}", URL_SAFE_NO_PAD.encode(node))
}

/// Verified copies of other nodes' logs.
#[derive(Clone)]
pub struct Mirrors {
    store: Store,
}

impl Mirrors {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The mirrored checkpoint of `node`, if this node holds its log.
    pub fn checkpoint(&self, node: &NodeKey) -> Result<Option<Checkpoint>> {
        match self.store.get(MIRROR_META, node)? {
            Some(bytes) => Ok(Some(Checkpoint::decode(&bytes).map_err(|e| {
                NodeError::Internal(format!("a mirrored checkpoint is damaged: {e}"))
            })?)),
            None => Ok(None),
        }
    }

    /// Serves `start..start+count` of a mirrored log with its checkpoint
    /// and, when asked for, each record's inclusion proof. A proof needs
    /// the leaves of the whole copy: read and hashed per request, at most
    /// `MAX_REMOTE_ENTRIES` of them (no longer copy is kept).
    pub fn serve_range(
        &self,
        node: &NodeKey,
        start: u64,
        count: u32,
        proofs: bool,
    ) -> Result<Option<Served>> {
        let Some(cp) = self.checkpoint(node)? else {
            return Ok(None);
        };
        let log = self.store.log(&mirror_log(node))?;
        let end = start.saturating_add(u64::from(count)).min(cp.size);
        let records = if start < end {
            log.read_range(start..end)?
        } else {
            Vec::new()
        };
        let proofs = if proofs && !records.is_empty() {
            let leaves = leaves(&log, cp.size)?;
            proofs_for(&cp, start..start + records.len() as u64, &leaves)?
        } else {
            Vec::new()
        };
        Ok(Some(Served {
            checkpoint: cp,
            records,
            proofs,
        }))
    }

    /// Keeps a verified log, when it extends the copy held so far. A log
    /// that does not extend it (a fork) is left to the heads CRDT to report.
    pub(crate) async fn keep(&self, cp: &Checkpoint, records: &[Vec<u8>]) -> Result<()> {
        let log = self.store.log(&mirror_log(&cp.node))?;
        let held = log.len()?;
        if held >= cp.size {
            return Ok(());
        }
        if held > 0 {
            let last = log.read_range(held - 1..held)?;
            let same = match (last.first(), records.get(held as usize - 1)) {
                (Some(a), Some(b)) => a.get(..32) == b.get(..32),
                _ => false,
            };
            if !same {
                return Ok(());
            }
        }
        let mut acks = Vec::new();
        for record in &records[held as usize..cp.size as usize] {
            acks.push(log.submit(record)?);
        }
        for ack in acks {
            ack.await?;
        }
        let mut meta = osmoda_store::Batch::new();
        meta.put(MIRROR_META, &cp.node, &cp.encode());
        self.store.submit_batch(meta)?.await?;
        Ok(())
    }
}

/// The leaf hashes of the first `size` records of a mirrored log, read a
/// page at a time (the store may cut a page short) so that only the hashes
/// are held.
fn leaves(log: &LogHandle, size: u64) -> Result<Vec<Hash>> {
    let mut out = Vec::with_capacity(size as usize);
    while (out.len() as u64) < size {
        let at = out.len() as u64;
        let page = log.read_range(at..size)?;
        if page.is_empty() {
            return Err(NodeError::Internal(format!(
                "a mirrored log ends at {at}, its checkpoint covers {size}"
            )));
        }
        for record in page {
            let (_, entry) = split(&record).ok_or_else(|| {
                NodeError::Internal(format!("mirrored record {} is truncated", out.len()))
            })?;
            out.push(leaf_hash(entry));
        }
    }
    Ok(out)
}
