//! Sans-IO core of osmoda's replicated documents: knowledge entries and
//! routine definitions as Automerge CRDTs, sharded, with bounded sync.
//!
//! # Design
//!
//! - **Knowledge** ([`KnowledgeStore`]): entries (title, body as Automerge
//!   Text, tags as a set, author, times, a tombstone) live in
//!   [`SHARD_COUNT`] = 256 Automerge documents, picked by a BLAKE3 hash of
//!   the entry id ([`ShardId::of`]). Each shard is created on first use and
//!   stays small (some 100 KiB at 100,000 entries), so saving a shard after
//!   a write, or syncing the one shard that changed, costs little. Body
//!   updates are applied as text diffs, so concurrent edits of one body
//!   merge as text; the diff can be computed before taking the store's
//!   lock ([`PreparedUpdate`]), leaving a few splices to apply under it. Listings come in pages ([`KnowledgeStore::list_page`]):
//!   a scan keeps only the best `limit` hits, and a [`ListCursor`] says
//!   where the next page starts.
//! - **Routines** ([`RoutineBook`]): definitions (cron or interval schedule,
//!   target, bounded action) in one document, at most [`MAX_ROUTINES`].
//! - **Storage** is the caller's: every document saves to and loads from
//!   bytes ([`Doc::save`], [`Doc::save_incremental`], [`Doc::load`],
//!   [`KnowledgeStore::save_dirty`], [`KnowledgeStore::load_shard`]); the
//!   store tracks which shards are dirty.
//! - **Sync**: [`SyncSession`] is Automerge's sync protocol for one (peer,
//!   document) pair as a bounded state machine; [`HeadsSummary`] is the
//!   compact per-shard heads digest a node gossips, and [`StoreSync`] runs
//!   sessions only for the shards whose digests differ. A write's own
//!   change can also be pushed to every replica at once
//!   ([`Doc::last_local_change`], [`Doc::apply_pushed`]); a replica applies
//!   it only when it already holds the change's history.
//! - **Auditing received changes**: [`Doc::changed_keys`] names the
//!   entries or routines that the changes since given heads touched, so a
//!   node can record what a peer's push or sync round changed.
//!
//! One node writes with one Automerge actor, derived from its node id
//! ([`NodeActor`]), so every change is attributable.
//!
//! # Invariants
//!
//! - No IO, no clock (time is a `now_ms` argument, also used as the
//!   Automerge change time), no threads, no tokio or libp2p. One
//!   exception: a body diff has a deadline ([`BodyEdit::between`]), read
//!   from the monotonic clock; it decides how finely an edit is
//!   expressed, never the text it produces. (Automerge
//!   itself draws randomness for its internal skip lists and for the
//!   placeholder actor it replaces at once; no document content depends
//!   on it.)
//! - Sync messages and loaded bytes are untrusted: errors, never panics.
//!   Sync accepts only plain change chunks, since Automerge inflates
//!   compressed ones without a limit.
//! - Reads tolerate anything a faulty replica may have written: malformed
//!   entries are skipped by lists and reported by `get`.
//!
//! # Bounds
//!
//! | what | bound |
//! |------|-------|
//! | entry / routine id | 1–64 bytes of `[A-Za-z0-9._-]` ([`MAX_ID_BYTES`]) |
//! | title | 256 B ([`MAX_TITLE_BYTES`]) |
//! | body | 256 KiB ([`MAX_BODY_BYTES`]) |
//! | one local change | 768 KiB ([`MAX_CHANGE_BYTES`]): the largest entry and its updates fit; a write beyond is refused and undone |
//! | tags | 32 ([`MAX_TAGS`]) of 1–64 B ([`MAX_TAG_BYTES`]) |
//! | routines | 10,000; name 128 B; schedule 128 B; command 1 KiB; 64 args of 1 KiB; timeout 1 s–1 day; 256 target nodes |
//! | sync message | 4 MiB, sent and received ([`SyncLimits`]) |
//! | sync session | 32 useless rounds in a row, 4,096 rounds, 256 MiB received |
//! | push | 16 plain changes ([`MAX_PUSH_CHANGES`]); the caller bounds its bytes |
//! | heads summary | 4,613 B ([`MAX_SUMMARY_BYTES`]) |
//! | listing cursor token | 100 characters ([`MAX_CURSOR_CHARS`]) |
//! | body edit | 16 splices ([`MAX_SPLICES`]) or a fresh text ([`REWRITE_MIN_CHARS`]); its diff 50 ms by default ([`DEFAULT_DIFF_TIMEOUT`]) |
//!
//! Bounds are checked on input. Concurrent edits can exceed some after a
//! merge (two nodes each adding 20 tags); reads then return what merged.

// Outside bytes, files and answers are errors, never panics; tests may
// unwrap what they made themselves.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod admit;
mod changed;
mod chunks;
mod cursor;
mod doc;
mod error;
mod ids;
mod knowledge;
mod limits;
mod push;
mod routines;
mod seal;
mod search;
mod shard;
mod store_sync;
mod summary;
mod sync;
mod verdict;

pub use changed::ChangedKeys;
pub use cursor::{ListCursor, MAX_CURSOR_CHARS};
pub use doc::Doc;
pub use error::{
    CursorError, DocError, IdError, KnowledgeError, RoutineError, SummaryError, SyncError,
};
pub use ids::{check_id, derive_id, id_namespace, NodeActor, MAX_ID_BYTES, MAX_NODE_ID_BYTES};
pub use knowledge::{
    BodyEdit, Entry, EntryUpdate, KnowledgeStore, NewEntry, PreparedUpdate, DEFAULT_DIFF_TIMEOUT,
    MAX_BODY_BYTES, MAX_SPLICES, MAX_TAGS, MAX_TAG_BYTES, MAX_TITLE_BYTES, REWRITE_MIN_CHARS,
};
pub use limits::MAX_CHANGE_BYTES;
pub use push::{Pushed, MAX_PUSH_CHANGES};
pub use routines::{
    Action, NewRoutine, Routine, RoutineBook, Schedule, Target, MAX_ARGS, MAX_ARG_BYTES,
    MAX_COMMAND_BYTES, MAX_INTERVAL_SECS, MAX_LABEL_BYTES, MAX_NAME_BYTES, MAX_ROUTINES,
    MAX_SCHEDULE_BYTES, MAX_TARGET_NODES, MAX_TIMEOUT_SECS,
};
pub use seal::{
    bundle_overhead, credential_id, decode_bundle, encode_bundle, sealed_message, Authority,
    Bundle, CarriedSeal, CredentialId, Seal, SharedAuthority, Standing, MAX_BUNDLE_CREDENTIALS,
    MAX_CREDENTIAL_BYTES, MAX_DOC_CREDENTIALS, SEAL_CONTEXT, SEAL_WIRE_BYTES,
};
pub use search::{ListPage, ListQuery, SearchHits, MAX_QUERY_BYTES};
pub use shard::{ShardId, SHARD_COUNT};
pub use store_sync::StoreSync;
pub use summary::{heads_digest, HeadsDigest, HeadsSummary, MAX_SUMMARY_BYTES};
pub use sync::{SyncLimits, SyncSession, SyncStats, MAX_HELD_BYTES, MAX_HELD_CHANGES};
pub use verdict::{Refusal, Rules};

/// Automerge's change hash, the unit of document heads.
pub use automerge::ChangeHash;
