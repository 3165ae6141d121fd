//! Hostile peers: mangled bytes, lying but well-formed messages, forged
//! changes. Every one must be an error or harmless, never a panic.

mod common;

use automerge::sync::{BloomFilter, Have, Message, MessageVersion};
use automerge::ChangeHash;
use common::diverged_pair;
use osmoda_docs::{ListQuery, SyncError, SyncLimits, SyncSession};
use proptest::prelude::*;

const LIMITS: SyncLimits = SyncLimits {
    max_message_bytes: 4 << 20,
    max_idle_rounds: 32,
    max_rounds: 4096,
    max_session_bytes: 256 << 20,
};

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Flipped, truncated or extended messages are errors or harmless, never
    /// panics, and a session that rejected one stays failed.
    #[test]
    fn mangled_messages_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        tail in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let (mut a, mut b, shard) = diverged_pair();
        let mut sb = SyncSession::new(LIMITS);
        // b's second message carries its change; take it after a hello.
        let mut sa = SyncSession::new(LIMITS);
        let hello = sa.generate_message(a.shard_mut(shard)).expect("a").expect("hello");
        sb.receive_message(b.shard_mut(shard), &hello).expect("b receives");
        let mut msg = sb.generate_message(b.shard_mut(shard)).expect("b").expect("reply");
        for (i, x) in &flips {
            let i = i.index(msg.len());
            msg[i] ^= x;
        }
        if let Some(c) = cut {
            msg.truncate(c.index(msg.len()));
        }
        msg.extend(&tail);
        let doc = a.shard_mut(shard);
        if sa.receive_message(doc, &msg).is_err() {
            prop_assert!(sa.has_failed());
            prop_assert!(sa.receive_message(doc, &msg).is_err());
        }
        // Whatever happened, the document is still readable.
        let _ = a.list(&ListQuery::default());
    }
}

fn hashes(known: &[ChangeHash], picks: &[(bool, u8)]) -> Vec<ChangeHash> {
    picks
        .iter()
        .map(|&(real, b)| match known.get(usize::from(b)) {
            Some(h) if real => *h,
            _ => ChangeHash([b; 32]),
        })
        .collect()
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

fn put_hashes(out: &mut Vec<u8>, hs: &[ChangeHash]) {
    leb(out, hs.len() as u64);
    for h in hs {
        out.extend(h.0);
    }
}

/// A v1 sync message encoded by hand, so hash lists can be unsorted (as a
/// lying peer may send them; Automerge's encoder asserts they are sorted).
fn raw_message(
    heads: &[ChangeHash],
    need: &[ChangeHash],
    have: Option<(&[ChangeHash], &[u8])>,
    changes: &[Vec<u8>],
) -> Vec<u8> {
    let mut out = vec![0x42];
    put_hashes(&mut out, heads);
    put_hashes(&mut out, need);
    match have {
        Some((last_sync, bloom)) => {
            leb(&mut out, 1);
            put_hashes(&mut out, last_sync);
            leb(&mut out, bloom.len() as u64);
            out.extend(bloom);
        }
        None => leb(&mut out, 0),
    }
    leb(&mut out, changes.len() as u64);
    for c in changes {
        leb(&mut out, c.len() as u64);
        out.extend(c);
    }
    // As sessions send them: with a slot for each change's seal (none
    // here; a session without an authority takes unsealed changes).
    osmoda_docs::encode_bundle(&vec![None; changes.len()], &out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Well-formed messages with made-up heads, needs and haves (known and
    /// unknown hashes, sorted or not) must not panic either side.
    #[test]
    fn lying_peers_never_panic(
        heads in proptest::collection::vec((any::<bool>(), 0u8..4), 0..4),
        need in proptest::collection::vec((any::<bool>(), 0u8..4), 0..4),
        last_sync in proptest::collection::vec((any::<bool>(), 0u8..4), 0..3),
        bloom_of in proptest::collection::vec((any::<bool>(), 0u8..4), 0..3),
        with_have in any::<bool>(),
        with_change in any::<bool>(),
        sort in any::<bool>(),
    ) {
        let (mut a, b, shard) = diverged_pair();
        let mut known = a.shard_heads(shard);
        known.extend(b.shard_heads(shard));
        let changes: Vec<Vec<u8>> = if with_change {
            vec![b.shard(shard).expect("shard").changes_since(&a.shard_heads(shard))]
        } else {
            vec![]
        };
        let (mut heads, mut need, mut last_sync) =
            (hashes(&known, &heads), hashes(&known, &need), hashes(&known, &last_sync));
        if sort {
            heads.sort();
            need.sort();
            last_sync.sort();
        }
        let bloom = BloomFilter::from_hashes(hashes(&known, &bloom_of).iter()).to_bytes();
        let have = with_have.then_some((last_sync.as_slice(), bloom.as_slice()));
        let msg = raw_message(&heads, &need, have, &changes);
        let mut s = SyncSession::new(LIMITS);
        let doc = a.shard_mut(shard);
        for _ in 0..3 {
            if s.receive_message(doc, &msg).is_err() {
                break;
            }
            let _ = s.generate_message(doc);
        }
        let _ = a.list(&ListQuery::default());
    }
}

#[test]
fn hand_encoded_messages_match_automerge() {
    let h = [ChangeHash([1; 32]), ChangeHash([2; 32])];
    let bloom = BloomFilter::from_hashes(h.iter());
    let msg = Message {
        heads: h.to_vec(),
        need: vec![h[1]],
        have: vec![Have {
            last_sync: vec![h[0]],
            bloom: bloom.clone(),
        }],
        changes: Vec::<Vec<u8>>::new().into(),
        flags: None,
        version: MessageVersion::V1,
    };
    let sealed = raw_message(&h, &h[1..], Some((&h[..1], &bloom.to_bytes())), &[]);
    let bundle = osmoda_docs::decode_bundle(&sealed).expect("a bundle");
    assert_eq!(bundle.body, msg.encode());
}

#[test]
fn a_forged_change_under_our_actor_is_not_a_panic() {
    use automerge::transaction::Transactable;
    use automerge::{ActorId, Automerge, ROOT};
    // A peer (or a node that lost its state) writing as node-a with
    // sequence numbers node-a already used.
    let (mut a, _, shard) = diverged_pair();
    let mut forged = Automerge::new().with_actor(ActorId::from(b"node-a".as_slice()));
    let mut tx = forged.transaction();
    tx.put(ROOT, "forged", "x").expect("put");
    tx.commit();
    let msg = raw_message(&forged.get_heads(), &[], None, &[forged.save_after(&[])]);
    let mut s = SyncSession::new(LIMITS);
    let doc = a.shard_mut(shard);
    let received = s.receive_message(doc, &msg);
    let _ = s.generate_message(doc);
    let stored = a.shard_mut(shard).apply_changes(&forged.save());
    // Automerge refuses a second change with a used (actor, seq).
    assert!(matches!(received, Err(SyncError::Apply(_))), "{received:?}");
    assert!(stored.is_err());
    let _ = a.list(&ListQuery::default());
    // The node can still write.
    a.update_body("base", "still writable", 10)
        .expect("local write");
    assert_eq!(
        a.get("base").expect("get").expect("present").body,
        "still writable"
    );
}

#[test]
fn impossible_bloom_filters_are_refused() {
    // Automerge queries a peer's filter with the parameters it names: zero
    // bits per entry divided by zero, and a huge probe count allocated and
    // looped that many times for every hash.
    let (mut a, _, shard) = diverged_pair();
    for (bits_per_entry, probes) in [(0, 7), (10, 0), (10, u64::from(u32::MAX)), (65, 7)] {
        let mut bloom = Vec::new();
        leb(&mut bloom, 3);
        leb(&mut bloom, bits_per_entry);
        leb(&mut bloom, probes);
        bloom.extend(vec![0xff; (3 * bits_per_entry).div_ceil(8) as usize]);
        let msg = raw_message(&[], &[], Some((&[], &bloom)), &[]);
        let mut s = SyncSession::new(LIMITS);
        let doc = a.shard_mut(shard);
        let got = s.receive_message(doc, &msg);
        assert!(
            matches!(got, Err(SyncError::Decode(_))),
            "bits per entry {bits_per_entry}, probes {probes}: {got:?}"
        );
        assert!(s.generate_message(doc).is_err(), "the session stays failed");
    }
    // An honest filter still goes through.
    let honest = BloomFilter::from_hashes(a.shard_heads(shard).iter()).to_bytes();
    let msg = raw_message(&[], &[], Some((&[], &honest)), &[]);
    let mut s = SyncSession::new(LIMITS);
    let doc = a.shard_mut(shard);
    assert!(s.receive_message(doc, &msg).is_ok());
    assert!(s.generate_message(doc).is_ok());
}

/// A change (found by the `doc_sync` fuzz target: a real change with bytes
/// altered and its checksum fixed up) that Automerge parses and then
/// panics on while importing its ops.
const UNIMPORTABLE_CHANGE: &str = "856f4a83bfb044130195010057798758a02ae70a07484e692e25da5ad6aa1ae50187ddbb7103c00db20824660666757a7a2d62013f1e00010666757a7a2d610c0102020411061307150effff4bff3b0cec32340342025604570e7004710273020e010d047f017f010c0000017e122d0b010001000d7f0a757064617465645f6d73000d010e010d167f132c2065646974656420627920621e0d007f017f017f09";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn a_change_automerge_cannot_import_is_an_error_on_every_path() {
    use osmoda_docs::{NodeActor, RoutineBook};
    let change = unhex(UNIMPORTABLE_CHANGE);
    let actor = NodeActor::new("node-a").expect("valid");
    // Stored bytes, merged into a routine book that has some history.
    let mut book = RoutineBook::new(&actor);
    let before = book.doc().heads();
    assert!(book.doc_mut().apply_changes(&change).is_err());
    assert_eq!(book.doc().heads(), before, "the book is as it was");
    // A push and a sync message, into a shard with history.
    let (mut a, _, shard) = diverged_pair();
    let before = a.shard_heads(shard);
    let _ = a
        .shard_mut(shard)
        .apply_pushed(&osmoda_docs::encode_bundle(&[None], &change));
    let msg = raw_message(&[], &[], None, &[change]);
    let mut s = SyncSession::new(LIMITS);
    let _ = s.receive_message(a.shard_mut(shard), &msg);
    assert_eq!(a.shard_heads(shard), before);
    // The shard still reads and takes writes.
    let _ = a.list(&ListQuery::default());
    a.update_body("base", "after the bad change", 10)
        .expect("local write");
}
