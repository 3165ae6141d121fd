//! One replicated document: an Automerge document plus what the node needs
//! to store it as bytes (save, incremental save, dirty tracking).
//!
//! All writes go through [`Doc::transact`], one Automerge change per
//! operation, committed with the caller's time: the crate never reads a
//! clock. Reading and syncing never leave a transaction open, so heads are
//! always those of committed changes.

use automerge::transaction::{CommitOptions, Transaction};
use automerge::{Automerge, AutomergeError, Change, ChangeHash};
use osmoda_wire::Reader;

use crate::chunks::{self, ChunkKind};

use crate::error::DocError;
use crate::ids::NodeActor;
use crate::seal::{sealed_message, SealBook, SharedAuthority, Standing};
use crate::summary::{heads_digest, HeadsDigest};
use crate::verdict::Rules;

/// How a saved document starts: then a version, the Automerge document
/// (length-prefixed) and the seals of its changes.
const SAVED_MAGIC: &[u8; 4] = b"osmD";
const SAVED_VERSION: u8 = 1;
/// How an Automerge document or chunk starts (documents saved before
/// seals existed are that alone).
const AUTOMERGE_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

/// A replicated Automerge document (one knowledge shard, or the routine
/// book), with the seals of its changes.
#[derive(Debug)]
pub struct Doc {
    am: Automerge,
    /// Heads at the last save or load: the document is dirty when its heads
    /// differ, whatever path (local write, sync, merge) changed it.
    saved_heads: Vec<ChangeHash>,
    pub(crate) seals: SealBook,
    pub(crate) authority: Option<SharedAuthority>,
    pub(crate) rules: Rules,
}

impl Doc {
    pub(crate) fn new(actor: &NodeActor) -> Self {
        Self {
            am: Automerge::new().with_actor(actor.actor_id().clone()),
            saved_heads: Vec::new(),
            seals: SealBook::default(),
            authority: actor.authority().cloned(),
            rules: Rules::Knowledge,
        }
    }

    /// A knowledge shard with no changes yet, for judging a change that
    /// would create one.
    pub fn empty(actor: &NodeActor) -> Self {
        Self::new(actor)
    }

    /// What this node may do in the document: an admin when it has no
    /// authority (nothing is checked then).
    pub(crate) fn standing(&self) -> Standing {
        crate::seal::standing_of(self.authority.as_ref())
    }

    /// The same document under other rules (a routine book is admins').
    pub(crate) fn with_rules(mut self, rules: Rules) -> Self {
        self.rules = rules;
        self
    }

    /// Loads a document from bytes made by [`Doc::save`]. The bytes are
    /// untrusted: corruption is an error. The loaded document is clean.
    pub fn load(bytes: &[u8], actor: &NodeActor) -> Result<Self, DocError> {
        let (am_bytes, seals) = split_saved(bytes)?;
        let am = load_guarded(am_bytes)?.with_actor(actor.actor_id().clone());
        let saved_heads = am.get_heads();
        Ok(Self {
            am,
            saved_heads,
            seals,
            authority: actor.authority().cloned(),
            rules: Rules::Knowledge,
        })
    }

    /// The whole document, compacted, with its seals. Marks it clean.
    pub fn save(&mut self) -> Vec<u8> {
        self.saved_heads = self.am.get_heads();
        self.encode()
    }

    /// The bytes [`Doc::save`] stores, without marking the document clean.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let am = self.am.save();
        let mut out = Vec::with_capacity(am.len() + self.seals.len() * 100 + 16);
        out.extend_from_slice(SAVED_MAGIC);
        out.push(SAVED_VERSION);
        out.extend_from_slice(&(am.len() as u32).to_be_bytes());
        out.extend_from_slice(&am);
        self.seals.encode(&mut out);
        out
    }

    /// Undoes every change made after `heads` (a write refused once made:
    /// Automerge cannot take a committed change back, so this rebuilds the
    /// document from the changes up to `heads`, in time proportional to its
    /// history). The document is clean if it was at the last save.
    pub fn revert_to(&mut self, heads: &[ChangeHash]) -> Result<(), DocError> {
        let actor = self.am.get_actor().clone();
        self.am = self.am.fork_at(heads)?.with_actor(actor);
        Ok(())
    }

    /// Undoes every change since the last save or load.
    pub fn revert_unsaved(&mut self) -> Result<(), DocError> {
        let saved = self.saved_heads.clone();
        self.revert_to(&saved)
    }

    /// Saves the whole document if it is at most `max` bytes, marking it
    /// clean; a larger one stays as it is (dirty) and the error gives its
    /// size.
    pub fn save_within(&mut self, max: usize) -> Result<Vec<u8>, DocError> {
        let bytes = self.encode();
        if bytes.len() > max {
            return Err(DocError::DocumentTooLarge {
                len: bytes.len(),
                max,
            });
        }
        self.saved_heads = self.am.get_heads();
        Ok(bytes)
    }

    /// Marks the document clean: its bytes, as [`Doc::encode`] made them,
    /// are stored.
    pub(crate) fn mark_saved(&mut self) {
        self.saved_heads = self.am.get_heads();
    }

    /// The size of the last change this replica made.
    pub(crate) fn last_local_change_len(&self) -> Option<usize> {
        self.am.get_last_local_change().map(|c| c.raw_bytes().len())
    }

    /// The changes not reachable from `heads`, as bare change chunks
    /// (without seals). Unknown heads are ignored, so this errs on the side
    /// of sending more.
    pub fn changes_since(&self, heads: &[ChangeHash]) -> Vec<u8> {
        self.am.save_after(heads)
    }

    /// Merges stored bytes (a [`Doc::save`], or bare change chunks) into
    /// this one, seals included. Idempotent and order-free.
    ///
    /// Strict, unlike Automerge's incremental load (which skips what it
    /// cannot parse): any malformed chunk is an error and nothing is
    /// applied. Compressed chunks are inflated without a bound, and nothing
    /// is judged, so this is for bytes this node stored; peers' bytes go
    /// through [`crate::SyncSession`] and [`Doc::apply_pushed`].
    pub fn apply_changes(&mut self, bytes: &[u8]) -> Result<bool, DocError> {
        let (bytes, seals) = split_saved(bytes)?;
        let chunks = chunks::split(bytes).map_err(DocError::Framing)?;
        let mut changes = Vec::new();
        let mut docs = Vec::new();
        for (kind, chunk) in chunks {
            match kind {
                ChunkKind::Document => docs.push(load_guarded(chunk)?),
                ChunkKind::Change | ChunkKind::Compressed => changes
                    .push(Change::try_from(chunk).map_err(|e| DocError::Change(e.to_string()))?),
            }
        }
        let before = self.am.get_heads();
        self.guarded(|am| {
            for mut doc in docs {
                am.merge(&mut doc)?;
            }
            am.apply_changes(changes)
        })
        .ok_or(DocError::Framing(
            "a change Automerge parses but cannot import",
        ))?
        .map_err(DocError::load)?;
        self.seals.merge(seals);
        Ok(self.am.get_heads() != before)
    }

    /// Runs `f`, which feeds the document bytes from outside. A change
    /// can pass Automerge's parser and checksum and still make it panic
    /// while importing (found by the `doc_sync` fuzz target); then the
    /// document is put back as it was and this returns `None`. The copy
    /// this takes costs about what applying a change does.
    pub(crate) fn guarded<T>(&mut self, f: impl FnOnce(&mut Automerge) -> T) -> Option<T> {
        let backup = self.am.clone();
        let am = &mut self.am;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(am))) {
            Ok(out) => Some(out),
            Err(_) => {
                self.am = backup;
                None
            }
        }
    }

    /// The current heads, sorted.
    pub fn heads(&self) -> Vec<ChangeHash> {
        self.am.get_heads()
    }

    /// The digest of the heads that goes in a gossip summary; `None` for a
    /// document without changes (equivalent to a missing one).
    pub fn heads_digest(&self) -> Option<HeadsDigest> {
        let heads = self.am.get_heads();
        (!heads.is_empty()).then(|| heads_digest(&heads))
    }

    /// Whether the document changed since the last save or load.
    pub fn is_dirty(&self) -> bool {
        self.am.get_heads() != self.saved_heads
    }

    /// Whether the document has no changes at all.
    pub fn is_empty(&self) -> bool {
        self.am.get_heads().is_empty()
    }

    pub(crate) fn am(&self) -> &Automerge {
        &self.am
    }

    /// Runs `f` in one transaction committed at `now_ms`, and seals the
    /// change it made. An error from `f` rolls everything back (the
    /// transaction is dropped uncommitted).
    pub(crate) fn transact<T, E>(
        &mut self,
        now_ms: u64,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<AutomergeError>,
    {
        let mut tx = self.am.transaction();
        let out = f(&mut tx)?;
        let time = i64::try_from(now_ms).unwrap_or(i64::MAX);
        let (hash, _) = tx.commit_with(CommitOptions::default().with_time(time));
        if let (Some(hash), Some(authority)) = (hash, &self.authority) {
            let credential = authority.credential();
            let seal = crate::seal::Seal {
                credential: crate::seal::credential_id(&credential),
                signature: [0; 64],
            };
            let signature = authority.sign(&sealed_message(&hash, &seal.credential));
            self.seals
                .insert(hash, crate::seal::Seal { signature, ..seal }, &credential);
        }
        Ok(out)
    }
}

/// The Automerge bytes and the seals of stored bytes: a [`Doc::save`], or
/// bare Automerge bytes (saved before seals existed, or change chunks).
fn split_saved(bytes: &[u8]) -> Result<(&[u8], SealBook), DocError> {
    if bytes.starts_with(&AUTOMERGE_MAGIC) || bytes.is_empty() {
        return Ok((bytes, SealBook::default()));
    }
    let bad = |_| DocError::Framing("a stored document is truncated");
    let mut r = Reader::new(bytes);
    if r.array::<4>().map_err(bad)? != *SAVED_MAGIC {
        return Err(DocError::Framing("not a stored document"));
    }
    if r.u8().map_err(bad)? != SAVED_VERSION {
        return Err(DocError::Framing("a stored document of an unknown version"));
    }
    let len = r.u32().map_err(bad)? as usize;
    let am = r.bytes(len).map_err(bad)?;
    let seals = SealBook::decode(&mut r)?;
    r.finish().map_err(bad)?;
    Ok((am, seals))
}

/// `Automerge::load`, with its panics turned into errors: a damaged document
/// whose checksum still matches can trip an assertion deep in Automerge's
/// column decoder (found by the `doc_sync` fuzz target), and stored bytes
/// must never take the node down.
fn load_guarded(bytes: &[u8]) -> Result<Automerge, DocError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Automerge::load(bytes))) {
        Ok(loaded) => loaded.map_err(DocError::load),
        Err(_) => Err(DocError::Framing("the document's columns are inconsistent")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::ROOT;

    fn actor() -> NodeActor {
        NodeActor::new("node-a").expect("valid node id")
    }

    #[test]
    fn save_load_and_dirty_tracking() {
        let mut doc = Doc::new(&actor());
        assert!(!doc.is_dirty() && doc.is_empty());
        doc.transact(5, |tx| tx.put(ROOT, "k", "v").map(|_| ()))
            .expect("put");
        assert!(doc.is_dirty());
        let bytes = doc.save();
        assert!(!doc.is_dirty());
        let loaded = Doc::load(&bytes, &actor()).expect("load");
        assert_eq!(loaded.heads(), doc.heads());
        assert!(!loaded.is_dirty());
        doc.transact(6, |tx| tx.put(ROOT, "k2", "v2").map(|_| ()))
            .expect("put");
        assert!(doc.is_dirty());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Doc::load(b"not automerge", &actor()).is_err());
        let mut doc = Doc::new(&actor());
        assert!(doc.apply_changes(b"garbage garbage").is_err());
        assert!(doc
            .apply_changes(&[0x85, 0x6f, 0x4a, 0x83, 1, 2, 3])
            .is_err());
        let mut other = Doc::new(&actor());
        other
            .transact(1, |tx| tx.put(ROOT, "k", "v").map(|_| ()))
            .expect("put");
        let mut bytes = other.save();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55;
        assert!(doc.apply_changes(&bytes).is_err());
        assert!(Doc::load(&bytes, &actor()).is_err());
    }
}
