//! The kinds of replicated document a node holds: the knowledge shards,
//! and single documents such as the routine book. Each single document is
//! one whole Automerge document, stored under one key (in parts, as the
//! shards are: `storage.rs`), synced in the same
//! rounds as the shards and pushed on the same topic, under its own number
//! on the wire; replication (`replication/`) knows them only through
//! [`AnySingle`] and `Docs::singles`.
//!
//! Adding a document type: implement [`Replica`] for its typed wrapper
//! (as for `RoutineBook` below), give it a [`Kind`], hold it in `Docs` as
//! a [`Single`] opened in `Docs::open` and listed in `Docs::singles`, and
//! add its typed operations (`Docs` and `service/`). Sync, push, the state
//! summary, storage and the audit entries of peers' changes follow.

use std::sync::{Mutex, MutexGuard};

use osmoda_docs::{ChangedKeys, Doc, DocError, NodeActor, Pushed, RoutineBook, SyncSession};
use osmoda_store::Store;

use super::storage;
use crate::error::{NodeError, NodeResult};

/// Single documents a node may hold; bounds the state summary on the wire.
pub const MAX_SINGLES: usize = 16;

/// Entry or routine ids an audit entry for a peer's change lists; beyond
/// these it gives a count.
pub const AUDITED_KEYS: usize = 16;

/// A kind of replicated document, as storage, the wire and the audit log
/// name it.
#[derive(Debug, PartialEq, Eq)]
pub struct Kind {
    /// Its number in pushes and sync rounds (single documents only; the
    /// shards are numbered from 0 by `ShardId`).
    pub wire: u16,
    /// Store table, and key within it (single documents only).
    pub table: &'static str,
    pub key: &'static [u8],
    /// Audit actions are `ACTION.push` and `ACTION.sync`.
    pub action: &'static str,
    /// What its top-level keys are, in audit details.
    pub one: &'static str,
    pub many: &'static str,
}

/// The knowledge shards.
pub const KNOWLEDGE: Kind = Kind {
    wire: 0,
    table: "knowledge",
    key: b"",
    action: "knowledge",
    one: "entry",
    many: "entries",
};

/// The routine book: one document of every routine definition.
pub const ROUTINES: Kind = Kind {
    wire: u16::MAX,
    table: "routines",
    key: b"book",
    action: "routine",
    one: "routine",
    many: "routines",
};

/// A typed wrapper around one Automerge document.
pub trait Replica: Send + Sized + 'static {
    fn new(node: &NodeActor) -> Self;
    fn load(bytes: &[u8], node: &NodeActor) -> Result<Self, DocError>;
    fn doc(&self) -> &Doc;
    fn doc_mut(&mut self) -> &mut Doc;
}

impl Replica for RoutineBook {
    fn new(node: &NodeActor) -> Self {
        RoutineBook::new(node)
    }
    fn load(bytes: &[u8], node: &NodeActor) -> Result<Self, DocError> {
        RoutineBook::load(bytes, node)
    }
    fn doc(&self) -> &Doc {
        RoutineBook::doc(self)
    }
    fn doc_mut(&mut self) -> &mut Doc {
        RoutineBook::doc_mut(self)
    }
}

/// A single replicated document, with the store it is saved to. Every
/// save is queued to the store under the document's lock, so the store
/// commits them in the order the changes were made.
pub struct Single<T> {
    kind: &'static Kind,
    store: Store,
    doc: Mutex<T>,
}

impl<T: Replica> Single<T> {
    /// Loads the document from the store, or starts an empty one.
    pub fn open(store: &Store, node: &NodeActor, kind: &'static Kind) -> NodeResult<Self> {
        let doc = match storage::load(store, kind.table, kind.key)? {
            Some(bytes) => T::load(&bytes, node).map_err(|e| {
                NodeError::Internal(format!("the {} document does not load: {e}", kind.one))
            })?,
            None => T::new(node),
        };
        Ok(Self {
            kind,
            store: store.clone(),
            doc: Mutex::new(doc),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.doc.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues the document's bytes to the store; the caller holds the
    /// lock, so saves commit in order.
    pub fn save(&self, doc: &mut T) -> NodeResult<osmoda_store::Ack<usize>> {
        let bytes = doc.doc_mut().save();
        self.store_bytes(bytes)
    }

    /// Saves after a local write, which is refused and undone if it leaves
    /// the document over `storage::MAX_DOC_BYTES`.
    pub fn save_local(&self, doc: &mut T) -> NodeResult<osmoda_store::Ack<usize>> {
        let bytes = match doc.doc_mut().save_within(storage::MAX_DOC_BYTES) {
            Ok(bytes) => bytes,
            Err(e) => {
                if let Err(undo) = doc.doc_mut().revert_unsaved() {
                    tracing::error!(error = %undo, "cannot undo a refused write");
                }
                return Err(NodeError::TooLarge(format!(
                    "the {} document: {e}",
                    self.kind.one
                )));
            }
        };
        self.store_bytes(bytes)
    }

    fn store_bytes(&self, bytes: Vec<u8>) -> NodeResult<osmoda_store::Ack<usize>> {
        let (mut batches, refused) =
            storage::batches(self.kind.table, vec![(self.kind.key.to_vec(), bytes)]);
        if let Some(e) = refused.into_iter().next() {
            return Err(e);
        }
        // One document is one batch (`storage::batches`).
        match batches.pop() {
            Some(batch) => Ok(self.store.submit_batch(batch)?),
            None => Ok(self.store.submit_batch(osmoda_store::Batch::new())?),
        }
    }
}

/// What replication needs of any single document.
pub trait AnySingle: Send + Sync {
    fn kind(&self) -> &'static Kind;
    /// Digest of its heads (all zeros while it is empty).
    fn digest(&self) -> [u8; 16];
    /// Its next sync message, if it has something to say.
    fn generate(&self, session: &mut SyncSession) -> Option<Vec<u8>>;
    /// Applies a peer's sync message and stores the document if it
    /// changed; the keys it touched, or `None` when nothing changed. An
    /// error is the message's fault.
    fn receive(
        &self,
        session: &mut SyncSession,
        bytes: &[u8],
    ) -> Result<Option<ChangedKeys>, Refused>;
    /// Applies a member's pushed change, stores the document if it
    /// changed, and says which keys it touched.
    fn apply_pushed(&self, change: &[u8]) -> NodeResult<(Pushed, ChangedKeys)>;
    /// Judges a member's pushed change without applying it.
    fn judge_pushed(&self, change: &[u8]) -> NodeResult<()>;
}

/// A peer's message that does not decode or apply, or a store that failed.
pub enum Refused {
    Message(String),
    Store(NodeError),
}

impl<T: Replica> AnySingle for Single<T> {
    fn kind(&self) -> &'static Kind {
        self.kind
    }

    fn digest(&self) -> [u8; 16] {
        self.lock()
            .doc()
            .heads_digest()
            .map(|d| d.0)
            .unwrap_or([0; 16])
    }

    fn generate(&self, session: &mut SyncSession) -> Option<Vec<u8>> {
        match session.generate_message(self.lock().doc()) {
            Ok(message) => message,
            Err(e) => {
                tracing::debug!(kind = self.kind.action, error = %e, "sync session failed");
                None
            }
        }
    }

    fn receive(
        &self,
        session: &mut SyncSession,
        bytes: &[u8],
    ) -> Result<Option<ChangedKeys>, Refused> {
        let mut doc = self.lock();
        let before = doc.doc().heads();
        let received = session.receive_message(doc.doc_mut(), bytes);
        if let Err(e) = received {
            // Changes taken before a refused one in the same message stay,
            // and are stored.
            if doc.doc().heads() != before {
                let _ack = self.save(&mut doc).map_err(Refused::Store)?;
            }
            return Err(Refused::Message(e.to_string()));
        }
        if doc.doc().heads() == before {
            return Ok(None);
        }
        let keys = doc.doc().changed_keys(&before, AUDITED_KEYS);
        // Replicated data: queued in order under the lock; no need to hold
        // the peer's round until it is on disk.
        let _ack = self.save(&mut doc).map_err(Refused::Store)?;
        Ok(Some(keys))
    }

    fn judge_pushed(&self, change: &[u8]) -> NodeResult<()> {
        self.lock()
            .doc()
            .judge_pushed(change)
            .map_err(|e| NodeError::Invalid(e.to_string()))
    }

    fn apply_pushed(&self, change: &[u8]) -> NodeResult<(Pushed, ChangedKeys)> {
        let mut doc = self.lock();
        let before = doc.doc().heads();
        let pushed = doc
            .doc_mut()
            .apply_pushed(change)
            .map_err(|e| NodeError::Invalid(e.to_string()))?;
        if pushed != Pushed::Applied {
            return Ok((pushed, ChangedKeys::default()));
        }
        let keys = doc.doc().changed_keys(&before, AUDITED_KEYS);
        // Queued in order; a replica's copy need not wait for the disk.
        let _ack = self.save(&mut doc)?;
        Ok((pushed, keys))
    }
}
