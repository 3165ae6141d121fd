//! The node's embedded durable store: append-only logs and key-value tables
//! in one [redb](https://docs.rs/redb) file, written through a group commit.
//!
//! # Why redb
//!
//! redb is durable by default: a commit returns after one `fsync`, and every
//! page is checksummed, so after a crash the last commit is either complete
//! or rolled back to the one before. sled, the other candidate, was not
//! chosen: its last release is from 2021, it has open corruption reports,
//! and by default it flushes every 500 ms, so writes it has acknowledged can
//! be lost in that window.
//!
//! # Design
//!
//! - [`Store::open`] opens one file (redb holds an exclusive lock on it) and
//!   starts one committer thread, the store's only writer.
//! - Writers ([`LogHandle::append`], [`Store::put`], [`Store::delete`],
//!   [`Store::batch`]) put their operation on a bounded queue and wait. The
//!   committer takes everything queued (up to one group's bounds), applies
//!   it in ONE redb write transaction, commits it with ONE fsync, and then
//!   acknowledges every write in it. A thousand concurrent appends cost one
//!   fsync, not a thousand.
//! - **Group-commit invariant: a write returns `Ok` only after the commit
//!   that contains it has been fsynced.** If the commit fails, every write
//!   in the group gets the error and none of them is in the file.
//! - Reads run on any thread from redb snapshots and see committed data.
//! - `submit`/`submit_batch` return an [`Ack`] instead of blocking; it is a
//!   `Future` too, so async code can await durability without tying up a
//!   thread and without this crate depending on a runtime.
//! - Log records get dense indices from 0 per log, assigned by the
//!   committer in commit order.
//! - Every value is stored behind an 8-byte BLAKE3 checksum over the log or
//!   table name, the index or key, and the bytes. redb's page checksums are
//!   verified only during crash recovery, not on reads of a file that was
//!   closed cleanly; the record checksum is what reports a flipped byte as
//!   [`StoreError::CorruptRecord`] naming the index. (When the file was not
//!   closed cleanly, redb's recovery sees the damage first: a damaged page
//!   shared by both commit slots makes `open` fail with
//!   [`StoreError::Damaged`]; damage confined to the newest commit makes
//!   redb fall back to the commit before it, which it cannot tell apart
//!   from a torn write.)
//! - [`CommitMode::NonDurableForBenchmarksOnly`] commits with redb's
//!   `Durability::None`; it exists only to measure what durability costs.
//!
//! # Bounds
//!
//! | what | bound | beyond it |
//! | --- | --- | --- |
//! | one record or value | [`MAX_VALUE_BYTES`] (1 MiB) | [`StoreError::ValueTooLarge`] |
//! | one key | [`MAX_KEY_BYTES`] (4 KiB) | [`StoreError::KeyTooLarge`] |
//! | a log or table name | 64 bytes of `[A-Za-z0-9_.-]` | [`StoreError::InvalidName`] |
//! | writes accepted, not yet acknowledged | 65,536 records and 256 MiB ([`StoreOptions`]) | [`StoreError::QueueFull`] |
//! | one group commit | 4096 records or 8 MiB ([`StoreOptions`]) | the rest waits for the next commit |
//! | one batch | [`MAX_BATCH_OPS`] (4096) operations, [`MAX_BATCH_BYTES`] (8 MiB) | [`StoreError::BatchTooLarge`] |
//! | one `read_range` / `scan_prefix` | [`MAX_READ_RECORDS`] (4096) entries, [`MAX_READ_BYTES`] (8 MiB) | the result is cut short; page on |
//!
//! Nothing read from the file is unwrapped: damage surfaces as an error
//! naming the log and index (or table and key), and panics inside redb are
//! caught and reported as [`StoreError::Damaged`] or, in the writer, as
//! [`StoreError::WriterFailed`].

// Outside bytes, files and answers are errors, never panics; tests may
// unwrap what they made themselves.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod ack;
mod committer;
mod error;
mod kv;
mod log;
mod queue;
mod record;
mod store;

pub use ack::Ack;
pub use error::StoreError;
pub use kv::{Batch, KeyValue};
pub use log::LogHandle;
pub use record::MAX_NAME_BYTES;
pub use store::{CommitMode, Store, StoreOptions, StoreStats, VerifyReport};

/// Largest log record or table value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Largest table key (and scan prefix), in bytes.
pub const MAX_KEY_BYTES: usize = 4096;
/// Most operations in one [`Batch`].
pub const MAX_BATCH_OPS: usize = 4096;
/// Most key and value bytes in one [`Batch`].
pub const MAX_BATCH_BYTES: usize = 8 << 20;
/// Most entries one `read_range` or `scan_prefix` returns.
pub const MAX_READ_RECORDS: usize = 4096;
/// Most payload bytes one `read_range` or `scan_prefix` returns (a single
/// larger entry is still returned alone).
pub const MAX_READ_BYTES: usize = 8 << 20;
