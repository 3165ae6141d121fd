//! Append-only logs: records numbered densely from 0, written through the
//! group commit, read from snapshots.

use std::ops::Range;
use std::sync::Arc;

use redb::{ReadOnlyTable, ReadTransaction, ReadableTable, TableDefinition, TableError};

use crate::ack::{self, Ack};
use crate::queue::Op;
use crate::record::{self, Kind};
use crate::store::Inner;
use crate::{StoreError, MAX_READ_BYTES, MAX_READ_RECORDS, MAX_VALUE_BYTES};

/// A handle on one log. Cheap to clone, `Send + Sync`; any number of
/// threads may append through clones of it at once.
#[derive(Clone)]
pub struct LogHandle {
    inner: Arc<Inner>,
    name: Arc<str>,
    table: String,
}

impl std::fmt::Debug for LogHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogHandle")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

type LogTable = ReadOnlyTable<u64, &'static [u8]>;

/// Opens a log's table in a read transaction; `None` if nothing was ever
/// appended to it.
fn open_table(
    inner: &Inner,
    txn: &ReadTransaction,
    table: &str,
) -> Result<Option<LogTable>, StoreError> {
    match txn.open_table(TableDefinition::<u64, &[u8]>::new(table)) {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(inner.storage("open log", e)),
    }
}

/// The length of a log as committed in this snapshot.
fn length(inner: &Inner, table: &LogTable) -> Result<u64, StoreError> {
    Ok(table
        .last()
        .map_err(|e| inner.storage("read log length", e))?
        .map_or(0, |(k, _)| k.value().saturating_add(1)))
}

impl LogHandle {
    pub(crate) fn new(inner: Arc<Inner>, name: &str) -> Self {
        LogHandle {
            inner,
            name: name.into(),
            table: record::log_table(name),
        }
    }

    /// The log's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Appends a record and returns its index once the commit containing it
    /// has been fsynced. Records are stored as given (up to
    /// [`MAX_VALUE_BYTES`]); many threads may call this at once and share
    /// commits.
    pub fn append(&self, record: &[u8]) -> Result<u64, StoreError> {
        self.submit(record)?.wait()
    }

    /// Queues a record and returns at once; the [`Ack`] resolves to its
    /// index after the commit is durable. For async callers (`.await` it)
    /// and for writers that pipeline several records.
    pub fn submit(&self, record: &[u8]) -> Result<Ack<u64>, StoreError> {
        if record.len() > MAX_VALUE_BYTES {
            return Err(StoreError::ValueTooLarge {
                size: record.len(),
                max: MAX_VALUE_BYTES,
            });
        }
        let (done, waiter) = ack::pair();
        self.inner.queue.push(Op::Append {
            log: self.name.clone(),
            stored: record::unsealed(record),
            ack: done,
        })?;
        Ok(waiter)
    }

    /// Number of committed records (the next index).
    pub fn len(&self) -> Result<u64, StoreError> {
        self.inner
            .read(|txn| match open_table(&self.inner, txn, &self.table)? {
                Some(table) => length(&self.inner, &table),
                None => Ok(0),
            })
    }

    /// Whether nothing has been committed to this log.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// Reads record `index`; `None` past the end. A record whose checksum
    /// fails, or that is missing below the end, is
    /// [`StoreError::CorruptRecord`] naming the index.
    pub fn read(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.read(|txn| {
            let Some(table) = open_table(&self.inner, txn, &self.table)? else {
                return Ok(None);
            };
            let stored = table
                .get(index)
                .map_err(|e| self.inner.storage("read record", e))?;
            match stored {
                Some(stored) => self.open(index, stored.value()).map(|p| Some(p.to_vec())),
                None if index < length(&self.inner, &table)? => Err(self.corrupt(index, "missing")),
                None => Ok(None),
            }
        })
    }

    /// Reads records `range.start..` up to `range.end`, the end of the log,
    /// [`MAX_READ_RECORDS`] records or [`MAX_READ_BYTES`] bytes (always at
    /// least one record if any is in range), whichever comes first. The
    /// first record returned is `range.start`; continue from
    /// `range.start + returned.len()`.
    pub fn read_range(&self, range: Range<u64>) -> Result<Vec<Vec<u8>>, StoreError> {
        self.inner.read(|txn| {
            let Some(table) = open_table(&self.inner, txn, &self.table)? else {
                return Ok(Vec::new());
            };
            let end = range
                .end
                .min(length(&self.inner, &table)?)
                .min(range.start.saturating_add(MAX_READ_RECORDS as u64));
            let mut out = Vec::new();
            let mut bytes = 0usize;
            let mut expected = range.start;
            let iter = table
                .range(range.start..end)
                .map_err(|e| self.inner.storage("read records", e))?;
            for entry in iter {
                let (key, stored) = entry.map_err(|e| self.inner.storage("read records", e))?;
                if key.value() != expected {
                    return Err(self.corrupt(expected, "missing"));
                }
                let payload = self.open(expected, stored.value())?;
                if !out.is_empty() && bytes + payload.len() > MAX_READ_BYTES {
                    return Ok(out);
                }
                bytes += payload.len();
                out.push(payload.to_vec());
                expected += 1;
            }
            if expected < end {
                return Err(self.corrupt(expected, "missing"));
            }
            Ok(out)
        })
    }

    fn open<'a>(&self, index: u64, stored: &'a [u8]) -> Result<&'a [u8], StoreError> {
        record::open(Kind::Log, &self.name, &index.to_be_bytes(), stored)
            .map_err(|detail| self.corrupt(index, detail))
    }

    fn corrupt(&self, index: u64, detail: &'static str) -> StoreError {
        StoreError::CorruptRecord {
            log: self.name.to_string(),
            index,
            detail,
        }
    }
}

/// Checks every record of a log; returns its length.
pub(crate) fn verify_log(
    inner: &Arc<Inner>,
    txn: &ReadTransaction,
    name: &str,
) -> Result<u64, StoreError> {
    let handle = LogHandle::new(inner.clone(), name);
    let Some(table) = open_table(inner, txn, &handle.table)? else {
        return Ok(0);
    };
    let mut expected = 0u64;
    let iter = table.iter().map_err(|e| inner.storage("read records", e))?;
    for entry in iter {
        let (key, stored) = entry.map_err(|e| inner.storage("read records", e))?;
        if key.value() != expected {
            return Err(handle.corrupt(expected, "missing"));
        }
        handle.open(expected, stored.value())?;
        expected += 1;
    }
    Ok(expected)
}
