//! Key-value tables: put, get, delete, prefix scans, atomic batches.

use osmoda_store::{Batch, Store};

#[test]
fn put_get_delete_scan() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = Store::open(&path).unwrap();
    assert_eq!(store.get("docs", b"missing").unwrap(), None);
    assert!(!store.delete("docs", b"missing").unwrap());

    store.put("docs", b"doc/1/shard/0", b"automerge-a").unwrap();
    store.put("docs", b"doc/1/shard/1", b"automerge-b").unwrap();
    store.put("docs", b"doc/2/shard/0", b"automerge-c").unwrap();
    store
        .put("routines", b"doc/1/shard/0", b"other table")
        .unwrap();
    store
        .put("docs", b"doc/1/shard/1", b"automerge-b2")
        .unwrap();
    store.put("docs", b"empty", b"").unwrap();

    assert_eq!(
        store.get("docs", b"doc/1/shard/1").unwrap(),
        Some(b"automerge-b2".to_vec())
    );
    assert_eq!(store.get("docs", b"empty").unwrap(), Some(Vec::new()));
    let scanned = store.scan_prefix("docs", b"doc/1/", 100).unwrap();
    assert_eq!(
        scanned,
        vec![
            (b"doc/1/shard/0".to_vec(), b"automerge-a".to_vec()),
            (b"doc/1/shard/1".to_vec(), b"automerge-b2".to_vec()),
        ]
    );
    assert_eq!(store.scan_prefix("docs", b"doc/", 2).unwrap().len(), 2);
    assert_eq!(store.scan_prefix("docs", b"", 100).unwrap().len(), 4);
    assert_eq!(store.scan_prefix("docs", b"zzz", 100).unwrap(), Vec::new());
    assert_eq!(store.scan_prefix("nothing", b"", 100).unwrap(), Vec::new());

    assert!(store.delete("docs", b"doc/1/shard/0").unwrap());
    assert_eq!(store.get("docs", b"doc/1/shard/0").unwrap(), None);
    assert_eq!(
        store.get("routines", b"doc/1/shard/0").unwrap(),
        Some(b"other table".to_vec())
    );

    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.scan_prefix("docs", b"doc/", 100).unwrap().len(), 2);
    let report = store.verify().unwrap();
    assert_eq!(report.tables["docs"], 3);
    assert_eq!(report.tables["routines"], 1);
}

#[test]
fn batches_apply_across_tables_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s.redb")).unwrap();
    store.put("a", b"gone", b"x").unwrap();

    let mut batch = Batch::new();
    batch
        .put("a", b"k", b"1")
        .put("b", b"k", b"2")
        .delete("a", b"gone")
        .put("a", b"k", b"3");
    assert_eq!(batch.len(), 4);
    let removed = store.submit_batch(batch).unwrap().wait().unwrap();
    assert_eq!(removed, 1);
    // Later operations in a batch win over earlier ones.
    assert_eq!(store.get("a", b"k").unwrap(), Some(b"3".to_vec()));
    assert_eq!(store.get("b", b"k").unwrap(), Some(b"2".to_vec()));
    assert_eq!(store.get("a", b"gone").unwrap(), None);

    store.batch(Batch::new()).unwrap();
}
