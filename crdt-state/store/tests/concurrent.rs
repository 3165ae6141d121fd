//! Group commit under concurrency: many threads appending at once get dense
//! indices, and every record reads back as written.

use std::collections::HashSet;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;

use osmoda_store::Store;

const THREADS: usize = 16;
const PER_THREAD: usize = 200;

fn record(thread: usize, seq: usize) -> Vec<u8> {
    let mut r = format!("thread {thread} record {seq} ").into_bytes();
    r.resize(64 + (thread * 7 + seq) % 200, b'a' + (seq % 26) as u8);
    r
}

#[test]
fn sixteen_threads_append_dense_indices_that_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let store = Store::open(&path).unwrap();
    let log = store.log("events").unwrap();

    let written: Vec<(u64, Vec<u8>)> = thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let log = log.clone();
                s.spawn(move || {
                    (0..PER_THREAD)
                        .map(|i| {
                            let r = record(t, i);
                            (log.append(&r).unwrap(), r)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });

    let total = (THREADS * PER_THREAD) as u64;
    let indices: HashSet<u64> = written.iter().map(|(i, _)| *i).collect();
    assert_eq!(indices.len() as u64, total, "an index was handed out twice");
    assert_eq!(
        indices,
        (0..total).collect(),
        "indices are not dense from 0"
    );
    assert_eq!(log.len().unwrap(), total);
    for (index, record) in &written {
        assert_eq!(
            log.read(*index).unwrap().as_ref(),
            Some(record),
            "record {index}"
        );
    }
    assert_eq!(log.read(total).unwrap(), None);

    // Each thread's records kept their order (a thread waits for each ack).
    let all = log.read_range(0..total).unwrap();
    assert_eq!(all.len() as u64, total);
    for t in 0..THREADS {
        let prefix = format!("thread {t} record ");
        let mine: Vec<&Vec<u8>> = all
            .iter()
            .filter(|r| r.starts_with(prefix.as_bytes()))
            .collect();
        let expected: Vec<Vec<u8>> = (0..PER_THREAD).map(|i| record(t, i)).collect();
        assert_eq!(mine, expected.iter().collect::<Vec<_>>());
    }

    // And it is all still there after a clean reopen.
    drop((log, store));
    let store = Store::open(&path).unwrap();
    let log = store.log("events").unwrap();
    assert_eq!(log.len().unwrap(), total);
    for (index, record) in written.iter().step_by(97) {
        assert_eq!(log.read(*index).unwrap().as_ref(), Some(record));
    }
    assert_eq!(store.verify().unwrap().logs["events"], total);
}

#[test]
fn logs_and_tables_share_commits_but_keep_their_own_indices() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s.redb")).unwrap();
    thread::scope(|s| {
        for t in 0..8 {
            let store = store.clone();
            s.spawn(move || {
                let log = store.log(if t % 2 == 0 { "even" } else { "odd" }).unwrap();
                for i in 0..50u32 {
                    log.append(&i.to_le_bytes()).unwrap();
                    store
                        .put("docs", format!("{t}/{i}").as_bytes(), &[t as u8; 100])
                        .unwrap();
                }
            });
        }
    });
    for name in ["even", "odd"] {
        let log = store.log(name).unwrap();
        assert_eq!(log.len().unwrap(), 200);
        assert_eq!(log.read_range(0..200).unwrap().len(), 200);
    }
    assert_eq!(store.scan_prefix("docs", b"3/", 1000).unwrap().len(), 50);
    let report = store.verify().unwrap();
    assert_eq!(report.tables["docs"], 400);
}

/// A minimal executor: polls one future on this thread, parking between
/// wakes. Enough to show that `Ack` works as a `Future` with no runtime.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}

#[test]
fn acks_can_be_awaited_and_pipelined() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s.redb")).unwrap();
    let log = store.log("async").unwrap();
    // Submit many before waiting for any: they share commits.
    let acks: Vec<_> = (0..100u32)
        .map(|i| log.submit(&i.to_le_bytes()).unwrap())
        .collect();
    let indices: Vec<u64> = block_on(async {
        let mut out = Vec::new();
        for ack in acks {
            out.push(ack.await.unwrap());
        }
        out
    });
    assert_eq!(indices, (0..100).collect::<Vec<_>>());
    assert_eq!(log.read(42).unwrap(), Some(42u32.to_le_bytes().to_vec()));
    // 100 writes queued faster than one fsync shared commits.
    let stats = store.stats();
    assert_eq!(stats.writes, 100);
    assert!(stats.commits < 100, "{stats:?}");
}

#[test]
fn handles_cross_threads() {
    fn send_sync<T: Send + Sync + Clone>() {}
    fn send<T: Send + Unpin>() {}
    send_sync::<Store>();
    send_sync::<osmoda_store::LogHandle>();
    send::<osmoda_store::Ack<u64>>();
    send_sync::<osmoda_store::StoreError>();
}
