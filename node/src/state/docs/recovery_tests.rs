//! A node whose stored shard is damaged still starts, names the shard,
//! and gets the shard's entries back from a peer by sync.

use osmoda_docs::{ListQuery, ShardId, StoreSync, SyncLimits};
use osmoda_store::{Batch, Store};

use super::{shard_key, Docs, KNOWLEDGE};

fn all() -> ListQuery {
    ListQuery {
        limit: 1000,
        ..ListQuery::default()
    }
}

fn ids(docs: &Docs) -> Vec<String> {
    let mut ids: Vec<String> = docs.list(&all()).into_iter().map(|e| e.id).collect();
    ids.sort();
    ids
}

/// Runs a store sync between two nodes' documents until both are quiet.
fn sync(a: &Docs, b: &Docs) {
    let (sa, sb) = (a.summary(), b.summary());
    let mut pa = StoreSync::new(&sa, &sb, SyncLimits::default());
    let mut pb = StoreSync::new(&sb, &sa, SyncLimits::default());
    for _ in 0..64 {
        let to_b = a.sync_generate(&mut pa, usize::MAX);
        let quiet_a = to_b.is_empty();
        b.sync_receive(&mut pb, to_b).expect("b stores");
        let to_a = b.sync_generate(&mut pb, usize::MAX);
        if quiet_a && to_a.is_empty() {
            return;
        }
        a.sync_receive(&mut pa, to_a).expect("a stores");
    }
    panic!("sync did not settle");
}

#[tokio::test]
async fn a_damaged_shard_starts_empty_and_is_recovered_by_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (path_a, path_b) = (dir.path().join("a.redb"), dir.path().join("b.redb"));
    let (node_a, node_b) = ("aa".repeat(32), "bb".repeat(32));
    let store_b = Store::open(&path_b).unwrap();
    let b = Docs::open(&store_b, &node_b, None).unwrap();
    let written = {
        let store_a = Store::open(&path_a).unwrap();
        let a = Docs::open(&store_a, &node_a, None).unwrap();
        for i in 0..40 {
            a.put(format!("t{i}"), "body".into(), vec![], "agent-1".into())
                .await
                .unwrap();
        }
        sync(&a, &b);
        assert_eq!(ids(&b), ids(&a));
        ids(&a)
    };
    // The node is stopped; one of its shards is overwritten with garbage.
    let victim = ShardId::of(&written[0]);
    let in_victim: Vec<&String> = written
        .iter()
        .filter(|id| ShardId::of(id) == victim)
        .collect();
    {
        let store_a = Store::open(&path_a).unwrap();
        let mut batch = Batch::new();
        // Its first stored part (`storage.rs`: the shard's key, then the
        // part's number).
        let part0 = [shard_key(victim).as_slice(), &[0]].concat();
        batch.put(KNOWLEDGE.table, &part0, b"not automerge");
        store_a.submit_batch(batch).unwrap().await.unwrap();
    }

    // It starts, serves the other shards, and names the damaged one.
    let store_a = Store::open(&path_a).unwrap();
    let a = Docs::open(&store_a, &node_a, None).expect("starts with a damaged shard");
    assert_eq!(a.damaged_shards(), vec![victim.index()]);
    let left = ids(&a);
    assert_eq!(left.len(), written.len() - in_victim.len());
    assert!(in_victim.iter().all(|id| !left.contains(id)));
    // Its own lost changes are not rewritten under the same numbers:
    // imports of 1,000 entries until one lands in the damaged shard (ids
    // are random; five imports all miss one shard in 256 with odds of
    // about 3 in a billion), which refuses the whole import.
    let mut blocked = None;
    for round in 0..5 {
        let rows = (0..1000)
            .map(|i| (format!("late {round} {i}"), "b".into(), vec![]))
            .collect();
        match a.put_many(rows, "agent-1".into()).await {
            Ok(ids) => assert!(
                ids.iter().all(|id| ShardId::of(id) != victim),
                "wrote into the damaged shard"
            ),
            Err(e) => {
                blocked = Some(e);
                break;
            }
        }
    }
    let blocked = blocked.expect("some write lands in the damaged shard");
    assert_eq!(
        blocked.kind(),
        crate::error::ErrorKind::Unavailable,
        "{blocked}"
    );

    // A sync with a peer brings the shard back, and stores it.
    sync(&a, &b);
    let back = ids(&a);
    assert!(written.iter().all(|id| back.contains(id)));
    assert!(a.damaged_shards().is_empty());
    drop(a);
    drop(store_a);
    let store_a = Store::open(&path_a).unwrap();
    let a = Docs::open(&store_a, &node_a, None).unwrap();
    assert!(a.damaged_shards().is_empty());
    assert_eq!(ids(&a), back);
}
