//! What a received change touched: the entry or routine ids named by
//! `Doc::changed_keys` after a push, a sync session, a store sync and
//! routine edits.

mod common;

use std::collections::BTreeSet;

use common::{new_entry, store, sync_docs};
use osmoda_docs::{
    Action, ChangedKeys, KnowledgeStore, NewRoutine, NodeActor, Pushed, RoutineBook, ShardId,
    StoreSync, SyncLimits, Target,
};

/// `n` entry ids that all live in one shard.
fn ids_in_one_shard(n: usize) -> (ShardId, Vec<String>) {
    let shard = ShardId::of("k0");
    let ids = (0..)
        .map(|i| format!("k{i}"))
        .filter(|id| ShardId::of(id) == shard)
        .take(n)
        .collect();
    (shard, ids)
}

fn sorted(keys: &ChangedKeys) -> BTreeSet<&str> {
    keys.keys.iter().map(String::as_str).collect()
}

/// Two stores sharing the entries `ids` (all in `shard`).
fn shared_pair(shard: ShardId, ids: &[String]) -> (KnowledgeStore, KnowledgeStore) {
    let mut a = store("node-a");
    for id in ids {
        a.put(new_entry(id, "t", "some body text", &["x"]), 1)
            .expect("put");
    }
    let mut b = store("node-b");
    b.load_shard(shard, &a.shard_mut(shard).save())
        .expect("load");
    (a, b)
}

#[test]
fn a_push_that_edits_an_entry_names_it() {
    let (shard, ids) = ids_in_one_shard(3);
    let (mut a, mut b) = shared_pair(shard, &ids);
    // A body edit writes into the entry's text, an object older than the
    // change: found by walking the document.
    a.update_body(&ids[1], "some other body text", 2)
        .expect("edit");
    let push = a
        .shard(shard)
        .expect("shard")
        .last_local_change()
        .expect("change");
    let before = b.shard_heads(shard);
    assert_eq!(
        b.shard_mut(shard).apply_pushed(&push).expect("push"),
        Pushed::Applied
    );
    let changed = b.shard(shard).expect("shard").changed_keys(&before, 10);
    assert_eq!(
        changed,
        ChangedKeys {
            keys: vec![ids[1].clone()],
            more: 0
        }
    );
    // Nothing since the current heads.
    let now = b.shard_heads(shard);
    assert_eq!(
        b.shard(shard).expect("shard").changed_keys(&now, 10),
        ChangedKeys::default()
    );
}

#[test]
fn a_sync_that_brings_three_entries_names_them() {
    let (shard, ids) = ids_in_one_shard(5);
    let (mut a, mut b) = shared_pair(shard, &ids[..2]);
    for id in &ids[2..] {
        a.put(new_entry(id, "new", "fresh", &[]), 2).expect("put");
    }
    let before = b.shard_heads(shard);
    let limits = SyncLimits::default();
    sync_docs(a.shard_mut(shard), b.shard_mut(shard), limits);
    let doc = b.shard(shard).expect("shard");
    let changed = doc.changed_keys(&before, 10);
    assert_eq!(
        sorted(&changed),
        ids[2..].iter().map(String::as_str).collect::<BTreeSet<_>>()
    );
    assert_eq!(changed.more, 0);
    // Bounded: two listed, the third counted.
    let capped = doc.changed_keys(&before, 2);
    assert_eq!((capped.keys.len(), capped.more), (2, 1));
    assert_eq!(doc.changed_keys(&before, 0).more, 3);
}

#[test]
fn a_store_sync_names_the_entries_of_each_shard() {
    let mut a = store("node-a");
    let mut b = store("node-b");
    let ids = ["alpha", "beta", "gamma"];
    for id in ids {
        a.put(new_entry(id, "t", "b", &[]), 1).expect("put");
    }
    let (sa, sb) = (a.heads_summary(), b.heads_summary());
    let mut pa = StoreSync::new(&sa, &sb, SyncLimits::default());
    let mut pb = StoreSync::new(&sb, &sa, SyncLimits::default());
    let mut changed = BTreeSet::new();
    for _ in 0..100 {
        let to_b = pa.generate(&mut a);
        for (shard, msg) in &to_b {
            let before = b.shard_heads(*shard);
            if pb.receive(&mut b, *shard, msg).expect("b receives") {
                let keys = b.shard(*shard).expect("shard").changed_keys(&before, 10);
                changed.extend(keys.keys);
            }
        }
        let to_a = pb.generate(&mut b);
        for (shard, msg) in &to_a {
            pa.receive(&mut a, *shard, msg).expect("a receives");
        }
        if to_a.is_empty() && to_b.is_empty() {
            break;
        }
    }
    assert_eq!(changed, ids.iter().map(|s| s.to_string()).collect());
}

fn routine(id: &str) -> NewRoutine {
    NewRoutine {
        id: id.to_owned(),
        name: format!("routine {id}"),
        schedule: "every 5m".into(),
        target: Target::Nodes(vec!["n1".into(), "n2".into()]),
        action: Action {
            command: "/bin/true".into(),
            args: vec!["-v".into()],
            timeout_secs: 30,
        },
        enabled: false,
        created_by: "user:alice".into(),
    }
}

#[test]
fn routine_edits_name_the_routine() {
    let node = |id: &str| NodeActor::new(id).expect("node id");
    let mut a = RoutineBook::new(&node("node-a"));
    for id in ["r1", "r2", "r3"] {
        a.add(routine(id), 1).expect("add");
    }
    let mut b = RoutineBook::new(&node("node-b"));
    let before = b.doc().heads();
    sync_docs(a.doc_mut(), b.doc_mut(), SyncLimits::default());
    let added = b.doc().changed_keys(&before, 10);
    assert_eq!(sorted(&added), BTreeSet::from(["r1", "r2", "r3"]));

    a.enable("r2", 2).expect("enable");
    let before = b.doc().heads();
    let push = a.doc().last_local_change().expect("change");
    assert_eq!(
        b.doc_mut().apply_pushed(&push).expect("push"),
        Pushed::Applied
    );
    assert_eq!(b.doc().changed_keys(&before, 10).keys, ["r2"]);

    a.remove("r3", 3).expect("remove");
    let before = b.doc().heads();
    let push = a.doc().last_local_change().expect("change");
    b.doc_mut().apply_pushed(&push).expect("push");
    assert_eq!(b.doc().changed_keys(&before, 10).keys, ["r3"]);
}
