//! Bounded Automerge sync sessions, one per (peer, document).
//!
//! [`SyncSession`] wraps `automerge::sync::State` and adds the bounds the
//! network layer needs, since the peer is only as trustworthy as its node:
//!
//! - **Message size**: incoming messages over `max_message_bytes` are
//!   refused; outgoing ones are split to fit (see below).
//! - **Progress**: a round is useful when it changed our heads, or the peer
//!   advertised heads not seen before in this session. `max_idle_rounds`
//!   useless rounds in a row end the session, so a peer replaying messages
//!   (or asking for the same changes forever) is cut off.
//! - **Memory**: only plain change chunks are accepted. Automerge inflates
//!   compressed chunks and saved documents with no limit, so a 4 MiB
//!   message could otherwise grow to gigabytes; change chunks decode to
//!   roughly their own size. The session also caps the bytes it receives
//!   and its rounds, which bounds changes waiting for missing dependencies.
//! - **Input Automerge trusts**: hash lists (heads, needs, last syncs) must
//!   be strictly sorted, as honest peers send them; Automerge panics on a
//!   duplicate need and asserts sortedness when replying.
//!
//! To keep the memory rule, a session never sends Automerge's "v2" messages
//! (a whole compressed document): it hides the peer's v2 capability from
//! Automerge, so every change goes as its own chunk. That also lets a big
//! catch-up be split: changes that do not fit one message are withheld and
//! go in the next round.
//!
//! A session that failed stays failed; every error ends it.

use std::collections::HashSet;

use automerge::sync::{Capability, Message, SyncDoc};
use automerge::{Change, ChangeHash};

use crate::admit::{incoming, Incoming};
use crate::chunks::{self, leb128_len, ChunkKind};
use crate::doc::Doc;
use crate::error::SyncError;
use crate::seal::{decode_bundle, encode_bundle, Seal, SEAL_WIRE_BYTES};
use crate::summary::{heads_digest, HeadsDigest};

/// Changes a session holds while their history is missing (a bloom
/// filter's false positive made the peer skip a dependency; the next
/// message asks for it). Honest sync sends history first, so this only
/// stops a peer filling memory; past it, further such changes are dropped
/// and a later session brings them again.
pub const MAX_HELD_CHANGES: usize = 1024;
/// Bytes of those changes.
pub const MAX_HELD_BYTES: usize = 16 << 20;

/// Bounds of one sync session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncLimits {
    /// Largest message sent or accepted.
    pub max_message_bytes: usize,
    /// Useless rounds in a row before the session fails.
    pub max_idle_rounds: u32,
    /// Messages received in one session.
    pub max_rounds: u64,
    /// Bytes received in one session.
    pub max_session_bytes: u64,
}

impl Default for SyncLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 << 20,
            max_idle_rounds: 32,
            max_rounds: 4096,
            max_session_bytes: 256 << 20,
        }
    }
}

/// Counters of a session, for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    pub messages_sent: u64,
    pub bytes_sent: u64,
    pub messages_received: u64,
    pub bytes_received: u64,
}

/// The sync state machine for one document with one peer.
#[derive(Debug)]
pub struct SyncSession {
    state: automerge::sync::State,
    limits: SyncLimits,
    stats: SyncStats,
    idle_rounds: u32,
    /// Digests of every heads set the peer advertised in this session
    /// (bounded by `max_rounds`).
    seen_peer_heads: HashSet<HeadsDigest>,
    /// The peer's changes whose history is not here yet.
    held: Vec<Incoming>,
    failed: Option<String>,
}

impl SyncSession {
    pub fn new(limits: SyncLimits) -> Self {
        Self {
            state: automerge::sync::State::new(),
            limits,
            stats: SyncStats::default(),
            idle_rounds: 0,
            seen_peer_heads: HashSet::new(),
            held: Vec::new(),
            failed: None,
        }
    }

    pub fn stats(&self) -> SyncStats {
        self.stats
    }

    pub fn has_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Whether the peer's last advertised heads equal ours: the document is
    /// in sync as far as this session knows.
    pub fn in_sync(&self, doc: &Doc) -> bool {
        self.state.their_heads.as_ref() == Some(&doc.heads())
    }

    fn fail(&mut self, e: SyncError) -> SyncError {
        self.failed = Some(e.to_string());
        e
    }

    fn check_alive(&self) -> Result<(), SyncError> {
        match &self.failed {
            Some(why) => Err(SyncError::Failed(why.clone())),
            None => Ok(()),
        }
    }

    /// The next message for the peer, `None` when there is nothing to say
    /// until it answers (or everything is in sync).
    pub fn generate_message(&mut self, doc: &Doc) -> Result<Option<Vec<u8>>, SyncError> {
        self.check_alive()?;
        if let Some(caps) = self.state.their_capabilities.as_mut() {
            caps.retain(|c| *c != Capability::MessageV2);
        }
        let Some(mut msg) = doc.am().generate_sync_message(&mut self.state) else {
            return Ok(None);
        };
        self.ask_for_history(doc, &mut msg);
        let bytes = match self.fit(msg, doc) {
            Ok(bytes) => bytes,
            Err(e) => return Err(self.fail(e)),
        };
        self.stats.messages_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        Ok(Some(bytes))
    }

    /// Adds to our `need` what the held changes depend on: Automerge asks
    /// only for what reaches the peer's heads, not knowing of changes it
    /// never saw.
    fn ask_for_history(&self, doc: &Doc, msg: &mut Message) {
        if self.held.is_empty() {
            return;
        }
        let held: HashSet<ChangeHash> = self.held.iter().map(|i| i.change.hash()).collect();
        let mut need: Vec<ChangeHash> = self
            .held
            .iter()
            .flat_map(|i| i.change.deps().iter().copied())
            .filter(|d| !held.contains(d) && doc.am().get_change_meta_by_hash(d).is_none())
            .chain(msg.need.iter().copied())
            .collect();
        need.sort();
        need.dedup();
        need.truncate(MAX_HELD_CHANGES);
        msg.need = need;
    }

    /// Encodes `msg` with the seals of its changes, withholding trailing
    /// changes if it is too large. The withheld changes are removed from
    /// the state's "sent" set, so the next round sends them once the
    /// peer's reply shows it lacks them.
    fn fit(&mut self, msg: Message, doc: &Doc) -> Result<Vec<u8>, SyncError> {
        let max = self.limits.max_message_bytes;
        let chunks: Vec<Vec<u8>> = msg.changes.iter().map(<[u8]>::to_vec).collect();
        let hashes: Vec<Option<ChangeHash>> = chunks
            .iter()
            .map(|c| Change::try_from(c.as_slice()).ok().map(|ch| ch.hash()))
            .collect();
        let seals: Vec<Option<(&Seal, &[u8])>> = hashes
            .iter()
            .map(|h| h.as_ref().and_then(|h| doc.seal_of(h)))
            .collect();
        let sealed = |m: Message, n: usize| encode_bundle(&seals[..n], &m.encode());
        let full = sealed(msg.clone(), chunks.len());
        if full.len() <= max {
            return Ok(full);
        }
        // What each change adds: its chunk, its seal slot, and its
        // credential the first time one is named.
        let mut credentials = HashSet::new();
        let costs: Vec<usize> = chunks
            .iter()
            .zip(&seals)
            .map(|(c, seal)| {
                let slot = match seal {
                    Some((s, cred)) if credentials.insert(s.credential) => {
                        SEAL_WIRE_BYTES + 2 + cred.len()
                    }
                    Some(_) => SEAL_WIRE_BYTES,
                    None => 1,
                };
                c.len() + leb128_len(c.len() as u64) + slot
            })
            .collect();
        let fixed = full.len().saturating_sub(costs.iter().sum());
        let mut used = fixed;
        let mut keep = 0;
        while keep < chunks.len() && used + costs[keep] <= max {
            used += costs[keep];
            keep += 1;
        }
        if keep == 0 {
            let len = chunks.first().map_or(full.len(), Vec::len);
            return Err(SyncError::ChangeTooLarge { len, max });
        }
        for hash in hashes[keep..].iter().flatten() {
            // Our own changes: they parse. Should one not, it simply stays
            // marked as sent, and the peer's `need` will ask for it again.
            self.state.sent_hashes.remove(hash);
        }
        let trimmed = Message {
            changes: chunks[..keep].to_vec().into(),
            ..msg
        };
        let bytes = sealed(trimmed, keep);
        if bytes.len() > max {
            return Err(SyncError::MessageTooLarge {
                len: bytes.len(),
                max,
            });
        }
        Ok(bytes)
    }

    /// Applies a message from the peer. Returns whether our document
    /// changed (the caller then has dirty state to save); the heads taken
    /// before, given to [`Doc::changed_keys`], say which entries or
    /// routines did.
    pub fn receive_message(&mut self, doc: &mut Doc, bytes: &[u8]) -> Result<bool, SyncError> {
        self.check_alive()?;
        match self.receive_inner(doc, bytes) {
            Ok(changed) => Ok(changed),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn receive_inner(&mut self, doc: &mut Doc, bytes: &[u8]) -> Result<bool, SyncError> {
        let max = self.limits.max_message_bytes;
        if bytes.len() > max {
            return Err(SyncError::MessageTooLarge {
                len: bytes.len(),
                max,
            });
        }
        self.stats.messages_received += 1;
        self.stats.bytes_received += bytes.len() as u64;
        if self.stats.bytes_received > self.limits.max_session_bytes {
            return Err(SyncError::SessionBudget {
                total: self.stats.bytes_received,
                max: self.limits.max_session_bytes,
            });
        }
        if self.stats.messages_received > self.limits.max_rounds {
            return Err(SyncError::TooManyRounds {
                rounds: self.stats.messages_received,
            });
        }
        let bundle = decode_bundle(bytes).map_err(|e| SyncError::Decode(e.to_string()))?;
        let mut msg = Message::decode(bundle.body).map_err(|e| SyncError::Decode(e.to_string()))?;
        // Honest peers send every hash list sorted and without duplicates.
        // Automerge trusts that: unsorted lists trip a debug assertion when
        // we encode our reply, and a duplicate in `need` makes it panic
        // while collecting changes. So anything else is refused here.
        let sorted = |h: &[ChangeHash]| h.windows(2).all(|w| w[0] < w[1]);
        if !sorted(&msg.heads)
            || !sorted(&msg.need)
            || msg.have.iter().any(|h| !sorted(&h.last_sync))
        {
            return Err(SyncError::Decode(
                "hash lists are not strictly sorted".into(),
            ));
        }
        if msg.have.iter().any(|h| !bloom_is_sane(&h.bloom.to_bytes())) {
            return Err(SyncError::Decode(
                "a bloom filter with impossible parameters".into(),
            ));
        }
        for chunk in msg.changes.iter() {
            check_change_chunks(chunk)?;
        }
        let chunks: Vec<Vec<u8>> = msg.changes.iter().map(<[u8]>::to_vec).collect();
        let mut batch = std::mem::take(&mut self.held);
        batch.extend(incoming(chunks, bundle.seals).map_err(|e| SyncError::Decode(e.to_string()))?);
        let admission = doc.admit(batch);
        self.hold(admission.waiting);
        msg.changes = admission
            .accepted
            .iter()
            .map(|i| i.change.raw_bytes().to_vec())
            .collect::<Vec<_>>()
            .into();
        let peer_heads = heads_digest(&msg.heads);
        let before: Vec<ChangeHash> = doc.heads();
        let state = &mut self.state;
        doc.guarded(|am| am.receive_sync_message(state, msg))
            .ok_or_else(|| SyncError::Apply("a change Automerge cannot import".into()))?
            .map_err(|e| SyncError::Apply(e.to_string()))?;
        doc.keep_seals(&admission.accepted);
        if let Some(why) = admission.refused.into_iter().next() {
            return Err(SyncError::Refused(why));
        }
        let changed = doc.heads() != before;
        let new_peer_heads = self.seen_peer_heads.insert(peer_heads);
        if changed || new_peer_heads {
            self.idle_rounds = 0;
        } else {
            self.idle_rounds += 1;
            if self.idle_rounds > self.limits.max_idle_rounds {
                return Err(SyncError::NoProgress {
                    rounds: self.idle_rounds,
                });
            }
        }
        Ok(changed)
    }
}

impl SyncSession {
    /// Keeps changes waiting for their history, within the bounds.
    fn hold(&mut self, waiting: Vec<Incoming>) {
        let mut bytes: usize = 0;
        self.held = waiting
            .into_iter()
            .take(MAX_HELD_CHANGES)
            .take_while(|i| {
                bytes += i.len();
                bytes <= MAX_HELD_BYTES
            })
            .collect();
    }

    /// Changes held for missing history.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

/// Probes an honest filter uses per hash (Automerge uses 7).
const MAX_BLOOM_PROBES: u64 = 64;
/// Bits per entry of an honest filter (Automerge uses 10).
const MAX_BLOOM_BITS_PER_ENTRY: u64 = 64;

/// Whether a peer's bloom filter (in Automerge's encoding: entries, bits
/// per entry, probes, bits) is one Automerge can query. It trusts the
/// parameters: zero bits per entry makes it divide by zero, and a huge
/// probe count makes it allocate and loop that many times per hash.
fn bloom_is_sane(encoded: &[u8]) -> bool {
    let Some((entries, n)) = chunks::read_leb128(encoded) else {
        return encoded.is_empty();
    };
    let rest = &encoded[n..];
    let Some((bits_per_entry, n)) = chunks::read_leb128(rest) else {
        return false;
    };
    let Some((probes, _)) = chunks::read_leb128(&rest[n..]) else {
        return false;
    };
    entries == 0
        || ((1..=MAX_BLOOM_BITS_PER_ENTRY).contains(&bits_per_entry)
            && (1..=MAX_BLOOM_PROBES).contains(&probes))
}

/// Checks that `bytes` holds only plain (uncompressed) change chunks.
fn check_change_chunks(bytes: &[u8]) -> Result<(), SyncError> {
    let chunks = chunks::split(bytes).map_err(SyncError::ForbiddenChunk)?;
    if chunks.iter().any(|(kind, _)| *kind != ChunkKind::Change) {
        return Err(SyncError::ForbiddenChunk(
            "not a plain change (a document or compressed chunk)",
        ));
    }
    Ok(())
}
