//! The node's own audit log: every change made through the CLI, the API or
//! by a peer becomes an entry, durably stored before the change is
//! acknowledged, chained and Merkle-hashed (`osmoda-crdt-state`), with a
//! signed checkpoint kept beside it.
//!
//! Each record in the store's `audit` log is `chain value (32 bytes) ||
//! encoded entry`, so that a verifier can name the first altered entry.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use osmoda_crdt_state::merkle::{chain_hash, CHAIN_START};
use osmoda_crdt_state::{
    verify_log, Actor, AuditEntry, Checkpoint, InclusionProof, MemoryLog, Outcome, VerifyError,
};
use osmoda_store::{Batch, LogHandle, Store, StoreError};

use crate::api::{AuditEntryView, VerifyReport};
use crate::error::NodeError;

type Result<T, E = NodeError> = std::result::Result<T, E>;

fn damaged(what: String) -> NodeError {
    NodeError::Internal(what)
}

const LOG: &str = "audit";
const META: &str = "audit-meta";
const CHECKPOINT_KEY: &[u8] = b"checkpoint";
/// Records read per store call while loading or verifying.
const CHUNK: u64 = 4096;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn split(record: &[u8]) -> Option<([u8; 32], &[u8])> {
    let (chain, entry) = record.split_at_checked(32)?;
    Some((chain.try_into().ok()?, entry))
}

/// How an actor is written in the log's views.
pub fn actor_text(actor: &Actor) -> String {
    match actor {
        Actor::Operator => "operator".into(),
        Actor::Agent(id) => format!("agent:{id}"),
        Actor::Peer(key) => osmoda_fabric::peer_id_of(key)
            .map(|p| format!("peer:{p}"))
            .unwrap_or_else(|| "peer:?".into()),
        Actor::Node => "node".into(),
    }
}

impl From<AuditEntry> for AuditEntryView {
    fn from(e: AuditEntry) -> Self {
        Self {
            seq: e.seq,
            time_ms: e.time_ms,
            actor: actor_text(&e.actor),
            actor_name: None,
            action: e.action,
            target: e.target,
            ring: e.ring,
            outcome: match e.outcome {
                Outcome::Ok => "ok".into(),
                Outcome::Denied => "denied".into(),
                Outcome::Failed(reason) => format!("failed: {reason}"),
            },
            details: e.details,
        }
    }
}

impl VerifyReport {
    pub(crate) fn bad(
        entries: u64,
        checkpoint_size: u64,
        seq: Option<u64>,
        problem: String,
    ) -> Self {
        Self {
            ok: false,
            entries,
            checkpoint_size,
            bad_entry: seq,
            problem: Some(problem),
            ..Self::default()
        }
    }
}

/// The running node's log.
pub struct AuditLog {
    store: Store,
    log: LogHandle,
    memory: Mutex<MemoryLog>,
    metrics: crate::metrics::AuditMetrics,
}

impl AuditLog {
    /// Loads the stored log, checking its chain as it goes.
    pub fn open(store: &Store, key: SigningKey) -> Result<Self> {
        let log = store.log(LOG)?;
        let mut memory = MemoryLog::new(key);
        for (seq, record) in read_all(&log)?.iter().enumerate() {
            let (chain, entry) =
                split(record).ok_or_else(|| damaged(format!("audit entry {seq} is truncated")))?;
            memory.append_encoded(entry).map_err(|e| {
                damaged(format!(
                    "audit entry {seq} is damaged ({e}); run `osmoda audit verify`"
                ))
            })?;
            if memory.chain_head() != chain {
                return Err(damaged(format!(
                    "audit entry {seq} breaks the chain; run `osmoda audit verify`"
                )));
            }
        }
        Ok(Self {
            store: store.clone(),
            log,
            memory: Mutex::new(memory),
            metrics: Default::default(),
        })
    }

    /// Appends and their fsync latency, for the node's metrics.
    pub fn metrics(&self) -> &crate::metrics::AuditMetrics {
        &self.metrics
    }

    /// The store's file, whose size the metrics show.
    pub fn store_path(&self) -> &std::path::Path {
        self.store.path()
    }

    /// Appends an entry and returns its sequence number once it is on disk.
    pub async fn record(
        &self,
        actor: Actor,
        action: &str,
        target: &str,
        outcome: Outcome,
        details: &str,
    ) -> Result<u64> {
        self.record_in_ring(actor, 0, action, target, outcome, details)
            .await
    }

    /// Like [`record`](Self::record), for an act done in trust ring `ring`
    /// (an agent's tool call).
    pub async fn record_in_ring(
        &self,
        actor: Actor,
        ring: u8,
        action: &str,
        target: &str,
        outcome: Outcome,
        details: &str,
    ) -> Result<u64> {
        let (seq, ack) = {
            let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
            let seq = memory.len();
            let entry = AuditEntry {
                seq,
                time_ms: now_ms(),
                actor,
                action: action.to_owned(),
                target: target
                    .chars()
                    .take(osmoda_crdt_state::entry::MAX_TARGET_LEN / 4)
                    .collect(),
                ring,
                outcome: match outcome {
                    Outcome::Failed(reason) => Outcome::Failed(
                        reason
                            .chars()
                            .take(osmoda_crdt_state::entry::MAX_REASON_LEN / 4)
                            .collect(),
                    ),
                    other => other,
                },
                details: details
                    .chars()
                    .take(osmoda_crdt_state::entry::MAX_DETAILS_LEN / 4)
                    .collect(),
            };
            let bytes = entry
                .encode()
                .map_err(|e| NodeError::Audit(e.to_string()))?;
            let mut record = chain_hash(&memory.chain_head(), &bytes).to_vec();
            record.extend_from_slice(&bytes);
            // Submitted under the lock, so store indices follow sequence numbers.
            let ack = self.log.submit(&record)?;
            memory
                .append_encoded(&bytes)
                .map_err(|e| NodeError::Audit(e.to_string()))?;
            (seq, ack)
        };
        let submitted = std::time::Instant::now();
        let index = ack.await?;
        self.metrics
            .fsync_seconds
            .observe(submitted.elapsed().as_secs_f64());
        self.metrics.appends.inc();
        if index != seq {
            return Err(NodeError::Audit(format!(
                "audit store index {index} does not match sequence {seq}"
            )));
        }
        Ok(seq)
    }

    /// Signs a checkpoint of the log as it is, without storing it.
    pub fn signed_checkpoint(&self) -> Checkpoint {
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .checkpoint(now_ms())
    }

    /// Signs a checkpoint of the log as it is and keeps it in the store.
    /// The fsync is awaited, not waited for: the caller's thread is free.
    pub async fn checkpoint(&self) -> Result<Checkpoint> {
        let cp = self.signed_checkpoint();
        let mut batch = Batch::new();
        batch.put(META, CHECKPOINT_KEY, &cp.encode());
        self.store.submit_batch(batch)?.await?;
        Ok(cp)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> u64 {
        self.memory.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

pub(crate) fn read_all(log: &LogHandle) -> Result<Vec<Vec<u8>>, StoreError> {
    let len = log.len()?;
    let mut out = Vec::with_capacity(len as usize);
    let mut start = 0;
    while start < len {
        let end = (start + CHUNK).min(len);
        out.extend(log.read_range(start..end)?);
        start = end;
    }
    Ok(out)
}

/// Entries `start..start+limit` as stored.
pub fn read_entries(store: &Store, start: u64, limit: u64) -> Result<Vec<AuditEntryView>> {
    let log = store.log(LOG)?;
    let end = start.saturating_add(limit.min(CHUNK)).min(log.len()?);
    let mut out = Vec::new();
    for (seq, record) in (start..).zip(log.read_range(start..end.max(start))?) {
        let (_, bytes) =
            split(&record).ok_or_else(|| damaged(format!("audit entry {seq} is truncated")))?;
        let entry = AuditEntry::decode(bytes)
            .map_err(|e| damaged(format!("audit entry {seq} is damaged: {e}")))?;
        out.push(entry.into());
    }
    Ok(out)
}

/// Checks the stored log from disk: every record's checksum, decoding,
/// sequence numbers and chain, and the prefix signed by the last checkpoint
/// against that checkpoint. Names the first entry that fails.
pub fn verify_stored(store: &Store, owner: &[u8; 32]) -> Result<VerifyReport> {
    let log = store.log(LOG)?;
    let records = match read_all(&log) {
        Ok(records) => records,
        Err(StoreError::CorruptRecord { index, detail, .. }) => {
            let total = log.len().unwrap_or(0);
            return Ok(VerifyReport::bad(
                total,
                0,
                Some(index),
                format!("stored bytes of entry {index} were altered ({detail})"),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let total = records.len() as u64;
    let mut chain = Vec::with_capacity(records.len());
    let mut entries = Vec::with_capacity(records.len());
    for (seq, record) in (0u64..).zip(&records) {
        let Some((c, e)) = split(record) else {
            return Ok(VerifyReport::bad(
                total,
                0,
                Some(seq),
                format!("entry {seq} is truncated"),
            ));
        };
        chain.push(c);
        entries.push(e);
    }
    let checkpoint = match store.get(META, CHECKPOINT_KEY)? {
        Some(bytes) => Some(
            Checkpoint::decode(&bytes)
                .map_err(|e| damaged(format!("the stored checkpoint is damaged: {e}")))?,
        ),
        None => None,
    };
    let signed = checkpoint.as_ref().map(|c| c.size).unwrap_or(0);
    if let Some(cp) = &checkpoint {
        if &cp.node != owner {
            return Ok(VerifyReport::bad(
                total,
                signed,
                None,
                "the stored checkpoint was signed by another node".into(),
            ));
        }
        if cp.size > total {
            return Ok(VerifyReport::bad(
                total,
                signed,
                None,
                format!(
                    "entries were removed: the checkpoint covers {} entries, {total} are stored",
                    cp.size
                ),
            ));
        }
        let n = cp.size as usize;
        if let Err(e) = verify_log(cp, &entries[..n], Some(&chain[..n])) {
            return Ok(match e {
                VerifyError::Entry { seq, fault } => {
                    VerifyReport::bad(total, signed, Some(seq), format!("entry {seq}: {fault}"))
                }
                other => VerifyReport::bad(total, signed, None, other.to_string()),
            });
        }
    }
    // Entries after the checkpoint: decode, sequence and chain only.
    let mut prev = if signed == 0 {
        CHAIN_START
    } else {
        chain[signed as usize - 1]
    };
    for seq in signed..total {
        let i = seq as usize;
        match AuditEntry::decode(entries[i]) {
            Ok(e) if e.seq == seq => {}
            Ok(e) => {
                return Ok(VerifyReport::bad(
                    total,
                    signed,
                    Some(seq),
                    format!("entry {seq} carries sequence number {}", e.seq),
                ))
            }
            Err(err) => {
                return Ok(VerifyReport::bad(
                    total,
                    signed,
                    Some(seq),
                    format!("entry {seq} does not decode: {err}"),
                ))
            }
        }
        let next = chain_hash(&prev, entries[i]);
        if next != chain[i] {
            return Ok(VerifyReport::bad(
                total,
                signed,
                Some(seq),
                format!("entry {seq} breaks the hash chain"),
            ));
        }
        prev = next;
    }
    Ok(VerifyReport {
        ok: true,
        entries: total,
        checkpoint_size: signed,
        bad_entry: None,
        problem: None,
        ..VerifyReport::default()
    })
}

/// Most entries `audit verify --node` fetches; a longer log is refused
/// rather than held in memory.
pub const MAX_REMOTE_ENTRIES: u64 = 200_000;

impl AuditLog {
    /// Serves `start..start+count` of this node's log to a peer, with a
    /// fresh signed checkpoint covering everything stored and, when asked
    /// for, each record's inclusion proof in that checkpoint's tree.
    pub fn serve_range(&self, start: u64, count: u32, proofs: bool) -> Result<Served> {
        // The checkpoint and the leaves it signs are taken together; the
        // paths are hashed after the lock is let go, so appends wait for a
        // copy of the leaves, not for the hashing.
        let (cp, leaves) = {
            let memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
            let leaves = if proofs {
                memory.leaves().to_vec()
            } else {
                Vec::new()
            };
            (memory.checkpoint(now_ms()), leaves)
        };
        let end = start.saturating_add(u64::from(count)).min(cp.size);
        let records = if start < end {
            self.log.read_range(start..end)?
        } else {
            Vec::new()
        };
        let proofs = if proofs && !records.is_empty() {
            proofs_for(&cp, start..start + records.len() as u64, &leaves)?
        } else {
            Vec::new()
        };
        Ok(Served {
            checkpoint: cp,
            records,
            proofs,
        })
    }
}

/// A range of a log as this node serves it to a peer.
pub struct Served {
    pub checkpoint: Checkpoint,
    /// `chain || entry`, as stored.
    pub records: Vec<Vec<u8>>,
    /// One per record when asked for, else none.
    pub proofs: Vec<InclusionProof>,
}

/// The inclusion proofs of `range` in the tree `cp` signs, from its leaves.
pub(crate) fn proofs_for(
    cp: &Checkpoint,
    range: std::ops::Range<u64>,
    leaves: &[osmoda_crdt_state::Hash],
) -> Result<Vec<InclusionProof>> {
    let leaves = leaves
        .get(..cp.size as usize)
        .ok_or_else(|| damaged(format!("fewer leaves than the {} signed", cp.size)))?;
    let paths = osmoda_crdt_state::proof::inclusion_paths(range.clone(), leaves)
        .map_err(|e| damaged(format!("cannot prove a served range: {e}")))?;
    Ok(range
        .zip(paths)
        .map(|(leaf_index, path)| InclusionProof {
            leaf_index,
            tree_size: cp.size,
            path,
        })
        .collect())
}
