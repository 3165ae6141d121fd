//! Damage in the file: a flipped byte in a stored value is found and named,
//! either by the store's own record checksum or, after a crash, by redb's
//! page checksums at open.

use std::path::Path;

use osmoda_store::{Store, StoreError};

fn record(index: u64) -> Vec<u8> {
    // A marker unlikely to occur anywhere else in the file, then filler.
    let mut r = format!("<<osmoda-record-{index:04}>>").into_bytes();
    r.resize(300, b'.');
    r
}

/// Flips one byte (at `offset` past the start of `marker`) in every copy of
/// `marker` in the file; redb copies pages on write, so stale copies of a
/// record may exist beside the live one. Returns how many were flipped.
fn flip_after_marker(path: &Path, marker: &[u8], offset: usize) -> usize {
    let mut bytes = std::fs::read(path).unwrap();
    let mut hits = 0;
    let mut at = 0;
    while let Some(pos) = bytes[at..].windows(marker.len()).position(|w| w == marker) {
        let spot = at + pos + offset;
        bytes[spot] ^= 0x20;
        hits += 1;
        at = at + pos + marker.len();
    }
    std::fs::write(path, bytes).unwrap();
    hits
}

#[test]
fn flipped_byte_in_a_cleanly_closed_file_names_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    {
        let store = Store::open(&path).unwrap();
        let log = store.log("audit").unwrap();
        for i in 0..20 {
            assert_eq!(log.append(&record(i)).unwrap(), i);
        }
    } // clean close: redb will not re-verify its page checksums at open

    let hits = flip_after_marker(&path, b"<<osmoda-record-0007>>", 100);
    assert!(hits >= 1, "record 7 not found in the file");

    let store = Store::open(&path).expect("a clean file opens without a checksum scan");
    let log = store.log("audit").unwrap();
    // Neighbours are fine; record 7 is reported by index, never returned.
    assert_eq!(log.read(6).unwrap(), Some(record(6)));
    assert_eq!(log.read(8).unwrap(), Some(record(8)));
    let err = log.read(7).unwrap_err();
    assert!(
        matches!(&err, StoreError::CorruptRecord { log, index: 7, .. } if log == "audit"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "log \"audit\": record 7 is corrupt: checksum mismatch"
    );
    let err = log.read_range(0..20).unwrap_err();
    assert!(
        matches!(err, StoreError::CorruptRecord { index: 7, .. }),
        "{err:?}"
    );
    let err = store.verify().unwrap_err();
    assert!(
        matches!(err, StoreError::CorruptRecord { index: 7, .. }),
        "{err:?}"
    );
    // Appending still works; the damage stays reported.
    assert_eq!(log.append(b"after").unwrap(), 20);
    assert!(log.read(7).is_err());
}

#[test]
fn flipped_value_in_a_table_names_table_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    {
        let store = Store::open(&path).unwrap();
        store.put("docs", b"doc-a", &record(1)).unwrap();
        store.put("docs", b"doc-b", &record(2)).unwrap();
    }
    assert!(flip_after_marker(&path, b"<<osmoda-record-0002>>", 50) >= 1);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.get("docs", b"doc-a").unwrap(), Some(record(1)));
    let err = store.get("docs", b"doc-b").unwrap_err();
    assert!(
        matches!(&err, StoreError::CorruptValue { table, key_hex, .. }
            if table == "docs" && key_hex == "646f632d62"),
        "{err:?}"
    );
    assert!(store.scan_prefix("docs", b"doc-", 10).is_err());
}

/// A copy taken while the store is open looks to redb like a file whose
/// writer crashed, so opening it runs redb's recovery, which verifies every
/// page checksum. A damaged page that both commit slots still point to
/// cannot be rolled back around: open fails with a clear `Damaged` error.
#[test]
fn flipped_byte_after_a_crash_fails_open_as_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let crashed = dir.path().join("crashed.redb");
    let store = Store::open(&path).unwrap();
    let log = store.log("audit").unwrap();
    for i in 0..20 {
        log.append(&record(i)).unwrap();
    }
    // Later commits touch another table, so the page holding record 7 is
    // shared by the newest commit and the one before it.
    let other = store.log("other").unwrap();
    for i in 0..3u8 {
        other.append(&[i]).unwrap();
    }
    std::fs::copy(&path, &crashed).unwrap();
    drop((log, other, store));

    assert!(flip_after_marker(&crashed, b"<<osmoda-record-0007>>", 100) >= 1);
    let err = Store::open(&crashed).unwrap_err();
    assert!(matches!(&err, StoreError::Damaged { .. }), "{err:?}");
    assert!(
        err.to_string().contains("crashed.redb: damaged store file"),
        "{err}"
    );

    // The undamaged original is untouched and whole.
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.log("audit").unwrap().read(7).unwrap(),
        Some(record(7))
    );
}

/// The limit of redb's one-fsync commit, pinned down so it is not
/// forgotten: after a crash, redb trusts the newest commit only if all its
/// pages verify. Damage confined to pages only the newest commit wrote looks
/// exactly like a commit torn by the crash, so redb falls back to the commit
/// before it, and the records of the newest commit are gone without an
/// error. (Bit rot between the last fsync and a crash; power loss in the
/// middle of a commit is the case this behaviour exists for.)
#[test]
fn flipped_byte_in_the_newest_commit_after_a_crash_rolls_that_commit_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let crashed = dir.path().join("crashed.redb");
    let store = Store::open(&path).unwrap();
    let log = store.log("audit").unwrap();
    for i in 0..19 {
        log.append(&record(i)).unwrap();
    }
    // Record 19 alone in the newest commit, on a page nothing older shares
    // (the leaf is copied on write).
    log.append(&record(19)).unwrap();
    std::fs::copy(&path, &crashed).unwrap();
    drop((log, store));

    assert!(flip_after_marker(&crashed, b"<<osmoda-record-0019>>", 100) >= 1);
    let store = Store::open(&crashed).expect("redb repairs by rolling back");
    let log = store.log("audit").unwrap();
    assert_eq!(log.len().unwrap(), 19, "the newest commit was rolled back");
    assert_eq!(log.read(18).unwrap(), Some(record(18)));
    store.verify().unwrap();
}
