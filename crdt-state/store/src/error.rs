//! The store's typed errors.
//!
//! `StoreError` is `Clone` because one failed group commit has to be reported
//! to every caller whose write was in it; sources from `std` and redb are
//! therefore held in `Arc`s.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Everything that can go wrong in the store.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The path names a directory; a store is one file.
    #[error("{path}: is a directory; a store is a single file")]
    IsDirectory { path: PathBuf },

    /// Another process (or another `Store` in this process) has the file open.
    #[error("{path}: locked by another open store (one writer per file)")]
    Locked { path: PathBuf },

    /// The file is not a store, or its structure is damaged beyond what
    /// redb's crash recovery repairs.
    #[error("{path}: damaged store file: {detail}")]
    Damaged { path: PathBuf, detail: String },

    /// The file was written by a redb file format this build cannot read.
    #[error("{path}: redb file format {version} needs an upgrade this build cannot do")]
    UpgradeRequired { path: PathBuf, version: u8 },

    /// The file is a redb database with an osmoda-store format we do not know.
    #[error("{path}: store format {found} is not supported (this build reads {supported})")]
    UnsupportedFormat {
        path: PathBuf,
        found: u64,
        supported: u64,
    },

    /// The file could not be opened or created (missing parent, permissions...).
    #[error("{path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },

    /// A log record or table value over the size limit.
    #[error("value of {size} bytes exceeds the {max}-byte limit")]
    ValueTooLarge { size: usize, max: usize },

    /// A table key over the size limit.
    #[error("key of {size} bytes exceeds the {max}-byte limit")]
    KeyTooLarge { size: usize, max: usize },

    /// A batch with more operations or bytes than fit in one group commit.
    #[error(
        "batch of {ops} operations / {bytes} bytes exceeds the limit of {max_ops} / {max_bytes}"
    )]
    BatchTooLarge {
        ops: usize,
        bytes: usize,
        max_ops: usize,
        max_bytes: usize,
    },

    /// A log or table name that is empty, too long or has other characters
    /// than `[A-Za-z0-9_.-]`.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },

    /// Too many writes are waiting for a commit; the caller should back off.
    #[error(
        "write queue full ({pending_records} records, {pending_bytes} bytes pending); retry later"
    )]
    QueueFull {
        pending_records: usize,
        pending_bytes: usize,
    },

    /// A log record whose stored checksum does not match its bytes, or a
    /// record missing below the log's length.
    #[error("log {log:?}: record {index} is corrupt: {detail}")]
    CorruptRecord {
        log: String,
        index: u64,
        detail: &'static str,
    },

    /// A table value whose stored checksum does not match its bytes.
    #[error("table {table:?}: value of key {key_hex} is corrupt: {detail}")]
    CorruptValue {
        table: String,
        key_hex: String,
        detail: &'static str,
    },

    /// The store's writer has stopped (the store is shutting down).
    #[error("store is closed")]
    Closed,

    /// redb panicked inside the writer; the store refuses further writes
    /// until it is reopened (reopening runs redb's recovery).
    #[error("store writer failed and refuses further writes: {detail}")]
    WriterFailed { detail: String },

    /// An error from redb while reading or committing.
    #[error("{context}: {source}")]
    Storage {
        context: &'static str,
        #[source]
        source: Arc<redb::Error>,
    },
}

impl StoreError {
    /// Wraps a redb error, turning redb's `Corrupted` into [`StoreError::Damaged`].
    pub(crate) fn storage(path: &Path, context: &'static str, err: impl Into<redb::Error>) -> Self {
        match err.into() {
            redb::Error::Corrupted(detail) => StoreError::Damaged {
                path: path.to_path_buf(),
                detail: format!("{context}: {detail}"),
            },
            other => StoreError::Storage {
                context,
                source: Arc::new(other),
            },
        }
    }

    /// Maps an error from opening the redb database.
    pub(crate) fn open(path: &Path, err: redb::DatabaseError) -> Self {
        let path = path.to_path_buf();
        match err {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked { path },
            redb::DatabaseError::UpgradeRequired(version) => {
                StoreError::UpgradeRequired { path, version }
            }
            redb::DatabaseError::RepairAborted => StoreError::Damaged {
                path,
                detail: "crash recovery was aborted".into(),
            },
            redb::DatabaseError::Storage(redb::StorageError::Io(io)) => Self::io(path, io),
            redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)) => {
                StoreError::Damaged { path, detail }
            }
            other => StoreError::Damaged {
                path,
                detail: other.to_string(),
            },
        }
    }

    /// Maps an IO error from opening the file.
    pub(crate) fn io(path: PathBuf, io: io::Error) -> Self {
        match io.kind() {
            io::ErrorKind::IsADirectory => StoreError::IsDirectory { path },
            // A file too short for its own header reads past the end: that is
            // a damaged (or foreign) file, not an IO problem.
            io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData => StoreError::Damaged {
                path,
                detail: format!("not a redb file, or its header is damaged ({io})"),
            },
            _ => StoreError::Open {
                path,
                source: Arc::new(io),
            },
        }
    }
}

/// Lower-case hexadecimal for keys in error messages, shortened past 64 bytes.
pub(crate) fn key_hex(key: &[u8]) -> String {
    let shown = &key[..key.len().min(64)];
    let mut out: String = shown.iter().map(|b| format!("{b:02x}")).collect();
    if key.len() > shown.len() {
        out.push_str("...");
    }
    out
}

/// The text of a caught panic, for [`StoreError::WriterFailed`] and
/// [`StoreError::Damaged`].
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("redb panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("redb panicked: {s}")
    } else {
        "redb panicked".into()
    }
}
