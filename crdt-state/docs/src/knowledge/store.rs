//! The sharded knowledge collection of one node.

use automerge::{ChangeHash, ObjType, ReadDoc};

use super::entry::{self, Entry, EntryUpdate, NewEntry};
use super::prepared::PreparedUpdate;
use super::read;
use crate::doc::Doc;
use crate::error::{DocError, KnowledgeError};
use crate::ids::{check_id, NodeActor};
use crate::limits::check_change;
use crate::seal::Standing;
use crate::shard::{ShardId, SHARD_COUNT};
use crate::summary::HeadsSummary;

/// All knowledge entries known to a node, split over [`SHARD_COUNT`]
/// Automerge documents created on first use.
///
/// The store does no IO: the node saves dirty shards with
/// [`KnowledgeStore::save_dirty`] (or [`Doc::save_incremental`]) and loads
/// them back with [`KnowledgeStore::load_shard`].
#[derive(Debug)]
pub struct KnowledgeStore {
    node: NodeActor,
    shards: Vec<Option<Doc>>,
}

/// A shard and its saved bytes.
type SavedShard = (ShardId, Vec<u8>);

fn checked(id: &str) -> Result<(), KnowledgeError> {
    check_id(id).map_err(KnowledgeError::InvalidId)
}

impl KnowledgeStore {
    /// An empty store whose writes are all made as `node`.
    pub fn new(node: NodeActor) -> Self {
        Self {
            node,
            shards: (0..SHARD_COUNT).map(|_| None).collect(),
        }
    }

    pub fn node(&self) -> &NodeActor {
        &self.node
    }

    /// Creates an entry. The id must be new: ids of deleted entries stay
    /// taken, so a tombstone is never silently overwritten.
    pub fn put(&mut self, new: NewEntry, now_ms: u64) -> Result<(), KnowledgeError> {
        checked(&new.id)?;
        entry::check_title(&new.title)?;
        entry::check_body(&new.body)?;
        entry::check_actor(&new.actor)?;
        let tags = entry::check_tags(&new.tags)?;
        let author = self.node.node_id().to_owned();
        let doc = self.shard_mut(ShardId::of(&new.id));
        if read::entry_obj(doc.am(), &new.id)?.is_some() {
            return Err(KnowledgeError::AlreadyExists(new.id));
        }
        let before = doc.heads();
        doc.transact(now_ms, |tx| {
            entry::write_new(tx, &new, &tags, &author, now_ms)
        })?;
        Ok(check_change(doc, &before)?)
    }

    /// A live entry; `None` if unknown or deleted.
    pub fn get(&self, id: &str) -> Result<Option<Entry>, KnowledgeError> {
        Ok(self.get_with_deleted(id)?.filter(|e| !e.deleted))
    }

    /// An entry, tombstones included.
    pub fn get_with_deleted(&self, id: &str) -> Result<Option<Entry>, KnowledgeError> {
        checked(id)?;
        let Some(doc) = self.shard(ShardId::of(id)) else {
            return Ok(None);
        };
        match read::entry_obj(doc.am(), id)? {
            Some(obj) => read::read_entry(doc.am(), id, &obj).map(Some),
            None => Ok(None),
        }
    }

    /// Changes the title, body (as a text diff) and/or tags of a live entry:
    /// [`PreparedUpdate::new`] and [`apply_update`](Self::apply_update) in
    /// one call. The diff runs here, within [`DEFAULT_DIFF_TIMEOUT`]; a
    /// caller holding the store behind a lock should prepare the update
    /// outside it instead.
    ///
    /// [`DEFAULT_DIFF_TIMEOUT`]: crate::DEFAULT_DIFF_TIMEOUT
    pub fn update(
        &mut self,
        id: &str,
        update: &EntryUpdate,
        now_ms: u64,
    ) -> Result<(), KnowledgeError> {
        checked(id)?;
        entry::check_update(update)?;
        let current = match update.body {
            Some(_) => self.live_body(id)?,
            None => String::new(),
        };
        let prepared = PreparedUpdate::new(update.clone(), &current)?;
        self.apply_update(id, &prepared, now_ms)
    }

    /// Applies an update prepared with [`PreparedUpdate::new`]: cheap (the
    /// body edit is a few splices), so it is what a caller does under its
    /// lock. Fails with [`KnowledgeError::BodyChanged`], changing nothing,
    /// if the body is no longer the text the edit was computed from.
    pub fn apply_update(
        &mut self,
        id: &str,
        update: &PreparedUpdate,
        now_ms: u64,
    ) -> Result<(), KnowledgeError> {
        checked(id)?;
        self.check_may_change(id)?;
        let doc = self.live_doc(id)?;
        let before = doc.heads();
        doc.transact(now_ms, |tx| {
            let obj = read::entry_obj(tx, id)?.ok_or_else(|| not_found(id))?;
            entry::write_update(tx, id, &obj, update, now_ms)
        })?;
        Ok(check_change(doc, &before)?)
    }

    /// The body of a live entry, without reading the rest of it.
    fn live_body(&mut self, id: &str) -> Result<String, KnowledgeError> {
        let am = self.live_doc(id)?.am();
        let obj = read::entry_obj(am, id)?.ok_or_else(|| not_found(id))?;
        let text = read::child(am, &obj, entry::BODY, ObjType::Text)
            .ok_or_else(|| read::malformed(id, "body is not text"))?;
        Ok(am.text(&text)?)
    }

    /// Replaces the body by diffing against the current text.
    pub fn update_body(&mut self, id: &str, body: &str, now_ms: u64) -> Result<(), KnowledgeError> {
        let update = EntryUpdate {
            body: Some(body.to_owned()),
            ..EntryUpdate::default()
        };
        self.update(id, &update, now_ms)
    }

    /// Marks an entry deleted. A tombstone rather than a map delete: the id
    /// stays taken (a later `put` with it is refused instead of reviving
    /// it), lists can show what was deleted and when, and a concurrent
    /// update on another node cannot resurrect it (only `delete` ever
    /// writes the flag). Automerge keeps history either way, so a map
    /// delete would not free space.
    pub fn delete(&mut self, id: &str, now_ms: u64) -> Result<(), KnowledgeError> {
        checked(id)?;
        self.check_may_change(id)?;
        let doc = self.live_doc(id)?;
        let before = doc.heads();
        doc.transact(now_ms, |tx| {
            let obj = read::entry_obj(tx, id)?.ok_or_else(|| not_found(id))?;
            entry::write_delete(tx, &obj, now_ms)
        })?;
        Ok(check_change(doc, &before)?)
    }

    /// Refuses, before anything is written, what every other replica would
    /// refuse: changing an entry this node did not author, unless it is an
    /// admin (see `verdict.rs`).
    fn check_may_change(&mut self, id: &str) -> Result<(), KnowledgeError> {
        if self.node.standing() == Standing::Admin {
            return Ok(());
        }
        let am = self.live_doc(id)?.am();
        let obj = read::entry_obj(am, id)?.ok_or_else(|| not_found(id))?;
        let author = read::author_of(&obj).unwrap_or_default();
        if author == self.node.node_id() {
            return Ok(());
        }
        Err(KnowledgeError::NotAuthor {
            id: id.to_owned(),
            author,
        })
    }

    /// The shard holding `id` if the entry exists and is live.
    fn live_doc(&mut self, id: &str) -> Result<&mut Doc, KnowledgeError> {
        let shard = ShardId::of(id);
        let doc = self.shards[usize::from(shard.index())]
            .as_mut()
            .ok_or_else(|| not_found(id))?;
        let obj = read::entry_obj(doc.am(), id)?.ok_or_else(|| not_found(id))?;
        let meta =
            read::read_fields(doc.am(), &obj)
                .meta()
                .ok_or_else(|| KnowledgeError::Malformed {
                    id: id.to_owned(),
                    reason: "bad updated_ms or deleted",
                })?;
        if meta.deleted {
            return Err(KnowledgeError::Deleted(id.to_owned()));
        }
        Ok(doc)
    }

    /// Number of live entries.
    pub fn len(&self) -> usize {
        let mut n = 0;
        for (_, doc) in self.docs() {
            let am = doc.am();
            for (_, obj) in read::entries(am) {
                let meta = read::read_fields(am, &obj).meta();
                n += usize::from(meta.is_some_and(|m| !m.deleted));
            }
        }
        n
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn docs(&self) -> impl Iterator<Item = (ShardId, &Doc)> {
        ShardId::all()
            .zip(&self.shards)
            .filter_map(|(s, d)| Some((s, d.as_ref()?)))
    }

    /// A shard, if it was ever created here.
    pub fn shard(&self, shard: ShardId) -> Option<&Doc> {
        self.shards[usize::from(shard.index())].as_ref()
    }

    /// A shard, created empty on first use (e.g. to receive it by sync).
    pub fn shard_mut(&mut self, shard: ShardId) -> &mut Doc {
        let node = &self.node;
        self.shards[usize::from(shard.index())].get_or_insert_with(|| Doc::new(node))
    }

    /// A shard's heads (empty for a shard never created).
    pub fn shard_heads(&self, shard: ShardId) -> Vec<ChangeHash> {
        self.shard(shard).map(Doc::heads).unwrap_or_default()
    }

    /// Shards changed since their last save or load.
    pub fn dirty_shards(&self) -> Vec<ShardId> {
        self.docs()
            .filter(|(_, d)| d.is_dirty())
            .map(|(s, _)| s)
            .collect()
    }

    /// Saves every dirty shard (whole and compacted), marking it clean.
    pub fn save_dirty(&mut self) -> Vec<(ShardId, Vec<u8>)> {
        ShardId::all()
            .zip(self.shards.iter_mut())
            .filter_map(|(s, d)| {
                let d = d.as_mut()?;
                d.is_dirty().then(|| (s, d.save()))
            })
            .collect()
    }

    /// Saves every dirty shard, as [`save_dirty`](Self::save_dirty) does,
    /// if each is at most `max` bytes. Otherwise nothing is saved, every
    /// change since the last save is undone (a refused write leaves no
    /// trace), and the error names the shard and its size.
    pub fn save_dirty_within(
        &mut self,
        max: usize,
    ) -> Result<Vec<SavedShard>, (ShardId, KnowledgeError)> {
        let mut saved = Vec::new();
        let mut over = None;
        for (shard, doc) in self.docs().filter(|(_, d)| d.is_dirty()) {
            let bytes = doc.encode();
            if bytes.len() > max {
                over = Some((shard, bytes.len()));
                break;
            }
            saved.push((shard, bytes));
        }
        if let Some((shard, len)) = over {
            self.revert_dirty()?;
            let e = DocError::DocumentTooLarge { len, max };
            return Err((shard, e.into()));
        }
        for (shard, _) in &saved {
            self.shard_mut(*shard).mark_saved();
        }
        Ok(saved)
    }

    /// Undoes every change since each shard's last save or load (a write
    /// refused after it was made). On error, names the shard.
    pub fn revert_dirty(&mut self) -> Result<(), (ShardId, KnowledgeError)> {
        for shard in self.dirty_shards() {
            self.shard_mut(shard)
                .revert_unsaved()
                .map_err(|e| (shard, e.into()))?;
        }
        Ok(())
    }

    /// Saves every shard that exists (a full snapshot), marking all clean.
    pub fn save_all(&mut self) -> Vec<(ShardId, Vec<u8>)> {
        ShardId::all()
            .zip(self.shards.iter_mut())
            .filter_map(|(s, d)| Some((s, d.as_mut()?.save())))
            .collect()
    }

    /// Loads a stored shard. Into a shard that already exists, the bytes
    /// are merged (a union, so loading twice or after local writes is
    /// harmless).
    pub fn load_shard(&mut self, shard: ShardId, bytes: &[u8]) -> Result<(), KnowledgeError> {
        let slot = &mut self.shards[usize::from(shard.index())];
        match slot {
            Some(doc) => {
                doc.apply_changes(bytes)?;
            }
            None => *slot = Some(Doc::load(bytes, &self.node)?),
        }
        Ok(())
    }

    /// Loads many stored shards at once, decoding them on every core (the
    /// decoding is most of a node's start-up time at 100,000 entries).
    /// Shards that already exist are merged one by one, as
    /// [`load_shard`](Self::load_shard) does. A shard that does not load is
    /// left as it was (absent, or its state before) and named in the
    /// result, and the others load all the same: one damaged shard must
    /// not keep a node from serving the rest.
    pub fn load_shards(
        &mut self,
        shards: Vec<(ShardId, Vec<u8>)>,
    ) -> Vec<(ShardId, KnowledgeError)> {
        let (fresh, existing): (Vec<_>, Vec<_>) = shards
            .into_iter()
            .partition(|(s, _)| self.shards[usize::from(s.index())].is_none());
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, fresh.len().max(1));
        let mut parts: Vec<Vec<(ShardId, Vec<u8>)>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, item) in fresh.into_iter().enumerate() {
            parts[i % threads].push(item);
        }
        let node = &self.node;
        type Loaded = Vec<(ShardId, Result<Doc, KnowledgeError>)>;
        let loaded: Vec<Loaded> = std::thread::scope(|scope| {
            let workers: Vec<_> = parts
                .into_iter()
                .map(|part| {
                    scope.spawn(move || {
                        part.into_iter()
                            .map(|(s, bytes)| (s, Doc::load(&bytes, node).map_err(Into::into)))
                            .collect()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let mut failed = Vec::new();
        for (s, doc) in loaded.into_iter().flatten() {
            match doc {
                Ok(doc) => self.shards[usize::from(s.index())] = Some(doc),
                Err(e) => failed.push((s, e)),
            }
        }
        for (s, bytes) in existing {
            if let Err(e) = self.load_shard(s, &bytes) {
                failed.push((s, e));
            }
        }
        failed.sort_by_key(|(s, _)| *s);
        failed
    }

    /// The per-shard heads digests, for gossip.
    pub fn heads_summary(&self) -> HeadsSummary {
        let mut summary = HeadsSummary::default();
        for (shard, doc) in self.docs() {
            if let Some(digest) = doc.heads_digest() {
                summary.insert(shard, digest);
            }
        }
        summary
    }
}

fn not_found(id: &str) -> KnowledgeError {
    KnowledgeError::NotFound(id.to_owned())
}
