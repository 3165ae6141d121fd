//! Key-value tables: byte keys, byte values, written through the same
//! group commit as the logs.

use redb::{ReadOnlyTable, ReadTransaction, ReadableTable, TableDefinition, TableError};

use crate::ack::{self, Ack};
use crate::error::key_hex;
use crate::queue::{Op, WriteOp};
use crate::record::{self, Kind};
use crate::store::Inner;
use crate::{
    Store, StoreError, MAX_BATCH_BYTES, MAX_BATCH_OPS, MAX_KEY_BYTES, MAX_READ_BYTES,
    MAX_READ_RECORDS, MAX_VALUE_BYTES,
};

/// A key and its value, as `scan_prefix` returns them.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Puts and deletes across any tables, applied atomically: after a crash
/// either all of them are in the file or none is.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    ops: Vec<(String, Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put of `value` under `key` in `table`.
    pub fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> &mut Self {
        self.ops
            .push((table.to_string(), key.to_vec(), Some(value.to_vec())));
        self
    }

    /// Adds a delete of `key` in `table`.
    pub fn delete(&mut self, table: &str, key: &[u8]) -> &mut Self {
        self.ops.push((table.to_string(), key.to_vec(), None));
        self
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

type KvTable = ReadOnlyTable<&'static [u8], &'static [u8]>;

fn open_table(
    inner: &Inner,
    txn: &ReadTransaction,
    table: &str,
) -> Result<Option<KvTable>, StoreError> {
    let name = record::kv_table(table);
    match txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&name)) {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(inner.storage("open table", e)),
    }
}

fn open_value<'a>(table: &str, key: &[u8], stored: &'a [u8]) -> Result<&'a [u8], StoreError> {
    record::open(Kind::Kv, table, key, stored).map_err(|detail| StoreError::CorruptValue {
        table: table.to_string(),
        key_hex: key_hex(key),
        detail,
    })
}

impl Store {
    /// Stores `value` under `key` in `table`; returns once durable.
    pub fn put(&self, table: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        batch.put(table, key, value);
        self.batch(batch)
    }

    /// Deletes `key` from `table`; returns once durable, with whether the
    /// key existed.
    pub fn delete(&self, table: &str, key: &[u8]) -> Result<bool, StoreError> {
        let mut batch = Batch::new();
        batch.delete(table, key);
        Ok(self.submit_batch(batch)?.wait()? > 0)
    }

    /// Applies a batch atomically; returns once durable.
    pub fn batch(&self, batch: Batch) -> Result<(), StoreError> {
        self.submit_batch(batch)?.wait().map(drop)
    }

    /// Queues a batch and returns at once; the [`Ack`] resolves, once the
    /// batch is durable, to the number of its deletes that removed a key.
    pub fn submit_batch(&self, batch: Batch) -> Result<Ack<usize>, StoreError> {
        let bytes: usize = batch
            .ops
            .iter()
            .map(|(_, k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        if batch.ops.len() > MAX_BATCH_OPS || bytes > MAX_BATCH_BYTES {
            return Err(StoreError::BatchTooLarge {
                ops: batch.ops.len(),
                bytes,
                max_ops: MAX_BATCH_OPS,
                max_bytes: MAX_BATCH_BYTES,
            });
        }
        let mut ops = Vec::with_capacity(batch.ops.len());
        for (table, key, value) in batch.ops {
            record::check_name(&table)?;
            check_key(&key)?;
            if let Some(value) = &value {
                if value.len() > MAX_VALUE_BYTES {
                    return Err(StoreError::ValueTooLarge {
                        size: value.len(),
                        max: MAX_VALUE_BYTES,
                    });
                }
            }
            ops.push(WriteOp {
                table,
                key,
                value: value.as_deref().map(record::unsealed),
            });
        }
        let (done, waiter) = ack::pair();
        if ops.is_empty() {
            done.complete(Ok(0));
            return Ok(waiter);
        }
        self.inner.queue.push(Op::Write { ops, ack: done })?;
        Ok(waiter)
    }

    /// The committed value of `key` in `table`.
    pub fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        record::check_name(table)?;
        check_key(key)?;
        self.inner.read(|txn| {
            let Some(t) = open_table(&self.inner, txn, table)? else {
                return Ok(None);
            };
            let stored = t.get(key).map_err(|e| self.inner.storage("get", e))?;
            match stored {
                Some(stored) => Ok(Some(open_value(table, key, stored.value())?.to_vec())),
                None => Ok(None),
            }
        })
    }

    /// Committed entries of `table` whose key starts with `prefix`, in key
    /// order, at most `limit` of them (and at most [`MAX_READ_RECORDS`]
    /// entries or [`MAX_READ_BYTES`] bytes, at least one entry). To page on,
    /// scan again from past the last key returned.
    pub fn scan_prefix(
        &self,
        table: &str,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        record::check_name(table)?;
        check_key(prefix)?;
        let limit = limit.min(MAX_READ_RECORDS);
        self.inner.read(|txn| {
            let mut out = Vec::new();
            let Some(t) = open_table(&self.inner, txn, table)? else {
                return Ok(out);
            };
            let iter = t
                .range::<&[u8]>(prefix..)
                .map_err(|e| self.inner.storage("scan", e))?;
            let mut bytes = 0usize;
            for entry in iter {
                if out.len() >= limit {
                    break;
                }
                let (key, stored) = entry.map_err(|e| self.inner.storage("scan", e))?;
                let key = key.value();
                if !key.starts_with(prefix) {
                    break;
                }
                let value = open_value(table, key, stored.value())?;
                if !out.is_empty() && bytes + key.len() + value.len() > MAX_READ_BYTES {
                    break;
                }
                bytes += key.len() + value.len();
                out.push((key.to_vec(), value.to_vec()));
            }
            Ok(out)
        })
    }
}

fn check_key(key: &[u8]) -> Result<(), StoreError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(StoreError::KeyTooLarge {
            size: key.len(),
            max: MAX_KEY_BYTES,
        });
    }
    Ok(())
}

/// Checks every value of a table; returns the number of keys.
pub(crate) fn verify_table(
    inner: &Inner,
    txn: &ReadTransaction,
    table: &str,
) -> Result<u64, StoreError> {
    let Some(t) = open_table(inner, txn, table)? else {
        return Ok(0);
    };
    let mut count = 0u64;
    for entry in t.iter().map_err(|e| inner.storage("read table", e))? {
        let (key, stored) = entry.map_err(|e| inner.storage("read table", e))?;
        open_value(table, key.value(), stored.value())?;
        count += 1;
    }
    Ok(count)
}
