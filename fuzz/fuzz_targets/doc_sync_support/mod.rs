//! What the `doc_sync` modes share: the fixed starting state, input
//! helpers, hand-made Automerge frames and messages, and the checks every
//! mode applies.

use super::*;

// ---------------------------------------------------------------------------
// The fixed starting state, built once.

pub(super) struct Base {
    /// The saved shards of node `fuzz-a`'s store: three entries in the
    /// shard of `e0` (`ids[0..3]`, the third deleted) and one in another
    /// (`ids[3]`). Two shards, so that each input loads little.
    pub(super) shards: Vec<(ShardId, Vec<u8>)>,
    pub(super) ids: [String; 4],
    /// The saved routine book of `fuzz-a`, one routine.
    pub(super) book: Vec<u8>,
    /// The shard of `e0`, edited by the peer too.
    pub(super) shard: ShardId,
    /// Heads of `shard` at the base, and after the peer's edit.
    pub(super) base_heads: Vec<ChangeHash>,
    pub(super) peer_heads: Vec<ChangeHash>,
    /// The peer's change chunks for `shard` (one chunk per change).
    pub(super) peer_changes: Vec<Vec<u8>>,
}

pub(super) fn actor(name: &str) -> NodeActor {
    NodeActor::new(name).expect("valid node id")
}

pub(super) fn entry(id: &str, title: &str, body: &str, tags: &[&str]) -> NewEntry {
    NewEntry {
        id: id.into(),
        title: title.into(),
        body: body.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        actor: "agent-1".into(),
    }
}

pub(super) fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let shard = ShardId::of("e0");
        let mut same = (1..)
            .map(|n| format!("e{n}"))
            .filter(|id| ShardId::of(id) == shard);
        let (e1, e2) = (same.next().expect("id"), same.next().expect("id"));
        let other = (0..)
            .map(|n| format!("x{n}"))
            .find(|id| ShardId::of(id) != shard)
            .expect("id");
        let ids = ["e0".to_string(), e1, e2, other];
        let mut a = KnowledgeStore::new(actor("fuzz-a"));
        for (i, id) in ids.iter().enumerate() {
            let tag = format!("x{i}");
            a.put(
                entry(
                    id,
                    &format!("title {i}"),
                    &format!("body of {i}"),
                    &["t", &tag],
                ),
                10 + i as u64,
            )
            .expect("put");
        }
        a.delete(&ids[2], 20).expect("delete");
        let shards = a.save_all();
        assert_eq!(shards.len(), 2);
        let base_heads = a.shard_heads(shard);

        let mut b = store_as("fuzz-b", &shards);
        b.update_body("e0", "body of 0, edited by b", 30)
            .expect("edit");
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

pub(super) fn store_as(name: &str, shards: &[(ShardId, Vec<u8>)]) -> KnowledgeStore {
    let mut s = KnowledgeStore::new(actor(name));
    for (shard, bytes) in shards {
        s.load_shard(*shard, bytes).expect("base shard loads");
    }
    s
}

/// Our store, as saved at the base.
pub(super) fn ours() -> KnowledgeStore {
    store_as("fuzz-a", &base().shards)
}

// ---------------------------------------------------------------------------
// Input helpers.

pub(super) fn pick(u: &mut Unstructured<'_>, max: u64) -> u64 {
    u.int_in_range(0..=max).unwrap_or(0)
}

pub(super) fn flag(u: &mut Unstructured<'_>) -> bool {
    u.arbitrary().unwrap_or(false)
}

pub(super) fn take<'a>(u: &mut Unstructured<'a>, max: usize) -> &'a [u8] {
    let n = (pick(u, max as u64) as usize).min(u.len());
    u.bytes(n).unwrap_or(&[])
}

pub(super) fn text(u: &mut Unstructured<'_>, max: usize) -> String {
    String::from_utf8_lossy(take(u, max)).into_owned()
}

pub(super) fn leb(out: &mut Vec<u8>, mut v: u64) {
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
pub(super) fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
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
pub(super) fn split_chunks(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (_, _, rest) = parse_chunk(bytes).expect("automerge's own framing");
        out.push(bytes[..bytes.len() - rest.len()].to_vec());
        bytes = rest;
    }
    out
}

/// The chunks of `bytes` if it is a sequence of framed chunks.
pub(super) fn split_framed(mut bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (_, _, rest) = parse_chunk(bytes)?;
        out.push(bytes[..bytes.len() - rest.len()].to_vec());
        bytes = rest;
    }
    Some(out)
}

/// (kind, body, rest) of the first chunk, if framed.
pub(super) fn parse_chunk(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
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

pub(super) fn put_hashes(out: &mut Vec<u8>, hs: &[ChangeHash]) {
    leb(out, hs.len() as u64);
    for h in hs {
        out.extend(h.0);
    }
}

/// A v1 sync message encoded by hand (Automerge's encoder asserts sorted
/// hash lists, which a lying peer need not send).
pub(super) fn message(
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
pub(super) fn check_sent(msg: &[u8], limits: &SyncLimits) {
    assert!(
        msg.len() <= limits.max_message_bytes,
        "sent {} bytes over the {}-byte bound",
        msg.len(),
        limits.max_message_bytes
    );
    let bundle = osmoda_docs::decode_bundle(msg).expect("we send sealed messages");
    let decoded =
        automerge::sync::Message::decode(bundle.body).expect("we send decodable messages");
    for chunk in decoded.changes.iter() {
        let mut rest = chunk;
        while !rest.is_empty() {
            let (kind, _, next) = parse_chunk(rest).expect("we send framed chunks");
            assert_eq!(
                kind, 1,
                "we sent a chunk of kind {kind}, not a plain change"
            );
            rest = next;
        }
    }
}

/// Feeds one message to a session and checks the session's rules; returns
/// whether it was accepted.
pub(super) fn feed(
    session: &mut SyncSession,
    store: &mut KnowledgeStore,
    shard: ShardId,
    msg: &[u8],
    limits: &SyncLimits,
) -> bool {
    let was_failed = session.has_failed();
    // As a peer sends it: a seal slot (empty: this store has no
    // authority) for each change.
    let slots = automerge::sync::Message::decode(msg).map_or(0, |m| m.changes.len());
    let sealed = osmoda_docs::encode_bundle(&vec![None; slots], msg);
    let msg = &sealed[..];
    let got = session.receive_message(store.shard_mut(shard), msg);
    if was_failed {
        assert!(
            matches!(got, Err(SyncError::Failed(_))),
            "a failed session revived: {got:?}"
        );
    }
    match &got {
        Ok(_) => {
            let st = session.stats();
            assert!(
                msg.len() <= limits.max_message_bytes,
                "oversized message accepted"
            );
            assert!(
                st.messages_received <= limits.max_rounds,
                "round bound broken"
            );
            assert!(
                st.bytes_received <= limits.max_session_bytes,
                "byte bound broken"
            );
        }
        Err(_) => assert!(session.has_failed(), "an error left the session alive"),
    }
    match session.generate_message(store.shard_mut(shard)) {
        Ok(Some(reply)) => check_sent(&reply, limits),
        Ok(None) => {}
        Err(e) => {
            assert!(
                session.has_failed(),
                "a send error left the session alive: {e}"
            );
        }
    }
    got.is_ok()
}

/// Replays an accepted message: useless rounds must end the session.
pub(super) fn replay_ends(
    session: &mut SyncSession,
    store: &mut KnowledgeStore,
    shard: ShardId,
    msg: &[u8],
) {
    for _ in 0..SMALL.max_idle_rounds + 2 {
        feed(session, store, shard, msg, &SMALL);
    }
    assert!(session.has_failed(), "a replaying peer was never cut off");
}

/// Everything a store holds must read, and the shards that changed (and
/// `extra` ones) must save and load back the same.
pub(super) fn read_all(store: &mut KnowledgeStore, extra: &[ShardId]) {
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
        assert_eq!(
            back.shard_heads(shard),
            store.shard_heads(shard),
            "heads lost on save"
        );
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

pub(super) fn read_book(book: &mut RoutineBook) {
    let listed = book.list();
    assert!(listed.len() <= book.len());
    for r in &listed {
        if check_id(&r.id).is_ok() {
            let got = book.get(&r.id).expect("a listed routine reads");
            assert_eq!(got.as_ref(), Some(r));
        }
        // What a routine holds must survive being written again.
        assert_eq!(
            Schedule::parse(&r.schedule.to_string()).ok().as_ref(),
            Some(&r.schedule)
        );
        assert_eq!(
            Target::parse(&r.target.to_string()).ok().as_ref(),
            Some(&r.target)
        );
    }
    let bytes = book.doc_mut().save();
    let back = RoutineBook::load(&bytes, &actor("fuzz-a")).expect("a saved book loads");
    assert_eq!(back.list(), listed, "routines changed by save and load");
}

/// The text parsers behind routines (schedules and targets travel in the
/// replicated book): errors or values that print back to themselves.
pub(super) fn parse_texts(s: &str) {
    if let Ok(schedule) = Schedule::parse(s) {
        assert_eq!(Schedule::parse(&schedule.to_string()).ok(), Some(schedule));
    }
    if let Ok(target) = Target::parse(s) {
        assert_eq!(Target::parse(&target.to_string()).ok(), Some(target));
    }
}

/// `bytes` as a push carries them: a seal slot (empty) per chunk.
pub(super) fn as_push(bytes: &[u8]) -> Vec<u8> {
    let slots = split_framed(bytes).map_or(1, |c| c.len());
    osmoda_docs::encode_bundle(&vec![None; slots], bytes)
}

/// The Automerge document inside bytes a node stored (`osmD`, a version
/// byte and a 4-byte length come first; seals follow).
pub(super) fn automerge_part(stored: &[u8]) -> &[u8] {
    let len = u32::from_be_bytes([stored[5], stored[6], stored[7], stored[8]]) as usize;
    &stored[9..9 + len]
}
