//! How names, records and values are laid out in the redb file.
//!
//! Every stored value is `tag (8 bytes) || payload`. The tag is the first 8
//! bytes of BLAKE3 over (kind, table name, key, payload). redb checksums its
//! pages, but it only verifies them during crash recovery, never on an
//! ordinary read; the tag is what catches a flipped byte in a file that was
//! closed cleanly, and because it covers the name and key, it also catches a
//! value that ended up under the wrong index. 64 bits are plenty against
//! accidental damage; this is not a defence against someone who can write
//! the file (the audit log's BLAKE3 chain in `osmoda-crdt-state` is).

use crate::StoreError;

/// Length of the checksum stored in front of every value.
pub(crate) const TAG_LEN: usize = 8;

/// Longest log or table name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// The redb table holding the store's own metadata.
pub(crate) const META_TABLE: &str = "osmoda-store/meta";
/// The format this build writes and reads (bump on any layout change).
pub(crate) const FORMAT_VERSION: u64 = 1;
pub(crate) const FORMAT_KEY: &str = "format";

const LOG_PREFIX: &str = "log/";
const KV_PREFIX: &str = "kv/";

/// Which kind of table a value belongs to; part of the tag so a log record
/// can never verify as a table value or the other way round.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Log,
    Kv,
}

/// Checks a caller-supplied log or table name.
pub(crate) fn check_name(name: &str) -> Result<(), StoreError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_NAME_BYTES {
        "longer than 64 bytes"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        "only A-Z, a-z, 0-9, '_', '.' and '-' are allowed"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidName {
        name: name.chars().take(80).collect(),
        reason,
    })
}

/// The redb table name of a log.
pub(crate) fn log_table(name: &str) -> String {
    format!("{LOG_PREFIX}{name}")
}

/// The redb table name of a key-value table.
pub(crate) fn kv_table(name: &str) -> String {
    format!("{KV_PREFIX}{name}")
}

/// The caller's name of a redb log table, if it is one.
pub(crate) fn log_name(table: &str) -> Option<&str> {
    table.strip_prefix(LOG_PREFIX)
}

/// The caller's name of a redb key-value table, if it is one.
pub(crate) fn kv_name(table: &str) -> Option<&str> {
    table.strip_prefix(KV_PREFIX)
}

fn tag(kind: Kind, name: &str, key: &[u8], payload: &[u8]) -> [u8; TAG_LEN] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(match kind {
        Kind::Log => b"osmoda-store log v1",
        Kind::Kv => b"osmoda-store kv v1\0",
    });
    // Length prefixes keep (name, key) pairs unambiguous.
    hasher.update(&(name.len() as u64).to_le_bytes());
    hasher.update(name.as_bytes());
    hasher.update(&(key.len() as u64).to_le_bytes());
    hasher.update(key);
    hasher.update(payload);
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&hasher.finalize().as_bytes()[..TAG_LEN]);
    out
}

/// A value as it is queued: room for the tag, then the payload. The tag is
/// filled in by the committer, which is the one that knows a record's index.
pub(crate) fn unsealed(payload: &[u8]) -> Vec<u8> {
    let mut stored = Vec::with_capacity(TAG_LEN + payload.len());
    stored.extend_from_slice(&[0u8; TAG_LEN]);
    stored.extend_from_slice(payload);
    stored
}

/// Fills in the tag of a value built by [`unsealed`].
pub(crate) fn seal(kind: Kind, name: &str, key: &[u8], stored: &mut [u8]) {
    if stored.len() < TAG_LEN {
        // Unreachable through `unsealed`; leave it to fail verification.
        return;
    }
    let (head, payload) = stored.split_at_mut(TAG_LEN);
    head.copy_from_slice(&tag(kind, name, key, payload));
}

/// Checks a stored value and returns its payload.
pub(crate) fn open<'a>(
    kind: Kind,
    name: &str,
    key: &[u8],
    stored: &'a [u8],
) -> Result<&'a [u8], &'static str> {
    if stored.len() < TAG_LEN {
        return Err("shorter than its checksum");
    }
    let (head, payload) = stored.split_at(TAG_LEN);
    if head != tag(kind, name, key, payload) {
        return Err("checksum mismatch");
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_and_any_flip_is_caught() {
        let mut stored = unsealed(b"hello world");
        seal(Kind::Log, "audit", &7u64.to_be_bytes(), &mut stored);
        let key = 7u64.to_be_bytes();
        assert_eq!(
            open(Kind::Log, "audit", &key, &stored),
            Ok(&b"hello world"[..])
        );
        for i in 0..stored.len() {
            let mut bad = stored.clone();
            bad[i] ^= 0x01;
            assert!(open(Kind::Log, "audit", &key, &bad).is_err(), "flip at {i}");
        }
        // The same bytes under another index, log or kind do not verify.
        assert!(open(Kind::Log, "audit", &8u64.to_be_bytes(), &stored).is_err());
        assert!(open(Kind::Log, "audix", &key, &stored).is_err());
        assert!(open(Kind::Kv, "audit", &key, &stored).is_err());
        assert!(open(Kind::Log, "audit", &key, &stored[..4]).is_err());
    }

    #[test]
    fn names_are_checked() {
        for good in ["a", "audit-log", "docs.v1", "A_9"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        for bad in ["", "a/b", "a b", "é", long.as_str()] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
