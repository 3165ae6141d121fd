//! The node's own direct messages and their bytes: audit-log ranges,
//! document sync rounds and anti-entropy. The fabric carries each as an
//! opaque body on an application protocol of its direct protocol
//! ([`protocols`]); this module is the only place that knows their
//! layout (docs/protocol.md §5.1).
//!
//! Every body starts with a version byte and reads through
//! `osmoda_wire::Reader`: bounds-checked, every count checked against its
//! limit before anything is allocated, and exact (bytes left over are an
//! error). A body that decodes encodes back to the same bytes.

use libp2p::PeerId;
use osmoda_crdt_state::checkpoint::CHECKPOINT_LEN;
use osmoda_crdt_state::entry::MAX_ENTRY_LEN;
use osmoda_crdt_state::proof::MAX_PATH_LEN;
use osmoda_crdt_state::{Checkpoint, InclusionProof, NodeKey};
use osmoda_fabric::proto::cert::MAX_CERT_LEN;
use osmoda_fabric::proto::emergency::MAX_COMMAND_LEN;
use osmoda_fabric::{AppProtocol, DirectRequest, DirectResponse, FabricError, FabricHandle};
use osmoda_wire::{Reader, Truncated};

use crate::state::heads::MAX_CHUNK;

/// Entries of an audit log, from its owner or a holder of a verified copy.
pub const AUDIT_RANGE: u16 = 1;
/// One round of Automerge sync of the knowledge shards and routine book.
pub const DOC_SYNC: u16 = 2;
/// Notices, offers and pushes of pairwise anti-entropy.
pub const ANTI_ENTROPY: u16 = 3;
/// A task between agents of two nodes, sent whole by either end
/// (`service/tasks.rs`); the answer is the other end's copy.
pub const TASKS: u16 = 4;
/// A member's request to an admin for a renewed certificate; the
/// connection names the member (docs/protocol.md §1.4).
pub const RENEWAL: u16 = 5;

/// The node's protocols, as the fabric registers them.
pub fn protocols() -> Vec<AppProtocol> {
    vec![
        AppProtocol {
            id: AUDIT_RANGE,
            name: "audit_range",
        },
        AppProtocol {
            id: DOC_SYNC,
            name: "doc_sync",
        },
        AppProtocol {
            id: ANTI_ENTROPY,
            name: "anti_entropy",
        },
        AppProtocol {
            id: TASKS,
            name: "tasks",
        },
        AppProtocol {
            id: RENEWAL,
            name: "renewal",
        },
    ]
}

const VERSION: u8 = 1;
/// Anti-entropy bodies carry the emergency registers since version 2;
/// a node of version 1 refuses them, and the reverse.
const ANTI_ENTROPY_VERSION: u8 = 2;
/// Audit ranges carry inclusion proofs, when asked for, since version 2.
const AUDIT_RANGE_VERSION: u8 = 2;

fn version_of(protocol: u16) -> u8 {
    match protocol {
        ANTI_ENTROPY => ANTI_ENTROPY_VERSION,
        AUDIT_RANGE => AUDIT_RANGE_VERSION,
        _ => VERSION,
    }
}

/// Largest sync message for one document in one round. A change travels
/// whole in one message, so this is the largest change that can reach a
/// member that missed its push (or that could not be pushed: a gossip
/// message holds 64 KiB): the largest change a write may make
/// (`osmoda_docs::MAX_CHANGE_BYTES`, 768 KiB, above the 530 KB the largest
/// entry and its rewrite make) and [`SYNC_HEADROOM`] for the rest of the
/// message.
pub const MAX_SHARD_MESSAGE: usize = 1024 * 1024;
/// What a sync message carrying the largest change holds besides it:
/// heads and needs (32 bytes a hash), a bloom filter of the changes since
/// the last sync (10 bits a change), and 4 KiB kept for the signatures
/// that verified changes will carry (some 100 bytes a change and 200 an
/// author).
pub const SYNC_HEADROOM: usize = 256 * 1024;
const _: () = assert!(osmoda_docs::MAX_CHANGE_BYTES + SYNC_HEADROOM <= MAX_SHARD_MESSAGE);
/// Most bytes of sync messages in one round (one direct request or
/// response): each side asks a document for its message only while one of
/// [`MAX_SHARD_MESSAGE`] still fits, and the rest wait for the next round.
/// Eight of the largest messages, half of a direct message, so that a
/// round crosses a 10 Mbit/s link within the 10 s a request may take.
pub const MAX_ROUND_BYTES: usize = 8 * MAX_SHARD_MESSAGE;
const _: () = assert!(
    1 + 1 + 2 + MAX_SHARD_MESSAGES * (2 + 4) + MAX_ROUND_BYTES
        <= osmoda_fabric::direct::MAX_DIRECT_MESSAGE
);
/// Documents one round may speak for: every knowledge shard and every
/// single document.
pub const MAX_SHARD_MESSAGES: usize =
    osmoda_docs::SHARD_COUNT as usize + crate::state::docs::MAX_SINGLES;
/// Most audit records one request may ask for.
pub const MAX_AUDIT_RECORDS_PER_REQUEST: u32 = 48;
/// A stored audit record: chain value (32) and entry.
pub const MAX_AUDIT_RECORD: usize = 32 + MAX_ENTRY_LEN;
/// An encoded inclusion proof: version, index, size, count and hashes.
pub const MAX_INCLUSION_PROOF: usize = 1 + 8 + 8 + 1 + 32 * MAX_PATH_LEN;
/// Most audit-heads chunks one anti-entropy message may carry.
pub const MAX_HEADS_CHUNKS: usize = 64;
/// Emergency commands one anti-entropy message may carry: one per
/// register (lockdown, freeze).
pub const MAX_EMERGENCY_COMMANDS: usize = 2;
/// A state summary: version, single documents' digests, knowledge heads
/// summary.
pub const MAX_STATE_SUMMARY: usize =
    1 + 16 * crate::state::docs::MAX_SINGLES + osmoda_docs::MAX_SUMMARY_BYTES;

/// A sync message for one document: a knowledge shard's index, or a
/// single document's wire number (`state::docs::Kind::wire`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMessage {
    pub shard: u16,
    pub data: Vec<u8>,
}

/// One message of an anti-entropy exchange. A *notice* carries only
/// `summary_digest` (the sender's state changed; a receiver that differs
/// pulls). An *offer* carries the summary and, when the sender compares
/// audit heads, `heads_digest` and `emergency_digest`; the answer is an
/// offer too, with the heads, or the emergency registers, when their
/// digests differ. A *push* carries heads or registers the other side
/// lacks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AntiEntropy {
    /// The sender's state summary; empty in a notice.
    pub summary: Vec<u8>,
    /// BLAKE3 of the summary, first 16 bytes.
    pub summary_digest: [u8; 16],
    /// Digest of the audit heads the sender holds, when it compares them.
    pub heads_digest: Option<[u8; 16]>,
    /// Audit heads, in chunks of at most `heads::MAX_CHUNK`.
    pub heads: Vec<Vec<u8>>,
    /// Digest of the emergency registers the sender holds, when it
    /// compares them (`state::emergency::Emergency::digest`).
    pub emergency_digest: Option<[u8; 16]>,
    /// The sender's emergency registers: at most
    /// [`MAX_EMERGENCY_COMMANDS`] signed commands, each at most
    /// `MAX_COMMAND_LEN` bytes.
    pub emergency: Vec<Vec<u8>>,
}

impl AntiEntropy {
    pub fn is_notice(&self) -> bool {
        self.summary.is_empty()
    }

    /// Whether it carries state the receiver lacked (the second message
    /// of an exchange), to be merged and answered without more.
    pub fn is_push(&self) -> bool {
        !self.heads.is_empty() || !self.emergency.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Entries `start..start+count` of `node`'s audit log; with `proofs`,
    /// each with its inclusion proof, so that a page can be checked on its
    /// own (a whole log is checked against its root, and needs none).
    AuditRange {
        node: NodeKey,
        start: u64,
        count: u32,
        proofs: bool,
    },
    /// A round of sync; `start` opens a new session on both sides (sync
    /// states must begin together, or the responder would skip changes it
    /// believes the requester already has).
    DocSync {
        start: bool,
        messages: Vec<ShardMessage>,
    },
    AntiEntropy(AntiEntropy),
    /// Renew the requester's certificate.
    Renewal,
    /// A task as its sender holds it: JSON of at most
    /// `state::tasks::MAX_TASK_BYTES`, parsed and checked by the service.
    Task(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The owner's signed checkpoint and the stored records (`chain ||
    /// entry`) asked for; when proofs were asked for, one per record, in
    /// the checkpoint's tree (else none).
    AuditRange {
        checkpoint: Checkpoint,
        records: Vec<Vec<u8>>,
        proofs: Vec<InclusionProof>,
    },
    /// The responder's round.
    DocSync {
        messages: Vec<ShardMessage>,
    },
    AntiEntropy(AntiEntropy),
    /// The renewed certificate's encoding (checked by the requester).
    Renewal {
        cert: Vec<u8>,
    },
    /// The answering end's copy of the task.
    Task(Vec<u8>),
    /// A notice heard (an empty body).
    Ack,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated, oversized or with bytes left over")]
    Truncated,
    #[error("version {0} is not spoken here")]
    Version(u8),
    #[error("no protocol {0} is spoken here")]
    Protocol(u16),
    #[error("malformed: {0}")]
    Malformed(&'static str),
}

impl From<Truncated> for WireError {
    fn from(_: Truncated) -> Self {
        WireError::Truncated
    }
}

/// Why a request of ours came to nothing.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Fabric(#[from] FabricError),
    #[error("refused: {0}")]
    Refused(String),
    #[error("the answer does not decode: {0}")]
    Malformed(WireError),
}

/// Sends `request` to `peer` and decodes the answer.
pub async fn request(
    fabric: &FabricHandle,
    peer: PeerId,
    request: &Request,
) -> Result<Response, Failure> {
    let protocol = request.protocol();
    let app = DirectRequest::App {
        protocol,
        body: request.encode(),
    };
    match fabric.request(peer, app).await? {
        DirectResponse::App { body } => {
            Response::decode(protocol, &body).map_err(Failure::Malformed)
        }
        DirectResponse::Refused { reason } => Err(Failure::Refused(reason)),
        DirectResponse::Ack => Err(Failure::Malformed(WireError::Malformed("a bare ack"))),
    }
}

/// The fabric's form of an answer: the response's body, or a refusal.
pub fn answer(result: Result<Response, String>) -> DirectResponse {
    match result {
        Ok(response) => DirectResponse::App {
            body: response.encode(),
        },
        Err(reason) => DirectResponse::Refused { reason },
    }
}

fn put_len(out: &mut Vec<u8>, len: usize, bytes: u8) {
    match bytes {
        2 => out.extend_from_slice(&(len as u16).to_be_bytes()),
        _ => out.extend_from_slice(&(len as u32).to_be_bytes()),
    }
}

/// A `u32` length, at most `max`, then that many bytes.
fn blob(r: &mut Reader<'_>, max: usize) -> Result<Vec<u8>, WireError> {
    let len = r.u32()? as usize;
    if len > max {
        return Err(WireError::Malformed("a field over its limit"));
    }
    Ok(r.bytes(len)?.to_vec())
}

/// A count, at most `max` and at most what `min_item` bytes per item
/// leave room for, so that no hostile count reserves memory.
fn count(r: &mut Reader<'_>, n: usize, max: usize, min_item: usize) -> Result<usize, WireError> {
    if n > max || n.saturating_mul(min_item) > r.remaining() {
        return Err(WireError::Malformed("a count over its limit"));
    }
    Ok(n)
}

fn put_messages(out: &mut Vec<u8>, messages: &[ShardMessage]) {
    put_len(out, messages.len(), 2);
    for m in messages {
        out.extend_from_slice(&m.shard.to_be_bytes());
        put_len(out, m.data.len(), 4);
        out.extend_from_slice(&m.data);
    }
}

fn messages(r: &mut Reader<'_>) -> Result<Vec<ShardMessage>, WireError> {
    let n = usize::from(r.u16()?);
    let n = count(r, n, MAX_SHARD_MESSAGES, 2 + 4)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let shard = r.u16()?;
        let data = blob(r, MAX_SHARD_MESSAGE)?;
        out.push(ShardMessage { shard, data });
    }
    Ok(out)
}

fn put_anti_entropy(out: &mut Vec<u8>, ae: &AntiEntropy) {
    put_len(out, ae.summary.len(), 2);
    out.extend_from_slice(&ae.summary);
    out.extend_from_slice(&ae.summary_digest);
    put_digest(out, &ae.heads_digest);
    out.push(ae.heads.len() as u8);
    for chunk in &ae.heads {
        put_len(out, chunk.len(), 4);
        out.extend_from_slice(chunk);
    }
    put_digest(out, &ae.emergency_digest);
    out.push(ae.emergency.len() as u8);
    for command in &ae.emergency {
        put_len(out, command.len(), 2);
        out.extend_from_slice(command);
    }
}

fn put_digest(out: &mut Vec<u8>, digest: &Option<[u8; 16]>) {
    match digest {
        Some(digest) => {
            out.push(1);
            out.extend_from_slice(digest);
        }
        None => out.push(0),
    }
}

fn digest(r: &mut Reader<'_>) -> Result<Option<[u8; 16]>, WireError> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(r.array()?)),
        _ => Err(WireError::Malformed("a flag that is neither 0 nor 1")),
    }
}

fn anti_entropy(r: &mut Reader<'_>) -> Result<AntiEntropy, WireError> {
    let len = usize::from(r.u16()?);
    if len > MAX_STATE_SUMMARY {
        return Err(WireError::Malformed("a summary over its limit"));
    }
    let summary = r.bytes(len)?.to_vec();
    let summary_digest = r.array()?;
    let heads_digest = digest(r)?;
    let n = usize::from(r.u8()?);
    let n = count(r, n, MAX_HEADS_CHUNKS, 4)?;
    let mut heads = Vec::with_capacity(n);
    for _ in 0..n {
        heads.push(blob(r, MAX_CHUNK)?);
    }
    let emergency_digest = digest(r)?;
    let n = usize::from(r.u8()?);
    let n = count(r, n, MAX_EMERGENCY_COMMANDS, 2)?;
    let mut emergency = Vec::with_capacity(n);
    for _ in 0..n {
        let len = usize::from(r.u16()?);
        if len > MAX_COMMAND_LEN {
            return Err(WireError::Malformed("an emergency command over its limit"));
        }
        emergency.push(r.bytes(len)?.to_vec());
    }
    Ok(AntiEntropy {
        summary,
        summary_digest,
        heads_digest,
        heads,
        emergency_digest,
        emergency,
    })
}

/// A byte that is 0 (false) or 1 (true); anything else is refused, so
/// that a body has one encoding.
/// The rest of the body, a task's JSON, within its bound.
fn task_body(r: &mut Reader<'_>) -> Result<Vec<u8>, WireError> {
    let len = r.remaining();
    if len > crate::state::tasks::MAX_TASK_BYTES {
        return Err(WireError::Malformed("a task over its limit"));
    }
    Ok(r.bytes(len)?.to_vec())
}

fn flag(r: &mut Reader<'_>) -> Result<bool, WireError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(WireError::Malformed("a flag that is neither 0 nor 1")),
    }
}

fn version(r: &mut Reader<'_>, protocol: u16) -> Result<(), WireError> {
    match r.u8()? {
        v if v == version_of(protocol) => Ok(()),
        other => Err(WireError::Version(other)),
    }
}

impl Request {
    pub fn protocol(&self) -> u16 {
        match self {
            Request::AuditRange { .. } => AUDIT_RANGE,
            Request::DocSync { .. } => DOC_SYNC,
            Request::AntiEntropy(_) => ANTI_ENTROPY,
            Request::Renewal => RENEWAL,
            Request::Task(_) => TASKS,
        }
    }

    /// The request's body. Lists beyond their limits are encoded as they
    /// are, and refused by the receiver; callers keep within them.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![version_of(self.protocol())];
        match self {
            Request::AuditRange {
                node,
                start,
                count,
                proofs,
            } => {
                out.extend_from_slice(node);
                out.extend_from_slice(&start.to_be_bytes());
                out.extend_from_slice(&count.to_be_bytes());
                out.push(u8::from(*proofs));
            }
            Request::DocSync { start, messages } => {
                out.push(u8::from(*start));
                put_messages(&mut out, messages);
            }
            Request::AntiEntropy(ae) => put_anti_entropy(&mut out, ae),
            Request::Renewal => {}
            Request::Task(body) => out.extend_from_slice(body),
        }
        out
    }

    pub fn decode(protocol: u16, body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        version(&mut r, protocol)?;
        let request = match protocol {
            AUDIT_RANGE => Request::AuditRange {
                node: r.array()?,
                start: r.u64()?,
                count: r.u32()?,
                proofs: flag(&mut r)?,
            },
            DOC_SYNC => {
                let start = flag(&mut r)?;
                Request::DocSync {
                    start,
                    messages: messages(&mut r)?,
                }
            }
            ANTI_ENTROPY => Request::AntiEntropy(anti_entropy(&mut r)?),
            RENEWAL => Request::Renewal,
            TASKS => Request::Task(task_body(&mut r)?),
            other => return Err(WireError::Protocol(other)),
        };
        r.finish()?;
        Ok(request)
    }
}

impl Response {
    pub fn encode(&self) -> Vec<u8> {
        if let Response::Ack = self {
            return Vec::new();
        }
        let protocol = match self {
            Response::AuditRange { .. } => AUDIT_RANGE,
            Response::DocSync { .. } => DOC_SYNC,
            Response::AntiEntropy(_) | Response::Ack => ANTI_ENTROPY,
            Response::Renewal { .. } => RENEWAL,
            Response::Task(_) => TASKS,
        };
        let mut out = vec![version_of(protocol)];
        match self {
            Response::AuditRange {
                checkpoint,
                records,
                proofs,
            } => {
                out.extend_from_slice(&checkpoint.encode());
                out.push(records.len() as u8);
                for record in records {
                    put_len(&mut out, record.len(), 2);
                    out.extend_from_slice(record);
                }
                out.push(proofs.len() as u8);
                for proof in proofs {
                    // Only a path longer than a 2^64-leaf tree fails to
                    // encode; sent empty, the receiver refuses it.
                    let bytes = proof.encode().unwrap_or_default();
                    put_len(&mut out, bytes.len(), 2);
                    out.extend_from_slice(&bytes);
                }
            }
            Response::DocSync { messages } => put_messages(&mut out, messages),
            Response::AntiEntropy(ae) => put_anti_entropy(&mut out, ae),
            Response::Renewal { cert } => out.extend_from_slice(cert),
            Response::Task(body) => out.extend_from_slice(body),
            Response::Ack => {}
        }
        out
    }

    /// The answer to a request on `protocol`. An empty body is an
    /// acknowledgement, which only anti-entropy notices get.
    pub fn decode(protocol: u16, body: &[u8]) -> Result<Self, WireError> {
        if body.is_empty() && protocol == ANTI_ENTROPY {
            return Ok(Response::Ack);
        }
        let mut r = Reader::new(body);
        version(&mut r, protocol)?;
        let response = match protocol {
            AUDIT_RANGE => {
                let checkpoint = Checkpoint::decode(r.bytes(CHECKPOINT_LEN)?)
                    .map_err(|_| WireError::Malformed("a checkpoint that does not parse"))?;
                let n = usize::from(r.u8()?);
                let n = count(&mut r, n, MAX_AUDIT_RECORDS_PER_REQUEST as usize, 2)?;
                let mut records = Vec::with_capacity(n);
                for _ in 0..n {
                    let len = usize::from(r.u16()?);
                    if len > MAX_AUDIT_RECORD {
                        return Err(WireError::Malformed("a record over its limit"));
                    }
                    records.push(r.bytes(len)?.to_vec());
                }
                let m = usize::from(r.u8()?);
                if m != 0 && m != n {
                    return Err(WireError::Malformed("proofs for some records only"));
                }
                let m = count(&mut r, m, MAX_AUDIT_RECORDS_PER_REQUEST as usize, 2)?;
                let mut proofs = Vec::with_capacity(m);
                for _ in 0..m {
                    let len = usize::from(r.u16()?);
                    if len > MAX_INCLUSION_PROOF {
                        return Err(WireError::Malformed("a proof over its limit"));
                    }
                    let proof = InclusionProof::decode(r.bytes(len)?)
                        .map_err(|_| WireError::Malformed("a proof that does not parse"))?;
                    proofs.push(proof);
                }
                Response::AuditRange {
                    checkpoint,
                    records,
                    proofs,
                }
            }
            DOC_SYNC => Response::DocSync {
                messages: messages(&mut r)?,
            },
            ANTI_ENTROPY => Response::AntiEntropy(anti_entropy(&mut r)?),
            RENEWAL => {
                if r.remaining() > MAX_CERT_LEN {
                    return Err(WireError::Malformed("a certificate over its limit"));
                }
                Response::Renewal {
                    cert: r.bytes(r.remaining())?.to_vec(),
                }
            }
            TASKS => Response::Task(task_body(&mut r)?),
            other => return Err(WireError::Protocol(other)),
        };
        r.finish()?;
        Ok(response)
    }
}

#[cfg(test)]
mod tests;
