//! Bounds: oversized input and a full queue are errors, never panics, and
//! leave the store usable.

use osmoda_store::{
    Batch, CommitMode, Store, StoreError, StoreOptions, MAX_BATCH_OPS, MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
};

fn open(options: StoreOptions) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path().join("s.redb"), options).unwrap();
    (dir, store)
}

#[test]
fn oversized_records_keys_and_batches_are_refused() {
    let (_dir, store) = open(StoreOptions::default());
    let log = store.log("l").unwrap();
    let err = log.append(&vec![0; MAX_VALUE_BYTES + 1]).unwrap_err();
    assert!(
        matches!(err, StoreError::ValueTooLarge { size, max } if size == MAX_VALUE_BYTES + 1 && max == MAX_VALUE_BYTES),
        "{err:?}"
    );
    // Exactly at the limit is fine, and the refused record took no index.
    assert_eq!(log.append(&vec![7; MAX_VALUE_BYTES]).unwrap(), 0);
    assert_eq!(log.read(0).unwrap().map(|r| r.len()), Some(MAX_VALUE_BYTES));

    let err = store
        .put("t", &vec![1; MAX_KEY_BYTES + 1], b"v")
        .unwrap_err();
    assert!(matches!(err, StoreError::KeyTooLarge { .. }), "{err:?}");
    let err = store
        .put("t", b"k", &vec![1; MAX_VALUE_BYTES + 1])
        .unwrap_err();
    assert!(matches!(err, StoreError::ValueTooLarge { .. }), "{err:?}");
    assert!(matches!(
        store.get("t", &vec![1; MAX_KEY_BYTES + 1]),
        Err(StoreError::KeyTooLarge { .. })
    ));

    let mut batch = Batch::new();
    for i in 0..=MAX_BATCH_OPS {
        batch.put("t", &(i as u64).to_be_bytes(), b"");
    }
    let err = store.batch(batch).unwrap_err();
    assert!(matches!(err, StoreError::BatchTooLarge { .. }), "{err:?}");
    let mut batch = Batch::new();
    for i in 0..9 {
        batch.put("t", &[i], &vec![0; MAX_VALUE_BYTES]);
    }
    assert!(matches!(
        store.batch(batch),
        Err(StoreError::BatchTooLarge { .. })
    ));
    // A refused batch wrote nothing.
    assert_eq!(store.scan_prefix("t", b"", 10).unwrap(), Vec::new());
}

#[test]
fn invalid_names_are_refused() {
    let (_dir, store) = open(StoreOptions::default());
    for bad in ["", "a/b", "../x", "with space", &"n".repeat(65)] {
        assert!(
            matches!(store.log(bad), Err(StoreError::InvalidName { .. })),
            "{bad:?}"
        );
        assert!(matches!(
            store.put(bad, b"k", b"v"),
            Err(StoreError::InvalidName { .. })
        ));
    }
}

#[test]
fn a_full_queue_is_an_error_and_the_store_goes_on() {
    // One write in flight at a time: a second submitted before the first
    // is acknowledged (which needs an fsync) must be refused.
    let (_dir, store) = open(StoreOptions {
        max_pending_records: 1,
        ..StoreOptions::default()
    });
    let log = store.log("l").unwrap();
    let mut refused = 0;
    let mut acks = Vec::new();
    for i in 0..50u32 {
        let first = log
            .submit(&i.to_le_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        match log.submit(b"second") {
            Ok(ack) => acks.push(ack),
            Err(StoreError::QueueFull {
                pending_records, ..
            }) => {
                assert_eq!(pending_records, 1);
                refused += 1;
            }
            Err(other) => panic!("{other:?}"),
        }
        acks.push(first);
        for ack in acks.drain(..) {
            ack.wait().unwrap();
        }
    }
    assert!(refused > 0, "no submission was refused");
    assert_eq!(log.len().unwrap(), 50 + (50 - refused));

    // The byte bound works the same way.
    let (_dir2, store) = open(StoreOptions {
        max_pending_bytes: 1000,
        ..StoreOptions::default()
    });
    let err = store.log("l").unwrap().append(&[0; 2000]).unwrap_err();
    assert!(matches!(err, StoreError::QueueFull { .. }), "{err:?}");
}

#[test]
fn read_range_and_scan_are_bounded() {
    let (_dir, store) = open(StoreOptions::default());
    let log = store.log("l").unwrap();
    let acks: Vec<_> = (0..5000u32)
        .map(|i| log.submit(&i.to_le_bytes()).unwrap())
        .collect();
    for ack in acks {
        ack.wait().unwrap();
    }
    let page = log.read_range(0..u64::MAX).unwrap();
    assert_eq!(page.len(), osmoda_store::MAX_READ_RECORDS);
    let rest = log.read_range(page.len() as u64..u64::MAX).unwrap();
    assert_eq!(rest.len(), 5000 - osmoda_store::MAX_READ_RECORDS);
    assert_eq!(rest[0], (page.len() as u32).to_le_bytes());
    let (start, end) = (10, 5); // a reversed range reads nothing
    assert_eq!(log.read_range(start..end).unwrap(), Vec::<Vec<u8>>::new());
    assert_eq!(log.read_range(6000..7000).unwrap(), Vec::<Vec<u8>>::new());

    // Eight 1 MiB records exceed the 8 MiB read budget: seven come back.
    let big = store.log("big").unwrap();
    for _ in 0..9 {
        big.append(&vec![1; MAX_VALUE_BYTES]).unwrap();
    }
    assert_eq!(big.read_range(0..9).unwrap().len(), 8);
}

#[test]
fn non_durable_benchmark_mode_commits_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let options = StoreOptions {
        commit_mode: CommitMode::NonDurableForBenchmarksOnly,
        ..StoreOptions::default()
    };
    {
        let store = Store::open_with(&path, options).unwrap();
        let log = store.log("l").unwrap();
        for i in 0..100u32 {
            assert_eq!(log.append(&i.to_le_bytes()).unwrap(), u64::from(i));
        }
        assert_eq!(log.len().unwrap(), 100);
    }
    // A clean close makes even non-durable commits durable.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.log("l").unwrap().len().unwrap(), 100);
}
