//! Storage of the documents through `Docs`: shards past one store value,
//! the layout before parts, and writes refused past the shard limit.

use osmoda_docs::{EntryUpdate, KnowledgeStore, NewEntry, NodeActor, ShardId};
use osmoda_store::Store;

use super::storage::{self, MAX_DOC_BYTES, PART_BYTES};
use super::{shard_key, Docs, KNOWLEDGE};
use crate::error::ErrorKind;

const NODE: &str = "abababababababababababababababababababababababababababababababab";

/// Text that compresses little, as people's text does not.
fn text(seed: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x >> 58) as usize] as char
        })
        .collect()
}

fn stored_parts(store: &Store, shard: ShardId) -> usize {
    (0..storage::MAX_PARTS)
        .take_while(|&i| {
            let mut key = shard_key(shard).to_vec();
            key.push(i as u8);
            store.get(KNOWLEDGE.table, &key).unwrap().is_some()
        })
        .count()
}

fn rewrite(body: String) -> EntryUpdate {
    EntryUpdate {
        body: Some(body),
        ..EntryUpdate::default()
    }
}

#[tokio::test]
async fn a_shard_past_one_store_value_saves_and_loads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state.redb")).unwrap();
    let docs = Docs::open(&store, NODE, None).unwrap();
    let id = docs
        .put("busy".into(), "start".into(), vec![], "agent:test".into())
        .await
        .unwrap();
    // 40 rewrites of 40 KB: some 1.2 MB of history once compressed. (The
    // 100 rewrites of 20 KB on three real nodes are in
    // `tests/large_entries.rs`.)
    let mut last = String::new();
    for i in 0..40 {
        last = text(i, 40_000);
        docs.update(&id, rewrite(last.clone())).await.unwrap();
    }
    let shard = ShardId::of(&id);
    let parts = stored_parts(&store, shard);
    assert!(
        parts >= 3,
        "{parts} parts of {PART_BYTES} bytes: not past 1 MiB"
    );
    drop(docs);
    let docs = Docs::open(&store, NODE, None).unwrap();
    assert_eq!(docs.get(&id).unwrap().unwrap().body, last);
}

#[tokio::test]
async fn a_shard_stored_in_the_old_single_value_layout_loads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state.redb")).unwrap();
    let mut k = KnowledgeStore::new(NodeActor::new(NODE).unwrap());
    k.put(
        NewEntry {
            id: "old".into(),
            title: "from before parts".into(),
            body: "body".into(),
            tags: vec![],
            actor: "agent:test".into(),
        },
        1,
    )
    .unwrap();
    let shard = ShardId::of("old");
    for (s, bytes) in k.save_dirty() {
        store.put(KNOWLEDGE.table, &shard_key(s), &bytes).unwrap();
    }
    let docs = Docs::open(&store, NODE, None).unwrap();
    assert_eq!(docs.get("old").unwrap().unwrap().title, "from before parts");
    docs.update("old", rewrite("new body".into()))
        .await
        .unwrap();
    assert!(store
        .get(KNOWLEDGE.table, &shard_key(shard))
        .unwrap()
        .is_none());
    assert_eq!(stored_parts(&store, shard), 1);
    drop(docs);
    let docs = Docs::open(&store, NODE, None).unwrap();
    assert_eq!(docs.get("old").unwrap().unwrap().body, "new body");
}

#[tokio::test]
async fn a_write_past_the_shard_limit_is_refused_and_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state.redb")).unwrap();
    let docs = Docs::open(&store, NODE, None).unwrap();
    let id = docs
        .put("big".into(), "start".into(), vec![], "agent:test".into())
        .await
        .unwrap();
    let mut last = "start".to_string();
    let mut refused = None;
    for i in 0..40 {
        let body = text(1000 + i, 250_000);
        match docs.update(&id, rewrite(body.clone())).await {
            Ok(()) => last = body,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("refused before 40 rewrites of 250 KB");
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    assert!(
        e.to_string()
            .contains(&format!("{MAX_DOC_BYTES}-byte limit")),
        "{e}"
    );
    assert_eq!(docs.get(&id).unwrap().unwrap().body, last);
    drop(docs);
    let docs = Docs::open(&store, NODE, None).unwrap();
    assert_eq!(docs.get(&id).unwrap().unwrap().body, last);
}
