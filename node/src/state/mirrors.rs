//! Other nodes' audit logs: fetched in ranges from the owner or from any
//! peer that holds a verified copy, checked against the checkpoint the owner
//! signed, and kept here as a mirror so that this node can serve them too.
//!
//! A relay cannot forge anything: every range comes with the owner's signed
//! checkpoint, and the entries must hash to its root. A relay can only serve
//! an older checkpoint, and the report says which size was verified and who
//! served it.

use libp2p::PeerId;
use osmoda_crdt_state::{verify_log, AuditEntry, Checkpoint, NodeKey, VerifyError};
use osmoda_fabric::FabricHandle;
use osmoda_store::Store;

use crate::api::{AuditEntryView, VerifyReport};
use crate::error::{NodeError, NodeResult};
use crate::replication::wire::{self, Failure, Request, Response, MAX_AUDIT_RECORDS_PER_REQUEST};
use crate::state::audit_log::{split, MAX_REMOTE_ENTRIES};
use crate::state::heads::FleetHeads;

type Result<T, E = NodeError> = std::result::Result<T, E>;
/// Why one source could not serve a log: said to the caller, source by source.
type Fetch<T> = std::result::Result<T, String>;

/// Checkpoints of mirrored logs, keyed by the owner's key.
const MIRROR_META: &str = "audit-mirror";
/// Peers asked for a log besides its owner.
const MAX_SOURCES: usize = 8;

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

    /// Serves `start..start+count` of a mirrored log with its checkpoint.
    pub fn serve_range(
        &self,
        node: &NodeKey,
        start: u64,
        count: u32,
    ) -> Result<Option<(Checkpoint, Vec<Vec<u8>>)>> {
        let Some(cp) = self.checkpoint(node)? else {
            return Ok(None);
        };
        let end = start.saturating_add(u64::from(count)).min(cp.size);
        let records = if start < end {
            self.store.log(&mirror_log(node))?.read_range(start..end)?
        } else {
            Vec::new()
        };
        Ok(Some((cp, records)))
    }

    /// Keeps a verified log, when it extends the copy held so far. A log
    /// that does not extend it (a fork) is left to the heads CRDT to report.
    async fn keep(&self, cp: &Checkpoint, records: &[Vec<u8>]) -> Result<()> {
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

/// A log as one source served it, not yet verified.
struct Fetched {
    checkpoint: Checkpoint,
    records: Vec<Vec<u8>>,
}

/// Asks `source` for one range of `node`'s log.
async fn fetch_range(
    fabric: &FabricHandle,
    source: PeerId,
    node: &NodeKey,
    start: u64,
    count: u32,
) -> Fetch<(Checkpoint, Vec<Vec<u8>>)> {
    let request = Request::AuditRange {
        node: *node,
        start,
        count,
    };
    let (cp, records) = match wire::request(fabric, source, &request).await {
        Ok(Response::AuditRange {
            checkpoint,
            records,
        }) => (checkpoint, records),
        Ok(_) => return Err("answered with something else".into()),
        Err(Failure::Refused(reason)) => return Err(format!("refused: {reason}")),
        Err(e) => return Err(e.to_string()),
    };
    if &cp.node != node || cp.verify().is_err() {
        return Err("the checkpoint is not signed by that node".into());
    }
    Ok((cp, records))
}

/// Fetches the whole log, as of the first checkpoint `source` sends.
async fn fetch_log(fabric: &FabricHandle, source: PeerId, node: &NodeKey) -> Fetch<Fetched> {
    let mut anchor: Option<Checkpoint> = None;
    let mut records: Vec<Vec<u8>> = Vec::new();
    loop {
        let start = records.len() as u64;
        let (cp, batch) =
            fetch_range(fabric, source, node, start, MAX_AUDIT_RECORDS_PER_REQUEST).await?;
        let anchor = anchor.get_or_insert(cp);
        if anchor.size > MAX_REMOTE_ENTRIES {
            return Err(format!(
                "the log has {} entries, more than the {MAX_REMOTE_ENTRIES} this command verifies",
                anchor.size
            ));
        }
        if start >= anchor.size {
            break;
        }
        if batch.is_empty() {
            return Err(format!(
                "stopped sending at entry {start}, before the signed size"
            ));
        }
        records.extend(batch);
        if records.len() as u64 >= anchor.size {
            break;
        }
    }
    let Some(checkpoint) = anchor else {
        return Err("no checkpoint received".into());
    };
    records.truncate(checkpoint.size as usize);
    Ok(Fetched {
        checkpoint,
        records,
    })
}

/// Checks fetched entries against their checkpoint; names the first bad one.
fn check(fetched: &Fetched) -> VerifyReport {
    let cp = &fetched.checkpoint;
    let mut chain = Vec::with_capacity(fetched.records.len());
    let mut entries = Vec::with_capacity(fetched.records.len());
    for (seq, record) in (0u64..).zip(&fetched.records) {
        let Some((c, e)) = split(record) else {
            return VerifyReport::bad(
                cp.size,
                cp.size,
                Some(seq),
                format!("entry {seq} is truncated"),
            );
        };
        chain.push(c);
        entries.push(e);
    }
    match verify_log(cp, &entries, Some(&chain)) {
        Ok(()) => VerifyReport {
            ok: true,
            entries: cp.size,
            checkpoint_size: cp.size,
            bad_entry: None,
            problem: None,
            served_by: None,
        },
        Err(VerifyError::Entry { seq, fault }) => {
            VerifyReport::bad(cp.size, cp.size, Some(seq), format!("entry {seq}: {fault}"))
        }
        Err(other) => VerifyReport::bad(cp.size, cp.size, None, other.to_string()),
    }
}

/// The owner first, then the connected peers.
async fn sources(fabric: &FabricHandle, owner: PeerId) -> Vec<PeerId> {
    let mut out = vec![owner];
    if let Ok(peers) = fabric.peers().await {
        out.extend(
            peers
                .into_iter()
                .filter_map(|p| p.node_id.parse::<PeerId>().ok())
                .filter(|p| *p != owner)
                .take(MAX_SOURCES),
        );
    }
    out
}

/// Fetches `owner`'s log from the owner or, when it cannot answer, from a
/// peer that holds a copy; verifies it against the owner's checkpoint and
/// keeps a verified copy. The checkpoint also goes to the audit heads, so a
/// fork seen this way is reported like one seen over gossip.
pub async fn verify_remote(
    fabric: &FabricHandle,
    mirrors: &Mirrors,
    heads: &FleetHeads,
    owner: PeerId,
) -> NodeResult<VerifyReport> {
    let node = node_key(&owner)?;
    let mut failures = Vec::new();
    for source in sources(fabric, owner).await {
        let fetched = match fetch_log(fabric, source, &node).await {
            Ok(f) => f,
            Err(e) => {
                failures.push(format!("{source}: {e}"));
                continue;
            }
        };
        let mut report = check(&fetched);
        report.served_by = Some(source.to_string());
        if report.ok {
            let _ = heads.insert(fetched.checkpoint.clone());
            if let Err(e) = mirrors.keep(&fetched.checkpoint, &fetched.records).await {
                tracing::warn!(error = %e, "cannot keep a copy of a verified audit log");
            }
        }
        return Ok(report);
    }
    Err(no_source(owner, &failures))
}

fn node_key(owner: &PeerId) -> NodeResult<NodeKey> {
    osmoda_fabric::node_key_of(owner)
        .ok_or_else(|| NodeError::Invalid(format!("{owner} is not an osmoda node id")))
}

fn no_source(owner: PeerId, failures: &[String]) -> NodeError {
    NodeError::Upstream(format!(
        "no peer served the log of {owner}: {}",
        failures.join("; ")
    ))
}

/// Entries of a peer's log, from the owner or a peer holding a copy (not
/// verified; `audit verify --node` does that).
pub async fn read_remote(
    fabric: &FabricHandle,
    owner: PeerId,
    start: u64,
    limit: u64,
) -> NodeResult<Vec<AuditEntryView>> {
    let node = node_key(&owner)?;
    let count = limit.min(u64::from(MAX_AUDIT_RECORDS_PER_REQUEST)) as u32;
    let mut failures = Vec::new();
    for source in sources(fabric, owner).await {
        let records = match fetch_range(fabric, source, &node, start, count).await {
            Ok((_, records)) => records,
            Err(e) => {
                failures.push(format!("{source}: {e}"));
                continue;
            }
        };
        let mut out = Vec::new();
        for (seq, record) in (start..).zip(records) {
            let entry = split(&record)
                .and_then(|(_, bytes)| AuditEntry::decode(bytes).ok())
                .ok_or_else(|| {
                    NodeError::Upstream(format!("{source} served a damaged entry {seq}"))
                })?;
            out.push(entry.into());
        }
        return Ok(out);
    }
    Err(no_source(owner, &failures))
}
