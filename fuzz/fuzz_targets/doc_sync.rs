//! Untrusted bytes on the replicated-documents path: heads summaries, sync
//! messages for one shard (`SyncSession`) and for a store (`StoreSync`),
//! stored shards and routine books, and well-formed documents with content
//! no honest node writes.
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
    check_id, Action, EntryUpdate, HeadsSummary, KnowledgeStore, ListQuery, NewEntry, NewRoutine, NodeActor,
    RoutineBook, Schedule, ShardId, StoreSync, SyncError, SyncLimits, SyncSession, Target,
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

fuzz_target!(|data: &[u8]| {
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
// The fixed starting state, built once.

struct Base {
    /// The saved shards of node `fuzz-a`'s store: three entries in the
    /// shard of `e0` (`ids[0..3]`, the third deleted) and one in another
    /// (`ids[3]`). Two shards, so that each input loads little.
    shards: Vec<(ShardId, Vec<u8>)>,
    ids: [String; 4],
    /// The saved routine book of `fuzz-a`, one routine.
    book: Vec<u8>,
    /// The shard of `e0`, edited by the peer too.
    shard: ShardId,
    /// Heads of `shard` at the base, and after the peer's edit.
    base_heads: Vec<ChangeHash>,
    peer_heads: Vec<ChangeHash>,
    /// The peer's change chunks for `shard` (one chunk per change).
    peer_changes: Vec<Vec<u8>>,
}

fn actor(name: &str) -> NodeActor {
    NodeActor::new(name).expect("valid node id")
}

fn entry(id: &str, title: &str, body: &str, tags: &[&str]) -> NewEntry {
    NewEntry {
        id: id.into(),
        title: title.into(),
        body: body.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        actor: "agent-1".into(),
    }
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let shard = ShardId::of("e0");
        let mut same = (1..).map(|n| format!("e{n}")).filter(|id| ShardId::of(id) == shard);
        let (e1, e2) = (same.next().expect("id"), same.next().expect("id"));
        let other = (0..)
            .map(|n| format!("x{n}"))
            .find(|id| ShardId::of(id) != shard)
            .expect("id");
        let ids = ["e0".to_string(), e1, e2, other];
        let mut a = KnowledgeStore::new(actor("fuzz-a"));
        for (i, id) in ids.iter().enumerate() {
            let tag = format!("x{i}");
            a.put(entry(id, &format!("title {i}"), &format!("body of {i}"), &["t", &tag]), 10 + i as u64)
                .expect("put");
        }
        a.delete(&ids[2], 20).expect("delete");
        let shards = a.save_all();
        assert_eq!(shards.len(), 2);
        let base_heads = a.shard_heads(shard);

        let mut b = store_as("fuzz-b", &shards);
        b.update_body("e0", "body of 0, edited by b", 30).expect("edit");
        let update = EntryUpdate {
            title: Some("retitled".into()),
            tags: Some(vec!["t".into(), "y".into()]),
            ..EntryUpdate::default()
        };
        b.update("e0", &update, 31).expect("update");
        let peer_heads = b.shard_heads(shard);
        let peer_changes = split_chunks(&b.shard(shard).expect("shard").changes_since(&base_heads));
        assert!(peer_changes.len() >= 2, "two peer changes");

        let mut book = RoutineBook::new(&actor("fuzz-a"));
        book.add(
            NewRoutine {
                id: "r1".into(),
                name: "nightly".into(),
                schedule: "every 5m".into(),
                target: Target::All,
                action: Action {
                    command: "true".into(),
                    args: vec!["-v".into()],
                    timeout_secs: 60,
                },
                enabled: true,
                created_by: "agent-1".into(),
            },
            40,
        )
        .expect("routine");
        let book = book.doc_mut().save();
        Base {
            shards,
            ids,
            book,
            shard,
            base_heads,
            peer_heads,
            peer_changes,
        }
    })
}

fn store_as(name: &str, shards: &[(ShardId, Vec<u8>)]) -> KnowledgeStore {
    let mut s = KnowledgeStore::new(actor(name));
    for (shard, bytes) in shards {
        s.load_shard(*shard, bytes).expect("base shard loads");
    }
    s
}

/// Our store, as saved at the base.
fn ours() -> KnowledgeStore {
    store_as("fuzz-a", &base().shards)
}

// ---------------------------------------------------------------------------
// Input helpers.

fn pick(u: &mut Unstructured<'_>, max: u64) -> u64 {
    u.int_in_range(0..=max).unwrap_or(0)
}

fn flag(u: &mut Unstructured<'_>) -> bool {
    u.arbitrary().unwrap_or(false)
}

fn take<'a>(u: &mut Unstructured<'a>, max: usize) -> &'a [u8] {
    let n = (pick(u, max as u64) as usize).min(u.len());
    u.bytes(n).unwrap_or(&[])
}

fn text(u: &mut Unstructured<'_>, max: usize) -> String {
    String::from_utf8_lossy(take(u, max)).into_owned()
}

fn leb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// One storage chunk with a correct checksum around `body`.
fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut len = Vec::new();
    leb(&mut len, body.len() as u64);
    let mut h = Sha256::new();
    h.update([kind]);
    h.update(&len);
    h.update(body);
    let digest = h.finalize();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&digest[..4]);
    out.push(kind);
    out.extend(len);
    out.extend_from_slice(body);
    out
}

/// The chunks of Automerge storage bytes made by Automerge itself.
fn split_chunks(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (_, _, rest) = parse_chunk(bytes).expect("automerge's own framing");
        out.push(bytes[..bytes.len() - rest.len()].to_vec());
        bytes = rest;
    }
    out
}

/// The chunks of `bytes` if it is a sequence of framed chunks.
fn split_framed(mut bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (_, _, rest) = parse_chunk(bytes)?;
        out.push(bytes[..bytes.len() - rest.len()].to_vec());
        bytes = rest;
    }
    Some(out)
}

/// (kind, body, rest) of the first chunk, if framed.
fn parse_chunk(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    if bytes.len() < 9 || bytes[..4] != MAGIC {
        return None;
    }
    let mut len: u64 = 0;
    let mut i = 9;
    for shift in 0..10 {
        let b = *bytes.get(i)?;
        i += 1;
        len |= u64::from(b & 0x7f).checked_shl(7 * shift)?;
        if b & 0x80 == 0 {
            break;
        }
    }
    let end = i.checked_add(usize::try_from(len).ok()?)?;
    let body = bytes.get(i..end)?;
    Some((bytes[8], body, &bytes[end..]))
}

fn put_hashes(out: &mut Vec<u8>, hs: &[ChangeHash]) {
    leb(out, hs.len() as u64);
    for h in hs {
        out.extend(h.0);
    }
}

/// A v1 sync message encoded by hand (Automerge's encoder asserts sorted
/// hash lists, which a lying peer need not send).
fn message(
    heads: &[ChangeHash],
    need: &[ChangeHash],
    have: &[(Vec<ChangeHash>, Vec<u8>)],
    changes: &[Vec<u8>],
    flags: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = vec![0x42];
    put_hashes(&mut out, heads);
    put_hashes(&mut out, need);
    leb(&mut out, have.len() as u64);
    for (last_sync, bloom) in have {
        put_hashes(&mut out, last_sync);
        leb(&mut out, bloom.len() as u64);
        out.extend(bloom);
    }
    leb(&mut out, changes.len() as u64);
    for c in changes {
        leb(&mut out, c.len() as u64);
        out.extend(c);
    }
    if let Some(f) = flags {
        leb(&mut out, f.len() as u64);
        out.extend(f);
    }
    out
}

// ---------------------------------------------------------------------------
// Checks shared by the modes.

/// What we send: within the bound, a decodable v1 message, plain change
/// chunks only.
fn check_sent(msg: &[u8], limits: &SyncLimits) {
    assert!(
        msg.len() <= limits.max_message_bytes,
        "sent {} bytes over the {}-byte bound",
        msg.len(),
        limits.max_message_bytes
    );
    let decoded = automerge::sync::Message::decode(msg).expect("we send decodable messages");
    for chunk in decoded.changes.iter() {
        let mut rest = chunk;
        while !rest.is_empty() {
            let (kind, _, next) = parse_chunk(rest).expect("we send framed chunks");
            assert_eq!(kind, 1, "we sent a chunk of kind {kind}, not a plain change");
            rest = next;
        }
    }
}

/// Feeds one message to a session and checks the session's rules; returns
/// whether it was accepted.
fn feed(
    session: &mut SyncSession,
    store: &mut KnowledgeStore,
    shard: ShardId,
    msg: &[u8],
    limits: &SyncLimits,
) -> bool {
    let was_failed = session.has_failed();
    let got = session.receive_message(store.shard_mut(shard), msg);
    if was_failed {
        assert!(matches!(got, Err(SyncError::Failed(_))), "a failed session revived: {got:?}");
    }
    match &got {
        Ok(_) => {
            let st = session.stats();
            assert!(msg.len() <= limits.max_message_bytes, "oversized message accepted");
            assert!(st.messages_received <= limits.max_rounds, "round bound broken");
            assert!(st.bytes_received <= limits.max_session_bytes, "byte bound broken");
        }
        Err(_) => assert!(session.has_failed(), "an error left the session alive"),
    }
    match session.generate_message(store.shard_mut(shard)) {
        Ok(Some(reply)) => check_sent(&reply, limits),
        Ok(None) => {}
        Err(e) => {
            assert!(session.has_failed(), "a send error left the session alive: {e}");
        }
    }
    got.is_ok()
}

/// Replays an accepted message: useless rounds must end the session.
fn replay_ends(session: &mut SyncSession, store: &mut KnowledgeStore, shard: ShardId, msg: &[u8]) {
    for _ in 0..SMALL.max_idle_rounds + 2 {
        feed(session, store, shard, msg, &SMALL);
    }
    assert!(session.has_failed(), "a replaying peer was never cut off");
}

/// Everything a store holds must read, and the shards that changed (and
/// `extra` ones) must save and load back the same.
fn read_all(store: &mut KnowledgeStore, extra: &[ShardId]) {
    let all = ListQuery {
        include_deleted: true,
        limit: 1000,
        ..ListQuery::default()
    };
    let listed = store.list(&all);
    let _ = store.list(&ListQuery {
        tag: Some("t".into()),
        id_prefix: Some("e".into()),
        ..ListQuery::default()
    });
    let _ = store.search("body of", 50);
    let live = store.len();
    assert!(live <= listed.len(), "len counts more than list shows");
    for e in &listed {
        // A faulty replica may file an entry under a bad id or in another
        // id's shard, so `get` need not find what `list` shows.
        let _ = store.get_with_deleted(&e.id);
    }
    for id in base().ids.iter().map(String::as_str).chain(["zz"]) {
        let _ = store.get(id);
    }
    let summary = store.heads_summary();
    assert_eq!(HeadsSummary::decode(&summary.encode()), Ok(summary));
    let mut shards = store.dirty_shards();
    shards.extend(extra.iter().filter(|s| store.shard(**s).is_some()));
    let mut back = KnowledgeStore::new(actor("fuzz-a"));
    for &shard in &shards {
        let bytes = store.shard_mut(shard).save();
        back.load_shard(shard, &bytes).expect("what we saved loads");
        assert_eq!(back.shard_heads(shard), store.shard_heads(shard), "heads lost on save");
    }
    for e in back.list(&all) {
        if check_id(&e.id).is_ok() && shards.contains(&ShardId::of(&e.id)) {
            assert_eq!(
                back.get_with_deleted(&e.id).ok(),
                store.get_with_deleted(&e.id).ok(),
                "entry {} changed by save and load",
                e.id
            );
        }
    }
}

fn read_book(book: &mut RoutineBook) {
    let listed = book.list();
    assert!(listed.len() <= book.len());
    for r in &listed {
        if check_id(&r.id).is_ok() {
            let got = book.get(&r.id).expect("a listed routine reads");
            assert_eq!(got.as_ref(), Some(r));
        }
        // What a routine holds must survive being written again.
        assert_eq!(Schedule::parse(&r.schedule.to_string()).ok().as_ref(), Some(&r.schedule));
        assert_eq!(Target::parse(&r.target.to_string()).ok().as_ref(), Some(&r.target));
    }
    let bytes = book.doc_mut().save();
    let back = RoutineBook::load(&bytes, &actor("fuzz-a")).expect("a saved book loads");
    assert_eq!(back.list(), listed, "routines changed by save and load");
}

/// The text parsers behind routines (schedules and targets travel in the
/// replicated book): errors or values that print back to themselves.
fn parse_texts(s: &str) {
    if let Ok(schedule) = Schedule::parse(s) {
        assert_eq!(Schedule::parse(&schedule.to_string()).ok(), Some(schedule));
    }
    if let Ok(target) = Target::parse(s) {
        assert_eq!(Target::parse(&target.to_string()).ok(), Some(target));
    }
}

// ---------------------------------------------------------------------------
// Modes.

/// 0: a peer's heads summary.
fn summary(bytes: &[u8]) {
    let Ok(remote) = HeadsSummary::decode(bytes) else {
        return;
    };
    assert_eq!(remote.encode(), bytes, "summary decode and encode must agree");
    assert!(remote.len() <= 256);
    let local = ours().heads_summary();
    let shards = local.differing_shards(&remote);
    assert_eq!(shards, remote.differing_shards(&local), "the comparison is symmetric");
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
            assert!(matches!(got, Err(SyncError::Failed(_))), "a failed shard revived");
        }
        if got.is_err() {
            assert!(!sync.shards().contains(&shard), "a failed shard kept its session");
            assert!(sync.failures().iter().any(|(s, _)| *s == shard));
        }
        for (s, m) in sync.generate(&mut store) {
            assert!(sync.shards().contains(&s), "a message for a shard without session");
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
        assert_eq!(a.heads_summary(), b.heads_summary(), "an honest sync did not converge");
        let all = ListQuery {
            include_deleted: true,
            limit: 1000,
            ..ListQuery::default()
        };
        assert_eq!(a.list(&all), b.list(&all), "converged stores read differently");
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
    load_into(rest, which, ShardId::new(u16::from(which)).expect("u8 index"));
}

/// Loads `bytes` one of five ways: 0 a fresh shard, 1 merged into our
/// shard, 2 a fresh book, 3 merged into our book, 4 as the changes of a
/// sync message (only plain change chunks get through that one).
fn load_into(bytes: &[u8], which: u8, fresh_shard: ShardId) {
    let b = base();
    match which % 5 {
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
                assert_eq!(existing.shard_heads(b.shard), before, "a refused load changed the shard");
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
            let (kind, body, _) = parse_chunk(&b.shards[0].1).expect("framed");
            (kind, body.to_vec())
        }
        _ => {
            let (kind, body, _) = parse_chunk(&b.book).expect("framed");
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
        .map(|_| match known.get(pick(u, known.len() as u64 + 1) as usize) {
            Some(h) => *h,
            None => ChangeHash([u.arbitrary().unwrap_or(0); 32]),
        })
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

const SCHEDULES: &[&str] = &["every 5m", "every 1s", "*/5 * * * *", "0 0 * * * *", "@daily"];
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
    if which % 5 == 4 {
        // As a peer's sync message: its heads, and every change.
        let mut store = ours();
        let mut session = SyncSession::new(SMALL);
        let changes = split_chunks(&doc.save_after(&[]));
        let mut heads = doc.get_heads();
        heads.sort();
        let msg = message(&heads, &[], &[], &changes, None);
        let accepted = feed(&mut session, &mut store, base().shard, &msg, &SMALL);
        assert!(accepted || msg.len() > SMALL.max_message_bytes, "well-formed changes refused");
        read_all(&mut store, &[]);
    } else {
        load_into(&doc.save(), which, base().shard);
    }
}
