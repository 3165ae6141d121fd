//! Reading other nodes' audit logs: from the owner, or from any member that
//! holds a verified copy (`mirrors.rs`). Nothing a source sends is shown or
//! kept unchecked, and what it is checked against is said:
//!
//! - A page (`audit log --node`) comes with one inclusion proof per entry
//!   and is checked entry by entry against the owner's signed checkpoint
//!   (`osmoda_crdt_state::verify_served`): a flipped byte, a dropped,
//!   reordered or withheld entry, or a checkpoint not the owner's is named
//!   by its entry, and the source's answer is refused.
//! - A whole log (`audit verify --node`) is checked against the root and
//!   the chain (`verify_log`), which names the first entry whose chain
//!   value breaks; a source that rewrote the chain too is asked for the
//!   log again in pages with proofs, which name the entry.
//! - Either way, the checkpoint is compared with the owner's checkpoints
//!   in the fleet's audit heads (`osmoda_crdt_state::standing`): a copy
//!   older than what the fleet knows is reported as such, not passed off
//!   as current, and one that contradicts a known checkpoint is a fork,
//!   whose evidence joins the audit heads.

use libp2p::PeerId;
use osmoda_crdt_state::merkle::leaf_hash;
use osmoda_crdt_state::{
    standing, verify_log, verify_served, AuditEntry, Checkpoint, EntryError, EntryFault,
    ForkEvidence, InclusionProof, NodeKey, Standing, VerifyError,
};
use osmoda_fabric::FabricHandle;

use crate::api::{AuditEntryView, AuditLogView, SourceView, VerifyReport};
use crate::error::{NodeError, NodeResult};
use crate::replication::wire::{self, Failure, Request, Response, MAX_AUDIT_RECORDS_PER_REQUEST};
use crate::state::audit_log::{split, MAX_REMOTE_ENTRIES};
use crate::state::heads::FleetHeads;
use crate::state::mirrors::Mirrors;

/// Why one source could not serve a log: said to the caller, source by source.
type Fetch<T> = std::result::Result<T, String>;

/// Peers asked for a log besides its owner.
const MAX_SOURCES: usize = 8;

/// A range of a log as one source served it, not yet verified.
pub(crate) struct Page {
    pub checkpoint: Checkpoint,
    /// `chain || entry`, as the source stores them.
    pub records: Vec<Vec<u8>>,
    pub proofs: Vec<InclusionProof>,
}

/// The entry bytes of each record. A record too short to hold a chain
/// value is passed on empty, so the verifier names it as an entry that
/// does not decode.
fn entries_of(records: &[Vec<u8>]) -> Vec<&[u8]> {
    records
        .iter()
        .map(|r| split(r).map_or(&[][..], |(_, e)| e))
        .collect()
}

/// What a fetching node makes of a page `source` served of `owner`'s log,
/// entries `start..` of which it asked for `wanted`: every entry checked
/// with its proof against the owner's checkpoint, then the checkpoint
/// compared with the owner's checkpoints held here (`known`). Fails, naming
/// the entry, if anything does not verify; nothing of such a page is shown.
pub(crate) fn check_page(
    owner: &NodeKey,
    start: u64,
    wanted: u64,
    page: &Page,
    known: &[Checkpoint],
) -> Result<(Vec<AuditEntryView>, Standing), VerifyError> {
    let entries = entries_of(&page.records);
    verify_served(
        owner,
        &page.checkpoint,
        start,
        wanted,
        &entries,
        &page.proofs,
    )?;
    let mut views = Vec::with_capacity(entries.len());
    for (seq, bytes) in (start..).zip(&entries).take(wanted as usize) {
        // Verified above, so this decodes; an error here would be a bug,
        // and is still reported as the entry's.
        let entry = AuditEntry::decode(bytes).map_err(|e| VerifyError::Entry {
            seq,
            fault: EntryFault::Decode(e),
        })?;
        views.push(entry.into());
    }
    Ok((views, standing(&page.checkpoint, known, None)))
}

/// Asks `source` for one range of `node`'s log.
async fn fetch_range(
    fabric: &FabricHandle,
    source: PeerId,
    node: &NodeKey,
    start: u64,
    count: u32,
    proofs: bool,
) -> Fetch<Page> {
    let request = Request::AuditRange {
        node: *node,
        start,
        count,
        proofs,
    };
    match wire::request(fabric, source, &request).await {
        Ok(Response::AuditRange {
            checkpoint,
            records,
            proofs,
        }) => Ok(Page {
            checkpoint,
            records,
            proofs,
        }),
        Ok(_) => Err("answered with something else".into()),
        Err(Failure::Refused(reason)) => Err(format!("refused: {reason}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The whole log as one source served it, as of its first checkpoint.
struct Fetched {
    checkpoint: Checkpoint,
    records: Vec<Vec<u8>>,
}

/// Fetches the whole log, as of the first checkpoint `source` sends.
async fn fetch_log(fabric: &FabricHandle, source: PeerId, node: &NodeKey) -> Fetch<Fetched> {
    let mut anchor: Option<Checkpoint> = None;
    let mut records: Vec<Vec<u8>> = Vec::new();
    loop {
        let start = records.len() as u64;
        let page = fetch_range(
            fabric,
            source,
            node,
            start,
            MAX_AUDIT_RECORDS_PER_REQUEST,
            false,
        )
        .await?;
        let cp = &page.checkpoint;
        if &cp.node != node {
            return Err(VerifyError::NotOwner.to_string());
        }
        cp.verify()
            .map_err(|e| VerifyError::Checkpoint(e).to_string())?;
        let anchor = anchor.get_or_insert_with(|| page.checkpoint.clone());
        if anchor.size > MAX_REMOTE_ENTRIES {
            return Err(format!(
                "the log has {} entries, more than the {MAX_REMOTE_ENTRIES} this command verifies",
                anchor.size
            ));
        }
        if start >= anchor.size {
            break;
        }
        if page.records.is_empty() {
            return Err(format!(
                "stopped sending at entry {start}, before the signed size"
            ));
        }
        records.extend(page.records);
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

/// Checks a whole fetched log against its checkpoint, naming the first
/// entry whose chain value breaks when the chain was kept.
fn check_log(fetched: &Fetched) -> Result<(), VerifyError> {
    let mut chain = Vec::with_capacity(fetched.records.len());
    for (seq, record) in (0u64..).zip(&fetched.records) {
        match split(record) {
            Some((c, _)) => chain.push(c),
            // Too short to hold a chain value, let alone an entry.
            None => {
                return Err(VerifyError::Entry {
                    seq,
                    fault: EntryFault::Decode(EntryError::Malformed),
                })
            }
        }
    }
    verify_log(
        &fetched.checkpoint,
        &entries_of(&fetched.records),
        Some(&chain),
    )
}

/// Finds the entry a source altered when its copy does not hash to the
/// checkpoint's root but its chain was rewritten to match: asks for the
/// log again, a page at a time with proofs, until one fails. Costs the
/// source a proof per entry; only a source caught out pays it.
async fn locate(
    fabric: &FabricHandle,
    source: PeerId,
    node: &NodeKey,
    size: u64,
) -> Option<VerifyError> {
    let mut start = 0;
    while start < size {
        let page = fetch_range(
            fabric,
            source,
            node,
            start,
            MAX_AUDIT_RECORDS_PER_REQUEST,
            true,
        )
        .await
        .ok()?;
        let wanted = u64::from(MAX_AUDIT_RECORDS_PER_REQUEST);
        if let Err(e) = check_page(node, start, wanted, &page, &[]) {
            return Some(e);
        }
        start += wanted;
    }
    None
}

fn describe(e: &VerifyError) -> (Option<u64>, String) {
    match e {
        VerifyError::Entry { seq, .. } => (Some(*seq), e.to_string()),
        other => (None, other.to_string()),
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

/// Puts a verified checkpoint and any fork it shows into the audit heads;
/// returns the nodes whose fork evidence is new here (for the caller to
/// audit). The owner may have stopped being a member: then nothing is
/// kept, and nothing needs to be.
fn note(heads: &FleetHeads, cp: &Checkpoint, fork: Option<&ForkEvidence>) -> Vec<NodeKey> {
    let mut new = heads.insert(cp.clone()).map(|(_, n)| n).unwrap_or_default();
    if let Some(ev) = fork {
        new.extend(heads.insert_evidence(ev.clone()).unwrap_or_default());
    }
    new.sort();
    new.dedup();
    new
}

fn fork_text(ev: &ForkEvidence) -> String {
    match ev {
        ForkEvidence::SameSize { a, .. } => format!(
            "the owner signed two different logs of {} entries; the fleet knows the other",
            a.size
        ),
        ForkEvidence::Inconsistent { older, newer, .. } => format!(
            "the log served ({} entries) does not extend the owner's checkpoint of {} entries the fleet knows",
            newer.size, older.size
        ),
    }
}

/// What a verified checkpoint's standing adds to a report.
fn standing_fields(s: &Standing) -> (Option<u64>, Option<String>, Option<&ForkEvidence>) {
    match s {
        Standing::Current => (None, None, None),
        Standing::Behind { known } => (Some(known.size), None, None),
        Standing::Fork(ev) => (None, Some(fork_text(ev)), Some(ev)),
    }
}

/// Fetches `owner`'s whole log from the owner or, when it cannot answer,
/// from a peer that holds a copy; verifies it against the owner's
/// checkpoint and the known heads, and keeps a verified copy. A source
/// whose copy fails is named in the report, and the next is asked; the
/// report is the first that verifies (or, if none does, the first
/// failure). Returns the nodes whose fork evidence is new here.
pub async fn verify_remote(
    fabric: &FabricHandle,
    mirrors: &Mirrors,
    heads: &FleetHeads,
    owner: PeerId,
) -> NodeResult<(VerifyReport, Vec<NodeKey>)> {
    let node = node_key(&owner)?;
    let mut failures = Vec::new();
    let mut refused: Vec<(String, VerifyReport)> = Vec::new();
    for source in sources(fabric, owner).await {
        let fetched = match fetch_log(fabric, source, &node).await {
            Ok(f) => f,
            Err(e) => {
                failures.push(format!("{source}: {e}"));
                continue;
            }
        };
        let cp = &fetched.checkpoint;
        let mut report = VerifyReport {
            ok: true,
            entries: cp.size,
            checkpoint_size: cp.size,
            served_by: Some(source.to_string()),
            ..VerifyReport::default()
        };
        let verified = match check_log(&fetched) {
            Err(VerifyError::RootMismatch) => Err(locate(fabric, source, &node, cp.size)
                .await
                .unwrap_or(VerifyError::RootMismatch)),
            other => other,
        };
        if let Err(e) = verified {
            let (seq, problem) = describe(&e);
            let mut bad = VerifyReport::bad(cp.size, cp.size, seq, problem);
            bad.served_by = Some(source.to_string());
            refused.push((format!("{source}: {e}"), bad));
            continue;
        }
        let leaves: Vec<_> = entries_of(&fetched.records)
            .iter()
            .map(|e| leaf_hash(e))
            .collect();
        let standing = standing(cp, &heads.known(&node), Some(&leaves));
        let (fleet_size, fork, evidence) = standing_fields(&standing);
        report.fleet_size = fleet_size;
        if let Some(fork) = fork {
            report.ok = false;
            report.problem = Some(fork.clone());
            report.fork = Some(fork);
        }
        let forks = note(heads, cp, evidence);
        if report.ok {
            if let Err(e) = mirrors.keep(cp, &fetched.records).await {
                tracing::warn!(error = %e, "cannot keep a copy of a verified audit log");
            }
        }
        report.refused = refused.into_iter().map(|(why, _)| why).collect();
        return Ok((report, forks));
    }
    if let Some((_, mut first)) = refused.first().cloned() {
        first.refused = refused.into_iter().skip(1).map(|(why, _)| why).collect();
        return Ok((first, Vec::new()));
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

/// Entries `start..start+limit` of a peer's log (at most one request's
/// worth), from the owner or a peer holding a copy, each verified with its
/// inclusion proof against the owner's checkpoint. A source whose page
/// fails is refused (named in the answer) and the next one asked; a page
/// behind the fleet's audit heads is kept only until a source serves a
/// current one. Returns the nodes whose fork evidence is new here.
pub async fn read_remote(
    fabric: &FabricHandle,
    heads: &FleetHeads,
    owner: PeerId,
    start: u64,
    limit: u64,
) -> NodeResult<(AuditLogView, Vec<NodeKey>)> {
    let node = node_key(&owner)?;
    let count = limit.min(u64::from(MAX_AUDIT_RECORDS_PER_REQUEST)) as u32;
    let mut failures = Vec::new();
    let mut refused = Vec::new();
    let mut forks = Vec::new();
    let mut behind: Option<AuditLogView> = None;
    for source in sources(fabric, owner).await {
        let page = match fetch_range(fabric, source, &node, start, count, true).await {
            Ok(page) => page,
            Err(e) => {
                failures.push(format!("{source}: {e}"));
                continue;
            }
        };
        let known = heads.known(&node);
        let (entries, standing) = match check_page(&node, start, u64::from(count), &page, &known) {
            Ok(checked) => checked,
            Err(e) => {
                refused.push(format!("{source}: {e}"));
                continue;
            }
        };
        let (fleet_size, fork, evidence) = standing_fields(&standing);
        forks.extend(note(heads, &page.checkpoint, evidence));
        let view = AuditLogView {
            entries,
            source: Some(SourceView {
                served_by: source.to_string(),
                checkpoint_size: page.checkpoint.size,
                fleet_size,
                fork,
                refused: Vec::new(),
            }),
        };
        if fleet_size.is_some() {
            let larger = |v: &AuditLogView| v.source.as_ref().map_or(0, |s| s.checkpoint_size);
            if behind.as_ref().is_none_or(|b| larger(&view) > larger(b)) {
                behind = Some(view);
            }
            continue;
        }
        return Ok((with_refused(view, refused), forks));
    }
    if let Some(view) = behind {
        return Ok((with_refused(view, refused), forks));
    }
    failures.extend(refused);
    Err(no_source(owner, &failures))
}

fn with_refused(mut view: AuditLogView, refused: Vec<String>) -> AuditLogView {
    if let Some(source) = &mut view.source {
        source.refused = refused;
    }
    view
}

#[cfg(test)]
mod tests;
