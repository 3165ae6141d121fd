//! AuditHeads: inserts, fork detection, evidence, encoding, and the merge
//! laws as properties over random checkpoints from a few nodes.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use osmoda_crdt_state::heads::{MAX_EVIDENCE_PER_NODE, RECENT_PER_NODE};
use osmoda_crdt_state::merkle::{empty_root, leaf_hash, root_of};
use osmoda_crdt_state::{AuditHeads, Checkpoint, EvidenceError, ForkEvidence, Hash, HeadsError};
use proptest::prelude::*;

fn key(node: u8) -> SigningKey {
    SigningKey::from_bytes(&[node.wrapping_add(1); 32])
}

fn root(size: u64, variant: u8) -> Hash {
    if size == 0 {
        empty_root()
    } else {
        leaf_hash(&[size as u8, variant])
    }
}

fn cp(node: u8, size: u64, variant: u8, time: u64) -> Checkpoint {
    Checkpoint::sign(&key(node), size, root(size, variant), time)
}

fn merged(a: &AuditHeads, b: &AuditHeads) -> AuditHeads {
    let mut out = a.clone();
    out.merge(b);
    out
}

/// Evidence that `node` rewrote entry 2 between its checkpoints at 5 and 9.
fn inconsistent(node: u8) -> ForkEvidence {
    let honest: Vec<Hash> = (0..5u8).map(|i| leaf_hash(&[node, i])).collect();
    let mut rewritten: Vec<Hash> = (0..9u8).map(|i| leaf_hash(&[node, i])).collect();
    rewritten[2] = leaf_hash(b"rewritten");
    let older = Checkpoint::sign(&key(node), 5, root_of(&honest), 1);
    let newer = Checkpoint::sign(&key(node), 9, root_of(&rewritten), 2);
    ForkEvidence::inconsistent(&older, &newer, &rewritten).expect("a real fork")
}

#[test]
fn heads_advance_and_same_size_forks_are_caught() {
    let mut h = AuditHeads::new();
    let o = h.insert_checkpoint(cp(0, 3, 0, 10)).unwrap();
    assert!(o.new_head && o.stored && o.new_evidence.is_empty());
    let o = h.insert_checkpoint(cp(0, 5, 0, 20)).unwrap();
    assert!(o.new_head);
    // Older, still kept; a duplicate changes nothing.
    let o = h.insert_checkpoint(cp(0, 4, 0, 15)).unwrap();
    assert!(!o.new_head && o.stored);
    assert!(!h.insert_checkpoint(cp(0, 4, 0, 15)).unwrap().changed());
    assert_eq!(h.head(&key(0).verifying_key().to_bytes()).unwrap().size, 5);
    assert_eq!(h.forks().count(), 0);
    // A fork against a checkpoint below the head.
    let o = h.insert_checkpoint(cp(0, 3, 1, 11)).unwrap();
    assert_eq!(o.new_evidence.len(), 1);
    o.new_evidence[0].verify().unwrap();
    let forks: Vec<_> = h.forks().collect();
    assert_eq!(forks.len(), 1);
    assert_eq!(*forks[0].0, key(0).verifying_key().to_bytes());
    // Same root, new time: a re-signature, not a fork.
    let o = h.insert_checkpoint(cp(0, 5, 0, 21)).unwrap();
    assert!(o.new_head && o.new_evidence.is_empty());
}

#[test]
fn bad_checkpoints_and_evidence_are_refused() {
    let mut h = AuditHeads::new();
    let mut bytes = cp(0, 3, 0, 10).encode();
    bytes[40] ^= 1;
    let forged = Checkpoint::decode(&bytes).unwrap();
    assert!(matches!(
        h.insert_checkpoint(forged),
        Err(HeadsError::Checkpoint(_))
    ));
    // Honest history: the builder finds no fork, and a hand-made claim fails.
    let leaves: Vec<Hash> = (0..9u8).map(|i| leaf_hash(&[i])).collect();
    let older = Checkpoint::sign(&key(1), 5, root_of(&leaves[..5]), 1);
    let newer = Checkpoint::sign(&key(1), 9, root_of(&leaves), 2);
    assert!(ForkEvidence::inconsistent(&older, &newer, &leaves).is_none());
    let claim = ForkEvidence::Inconsistent {
        older: older.clone(),
        newer: newer.clone(),
        path: osmoda_crdt_state::proof::expanded_consistency_path(5, &leaves).unwrap(),
    };
    assert_eq!(claim.verify(), Err(EvidenceError::NoContradiction));
    assert!(h.insert_evidence(claim).is_err());
    // Checkpoints of two nodes prove nothing.
    assert!(ForkEvidence::same_size(cp(0, 3, 0, 1), cp(1, 3, 1, 1)).is_none());
    let mixed = ForkEvidence::SameSize {
        a: cp(0, 3, 0, 1),
        b: cp(1, 3, 1, 1),
    };
    assert_eq!(mixed.verify(), Err(EvidenceError::DifferentNodes));
    assert!(h.is_empty());
}

#[test]
fn every_flipped_evidence_byte_is_refused() {
    for ev in [
        ForkEvidence::same_size(cp(2, 7, 0, 1), cp(2, 7, 1, 1)).unwrap(),
        inconsistent(2),
    ] {
        ev.verify().unwrap();
        let bytes = ev.encode();
        assert_eq!(ForkEvidence::decode(&bytes).unwrap(), ev);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x04;
            let ok = ForkEvidence::decode(&b).and_then(|e| e.verify());
            assert!(ok.is_err(), "flipped byte {i} accepted");
        }
        let mut h = AuditHeads::new();
        assert_eq!(
            h.insert_evidence(ev.clone()).unwrap().new_evidence,
            vec![ev]
        );
        assert_eq!(h.forks().count(), 1);
        assert!(h.head(&key(2).verifying_key().to_bytes()).is_none());
    }
}

#[test]
fn bounds_per_node_hold() {
    let mut h = AuditHeads::new();
    for size in 1..=20 {
        for variant in 0..3 {
            h.insert_checkpoint(cp(0, size, variant, 0)).unwrap();
        }
    }
    let node = key(0).verifying_key().to_bytes();
    assert_eq!(h.recent(&node).len(), RECENT_PER_NODE);
    assert_eq!(h.evidence(&node).len(), MAX_EVIDENCE_PER_NODE);
    assert_eq!(h.head(&node).unwrap().size, 20);
}

#[test]
fn state_encoding_is_exact_and_chunks_add_up() {
    let mut h = AuditHeads::new();
    for node in 0..6 {
        for size in 0..4 {
            h.insert_checkpoint(cp(node, size, node % 2, 5)).unwrap();
        }
    }
    h.insert_checkpoint(cp(3, 2, 7, 5)).unwrap();
    h.insert_evidence(inconsistent(4)).unwrap();
    let bytes = h.encode();
    let back = AuditHeads::decode(&bytes).unwrap();
    assert_eq!(back, h);
    assert_eq!(back.encode(), bytes);
    let chunks = h.encode_chunks(1000);
    assert!(chunks.len() > 1);
    let mut rebuilt = AuditHeads::new();
    for c in &chunks {
        let part = AuditHeads::decode(c).unwrap();
        assert!(
            c.len() <= 1000 || part.len() == 1,
            "only one node may overflow"
        );
        rebuilt.merge(&part);
    }
    assert_eq!(rebuilt, h);
    // Reordered items are valid but not canonical.
    let two = {
        let mut s = AuditHeads::new();
        s.insert_checkpoint(cp(0, 1, 0, 0)).unwrap();
        s.insert_checkpoint(cp(0, 2, 0, 0)).unwrap();
        s.encode()
    };
    let mut swapped = two.clone();
    swapped[5..150].copy_from_slice(&two[150..295]);
    swapped[150..295].copy_from_slice(&two[5..150]);
    assert_eq!(AuditHeads::decode(&swapped), Err(HeadsError::NonCanonical));
    // A same-size pair encoded without its evidence is not a state we could hold.
    let pair = {
        let a = cp(0, 1, 0, 0).encode();
        let b = cp(0, 1, 1, 0).encode();
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        let mut v = vec![1, 0, 0, 0, 2];
        v.extend_from_slice(&lo);
        v.extend_from_slice(&hi);
        v.extend_from_slice(&[0, 0, 0, 0]);
        v
    };
    assert_eq!(AuditHeads::decode(&pair), Err(HeadsError::NonCanonical));
}

// --- Properties -----------------------------------------------------------

const NODES: u8 = 3;

/// (node, size, root variant, time, which of three states receives it).
type Item = (u8, u64, u8, u64, usize);

fn items(max: usize) -> impl Strategy<Value = Vec<Item>> {
    prop::collection::vec((0..NODES, 0..5u64, 0..2u8, 0..2u64, 0..3usize), 0..max)
}

/// Keeps at most `cap` distinct checkpoints per node, so that nothing is
/// evicted and the laws hold exactly.
fn capped(items: Vec<Item>, cap: usize) -> Vec<(Checkpoint, usize)> {
    let mut seen: BTreeMap<u8, Vec<(u64, u8, u64)>> = BTreeMap::new();
    let mut out = Vec::new();
    for (node, size, variant, time, state) in items {
        let variant = if size == 0 { 0 } else { variant };
        let list = seen.entry(node).or_default();
        if !list.contains(&(size, variant, time)) {
            if list.len() == cap {
                continue;
            }
            list.push((size, variant, time));
        }
        out.push((cp(node, size, variant, time), state));
    }
    out
}

fn states(items: &[(Checkpoint, usize)], evidence: &[(ForkEvidence, usize)]) -> [AuditHeads; 3] {
    let mut s = [AuditHeads::new(), AuditHeads::new(), AuditHeads::new()];
    for (c, i) in items {
        s[*i].insert_checkpoint(c.clone()).unwrap();
    }
    for (e, i) in evidence {
        s[*i].insert_evidence(e.clone()).unwrap();
    }
    s
}

fn has_same_size_fork(items: &[(Checkpoint, usize)], node: &[u8; 32]) -> bool {
    items.iter().any(|(a, _)| {
        items.iter().any(|(b, _)| {
            &a.node == node && b.node == a.node && b.size == a.size && b.root != a.root
        })
    })
}

fn evidence_items() -> impl Strategy<Value = Vec<(ForkEvidence, usize)>> {
    prop::collection::vec((0..NODES, 0..3usize), 0..3)
        .prop_map(|v| v.into_iter().map(|(n, s)| (inconsistent(n), s)).collect())
}

proptest! {
    // Integration tests have no lib.rs for proptest to persist failures beside.
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn merge_is_a_join(raw in items(30), evidence in evidence_items()) {
        let items = capped(raw, RECENT_PER_NODE);
        let [a, b, c] = states(&items, &evidence);
        let ab = merged(&a, &b);
        prop_assert_eq!(&ab, &merged(&b, &a));
        prop_assert_eq!(merged(&ab, &c), merged(&a, &merged(&b, &c)));
        prop_assert_eq!(&merged(&a, &a), &a);
        prop_assert_eq!(&merged(&ab, &a), &ab);
        // Every order of three gives one state; every fork in the inputs is flagged.
        let all = merged(&ab, &c);
        for (x, y, z) in [(&a, &c, &b), (&b, &c, &a), (&c, &a, &b), (&c, &b, &a)] {
            prop_assert_eq!(&merged(&merged(x, y), z), &all);
        }
        for node in 0..NODES {
            let node = key(node).verifying_key().to_bytes();
            let expected = has_same_size_fork(&items, &node)
                || evidence.iter().any(|(e, _)| e.node() == &node);
            prop_assert_eq!(!all.evidence(&node).is_empty(), expected);
        }
        // Inserting one by one, in any order, is merging.
        let mut one = AuditHeads::new();
        for (cp, _) in items.iter().rev() {
            one.insert_checkpoint(cp.clone()).unwrap();
        }
        for (ev, _) in &evidence {
            one.insert_evidence(ev.clone()).unwrap();
        }
        prop_assert_eq!(&one, &all);
        // The encoding is exact.
        let bytes = all.encode();
        let back = AuditHeads::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &all);
        prop_assert_eq!(back.encode(), bytes);
    }

    #[test]
    fn past_the_bound_merge_still_commutes_and_keeps_flags(raw in items(60)) {
        let items = capped(raw, usize::MAX);
        let [a, b, c] = states(&items, &[]);
        let ab = merged(&a, &b);
        prop_assert_eq!(&ab, &merged(&b, &a));
        prop_assert_eq!(&merged(&ab, &ab), &ab);
        let left = merged(&ab, &c);
        let right = merged(&a, &merged(&b, &c));
        for node in 0..NODES {
            let node = key(node).verifying_key().to_bytes();
            // The kept checkpoints are associative exactly.
            prop_assert_eq!(left.recent(&node), right.recent(&node));
            for s in [&a, &b, &c] {
                // A flag is never lost.
                if !s.evidence(&node).is_empty() {
                    prop_assert!(!left.evidence(&node).is_empty());
                    prop_assert!(!right.evidence(&node).is_empty());
                }
            }
            // A fork among the kept checkpoints is flagged in every order.
            let kept: Vec<_> = left.recent(&node).iter().map(|c| (c.clone(), 0)).collect();
            if has_same_size_fork(&kept, &node) {
                prop_assert!(!left.evidence(&node).is_empty());
                prop_assert!(!right.evidence(&node).is_empty());
            }
        }
    }
}

#[test]
fn decoding_against_known_state_skips_only_what_is_held() {
    let mut known = AuditHeads::new();
    known.insert_checkpoint(cp(1, 3, 0, 10)).unwrap();
    let mut theirs = known.clone();
    theirs.insert_checkpoint(cp(2, 5, 0, 11)).unwrap();
    let bytes = theirs.encode();
    assert_eq!(AuditHeads::decode_known(&bytes, &known).unwrap(), theirs);
    // A checkpoint that is not held is still verified: a bad signature on
    // the new one fails even though the rest is known.
    let mut tampered = bytes.clone();
    let last = tampered.len() - 5; // inside the last checkpoint's signature
    tampered[last] ^= 1;
    assert!(AuditHeads::decode_known(&tampered, &known).is_err());
    assert!(AuditHeads::decode(&tampered).is_err());
}
