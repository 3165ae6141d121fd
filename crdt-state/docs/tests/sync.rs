//! Sync sessions: convergence, message and round bounds, refused chunk
//! kinds, split catch-ups, and store-level sync by heads summary. Hostile
//! peers are in `hostile.rs`.

mod common;

use automerge::sync::{Message, MessageVersion};
use common::{diverged_pair, new_entry, store, sync_docs, sync_stores};
use osmoda_docs::{
    HeadsSummary, ListQuery, ShardId, StoreSync, SyncError, SyncLimits, SyncSession,
};

const LIMITS: SyncLimits = SyncLimits {
    max_message_bytes: 4 << 20,
    max_idle_rounds: 32,
    max_rounds: 4096,
    max_session_bytes: 256 << 20,
};

#[test]
fn sessions_converge_in_few_rounds() {
    let (mut a, mut b, shard) = diverged_pair();
    let messages = sync_docs(a.shard_mut(shard), b.shard_mut(shard), LIMITS);
    // hello, changes, changes + ack, ack: concurrent edits on both sides.
    assert!(messages <= 4, "{messages} messages");
    assert_eq!(a.shard_heads(shard), b.shard_heads(shard));
    assert_eq!(a.get("base").expect("get"), b.get("base").expect("get"));
    assert!(a.dirty_shards().contains(&shard) && b.dirty_shards().contains(&shard));
    // A second session on synced documents says hello and stops.
    let again = sync_docs(a.shard_mut(shard), b.shard_mut(shard), LIMITS);
    assert!(again <= 2, "{again} messages");
}

#[test]
fn an_empty_peer_catches_up_and_a_synced_pair_stays_quiet() {
    let mut a = store("node-a");
    for i in 0..50 {
        a.put(new_entry(&format!("e{i}"), "t", "b", &[]), i)
            .expect("put");
    }
    let mut b = store("node-b");
    let (_, bytes) = sync_stores(&mut a, &mut b);
    assert!(bytes > 0);
    assert_eq!(a.heads_summary(), b.heads_summary());
    let q = ListQuery::default();
    assert_eq!(a.list(&q), b.list(&q));
    // Equal summaries: nothing to sync.
    let plan = StoreSync::new(&a.heads_summary(), &b.heads_summary(), LIMITS);
    assert!(plan.shards().is_empty());
}

#[test]
fn store_sync_touches_only_differing_shards() {
    let mut a = store("node-a");
    for i in 0..500 {
        a.put(new_entry(&format!("e{i}"), "t", "body", &[]), i)
            .expect("put");
    }
    let mut b = store("node-b");
    for (shard, bytes) in a.save_dirty() {
        b.load_shard(shard, &bytes).expect("load");
    }
    a.put(new_entry("new-a", "t", "from a", &[]), 1_000)
        .expect("put");
    b.update_body("e7", "changed by b", 1_001).expect("update");
    let (sa, sb) = (a.heads_summary(), b.heads_summary());
    let wire = HeadsSummary::decode(&sa.encode()).expect("decode");
    assert_eq!(wire, sa);
    let mut expected = vec![ShardId::of("new-a"), ShardId::of("e7")];
    expected.sort();
    expected.dedup();
    assert_eq!(sa.differing_shards(&sb), expected);
    let (messages, _) = sync_stores(&mut a, &mut b);
    assert!(messages <= 4 * expected.len(), "{messages} messages");
    assert_eq!(a.heads_summary(), b.heads_summary());
    assert_eq!(b.get("new-a").expect("get").expect("synced").body, "from a");
    assert_eq!(
        a.get("e7").expect("get").expect("synced").body,
        "changed by b"
    );
}

#[test]
fn garbage_and_oversized_messages_are_errors() {
    let (mut a, _, shard) = diverged_pair();
    let doc = a.shard_mut(shard);
    let mut s = SyncSession::new(LIMITS);
    assert!(matches!(
        s.receive_message(doc, b"not a sync message"),
        Err(SyncError::Decode(_))
    ));
    assert!(matches!(
        s.receive_message(doc, &[0x42]),
        Err(SyncError::Failed(_))
    ));
    assert!(matches!(s.generate_message(doc), Err(SyncError::Failed(_))));

    let small = SyncLimits {
        max_message_bytes: 1024,
        ..LIMITS
    };
    let mut s = SyncSession::new(small);
    let big = vec![0x42; 1025];
    assert_eq!(
        s.receive_message(doc, &big),
        Err(SyncError::MessageTooLarge {
            len: 1025,
            max: 1024
        })
    );
    let mut s = SyncSession::new(LIMITS);
    assert!(s.receive_message(doc, &[]).is_err());
}

#[test]
fn documents_and_compressed_chunks_are_refused() {
    let (mut a, mut b, shard) = diverged_pair();
    let saved = b.shard_mut(shard).save();
    // A stored shard is `osmD`, a version byte and a 4-byte length before
    // the Automerge document.
    let len = u32::from_be_bytes(saved[5..9].try_into().unwrap()) as usize;
    let whole = saved[9..9 + len].to_vec();
    let msg = Message {
        heads: b.shard_heads(shard),
        need: vec![],
        have: vec![],
        changes: whole.into(),
        flags: None,
        version: MessageVersion::V2,
    };
    let mut s = SyncSession::new(LIMITS);
    let before = a.shard_heads(shard);
    assert!(matches!(
        s.receive_message(
            a.shard_mut(shard),
            &osmoda_docs::encode_bundle(&[None], &msg.encode())
        ),
        Err(SyncError::ForbiddenChunk(_))
    ));
    assert_eq!(a.shard_heads(shard), before, "nothing was applied");
}

#[test]
fn a_peer_replaying_rounds_trips_the_bound() {
    let (mut a, mut b, shard) = diverged_pair();
    let mut sb = SyncSession::new(LIMITS);
    let replay = sb
        .generate_message(b.shard_mut(shard))
        .expect("generate")
        .expect("a first message");
    let mut sa = SyncSession::new(LIMITS);
    let doc = a.shard_mut(shard);
    let mut result = Ok(false);
    let mut rounds = 0;
    while result.is_ok() && rounds < 100 {
        result = sa.receive_message(doc, &replay);
        rounds += 1;
        // We keep answering, as an honest node would.
        let _ = sa.generate_message(doc);
    }
    assert_eq!(result, Err(SyncError::NoProgress { rounds: 33 }));
    assert_eq!(rounds, 34, "one useful round, then 33 useless ones");
    assert!(sa.has_failed());
}

#[test]
fn big_catch_ups_are_split_to_fit_the_message_bound() {
    let mut a = store("node-a");
    // Ids chosen to land in one shard, so the catch-up is one document.
    let shard = ShardId::of("seed");
    let ids: Vec<String> = (0..100_000)
        .map(|i| format!("s{i}"))
        .filter(|id| ShardId::of(id) == shard)
        .take(60)
        .collect();
    for (i, id) in ids.iter().enumerate() {
        a.put(new_entry(id, "t", &"x".repeat(300), &[]), i as u64)
            .expect("put");
    }
    let mut b = store("node-b");
    let limits = SyncLimits {
        max_message_bytes: 4096,
        ..LIMITS
    };
    let (mut sa, mut sb) = (SyncSession::new(limits), SyncSession::new(limits));
    let mut largest = 0;
    for _ in 0..200 {
        let ma = sa.generate_message(a.shard_mut(shard)).expect("a");
        if let Some(m) = &ma {
            largest = largest.max(m.len());
            sb.receive_message(b.shard_mut(shard), m)
                .expect("b receives");
        }
        let mb = sb.generate_message(b.shard_mut(shard)).expect("b");
        if let Some(m) = &mb {
            sa.receive_message(a.shard_mut(shard), m)
                .expect("a receives");
        }
        if ma.is_none() && mb.is_none() {
            break;
        }
    }
    assert!(largest <= 4096, "largest message {largest}");
    assert!(sa.stats().messages_sent > 5, "the catch-up was split");
    assert_eq!(a.shard_heads(shard), b.shard_heads(shard));
    assert_eq!(
        b.get(&ids[59]).expect("get").expect("synced").body.len(),
        300
    );
}

#[test]
fn a_change_bigger_than_a_message_is_an_error() {
    let mut a = store("node-a");
    a.put(new_entry("big", "t", &"y".repeat(8 << 10), &[]), 1)
        .expect("put");
    let limits = SyncLimits {
        max_message_bytes: 4096,
        ..LIMITS
    };
    let mut sa = SyncSession::new(limits);
    let mut sb = SyncSession::new(limits);
    let mut b = store("node-b");
    let shard = ShardId::of("big");
    let first = sa
        .generate_message(a.shard_mut(shard))
        .expect("a")
        .expect("hello");
    sb.receive_message(b.shard_mut(shard), &first)
        .expect("b receives");
    let reply = sb
        .generate_message(b.shard_mut(shard))
        .expect("b")
        .expect("reply");
    sa.receive_message(a.shard_mut(shard), &reply)
        .expect("a receives");
    assert!(matches!(
        sa.generate_message(a.shard_mut(shard)),
        Err(SyncError::ChangeTooLarge { max: 4096, .. })
    ));
}

/// A sync message of `changes` claiming `heads`, as a peer sends it.
fn message_with(heads: Vec<automerge::ChangeHash>, changes: Vec<Vec<u8>>) -> Vec<u8> {
    let n = changes.len();
    let msg = Message {
        heads,
        need: vec![],
        have: vec![],
        changes: changes.into(),
        flags: None,
        version: MessageVersion::V1,
    };
    osmoda_docs::encode_bundle(&vec![None; n], &msg.encode())
}

#[test]
fn a_change_without_its_history_is_held_and_its_history_asked_for() {
    // What a Bloom filter's false positive does: the peer skips a change
    // it thinks we have, and sends the one after it.
    let mut a = store("node-a");
    let shard = ShardId::of("e0");
    a.put(new_entry("e0", "t", "one", &[]), 1).expect("put");
    let first = a.shard(shard).expect("shard").changes_since(&[]);
    let heads_after_first = a.shard_heads(shard);
    a.update_body("e0", "one two", 2).expect("update");
    let second = a
        .shard(shard)
        .expect("shard")
        .changes_since(&heads_after_first);
    let first_hash = heads_after_first[0];

    let mut b = store("node-b");
    let mut s = SyncSession::new(LIMITS);
    let got = s.receive_message(
        b.shard_mut(shard),
        &message_with(a.shard_heads(shard), vec![second]),
    );
    assert_eq!(got, Ok(false), "nothing applied without its history");
    assert_eq!(s.held(), 1);
    assert!(b.shard_heads(shard).is_empty());
    let reply = s
        .generate_message(b.shard_mut(shard))
        .expect("ok")
        .expect("a reply");
    let body = osmoda_docs::decode_bundle(&reply)
        .expect("bundle")
        .body
        .to_vec();
    let asked = Message::decode(&body).expect("message").need;
    assert!(
        asked.contains(&first_hash),
        "the missing history is asked for: {asked:?}"
    );
    // The history arrives: both changes are taken.
    let got = s.receive_message(
        b.shard_mut(shard),
        &message_with(a.shard_heads(shard), vec![first]),
    );
    assert_eq!(got, Ok(true));
    assert_eq!(s.held(), 0);
    assert_eq!(b.shard_heads(shard), a.shard_heads(shard));
}

#[test]
fn changes_held_for_missing_history_are_bounded() {
    // A peer sending changes whose history never comes.
    let mut a = store("node-a");
    let shard = ShardId::of("e0");
    a.put(new_entry("e0", "t", "x", &[]), 1).expect("put");
    let base = a.shard_heads(shard);
    let mut orphans = Vec::new();
    for i in 0..(osmoda_docs::MAX_HELD_CHANGES + 50) {
        let before = a.shard_heads(shard);
        a.update_body("e0", &format!("x {i}"), 2 + i as u64)
            .expect("update");
        orphans.push(a.shard(shard).expect("shard").changes_since(&before));
    }
    let mut b = store("node-b");
    let mut s = SyncSession::new(LIMITS);
    for chunk in orphans.chunks(100) {
        let _ = s.receive_message(
            b.shard_mut(shard),
            &message_with(base.clone(), chunk.to_vec()),
        );
    }
    assert!(
        s.held() <= osmoda_docs::MAX_HELD_CHANGES,
        "{} held",
        s.held()
    );
    assert!(b.shard_heads(shard).is_empty());
}
