//! Helpers shared by the integration tests.
#![allow(dead_code)]

use osmoda_docs::{
    Doc, KnowledgeStore, NewEntry, NodeActor, ShardId, StoreSync, SyncLimits, SyncSession,
};

pub fn store(node: &str) -> KnowledgeStore {
    KnowledgeStore::new(NodeActor::new(node).expect("valid node id"))
}

pub fn new_entry(id: &str, title: &str, body: &str, tags: &[&str]) -> NewEntry {
    NewEntry {
        id: id.to_owned(),
        title: title.to_owned(),
        body: body.to_owned(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        actor: "agent:test".to_owned(),
    }
}

/// Runs a sync session pair on two documents until neither side has a
/// message; returns the number of messages exchanged.
pub fn sync_docs(a: &mut Doc, b: &mut Doc, limits: SyncLimits) -> usize {
    let mut sa = SyncSession::new(limits);
    let mut sb = SyncSession::new(limits);
    let mut messages = 0;
    for _ in 0..1000 {
        let mut quiet = true;
        if let Some(m) = sa.generate_message(a).expect("generate a") {
            sb.receive_message(b, &m).expect("b receives");
            messages += 1;
            quiet = false;
        }
        if let Some(m) = sb.generate_message(b).expect("generate b") {
            sa.receive_message(a, &m).expect("a receives");
            messages += 1;
            quiet = false;
        }
        if quiet {
            return messages;
        }
    }
    panic!("sync did not settle");
}

/// Syncs two whole stores through `StoreSync` driven by their summaries;
/// returns (messages, bytes) exchanged.
pub fn sync_stores(a: &mut KnowledgeStore, b: &mut KnowledgeStore) -> (usize, u64) {
    let (sa, sb) = (a.heads_summary(), b.heads_summary());
    let mut pa = StoreSync::new(&sa, &sb, SyncLimits::default());
    let mut pb = StoreSync::new(&sb, &sa, SyncLimits::default());
    assert_eq!(pa.shards(), pb.shards());
    let (mut messages, mut bytes) = (0, 0u64);
    for _ in 0..1000 {
        let to_b = pa.generate(a);
        for (shard, m) in &to_b {
            pb.receive(b, *shard, m).expect("b receives");
            bytes += m.len() as u64;
        }
        let to_a = pb.generate(b);
        for (shard, m) in &to_a {
            pa.receive(a, *shard, m).expect("a receives");
            bytes += m.len() as u64;
        }
        messages += to_a.len() + to_b.len();
        if to_a.is_empty() && to_b.is_empty() {
            assert!(pa.failures().is_empty() && pb.failures().is_empty());
            return (messages, bytes);
        }
    }
    panic!("store sync did not settle");
}

/// Two stores sharing entry "base", whose body each then edited
/// concurrently; returns them and the entry's shard.
pub fn diverged_pair() -> (KnowledgeStore, KnowledgeStore, ShardId) {
    let mut a = store("node-a");
    let mut b = store("node-b");
    let shard = ShardId::of("base");
    a.put(new_entry("base", "t", "shared", &[]), 1)
        .expect("put");
    let base = a.shard_mut(shard).save();
    b.load_shard(shard, &base).expect("load");
    a.update_body("base", "shared, edited by a", 2)
        .expect("edit");
    b.update_body("base", "shared; b was here", 3)
        .expect("edit");
    (a, b, shard)
}
