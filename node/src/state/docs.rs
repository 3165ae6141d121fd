//! Knowledge entries and routine definitions on this node: the replicated
//! Automerge documents of `osmoda-docs`, saved to the store before a write
//! is acknowledged. Each acknowledged write's change goes to the outbox for
//! gossip (`push.rs`); changes arrive by push or by sync (`sync.rs`).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use osmoda_docs::{
    derive_id, Entry, EntryUpdate, HeadsSummary, KnowledgeError, KnowledgeStore, ListCursor,
    ListQuery, NewEntry, NewRoutine, NodeActor, PreparedUpdate, Routine, RoutineBook, ShardId,
    SharedAuthority, SHARD_COUNT,
};
use osmoda_store::{Batch, Store};
use tokio::sync::mpsc;

use crate::api::{EntryView, Page, RoutineView};
use crate::error::{NodeError, NodeResult};
use crate::replication::push::{Push, OUTBOX};

mod kinds;
#[cfg(test)]
mod recovery_tests;
mod replica;
pub mod storage;
#[cfg(test)]
mod tests;

use kinds::Single;
pub use kinds::{AnySingle, Kind, KNOWLEDGE, MAX_SINGLES, ROUTINES};
pub use replica::{Received, Touched};

type Result<T, E = NodeError> = std::result::Result<T, E>;

/// Most entries one import stores at once: the shards it touches are
/// saved whole (in batches of at most 8 MiB, `storage::batches`).
pub const MAX_IMPORT: usize = 1000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl From<Entry> for EntryView {
    fn from(e: Entry) -> Self {
        Self {
            id: e.id,
            title: e.title,
            body: e.body,
            tags: e.tags.into_iter().collect(),
            author_node: e.author_node,
            actor: e.actor,
            created_ms: e.created_ms,
            updated_ms: e.updated_ms,
        }
    }
}

impl From<Routine> for RoutineView {
    fn from(r: Routine) -> Self {
        Self {
            id: r.id,
            name: r.name,
            schedule: r.schedule.to_string(),
            target: r.target.to_string(),
            command: r.action.command,
            args: r.action.args,
            timeout_secs: r.action.timeout_secs,
            enabled: r.enabled,
            created_by: r.created_by,
            created_ms: r.created_ms,
            updated_ms: r.updated_ms,
        }
    }
}

/// The node's documents. Writes change the document under a lock and queue
/// the shard's bytes to the store under the same lock, so the store commits
/// them in the order they were made; the caller is answered once durable.
pub struct Docs {
    store: Store,
    knowledge: Mutex<KnowledgeStore>,
    routines: Single<RoutineBook>,
    node_id: String,
    unique: AtomicU64,
    /// Bumped on every change to either document, local or synced; lets
    /// the node skip recomputing its summary while nothing changed.
    changes: AtomicU64,
    /// Bumped on every change neighbours will not hear of by push (a sync,
    /// or a write that could not be pushed): the node tells them by notice.
    unheard: AtomicU64,
    summary_cache: Mutex<Option<(u64, HeadsSummary)>>,
    /// Knowledge shards whose stored bytes did not load at start, until
    /// they are stored again.
    damaged: Mutex<BTreeSet<u16>>,
    outbox: mpsc::Sender<Push>,
    /// Taken once by the node's loop, which gossips what it receives.
    outbox_rx: Mutex<Option<mpsc::Receiver<Push>>>,
}

fn shard_key(shard: ShardId) -> [u8; 2] {
    shard.index().to_be_bytes()
}

/// The batches that store saved shards (`storage::batches`), and the
/// errors of shards too large to store.
fn shard_batches(saved: Vec<(ShardId, Vec<u8>)>) -> (Vec<Batch>, Vec<NodeError>) {
    let docs = saved
        .into_iter()
        .map(|(shard, bytes)| (shard_key(shard).to_vec(), bytes))
        .collect();
    storage::batches(KNOWLEDGE.table, docs)
}

/// Replicated shards to store: what fits is stored; a shard merged past
/// what the store holds (several members writing large changes into it at
/// once) is logged and kept in memory only, and comes back by sync after
/// a restart.
fn replica_batches(saved: Vec<(ShardId, Vec<u8>)>) -> Vec<Batch> {
    let (batches, refused) = shard_batches(saved);
    for e in refused {
        tracing::error!(error = %e, "a replicated knowledge shard is not stored");
    }
    batches
}

/// A local write refused after it was made: undone, so it leaves no
/// trace to be saved or synced later.
fn undo(k: &mut KnowledgeStore) {
    if let Err((shard, e)) = k.revert_dirty() {
        tracing::error!(shard = shard.index(), error = %e, "cannot undo a refused write");
    }
}

impl Docs {
    /// Opens the node's documents. With an `authority`, this node's
    /// changes are sealed and peers' changes judged; without one (tools and
    /// tests that read stored documents) neither.
    pub fn open(store: &Store, node_id: &str, authority: Option<SharedAuthority>) -> Result<Self> {
        let mut actor = NodeActor::new(node_id)
            .map_err(|e| NodeError::Internal(format!("node id as document actor: {e}")))?;
        if let Some(authority) = authority {
            actor = actor.with_authority(authority);
        }
        let mut knowledge = KnowledgeStore::new(actor.clone());
        let mut stored = Vec::new();
        let mut damaged = BTreeSet::new();
        let mut report = |shard: ShardId, e: &dyn std::fmt::Display| {
            tracing::warn!(
                shard = shard.index(),
                error = %e,
                "knowledge shard {} is damaged and does not load: starting it empty, to be \
                 recovered from peers by sync",
                shard.index()
            );
            damaged.insert(shard.index());
        };
        for shard in (0..SHARD_COUNT).filter_map(ShardId::new) {
            match storage::load(store, KNOWLEDGE.table, &shard_key(shard)) {
                Ok(Some(bytes)) => stored.push((shard, bytes)),
                Ok(None) => {}
                Err(e) => report(shard, &e),
            }
        }
        // A damaged shard starts empty and comes back from peers by sync
        // (its digest is missing from this node's summary, so every peer
        // offers it); its bytes stay in the store until it is saved again.
        for (shard, e) in knowledge.load_shards(stored) {
            report(shard, &e);
        }
        let routines = Single::open(store, &actor, &kinds::ROUTINES)?;
        let (outbox, outbox_rx) = mpsc::channel(OUTBOX);
        Ok(Self {
            store: store.clone(),
            knowledge: Mutex::new(knowledge),
            routines,
            node_id: node_id.to_owned(),
            unique: AtomicU64::new(now_ms() << 16),
            changes: AtomicU64::new(0),
            unheard: AtomicU64::new(0),
            summary_cache: Mutex::new(None),
            damaged: Mutex::new(damaged),
            outbox,
            outbox_rx: Mutex::new(Some(outbox_rx)),
        })
    }

    /// Knowledge shards whose stored bytes did not load at start and that
    /// have not been stored again since: a shard is stored again once it
    /// holds changes (from sync, or a write) and is not dirty.
    pub fn damaged_shards(&self) -> Vec<u16> {
        let mut damaged = self.damaged.lock().unwrap_or_else(|e| e.into_inner());
        if damaged.is_empty() {
            return Vec::new();
        }
        let k = self.knowledge.lock().unwrap_or_else(|e| e.into_inner());
        damaged.retain(|&i| {
            ShardId::new(i)
                .and_then(|s| k.shard(s))
                .is_none_or(|d| d.is_empty() || d.is_dirty())
        });
        damaged.iter().copied().collect()
    }

    /// Local writes' changes to gossip; `None` once taken.
    pub fn take_outbox(&self) -> Option<mpsc::Receiver<Push>> {
        self.outbox_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// A counter that moves whenever neighbours should be told of a change
    /// by notice (see `unheard`).
    pub fn unheard_version(&self) -> u64 {
        self.unheard.load(Ordering::Acquire)
    }

    /// Marks a change that neighbours must be told of by notice.
    pub fn unheard(&self) {
        self.unheard.fetch_add(1, Ordering::AcqRel);
    }

    /// Hands an acknowledged write's changes to the outbox.
    fn push(&self, pushes: Vec<Push>) {
        for push in pushes {
            // A change too large for one gossip message goes by sync only.
            if !push.fits_gossip() || self.outbox.try_send(push).is_err() {
                self.unheard();
            }
        }
    }

    /// A counter that moves whenever the documents change.
    pub fn version(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
    }

    fn new_id(&self) -> String {
        derive_id(&self.node_id, self.unique.fetch_add(1, Ordering::Relaxed))
    }

    /// Applies `change` to the knowledge store and waits until the shards it
    /// touched are on disk.
    async fn write_knowledge<T>(
        &self,
        change: impl FnOnce(&mut KnowledgeStore) -> Result<T, osmoda_docs::KnowledgeError>,
    ) -> Result<T> {
        let damaged = self.damaged_shards();
        let (value, acks, pushes) = {
            let mut k = self.knowledge.lock().unwrap_or_else(|e| e.into_inner());
            let value = match change(&mut k) {
                Ok(value) => value,
                Err(e) => {
                    // An import refused halfway leaves none of its entries.
                    undo(&mut k);
                    return Err(e.into());
                }
            };
            // A damaged shard lost this node's own changes: writing into it
            // before sync brings them back would reuse their sequence
            // numbers, which every replica refuses.
            if let Some(shard) = k
                .dirty_shards()
                .into_iter()
                .find(|s| damaged.contains(&s.index()))
            {
                undo(&mut k);
                return Err(NodeError::Unavailable(format!(
                    "knowledge shard {} did not load at start and is being recovered from \
                     peers; write again once it has synced",
                    shard.index()
                )));
            }
            // Every shard is saved after each change, so the dirty ones
            // are those this write touched, and their last local change
            // is this write's.
            let pushes = k
                .dirty_shards()
                .into_iter()
                .filter_map(|shard| {
                    let change = k.shard(shard)?.last_local_change()?;
                    Some(Push {
                        doc: shard.index(),
                        change,
                    })
                })
                .collect();
            // Refused here, undone, before anything is stored or sent.
            let saved = k
                .save_dirty_within(storage::MAX_DOC_BYTES)
                .map_err(|(shard, e)| {
                    NodeError::TooLarge(format!("knowledge shard {}: {e}", shard.index()))
                })?;
            self.changed();
            // Each shard is below what the store holds, by the check above.
            let (batches, refused) = shard_batches(saved);
            if let Some(e) = refused.into_iter().next() {
                return Err(e);
            }
            let acks = batches
                .into_iter()
                .map(|batch| self.store.submit_batch(batch))
                .collect::<Result<Vec<_>, _>>()?;
            (value, acks, pushes)
        };
        for ack in acks {
            ack.await?;
        }
        self.push(pushes);
        Ok(value)
    }

    async fn write_routines<T>(
        &self,
        change: impl FnOnce(&mut RoutineBook) -> Result<T, osmoda_docs::RoutineError>,
    ) -> Result<T> {
        let (value, ack, pushes) = {
            let mut r = self.routines.lock();
            let value = change(&mut r)?;
            let ack = self.routines.save_local(&mut r)?;
            self.changed();
            let pushes: Vec<Push> = r
                .doc()
                .last_local_change()
                .map(|change| Push {
                    doc: kinds::ROUTINES.wire,
                    change,
                })
                .into_iter()
                .collect();
            (value, ack, pushes)
        };
        ack.await?;
        self.push(pushes);
        Ok(value)
    }

    pub async fn put(
        &self,
        title: String,
        body: String,
        tags: Vec<String>,
        actor: String,
    ) -> Result<String> {
        let id = self.new_id();
        let new = NewEntry {
            id: id.clone(),
            title,
            body,
            tags,
            actor,
        };
        self.write_knowledge(|k| k.put(new, now_ms())).await?;
        Ok(id)
    }

    /// Stores up to [`MAX_IMPORT`] new entries in one commit (one fsync):
    /// an import, where one fsynced write per entry would take minutes.
    pub async fn put_many(
        &self,
        entries: Vec<(String, String, Vec<String>)>,
        actor: String,
    ) -> Result<Vec<String>> {
        if entries.len() > MAX_IMPORT {
            return Err(NodeError::TooLarge(format!(
                "{} entries in one import; at most {MAX_IMPORT}",
                entries.len()
            )));
        }
        let news: Vec<NewEntry> = entries
            .into_iter()
            .map(|(title, body, tags)| NewEntry {
                id: self.new_id(),
                title,
                body,
                tags,
                actor: actor.clone(),
            })
            .collect();
        let ids = news.iter().map(|n| n.id.clone()).collect();
        let now = now_ms();
        self.write_knowledge(|k| news.into_iter().try_for_each(|n| k.put(n, now)))
            .await?;
        Ok(ids)
    }

    /// Changes an entry. A new body is diffed against the current one off
    /// the store's lock and off the async threads (a long body takes up to
    /// 50 ms), then applied as bounded splices under the lock; if another
    /// write changed the body meanwhile, the diff is made again.
    pub async fn update(&self, id: &str, update: EntryUpdate) -> Result<()> {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            let current = match update.body {
                Some(_) => self.get(id)?.map(|e| e.body).unwrap_or_default(),
                None => String::new(),
            };
            let wanted = update.clone();
            let prepared =
                tokio::task::spawn_blocking(move || PreparedUpdate::new(wanted, &current))
                    .await
                    .map_err(NodeError::internal)??;
            match self
                .write_knowledge(|k| k.apply_update(id, &prepared, now_ms()))
                .await
            {
                Err(NodeError::Knowledge(KnowledgeError::BodyChanged(_))) if attempt < ATTEMPTS => {
                }
                other => return other,
            }
        }
        Err(NodeError::Conflict(format!(
            "entry {id} kept changing while this update was prepared; try again"
        )))
    }

    pub async fn delete(&self, id: &str) -> Result<()> {
        self.write_knowledge(|k| k.delete(id, now_ms())).await
    }

    /// A knowledge shard as this replica holds it (its saved form), for
    /// the simulator's rogue member, which writes on a copy of it.
    /// Saving marks the shard clean, which it is outside a write (every
    /// write saves what it touched under the same lock); a dirty shard is
    /// not handed out, so that no save of it is skipped.
    pub(crate) fn shard_bytes(&self, shard: ShardId) -> Option<Vec<u8>> {
        let mut k = self.knowledge.lock().unwrap_or_else(|e| e.into_inner());
        if k.shard(shard)?.is_dirty() {
            return None;
        }
        Some(k.shard_mut(shard).save())
    }

    pub fn get(&self, id: &str) -> NodeResult<Option<EntryView>> {
        let k = self.knowledge.lock().unwrap_or_else(|e| e.into_inner());
        Ok(k.get(id)?.map(Into::into))
    }

    pub fn list(&self, query: &ListQuery) -> Vec<EntryView> {
        let k = self.knowledge.lock().unwrap_or_else(|e| e.into_inner());
        k.list(query).into_iter().map(Into::into).collect()
    }

    /// One page of entries, newest first, after `cursor` (a token a
    /// previous page gave).
    pub fn list_page(
        &self,
        tag: Option<String>,
        prefix: Option<String>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<EntryView>> {
        let after = match cursor {
            Some(token) => Some(
                ListCursor::decode(token)
                    .map_err(|e| NodeError::Invalid(format!("cursor {token:?}: {e}")))?,
            ),
            None => None,
        };
        let query = ListQuery {
            tag,
            id_prefix: prefix,
            limit,
            after,
            ..ListQuery::default()
        };
        let page = self
            .knowledge
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .list_page(&query);
        Ok(Page {
            items: page.entries.into_iter().map(Into::into).collect(),
            next_cursor: page.next.map(|c| c.encode()),
        })
    }

    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<EntryView>> {
        let k = self.knowledge.lock().unwrap_or_else(|e| e.into_inner());
        Ok(k.search(query, limit)?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    pub async fn add_routine(&self, mut new: NewRoutine) -> Result<String> {
        new.id = self.new_id();
        let id = new.id.clone();
        self.write_routines(|r| r.add(new, now_ms())).await?;
        Ok(id)
    }

    pub async fn set_routine(&self, id: &str, enabled: bool) -> Result<()> {
        self.write_routines(|r| {
            if enabled {
                r.enable(id, now_ms())
            } else {
                r.disable(id, now_ms())
            }
        })
        .await
    }

    pub async fn remove_routine(&self, id: &str) -> Result<()> {
        self.write_routines(|r| r.remove(id, now_ms())).await
    }

    /// A routine by id, or by its name when one routine has it.
    pub fn find_routine(&self, id_or_name: &str) -> Result<RoutineView> {
        let r = self.routines.lock();
        Ok(r.find(id_or_name)?.into())
    }

    pub fn routines(&self) -> Vec<RoutineView> {
        let r = self.routines.lock();
        r.list().into_iter().map(Into::into).collect()
    }
}
