//! Inputs the `doc_sync` fuzz target found, replayed with the same
//! operations the target performs on them (see
//! fuzz/fuzz_targets/doc_sync.rs and doc_sync_support/), so they stay
//! fixed without nightly or libFuzzer.

use osmoda_docs::{
    decode_bundle, encode_bundle, DocError, EntryUpdate, KnowledgeStore, NewEntry, NodeActor,
    Pushed, Refusal, ShardId, SyncError, SyncLimits, SyncSession,
};
use sha2::{Digest, Sha256};

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

fn actor(name: &str) -> NodeActor {
    NodeActor::new(name).expect("valid node id")
}

/// The fuzz target's fixed starting state (`support::base`), as much of it
/// as the `framed_chunk` mode reads: our saved shards, the shard of `e0`,
/// and the peer's change chunks for it.
struct Base {
    shards: Vec<(ShardId, Vec<u8>)>,
    shard: ShardId,
    peer_changes: Vec<Vec<u8>>,
}

fn base() -> Base {
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
        let new = NewEntry {
            id: id.clone(),
            title: format!("title {i}"),
            body: format!("body of {i}"),
            tags: ["t".to_string(), tag].into_iter().collect(),
            actor: "agent-1".into(),
        };
        a.put(new, 10 + i as u64).expect("put");
    }
    a.delete(&ids[2], 20).expect("delete");
    let shards = a.save_all();
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
    let changes = b.shard(shard).expect("shard").changes_since(&base_heads);
    Base {
        shards,
        shard,
        peer_changes: split(&changes),
    }
}

fn store_as(name: &str, shards: &[(ShardId, Vec<u8>)]) -> KnowledgeStore {
    let mut s = KnowledgeStore::new(actor(name));
    for (shard, bytes) in shards {
        s.load_shard(*shard, bytes).expect("base shard loads");
    }
    s
}

/// `arbitrary::Unstructured`, as far as the target uses it: integers in a
/// range take the fewest bytes that cover it, big-endian, modulo the range.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn pick(&mut self, max: u64) -> u64 {
        let mut value: u64 = 0;
        let mut used = 0;
        while used < 8 && (max >> (used * 8)) > 0 && !self.0.is_empty() {
            value = (value << 8) | u64::from(self.byte());
            used += 1;
        }
        if max == u64::MAX {
            value
        } else {
            value % (max + 1)
        }
    }

    fn take(&mut self, max: usize) -> Vec<u8> {
        let n = (self.pick(max as u64) as usize).min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head.to_vec()
    }
}

fn parse(bytes: &[u8]) -> (u8, &[u8], &[u8]) {
    assert!(bytes.len() >= 9 && bytes[..4] == MAGIC, "framed");
    let (mut len, mut i, mut shift) = (0u64, 9, 0);
    loop {
        let b = bytes[i];
        i += 1;
        len |= u64::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    let end = i + len as usize;
    (bytes[8], &bytes[i..end], &bytes[end..])
}

fn split(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (_, _, rest) = parse(bytes);
        out.push(bytes[..bytes.len() - rest.len()].to_vec());
        bytes = rest;
    }
    out
}

/// A chunk with a correct checksum around `body`, as a peer can make one.
fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut len = Vec::new();
    let mut v = body.len() as u64;
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            len.push(b);
            break;
        }
        len.push(b | 0x80);
    }
    let digest = Sha256::new()
        .chain_update([kind])
        .chain_update(&len)
        .chain_update(body)
        .finalize();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&digest[..4]);
    out.push(kind);
    out.extend(len);
    out.extend_from_slice(body);
    out
}

/// The chunk the target's `framed_chunk` mode makes from `input`, and the
/// way (`which % 6`) it then feeds it in. Only the branches this input
/// takes are replayed; others panic, so a changed replay is noticed.
fn framed_chunk(input: &[u8], b: &Base) -> (u8, Vec<u8>) {
    let mut u = Input(input);
    let which = u.byte();
    assert_eq!(u.pick(3), 1, "a peer change, altered");
    let i = u.pick(b.peer_changes.len() as u64 - 1) as usize;
    let (kind, body, _) = parse(&b.peer_changes[i]);
    let mut body = body.to_vec();
    for _ in 0..u.pick(4) {
        match u.pick(2) {
            0 => {
                let at = u.pick(body.len() as u64 - 1) as usize;
                body[at] ^= 1 + u.byte() % 255;
            }
            1 => {
                let at = u.pick(body.len() as u64) as usize;
                let extra = u.take(8);
                body.splice(at..at, extra);
            }
            _ => {
                let at = u.pick(body.len() as u64 - 1) as usize;
                let n = u.pick(8) as usize;
                body.drain(at..(at + n).min(body.len()));
            }
        }
    }
    (which, frame(kind, &body))
}

/// What the target checks at the end (`read_all`): the dirty shard saves
/// and loads back with the same heads.
fn saved_loads(store: &mut KnowledgeStore, shard: ShardId) {
    let bytes = store.shard_mut(shard).save();
    let mut back = KnowledgeStore::new(actor("fuzz-a"));
    back.load_shard(shard, &bytes).expect("what we saved loads");
    assert_eq!(back.shard_heads(shard), store.shard_heads(shard));
}

/// `65 65 65 aa b5 65 34 88`: a peer's change with one byte dropped,
/// framed again with a valid checksum. Automerge imported it, but it does
/// not survive being re-encoded in a saved document (the load recomputes
/// its hash and finds other heads), so the saved shard did not load.
const MISMATCHING_HEADS: [u8; 8] = [0x65, 0x65, 0x65, 0xaa, 0xb5, 0x65, 0x34, 0x88];

#[test]
fn a_push_that_would_save_unloadable_bytes_is_refused() {
    let b = base();
    assert_eq!(MISMATCHING_HEADS[0] % 8, 5, "framed_chunk mode");
    let (which, chunk) = framed_chunk(&MISMATCHING_HEADS[1..], &b);
    assert_eq!(which % 6, 5, "fed in as a push");
    let mut store = store_as("fuzz-a", &b.shards);
    let before = store.shard_heads(b.shard);
    let pushed = store
        .shard_mut(b.shard)
        .apply_pushed(&encode_bundle(&[None], &chunk));
    assert!(
        matches!(pushed, Err(DocError::Refused(Refusal::NotCanonical(_)))),
        "the push was taken: {pushed:?}"
    );
    assert_eq!(store.shard_heads(b.shard), before, "the shard moved");
    saved_loads(&mut store, b.shard);
}

#[test]
fn the_same_change_by_sync_is_refused() {
    let b = base();
    let (_, chunk) = framed_chunk(&MISMATCHING_HEADS[1..], &b);
    // The change's own dependencies are the base's heads, which we hold:
    // a sync message carrying it would apply it at once.
    let mut a = store_as("fuzz-a", &b.shards);
    let before = a.shard_heads(b.shard);
    // A peer that made it by hand sends it in a sync message.
    let mut sa = SyncSession::new(SyncLimits::default());
    let hello = sa
        .generate_message(a.shard_mut(b.shard))
        .expect("a")
        .expect("hello");
    let msg = sync_message(&hello, &chunk);
    let got = sa.receive_message(a.shard_mut(b.shard), &msg);
    assert!(
        matches!(got, Err(SyncError::Refused(Refusal::NotCanonical(_)))),
        "the message was taken: {got:?}"
    );
    assert_eq!(a.shard_heads(b.shard), before);
    saved_loads(&mut a, b.shard);
}

/// A sync message from a peer claiming heads it does not have, carrying
/// `change`. (`hello` gives the message layout with our heads.)
fn sync_message(hello: &[u8], change: &[u8]) -> Vec<u8> {
    let body = decode_bundle(hello).expect("our own message").body;
    let mut msg = automerge::sync::Message::decode(body).expect("our own message");
    msg.have = Vec::new();
    msg.need = Vec::new();
    msg.changes = vec![change.to_vec()].into();
    encode_bundle(&[None], &msg.encode())
}

#[test]
fn an_unaltered_push_still_applies() {
    let b = base();
    let mut store = store_as("fuzz-a", &b.shards);
    let pushed = store
        .shard_mut(b.shard)
        .apply_pushed(&encode_bundle(&[None], &b.peer_changes[0]))
        .expect("a real change");
    assert_eq!(pushed, Pushed::Applied);
    saved_loads(&mut store, b.shard);
}
