//! The node bound, tested on states built directly: signing 100,000
//! checkpoints would test ed25519 rather than the bound.

use ed25519_dalek::SigningKey;

use super::*;

fn real() -> Checkpoint {
    Checkpoint::sign(&SigningKey::from_bytes(&[9; 32]), 1, [1; 32], 1)
}

/// A full state whose keys all start with `first`. The checkpoints carry a
/// signature for another key; the bound does not look at them.
fn full(first: u8) -> AuditHeads {
    let template = real();
    let nodes = (0..MAX_NODES as u64)
        .map(|i| {
            let mut key = [first; 32];
            key[24..].copy_from_slice(&i.to_be_bytes());
            let mut cp = template.clone();
            cp.node = key;
            let state = NodeState {
                recent: vec![cp],
                evidence: Vec::new(),
            };
            (key, state)
        })
        .collect();
    AuditHeads { nodes }
}

#[test]
fn a_full_state_keeps_the_smallest_keys() {
    let cp = real();
    assert!(
        cp.node[0] > 0x00 && cp.node[0] < 0xff,
        "test key in the middle"
    );

    // Every kept key is smaller: the newcomer is the one left out.
    let mut low = full(0x00);
    assert_eq!(
        low.insert_checkpoint(cp.clone()),
        Err(HeadsError::TooManyNodes)
    );
    assert_eq!(low.len(), MAX_NODES);
    assert!(low.head(&cp.node).is_none());

    // Every kept key is larger: the largest goes.
    let mut high = full(0xff);
    let largest = *high.nodes.keys().next_back().unwrap();
    assert!(high.insert_checkpoint(cp.clone()).unwrap().new_head);
    assert_eq!(high.len(), MAX_NODES);
    assert!(high.head(&largest).is_none());

    // Merge applies the same rule, in either order.
    let mut single = AuditHeads::new();
    single.insert_checkpoint(cp.clone()).unwrap();
    let mut a = full(0xff);
    a.merge(&single);
    let mut b = single.clone();
    b.merge(&full(0xff));
    assert_eq!(a, b);
    assert_eq!(a, high);
}

#[test]
fn the_encoding_limit_is_checked_first() {
    let big = vec![0u8; MAX_STATE_LEN + 1];
    assert_eq!(
        AuditHeads::decode(&big),
        Err(HeadsError::TooLarge(MAX_STATE_LEN + 1))
    );
    // A count that cannot fit in what follows is refused before any work.
    let mut lying = vec![STATE_VERSION];
    lying.extend_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(AuditHeads::decode(&lying), Err(HeadsError::Malformed));
}
