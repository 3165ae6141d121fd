//! Untrusted bytes on the replicated-documents path: heads summaries, sync
//! messages for one shard (`SyncSession`) and for a store (`StoreSync`),
//! pushed changes (`Doc::apply_pushed`), stored shards and routine books,
//! and well-formed documents with content no honest node writes.
//!
//! The first byte picks a mode; see `MODES`. Random bytes rarely carry a
//! valid Automerge checksum, so some modes build the frames themselves (the
//! input gives the chunk body or the edits to make) to reach Automerge's
//! decoders and the crate's readers. Whatever arrives, nothing may panic,
//! sessions keep their bounds and stay failed after an error, what we send
//! stays within the message bound and holds plain change chunks only, and
//! whatever a store holds reads and saves and loads back.
#![no_main]

use std::sync::OnceLock;

use automerge::sync::BloomFilter;
use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ChangeHash, ObjId, ObjType, ScalarValue, ROOT};
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use osmoda_docs::{
    check_id, Action, EntryUpdate, HeadsSummary, KnowledgeStore, ListQuery, NewEntry, NewRoutine,
    NodeActor, Pushed, RoutineBook, Schedule, ShardId, StoreSync, SyncError, SyncLimits,
    SyncSession, Target,
};
use sha2::{Digest, Sha256};

/// Small bounds, so that fuzzing reaches them.
const SMALL: SyncLimits = SyncLimits {
    max_message_bytes: 2048,
    max_idle_rounds: 3,
    max_rounds: 8,
    max_session_bytes: 8 << 10,
};

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

const MODES: u8 = 8;

#[path = "doc_sync_support/mod.rs"]
mod support;
use support::*;

fuzz_target!(
    init: {
        // `Doc::load` turns Automerge's decoder panics into errors with
        // `catch_unwind`; libFuzzer's hook would abort on those too. With
        // the default hook a caught panic is only printed, and one that
        // escapes still aborts the run.
        let _ = std::panic::take_hook();
    },
    |data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % MODES {
        0 => summary(rest),
        1 => raw_session(rest),
        2 => raw_store_sync(rest),
        3 => honest_sync(rest),
        4 => raw_load(rest),
        5 => framed_chunk(rest),
        6 => crafted_messages(rest),
        _ => hostile_document(rest),
    }
});

// ---------------------------------------------------------------------------
// Modes.

/// 0: a peer's heads summary.
fn summary(bytes: &[u8]) {
    let Ok(remote) = HeadsSummary::decode(bytes) else {
        return;
    };
    assert_eq!(
        remote.encode(),
        bytes,
        "summary decode and encode must agree"
    );
    assert!(remote.len() <= 256);
    let local = ours().heads_summary();
    let shards = local.differing_shards(&remote);
    assert_eq!(
        shards,
        remote.differing_shards(&local),
        "the comparison is symmetric"
    );
    let sync = StoreSync::new(&local, &remote, SMALL);
    assert_eq!(sync.shards(), shards);
    for s in shards {
        assert_ne!(local.get(s), remote.get(s));
    }
}

/// 1: arbitrary bytes as a peer's message for one shard, then replayed.
fn raw_session(bytes: &[u8]) {
    let mut store = ours();
    let shard = base().shard;
    let mut session = SyncSession::new(SMALL);
    if feed(&mut session, &mut store, shard, bytes, &SMALL) {
        replay_ends(&mut session, &mut store, shard, bytes);
    }
    read_all(&mut store, &[]);
}

/// 2: a stream of (shard, message) pairs for a store sync.
fn raw_store_sync(bytes: &[u8]) {
    let mut u = Unstructured::new(bytes);
    let mut store = ours();
    let local = store.heads_summary();
    let mut sync = StoreSync::new(&local, &HeadsSummary::default(), SMALL);
    while !u.is_empty() {
        let shard = ShardId::new(u16::from(u.arbitrary::<u8>().unwrap_or(0))).expect("u8 index");
        let n = u16::from_be_bytes(u.arbitrary().unwrap_or([0, 0]));
        let msg = take(&mut u, usize::from(n));
        let failed_before = sync.failures().iter().any(|(s, _)| *s == shard);
        let got = sync.receive(&mut store, shard, msg);
        if failed_before {
            assert!(
                matches!(got, Err(SyncError::Failed(_))),
                "a failed shard revived"
            );
        }
        if got.is_err() {
            assert!(
                !sync.shards().contains(&shard),
                "a failed shard kept its session"
            );
            assert!(sync.failures().iter().any(|(s, _)| *s == shard));
        }
        for (s, m) in sync.generate(&mut store) {
            assert!(
                sync.shards().contains(&s),
                "a message for a shard without session"
            );
            check_sent(&m, &SMALL);
        }
        let st = sync.stats();
        assert!(st.messages_received <= SMALL.max_rounds * 256);
    }
    for s in sync.shards() {
        assert!(!sync.failures().iter().any(|(f, _)| *f == s));
    }
    read_all(&mut store, &[]);
}

/// A few edits the input picks, on the entries of the base and new ones.
fn edit(u: &mut Unstructured<'_>, store: &mut KnowledgeStore, time: &mut u64) {
    for _ in 0..pick(u, 3) {
        *time += 1;
        let ids = &base().ids;
        let id = match pick(u, 4) {
            n @ 0..=3 => ids[n as usize].clone(),
            _ => format!("n{}", pick(u, 9)),
        };
        let _ = match pick(u, 3) {
            0 => store.update_body(&id, &text(u, 300), *time),
            1 => {
                let update = EntryUpdate {
                    title: flag(u).then(|| text(u, 40)),
                    body: None,
                    tags: flag(u).then(|| (0..pick(u, 3)).map(|i| format!("g{i}")).collect()),
                };
                store.update(&id, &update, *time)
            }
            2 => store.delete(&id, *time),
            _ => {
                let title = text(u, 40);
                let body = text(u, 300);
                store.put(entry(&id, &title, &body, &["t"]), *time)
            }
        };
    }
}

/// 3: an honest store sync between two diverged stores, with the peer's
/// messages possibly damaged on the way. Undamaged, the stores converge.
fn honest_sync(bytes: &[u8]) {
    let mut u = Unstructured::new(bytes);
    let mut a = ours();
    let mut b = store_as("fuzz-b", &base().shards);
    let mut time = 100;
    edit(&mut u, &mut a, &mut time);
    edit(&mut u, &mut b, &mut time);
    let limits = SyncLimits {
        max_message_bytes: 256 + pick(&mut u, 4096) as usize,
        ..SyncLimits::default()
    };
    let (sa, sb) = (a.heads_summary(), b.heads_summary());
    let mut pa = StoreSync::new(&sa, &sb, limits);
    let mut pb = StoreSync::new(&sb, &sa, limits);
    assert_eq!(pa.shards(), pb.shards());
    let mut damaged = false;
    let mut quiet = false;
    for _ in 0..64 {
        let to_b = pa.generate(&mut a);
        for (shard, m) in &to_b {
            check_sent(m, &limits);
            let _ = pb.receive(&mut b, *shard, m);
        }
        let to_a = pb.generate(&mut b);
        for (shard, m) in &to_a {
            check_sent(m, &limits);
            let mut m = m.clone();
            if flag(&mut u) {
                damaged = true;
                match pick(&mut u, 3) {
                    0 => {
                        let at = pick(&mut u, m.len() as u64 - 1) as usize;
                        m[at] ^= u.int_in_range(1..=255u8).unwrap_or(1);
                    }
                    1 => m.truncate(pick(&mut u, m.len() as u64 - 1) as usize),
                    2 => m.extend_from_slice(take(&mut u, 16)),
                    _ => m = take(&mut u, 64).to_vec(),
                }
            }
            let failed_before = pa.failures().iter().any(|(s, _)| s == shard);
            let got = pa.receive(&mut a, *shard, &m);
            if failed_before {
                assert!(got.is_err(), "a failed shard revived");
            }
        }
        if to_a.is_empty() && to_b.is_empty() {
            quiet = true;
            break;
        }
    }
    if !damaged && pa.failures().is_empty() && pb.failures().is_empty() {
        assert!(quiet, "an honest sync did not settle");
        assert_eq!(
            a.heads_summary(),
            b.heads_summary(),
            "an honest sync did not converge"
        );
        let all = ListQuery {
            include_deleted: true,
            limit: 1000,
            ..ListQuery::default()
        };
        assert_eq!(
            a.list(&all),
            b.list(&all),
            "converged stores read differently"
        );
    }
    read_all(&mut a, &[]);
}

/// 4: arbitrary bytes as a stored shard (fresh, or merged into an
/// existing one) or as a stored routine book (fresh, or merged); the first
/// byte picks which.
fn raw_load(bytes: &[u8]) {
    let Some((&which, rest)) = bytes.split_first() else {
        return;
    };
    load_into(
        rest,
        which,
        ShardId::new(u16::from(which)).expect("u8 index"),
    );
}

/// Loads `bytes` one of six ways: 0 a fresh shard, 1 merged into our
/// shard, 2 a fresh book, 3 merged into our book, 4 as the changes of a
/// sync message, 5 as a push into our shard (only plain change chunks get
/// through the last two).
fn load_into(bytes: &[u8], which: u8, fresh_shard: ShardId) {
    let b = base();
    match which % 6 {
        0 => {
            let mut fresh = KnowledgeStore::new(actor("fuzz-a"));
            if fresh.load_shard(fresh_shard, bytes).is_ok() {
                let doc = fresh.shard(fresh_shard).expect("loaded");
                assert!(!doc.is_dirty(), "a loaded shard is dirty");
                read_all(&mut fresh, &[fresh_shard]);
            }
        }
        1 => {
            let mut existing = ours();
            let before = existing.shard_heads(b.shard);
            if existing.load_shard(b.shard, bytes).is_err() {
                assert_eq!(
                    existing.shard_heads(b.shard),
                    before,
                    "a refused load changed the shard"
                );
            }
            read_all(&mut existing, &[]);
        }
        2 => {
            if let Ok(mut book) = RoutineBook::load(bytes, &actor("fuzz-a")) {
                read_book(&mut book);
            }
        }
        3 => {
            let mut book = RoutineBook::load(&b.book, &actor("fuzz-a")).expect("base book");
            let _ = book.doc_mut().apply_changes(bytes);
            read_book(&mut book);
        }
        5 => {
            let mut store = ours();
            let before = store.shard_heads(b.shard);
            let pushed = store.shard_mut(b.shard).apply_pushed(&as_push(bytes));
            if matches!(pushed, Ok(Pushed::Known | Pushed::MissingDeps)) {
                assert_eq!(
                    store.shard_heads(b.shard),
                    before,
                    "a push that was not applied changed the shard"
                );
            }
            read_all(&mut store, &[]);
        }
        _ => {
            let chunks: Vec<Vec<u8>> = match split_framed(bytes) {
                Some(chunks) => chunks,
                None => vec![bytes.to_vec()],
            };
            let mut store = ours();
            let mut session = SyncSession::new(SMALL);
            let msg = message(&b.peer_heads, &[], &[], &chunks, None);
            feed(&mut session, &mut store, b.shard, &msg, &SMALL);
            read_all(&mut store, &[]);
        }
    }
}

/// 5: one chunk with a valid checksum: a body from the input, or a real
/// change or document body with bytes altered. Loaded as a shard and a
/// book, and sent as a sync message's change.
fn framed_chunk(bytes: &[u8]) {
    let mut u = Unstructured::new(bytes);
    let b = base();
    let which = u.arbitrary().unwrap_or(0);
    let (kind, mut body) = match pick(&mut u, 3) {
        0 => (pick(&mut u, 2) as u8, Vec::new()),
        1 => {
            let i = pick(&mut u, b.peer_changes.len() as u64 - 1) as usize;
            let (kind, body, _) = parse_chunk(&b.peer_changes[i]).expect("framed");
            (kind, body.to_vec())
        }
        2 => {
            let (kind, body, _) = parse_chunk(automerge_part(&b.shards[0].1)).expect("framed");
            (kind, body.to_vec())
        }
        _ => {
            let (kind, body, _) = parse_chunk(automerge_part(&b.book)).expect("framed");
            (kind, body.to_vec())
        }
    };
    if body.is_empty() {
        body = u.take_rest().to_vec();
    } else {
        for _ in 0..pick(&mut u, 4) {
            match pick(&mut u, 2) {
                0 => {
                    let at = pick(&mut u, body.len() as u64 - 1) as usize;
                    body[at] ^= u.int_in_range(1..=255u8).unwrap_or(1);
                }
                1 => {
                    let at = pick(&mut u, body.len() as u64) as usize;
                    let extra = take(&mut u, 8).to_vec();
                    body.splice(at..at, extra);
                }
                _ => {
                    let at = pick(&mut u, body.len() as u64 - 1) as usize;
                    let n = pick(&mut u, 8) as usize;
                    body.drain(at..(at + n).min(body.len()));
                }
            }
            if body.is_empty() {
                break;
            }
        }
    }
    let chunk = frame(kind, &body);
    load_into(&chunk, which, b.shard);
}

fn hashes(u: &mut Unstructured<'_>, known: &[ChangeHash], max: u64) -> Vec<ChangeHash> {
    let mut out: Vec<ChangeHash> = (0..pick(u, max))
        .map(
            |_| match known.get(pick(u, known.len() as u64 + 1) as usize) {
                Some(h) => *h,
                None => ChangeHash([u.arbitrary().unwrap_or(0); 32]),
            },
        )
        .collect();
    if !flag(u) {
        out.sort();
    }
    out
}

/// 6: well-formed messages with chosen heads, needs, haves, blooms, changes
/// and flags, in a session of a few rounds.
fn crafted_messages(bytes: &[u8]) {
    let mut u = Unstructured::new(bytes);
    let b = base();
    let mut known = b.base_heads.clone();
    known.extend(&b.peer_heads);
    let mut store = ours();
    let mut session = SyncSession::new(SMALL);
    for _ in 0..1 + pick(&mut u, 3) {
        let heads = hashes(&mut u, &known, 3);
        let need = hashes(&mut u, &known, 3);
        let have: Vec<(Vec<ChangeHash>, Vec<u8>)> = (0..pick(&mut u, 2))
            .map(|_| {
                let last_sync = hashes(&mut u, &known, 2);
                let bloom = if flag(&mut u) {
                    take(&mut u, 32).to_vec()
                } else {
                    BloomFilter::from_hashes(hashes(&mut u, &known, 3).iter()).to_bytes()
                };
                (last_sync, bloom)
            })
            .collect();
        let changes: Vec<Vec<u8>> = b
            .peer_changes
            .iter()
            .filter(|_| flag(&mut u))
            .cloned()
            .collect();
        let flags = flag(&mut u).then(|| take(&mut u, 3));
        let msg = message(&heads, &need, &have, &changes, flags);
        feed(&mut session, &mut store, b.shard, &msg, &SMALL);
    }
    read_all(&mut store, &[]);
}

const FIELDS: &[&str] = &[
    "title",
    "body",
    "tags",
    "author_node",
    "actor",
    "created_ms",
    "updated_ms",
    "deleted",
    "name",
    "schedule",
    "target",
    "action",
    "enabled",
    "created_by",
    "kind",
    "nodes",
    "key",
    "value",
    "command",
    "args",
    "timeout_secs",
    "t",
];

const SCHEDULES: &[&str] = &[
    "every 5m",
    "every 1s",
    "*/5 * * * *",
    "0 0 * * * *",
    "@daily",
];
const TARGETS: &[&str] = &["all", "nodes", "label"];

fn scalar(u: &mut Unstructured<'_>) -> ScalarValue {
    match pick(u, 10) {
        0 => ScalarValue::Null,
        1 => ScalarValue::Boolean(flag(u)),
        2 => ScalarValue::Int(u.arbitrary().unwrap_or(0)),
        3 => ScalarValue::Uint(u.arbitrary().unwrap_or(0)),
        4 => ScalarValue::F64(u.arbitrary().unwrap_or(0.0)),
        5 => ScalarValue::counter(u.arbitrary().unwrap_or(0)),
        6 => ScalarValue::Timestamp(u.arbitrary().unwrap_or(0)),
        7 => ScalarValue::Bytes(take(u, 8).to_vec()),
        8 => ScalarValue::Unknown {
            type_code: u.int_in_range(10..=15).unwrap_or(10),
            bytes: take(u, 8).to_vec(),
        },
        9 => {
            let s = SCHEDULES[pick(u, SCHEDULES.len() as u64 - 1) as usize];
            ScalarValue::Str(s.into())
        }
        _ => {
            let s = if flag(u) {
                TARGETS[pick(u, TARGETS.len() as u64 - 1) as usize].to_string()
            } else {
                text(u, 24)
            };
            parse_texts(&s);
            ScalarValue::Str(s.as_str().into())
        }
    }
}

/// Writes a value the input picks under `key` of the map `obj` (or appends
/// it to the list or text `obj`), nesting up to `depth` levels.
fn write_value<T: Transactable>(
    u: &mut Unstructured<'_>,
    tx: &mut T,
    obj: &ObjId,
    key: Option<&str>,
    depth: u32,
) {
    let ty = match pick(u, 4) {
        0 if depth > 0 => Some(ObjType::Map),
        1 if depth > 0 => Some(ObjType::List),
        2 if depth > 0 => Some(ObjType::Text),
        _ => None,
    };
    let child = match (ty, key) {
        (Some(ty), Some(k)) => tx.put_object(obj, k, ty).ok(),
        (Some(ty), None) => tx.insert_object(obj, 0, ty).ok(),
        (None, Some(k)) => {
            let v = scalar(u);
            let _ = tx.put(obj, k, v);
            if flag(u) {
                let _ = tx.increment(obj, k, 1);
            }
            None
        }
        (None, None) => {
            let v = scalar(u);
            let _ = tx.insert(obj, 0, v);
            None
        }
    };
    if let (Some(child), Some(ty)) = (child, ty) {
        for _ in 0..pick(u, 3) {
            match ty {
                ObjType::Map | ObjType::Table => {
                    let k = FIELDS[pick(u, FIELDS.len() as u64 - 1) as usize];
                    write_value(u, tx, &child, Some(k), depth - 1);
                }
                ObjType::List => write_value(u, tx, &child, None, depth - 1),
                ObjType::Text => {
                    let s = text(u, 16);
                    let _ = tx.splice_text(&child, 0, 0, &s);
                }
            }
        }
    }
}

/// A document written with the input's ops by `actor`.
fn written(u: &mut Unstructured<'_>, actor: &[u8]) -> Automerge {
    let mut doc = Automerge::new().with_actor(ActorId::from(actor));
    for _ in 0..1 + pick(u, 2) {
        let mut tx = doc.transaction();
        for _ in 0..1 + pick(u, 3) {
            let key = match pick(u, 4) {
                0 => base().ids[0].clone(),
                1 => base().ids[3].clone(),
                2 => "r1".to_string(),
                3 => FIELDS[pick(u, FIELDS.len() as u64 - 1) as usize].to_string(),
                _ => text(u, 8),
            };
            if flag(u) {
                let _ = tx.delete(ROOT, key.as_str());
            } else {
                write_value(u, &mut tx, &ROOT, Some(&key), 3);
            }
        }
        tx.commit();
    }
    doc
}

/// 7: well-formed documents with content no honest node writes (wrong
/// types, conflicts, unknown values), as stored bytes and as synced
/// changes, for the knowledge store and the routine book.
fn hostile_document(bytes: &[u8]) {
    let mut u = Unstructured::new(bytes);
    let mut doc = written(&mut u, b"fuzz-b");
    if flag(&mut u) {
        let mut other = written(&mut u, b"fuzz-c");
        doc.merge(&mut other).expect("merge of two fresh documents");
    }
    let which: u8 = u.arbitrary().unwrap_or(0);
    if which % 6 == 5 {
        // As a push: every change, its whole history with it.
        let changes = doc.save_after(&[]);
        if changes.is_empty() {
            return;
        }
        let mut store = ours();
        let pushed = store.shard_mut(base().shard).apply_pushed(&as_push(&changes));
        assert!(pushed.is_ok(), "a well-formed push refused: {pushed:?}");
        read_all(&mut store, &[]);
    } else if which % 6 == 4 {
        // As a peer's sync message: its heads, and every change.
        let mut store = ours();
        let mut session = SyncSession::new(SMALL);
        let changes = split_chunks(&doc.save_after(&[]));
        let mut heads = doc.get_heads();
        heads.sort();
        let msg = message(&heads, &[], &[], &changes, None);
        let accepted = feed(&mut session, &mut store, base().shard, &msg, &SMALL);
        assert!(
            accepted || msg.len() > SMALL.max_message_bytes,
            "well-formed changes refused"
        );
        read_all(&mut store, &[]);
    } else {
        load_into(&doc.save(), which, base().shard);
    }
}
