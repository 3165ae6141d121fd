//! The committer thread: the store's only writer.
//!
//! It takes a group of queued operations, applies all of them in one redb
//! write transaction, commits it (one fsync in durable mode) and only then
//! completes their acks. That ordering is the group-commit invariant: no
//! write is acknowledged before the commit that contains it is on disk.
//!
//! Being the only writer also makes index assignment trivial: the committer
//! remembers each log's next index, and nobody else can append in between.

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use redb::{Database, ReadableTable, Table, TableDefinition};

use crate::error::panic_message;
use crate::queue::{fail_op, Op, Queue};
use crate::record::{self, Kind};
use crate::StoreError;

pub(crate) struct Committer {
    pub(crate) db: Arc<Database>,
    pub(crate) queue: Arc<Queue>,
    pub(crate) path: PathBuf,
    pub(crate) durability: redb::Durability,
    /// Next index of each log touched so far. Only valid for committed
    /// state: cleared whenever a transaction fails, then re-read from disk.
    pub(crate) next: HashMap<Arc<str>, u64>,
}

/// What a committed operation is acknowledged with: a log index, or the
/// number of deletes that removed a key.
type Outcome = u64;

impl Committer {
    pub(crate) fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        thread::Builder::new()
            .name("osmoda-store-commit".into())
            .spawn(move || self.run())
    }

    fn run(mut self) {
        while let Some(mut group) = self.queue.take_group() {
            let records = group.iter().map(Op::records).sum();
            let bytes = group.iter().map(Op::bytes).sum();
            // redb is not expected to panic, but it has asserts on file
            // structure; a panic must fail these writes, not hang them.
            let result = panic::catch_unwind(AssertUnwindSafe(|| self.commit(&mut group)));
            // Room is returned before the acks go out, so a writer that has
            // seen its ack can always submit again.
            self.queue.release(records, bytes);
            match result {
                Ok(Ok(outcomes)) => {
                    self.queue.count_commit(group.len());
                    for (op, outcome) in group.into_iter().zip(outcomes) {
                        match op {
                            Op::Append { ack, .. } => ack.complete(Ok(outcome)),
                            Op::Write { ack, .. } => {
                                ack.complete(Ok(usize::try_from(outcome).unwrap_or(usize::MAX)))
                            }
                        }
                    }
                }
                Ok(Err(err)) => {
                    // Indices handed out inside the failed transaction were
                    // never committed; forget them all and re-read.
                    self.next.clear();
                    for op in group {
                        fail_op(op, &err);
                    }
                }
                Err(payload) => {
                    let err = StoreError::WriterFailed {
                        detail: panic_message(payload.as_ref()),
                    };
                    // Refuse new writes before failing these, so nothing
                    // slips in behind a dead writer.
                    self.queue.fail(err.clone());
                    for op in group {
                        fail_op(op, &err);
                    }
                    return;
                }
            }
        }
    }

    /// Applies a group in one transaction and commits it.
    fn commit(&mut self, group: &mut [Op]) -> Result<Vec<Outcome>, StoreError> {
        let path = self.path.clone();
        let mut txn = self
            .db
            .begin_write()
            .map_err(on_err(&path, "begin write"))?;
        txn.set_durability(self.durability)
            .map_err(on_err(&path, "set durability"))?;
        let mut outcomes = Vec::with_capacity(group.len());
        {
            let mut logs: HashMap<Arc<str>, Table<u64, &'static [u8]>> = HashMap::new();
            let mut kvs: HashMap<String, Table<&'static [u8], &'static [u8]>> = HashMap::new();
            for op in group.iter_mut() {
                match op {
                    Op::Append { log, stored, .. } => {
                        let table = match logs.entry(log.clone()) {
                            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                            std::collections::hash_map::Entry::Vacant(e) => {
                                let name = record::log_table(log);
                                let def = TableDefinition::<u64, &[u8]>::new(&name);
                                e.insert(txn.open_table(def).map_err(on_err(&path, "open log"))?)
                            }
                        };
                        let index = match self.next.get(log) {
                            Some(next) => *next,
                            None => table
                                .last()
                                .map_err(on_err(&path, "read log length"))?
                                .map_or(0, |(k, _)| k.value().saturating_add(1)),
                        };
                        record::seal(Kind::Log, log, &index.to_be_bytes(), stored);
                        table
                            .insert(index, stored.as_slice())
                            .map_err(on_err(&path, "append"))?;
                        self.next.insert(log.clone(), index.saturating_add(1));
                        outcomes.push(index);
                    }
                    Op::Write { ops, .. } => {
                        let mut removed = 0u64;
                        for write in ops.iter_mut() {
                            let table = match kvs.entry(write.table.clone()) {
                                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                                std::collections::hash_map::Entry::Vacant(e) => {
                                    let name = record::kv_table(&write.table);
                                    let def = TableDefinition::<&[u8], &[u8]>::new(&name);
                                    e.insert(
                                        txn.open_table(def).map_err(on_err(&path, "open table"))?,
                                    )
                                }
                            };
                            match &mut write.value {
                                Some(value) => {
                                    record::seal(Kind::Kv, &write.table, &write.key, value);
                                    table
                                        .insert(write.key.as_slice(), value.as_slice())
                                        .map_err(on_err(&path, "put"))?;
                                }
                                None => {
                                    let existed = table
                                        .remove(write.key.as_slice())
                                        .map_err(on_err(&path, "delete"))?
                                        .is_some();
                                    removed += u64::from(existed);
                                }
                            }
                        }
                        outcomes.push(removed);
                    }
                }
            }
        }
        // The invariant lives here: acks are sent by `run` only after this
        // returns Ok, and in durable mode redb returns only after fsync.
        txn.commit().map_err(on_err(&path, "commit"))?;
        Ok(outcomes)
    }
}

/// A `map_err` adapter for any redb error type.
fn on_err<'a, E: Into<redb::Error>>(
    path: &'a Path,
    context: &'static str,
) -> impl FnOnce(E) -> StoreError + 'a {
    move |e| StoreError::storage(path, context, e)
}
