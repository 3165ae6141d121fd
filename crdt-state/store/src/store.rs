//! Opening a store, its options, and the handle shared by all callers.

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, TableHandle,
};

use crate::committer::Committer;
use crate::error::panic_message;
use crate::queue::{Limits, Queue};
use crate::record::{self, FORMAT_KEY, FORMAT_VERSION, META_TABLE};
use crate::{LogHandle, StoreError};

/// When an acknowledged write is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommitMode {
    /// Every group commit is fsynced before any write in it is acknowledged.
    /// The only mode a node runs with.
    #[default]
    Durable,
    /// BENCHMARK COMPARISON ONLY. Commits use redb's `Durability::None`: a
    /// write is acknowledged once it is committed in memory, and is lost if
    /// the process or machine dies before the store is closed cleanly. redb
    /// cannot reuse freed pages until a durable commit, so the file also
    /// grows. It exists to measure what the fsync costs.
    NonDurableForBenchmarksOnly,
}

/// Bounds and mode of a store. `Default` is what a node uses.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    pub commit_mode: CommitMode,
    /// Writes (records, or batch operations) accepted but not yet
    /// acknowledged; beyond it writes fail with [`StoreError::QueueFull`].
    pub max_pending_records: usize,
    /// Bytes held by writes accepted but not yet acknowledged.
    pub max_pending_bytes: usize,
    /// Most records one group commit takes (a larger batch still commits
    /// whole, alone).
    pub max_group_records: usize,
    /// Most bytes one group commit takes (same exception).
    pub max_group_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            commit_mode: CommitMode::Durable,
            max_pending_records: 65_536,
            max_pending_bytes: 256 << 20,
            max_group_records: 4096,
            max_group_bytes: 8 << 20,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) db: Arc<Database>,
    pub(crate) queue: Arc<Queue>,
    pub(crate) path: PathBuf,
    committer: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Let the committer finish what was accepted, then let redb close
        // the file cleanly (our `db` is the last reference after the join).
        self.queue.close();
        let handle = self
            .committer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl Inner {
    /// Runs a read in a fresh read transaction. A panic inside redb (it has
    /// structural asserts a damaged file can trip) becomes `Damaged`.
    pub(crate) fn read<R>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        panic::catch_unwind(AssertUnwindSafe(|| {
            let txn = self
                .db
                .begin_read()
                .map_err(|e| self.storage("begin read", e))?;
            f(&txn)
        }))
        .unwrap_or_else(|payload| {
            Err(StoreError::Damaged {
                path: self.path.clone(),
                detail: panic_message(payload.as_ref()),
            })
        })
    }

    pub(crate) fn storage(&self, context: &'static str, err: impl Into<redb::Error>) -> StoreError {
        StoreError::storage(&self.path, context, err)
    }
}

/// A store: one redb file, one committer thread. Cheap to clone; every
/// clone (and every [`LogHandle`]) shares the same writer. The file is
/// closed when the last of them is dropped, after queued writes commit.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// Counters since the store was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Successful group commits (each one fsync in durable mode).
    pub commits: u64,
    /// Writes (appends, puts, deletes, batches) those commits acknowledged.
    pub writes: u64,
}

/// What [`Store::verify`] checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Each log's name and length.
    pub logs: HashMap<String, u64>,
    /// Each key-value table's name and number of keys.
    pub tables: HashMap<String, u64>,
}

impl Store {
    /// Opens (or creates) the store file at `path`, durable, default bounds.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens (or creates) the store file at `path` with explicit options.
    ///
    /// After an unclean shutdown redb verifies every page checksum and falls
    /// back to the previous commit if the last one is incomplete; that scan
    /// takes time proportional to the file size.
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        if path.is_dir() {
            return Err(StoreError::IsDirectory { path });
        }
        let opened = panic::catch_unwind(|| Database::builder().create(&path));
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(err)) => return Err(StoreError::open(&path, err)),
            Err(payload) => {
                return Err(StoreError::Damaged {
                    path,
                    detail: panic_message(payload.as_ref()),
                })
            }
        };
        check_format(&db, &path)?;

        let db = Arc::new(db);
        let queue = Arc::new(Queue::new(Limits {
            max_pending_records: options.max_pending_records.max(1),
            max_pending_bytes: options.max_pending_bytes.max(1),
            max_group_records: options.max_group_records.max(1),
            max_group_bytes: options.max_group_bytes.max(1),
        }));
        let committer = Committer {
            db: db.clone(),
            queue: queue.clone(),
            path: path.clone(),
            durability: match options.commit_mode {
                CommitMode::Durable => redb::Durability::Immediate,
                CommitMode::NonDurableForBenchmarksOnly => redb::Durability::None,
            },
            next: HashMap::new(),
        }
        .spawn()
        .map_err(|e| StoreError::Open {
            path: path.clone(),
            source: Arc::new(e),
        })?;
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                queue,
                path,
                committer: Mutex::new(Some(committer)),
            }),
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Commit counters; `writes / commits` is the average group size.
    pub fn stats(&self) -> StoreStats {
        let (commits, writes) = self.inner.queue.counts();
        StoreStats { commits, writes }
    }

    /// A handle on the append-only log `name` (created by its first append).
    /// Names are 1 to 64 bytes of `[A-Za-z0-9_.-]`.
    pub fn log(&self, name: &str) -> Result<LogHandle, StoreError> {
        record::check_name(name)?;
        Ok(LogHandle::new(self.inner.clone(), name))
    }

    /// Reads every log record and table value and checks its checksum and,
    /// for logs, that indices are dense from 0. Takes time proportional to
    /// the data; meant for startup checks and tests.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.inner.read(|txn| {
            let names: Vec<String> = txn
                .list_tables()
                .map_err(|e| self.inner.storage("list tables", e))?
                .map(|t| t.name().to_string())
                .collect();
            let mut report = VerifyReport::default();
            for table in names {
                if let Some(log) = record::log_name(&table) {
                    let len = crate::log::verify_log(&self.inner, txn, log)?;
                    report.logs.insert(log.to_string(), len);
                } else if let Some(kv) = record::kv_name(&table) {
                    let count = crate::kv::verify_table(&self.inner, txn, kv)?;
                    report.tables.insert(kv.to_string(), count);
                }
            }
            Ok(report)
        })
    }
}

/// Records the store format in a new file, refuses unknown formats and
/// redb files that are not stores.
fn check_format(db: &Database, path: &Path) -> Result<(), StoreError> {
    let def = TableDefinition::<&str, u64>::new(META_TABLE);
    let storage = |context: &'static str, e: redb::Error| StoreError::storage(path, context, e);
    let txn = db
        .begin_write()
        .map_err(|e| storage("begin write", e.into()))?;
    let found = match txn.open_table(def) {
        Ok(table) => table
            .get(FORMAT_KEY)
            .map_err(|e| storage("read format", e.into()))?
            .map(|v| v.value()),
        Err(e) => return Err(storage("open metadata", e.into())),
    };
    match found {
        Some(FORMAT_VERSION) => Ok(()),
        Some(found) => Err(StoreError::UnsupportedFormat {
            path: path.to_path_buf(),
            found,
            supported: FORMAT_VERSION,
        }),
        None => {
            let others = txn
                .list_tables()
                .map_err(|e| storage("list tables", e.into()))?
                .any(|t| t.name() != META_TABLE);
            if others {
                return Err(StoreError::Damaged {
                    path: path.to_path_buf(),
                    detail: "a redb database, but not an osmoda store".into(),
                });
            }
            {
                let mut table = txn
                    .open_table(def)
                    .map_err(|e| storage("open metadata", e.into()))?;
                table
                    .insert(FORMAT_KEY, FORMAT_VERSION)
                    .map_err(|e| storage("write format", e.into()))?;
            }
            txn.commit().map_err(|e| storage("commit format", e.into()))
        }
    }
}
