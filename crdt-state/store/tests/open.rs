//! Opening: every way a path can be wrong gets its own error.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use osmoda_store::{Store, StoreError};

#[test]
fn a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::IsDirectory { .. }), "{err:?}");
    assert!(err
        .to_string()
        .ends_with("is a directory; a store is a single file"));
}

#[test]
fn a_missing_parent_is_an_open_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open(dir.path().join("no/such/dir/store.redb")).unwrap_err();
    match err {
        StoreError::Open { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_second_open_in_this_process_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let first = Store::open(&path).unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    drop(first);
    Store::open(&path).expect("free again once the first store is dropped");
}

#[test]
fn a_file_held_by_another_process_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let mut child = Command::new(env!("CARGO_BIN_EXE_osmoda-store-crashwriter"))
        .arg(&path)
        .arg("1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first, "open\n");
    let result = Store::open(&path);
    child.kill().unwrap();
    child.wait().unwrap();
    let err = result.unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("locked by another open store"));
}

#[test]
fn garbage_and_truncated_files_are_damaged_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("short", b"not a database".to_vec()),
        ("zeros", vec![0u8; 64 * 1024]),
        (
            "noise",
            (0..200_000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(
            err.to_string()
                .contains("damaged store file: not a redb file, or its header is damaged ("),
            "{name}: {err}"
        );
    }

    // A real store cut in half.
    let path = dir.path().join("cut.redb");
    {
        let store = Store::open(&path).unwrap();
        let log = store.log("l").unwrap();
        for i in 0..200u32 {
            log.append(&[i as u8; 1000]).unwrap();
        }
    }
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    // redb 3.1 asserts on the file length here; the store turns that panic
    // into an error (the panic message still reaches stderr).
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Damaged { .. }), "{err:?}");
    // The panic released the file: it can be replaced and opened.
    std::fs::remove_file(&path).unwrap();
    Store::open(&path).unwrap();
}

#[test]
fn foreign_redb_files_and_unknown_formats_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("foreign.redb");
    {
        let db = redb::Database::create(&foreign).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<u64, u64>::new("theirs"))
            .unwrap()
            .insert(1, 2)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Store::open(&foreign).unwrap_err();
    assert!(
        matches!(&err, StoreError::Damaged { detail, .. } if detail.contains("not an osmoda store")),
        "{err:?}"
    );

    let future = dir.path().join("future.redb");
    drop(Store::open(&future).unwrap());
    {
        let db = redb::Database::create(&future).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<&str, u64>::new("osmoda-store/meta"))
            .unwrap()
            .insert("format", 99)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Store::open(&future).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnsupportedFormat {
                found: 99,
                supported: 1,
                ..
            }
        ),
        "{err:?}"
    );
}
