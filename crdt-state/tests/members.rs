//! Audit heads admit only what members signed: keys ground by anyone else
//! change nothing, merge stays a join under the rule, and a member's fork
//! is still caught.

use std::collections::BTreeSet;

use ed25519_dalek::SigningKey;
use osmoda_crdt_state::heads::MAX_NODES;
use osmoda_crdt_state::merkle::leaf_hash;
use osmoda_crdt_state::{AuditHeads, Checkpoint, ForkEvidence, HeadsError, NodeKey};
use proptest::prelude::*;

fn key(node: u8) -> SigningKey {
    SigningKey::from_bytes(&[node.wrapping_add(1); 32])
}

fn node(n: u8) -> NodeKey {
    key(n).verifying_key().to_bytes()
}

fn cp(n: u8, size: u64, variant: u8, time: u64) -> Checkpoint {
    Checkpoint::sign(&key(n), size, leaf_hash(&[size as u8, variant]), time)
}

fn merged(a: &AuditHeads, b: &AuditHeads, is_member: &dyn Fn(&NodeKey) -> bool) -> AuditHeads {
    let mut out = a.clone();
    out.merge_members(b, is_member);
    out
}

/// The state encoding of some checkpoints, in the given order, as a relay
/// would send it (built by hand: no `AuditHeads` holds them).
fn encoded(cps: &[Checkpoint]) -> Vec<u8> {
    let mut out = vec![1u8];
    out.extend_from_slice(&(cps.len() as u32).to_be_bytes());
    for c in cps {
        out.extend_from_slice(&c.encode());
    }
    out.extend_from_slice(&0u32.to_be_bytes());
    out
}

#[test]
fn ten_thousand_throwaway_keys_change_nothing() {
    let honest = node(1);
    let members: BTreeSet<NodeKey> = [honest, node(2)].into();
    let is_member = |k: &NodeKey| members.contains(k);

    let mut heads = AuditHeads::new();
    heads
        .insert_member_checkpoint(cp(1, 10, 0, 1), is_member)
        .unwrap();
    let before = heads.clone();

    // 10,000 fresh keys, each with a validly signed checkpoint, and two
    // per key for some of them so that they would also "fork".
    let throwaway: Vec<Checkpoint> = (0..10_000u32)
        .map(|i| {
            let mut secret = [0xee; 32];
            secret[..4].copy_from_slice(&i.to_be_bytes());
            Checkpoint::sign(&SigningKey::from_bytes(&secret), 1, [i as u8; 32], 1)
        })
        .collect();
    assert!(
        throwaway.len() < MAX_NODES,
        "nothing would be evicted anyway"
    );
    for c in &throwaway[..100] {
        assert_eq!(
            heads.insert_member_checkpoint(c.clone(), is_member),
            Err(HeadsError::NotMember)
        );
    }
    let mut sorted = throwaway.clone();
    sorted.sort();
    let gossip = AuditHeads::decode_members(&encoded(&sorted), &heads, &is_member).unwrap();
    assert!(gossip.is_empty());
    assert!(!heads.merge_members(&gossip, is_member));
    assert_eq!(heads, before);

    // Mixed in with a member's fork (one side in each message), the
    // throwaways are skipped and the fork is flagged; the honest member's
    // head stays.
    let fork = [cp(2, 4, 0, 1), cp(2, 4, 1, 1)];
    for (half, side) in sorted.chunks(5_000).zip(&fork) {
        let mut mixed = half.to_vec();
        mixed.push(side.clone());
        mixed.sort();
        let gossip = AuditHeads::decode_members(&encoded(&mixed), &heads, &is_member).unwrap();
        assert_eq!(gossip.len(), 1);
        assert!(heads.merge_members(&gossip, is_member));
    }
    assert_eq!(heads.len(), 2);
    assert_eq!(heads.head(&honest), before.head(&honest));
    let forks: Vec<&NodeKey> = heads.forks().map(|(k, _)| k).collect();
    assert_eq!(forks, [&node(2)]);
    assert!(matches!(
        heads.evidence(&node(2))[0],
        ForkEvidence::SameSize { .. }
    ));

    // Merging a whole state that holds them (built without the rule, as
    // a malicious member would) admits none of them either.
    let mut flooded = AuditHeads::new();
    for c in throwaway.iter().take(2_000) {
        flooded.insert_checkpoint(c.clone()).unwrap();
    }
    let after = heads.clone();
    assert!(!heads.merge_members(&flooded, is_member));
    assert_eq!(heads, after);
}

#[test]
fn admitted_items_must_still_be_canonical() {
    let members: BTreeSet<NodeKey> = [node(1), node(2)].into();
    let is_member = |k: &NodeKey| members.contains(k);
    let mut a = vec![cp(1, 3, 0, 1), cp(2, 3, 0, 1)];
    a.sort();
    let known = AuditHeads::new();
    assert!(AuditHeads::decode_members(&encoded(&a), &known, &is_member).is_ok());
    a.reverse();
    assert_eq!(
        AuditHeads::decode_members(&encoded(&a), &known, &is_member),
        Err(HeadsError::NonCanonical)
    );
}

const NODES: u8 = 4;

/// Nodes 0 and 1 are members; 2 and 3 are not.
fn is_member(k: &NodeKey) -> bool {
    *k == node(0) || *k == node(1)
}

/// (node, size, root variant, which of three states receives it).
type Item = (u8, u64, u8, usize);

fn raw_states(items: &[Item]) -> [AuditHeads; 3] {
    let mut s = [AuditHeads::new(), AuditHeads::new(), AuditHeads::new()];
    // At most 8 distinct checkpoints per node: nothing is evicted, so the
    // laws hold exactly (see the module doc of `heads`).
    for (n, size, variant, i) in items {
        s[*i].insert_checkpoint(cp(*n, *size, *variant, 0)).unwrap();
    }
    s
}

fn admitted(raw: &AuditHeads) -> AuditHeads {
    let mut out = AuditHeads::new();
    out.merge_members(raw, is_member);
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn merge_under_the_member_rule_is_a_join(
        items in prop::collection::vec((0..NODES, 1..5u64, 0..2u8, 0..3usize), 0..30)
    ) {
        let raw = raw_states(&items);
        let [a, b, c] = raw.clone().map(|r| admitted(&r));
        let m = |x: &AuditHeads, y: &AuditHeads| merged(x, y, &is_member);
        let ab = m(&a, &b);
        prop_assert_eq!(&ab, &m(&b, &a));
        prop_assert_eq!(m(&ab, &c), m(&a, &m(&b, &c)));
        prop_assert_eq!(&m(&a, &a), &a);
        prop_assert_eq!(&m(&ab, &a), &ab);
        // Admitting is a homomorphism: merging raw states and admitting,
        // admitting and merging, or decoding with the rule agree.
        let all = m(&ab, &c);
        let mut raw_all = raw[0].clone();
        raw_all.merge(&raw[1]);
        raw_all.merge(&raw[2]);
        prop_assert_eq!(&admitted(&raw_all), &all);
        let decoded = AuditHeads::decode_members(&raw_all.encode(), &AuditHeads::new(), &is_member).unwrap();
        prop_assert_eq!(&decoded, &all);
        // No non-member is ever held, and members' forks are flagged as
        // without the rule.
        for n in 0..NODES {
            let k = node(n);
            if is_member(&k) {
                prop_assert_eq!(all.recent(&k), raw_all.recent(&k));
                prop_assert_eq!(all.evidence(&k), raw_all.evidence(&k));
            } else {
                prop_assert!(all.recent(&k).is_empty() && all.evidence(&k).is_empty());
            }
        }
    }
}
