//! Every decoder on random and on mutated valid input: no panics, and
//! whatever decodes re-encodes to exactly the same bytes.

use std::sync::OnceLock;

use ed25519_dalek::SigningKey;
use osmoda_crdt_state::merkle::{leaf_hash, root_of};
use osmoda_crdt_state::{
    AuditEntry, AuditHeads, Checkpoint, ConsistencyProof, ForkEvidence, Hash, InclusionProof,
    MemoryLog,
};
use proptest::prelude::*;

/// Runs every decoder over `bytes`, checking exactness where one succeeds.
fn decode_all(bytes: &[u8]) {
    if let Ok(e) = AuditEntry::decode(bytes) {
        assert_eq!(e.encode().unwrap(), bytes);
    }
    if let Ok(c) = Checkpoint::decode(bytes) {
        assert_eq!(&c.encode()[..], bytes);
        let _ = c.verify();
    }
    if let Ok(e) = ForkEvidence::decode(bytes) {
        assert_eq!(e.encode(), bytes);
        let _ = e.verify();
    }
    if let Ok(p) = InclusionProof::decode(bytes) {
        assert_eq!(p.encode().unwrap(), bytes);
        let _ = p.verify(&[0; 32], &[0; 32]);
    }
    if let Ok(p) = ConsistencyProof::decode(bytes) {
        assert_eq!(p.encode().unwrap(), bytes);
        let _ = p.verify(&[0; 32], &[0; 32]);
    }
    if let Ok(h) = AuditHeads::decode(bytes) {
        assert_eq!(h.encode(), bytes);
    }
}

/// One valid encoding of every format, to mutate (made once: signing is slow).
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(make_seeds)
}

fn make_seeds() -> Vec<Vec<u8>> {
    let key = SigningKey::from_bytes(&[5; 32]);
    let mut log = MemoryLog::new(key.clone());
    let mut out = Vec::new();
    for i in 0..6u64 {
        let e = AuditEntry {
            seq: i,
            time_ms: i,
            actor: osmoda_crdt_state::Actor::Agent("a".into()),
            action: "knowledge.put".into(),
            target: "t".into(),
            ring: 0,
            outcome: osmoda_crdt_state::Outcome::Failed("r".into()),
            details: "d".into(),
        };
        log.append(e).unwrap();
    }
    out.push(log.entries(3..4).unwrap()[0].clone());
    let cp = log.checkpoint(7);
    out.push(cp.encode().to_vec());
    out.push(log.inclusion_proof(2, 6).unwrap().encode().unwrap());
    out.push(log.consistency_proof(3, 6).unwrap().encode().unwrap());
    let leaves: Vec<Hash> = (0..9u8).map(|i| leaf_hash(&[i])).collect();
    let older = Checkpoint::sign(&key, 4, [1; 32], 1);
    let newer = Checkpoint::sign(&key, 9, root_of(&leaves), 2);
    let ev = ForkEvidence::inconsistent(&older, &newer, &leaves).unwrap();
    out.push(ev.encode());
    let mut heads = AuditHeads::new();
    heads.insert_checkpoint(cp).unwrap();
    heads.insert_evidence(ev).unwrap();
    out.push(heads.encode());
    out
}

#[test]
fn seeds_decode() {
    for s in seeds() {
        decode_all(s);
    }
}

proptest! {
    // Integration tests have no lib.rs for proptest to persist failures beside.
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..3000)) {
        decode_all(&bytes);
    }

    #[test]
    fn random_bytes_after_a_valid_prefix_never_panic(
        which in 0..6usize,
        version in 0..3u8,
        tail in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        // Random bytes behind a right version (and kind) byte reach the
        // deeper parsing paths that fully random input rarely gets to.
        let mut bytes = seeds()[which][..2].to_vec();
        bytes[0] = version;
        bytes.extend_from_slice(&tail);
        decode_all(&bytes);
    }

    #[test]
    fn mutated_valid_encodings_never_panic(
        which in 0..6usize,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..6),
    ) {
        let mut bytes = seeds()[which].clone();
        for (at, value, op) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = value,
                1 => { bytes.remove(i); }
                _ => bytes.insert(i, value),
            }
        }
        decode_all(&bytes);
    }
}
