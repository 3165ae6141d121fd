//! MemoryLog and the verifiers: proofs from a live log, replay from storage,
//! and tampering that must be pinned to the entry that changed.

use ed25519_dalek::SigningKey;
use osmoda_crdt_state::merkle::root_of;
use osmoda_crdt_state::verify::EntryFault;
use osmoda_crdt_state::{
    verify_log, verify_range, Actor, AuditEntry, AuditHeads, Checkpoint, ForkEvidence,
    InclusionProof, LogError, MemoryLog, Outcome, VerifyError,
};

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn entry(i: u64) -> AuditEntry {
    AuditEntry {
        seq: 999, // replaced by the log
        time_ms: 1_700_000_000_000 + i,
        actor: match i % 4 {
            0 => Actor::Operator,
            1 => Actor::Agent(format!("agent-{i}")),
            2 => Actor::Peer([i as u8; 32]),
            _ => Actor::Node,
        },
        action: "knowledge.put".into(),
        target: format!("notes/{i}"),
        ring: (i % 3) as u8,
        outcome: if i.is_multiple_of(5) {
            Outcome::Failed("disk full".into())
        } else {
            Outcome::Ok
        },
        details: "x".repeat(i as usize % 40),
    }
}

fn log(n: u64) -> MemoryLog {
    let mut log = MemoryLog::new(key());
    for i in 0..n {
        assert_eq!(log.append(entry(i)).unwrap(), i);
    }
    log
}

#[test]
fn roots_proofs_and_checkpoints_agree() {
    let log = log(40);
    assert_eq!(log.root(), root_of(log.leaves()));
    let cps: Vec<Checkpoint> = (0..=40)
        .map(|size| Checkpoint::sign(&key(), size, log.root_at(size).unwrap(), size))
        .collect();
    for size in 0..=40u64 {
        for seq in 0..size {
            let proof = log.inclusion_proof(seq, size).unwrap();
            proof
                .verify(&log.leaves()[seq as usize], &cps[size as usize].root)
                .unwrap();
        }
        for m in 0..=size {
            log.consistency_proof(m, size)
                .unwrap()
                .verify(&cps[m as usize].root, &cps[size as usize].root)
                .unwrap();
        }
        log.verify(&cps[size as usize]).unwrap();
    }
    assert!(matches!(
        log.inclusion_proof(3, 41),
        Err(LogError::OutOfRange { .. })
    ));
    assert!(log.entries(5..41).is_err());
    assert_eq!(log.entry(7).unwrap().seq, 7);
    let cp = log.checkpoint(123);
    assert_eq!((cp.size, cp.root, cp.node), (40, log.root(), log.owner()));
}

#[test]
fn replay_from_storage_rebuilds_the_same_log() {
    let original = log(25);
    let mut replayed = MemoryLog::new(key());
    for bytes in original.entries(0..25).unwrap() {
        replayed.append_encoded(bytes).unwrap();
    }
    assert_eq!(replayed.root(), original.root());
    assert_eq!(replayed.chain(), original.chain());
    assert_eq!(replayed.chain_head(), original.chain_head());
    // A gap or a repeat is refused.
    let again = original.entries(24..25).unwrap()[0].clone();
    assert_eq!(
        replayed.append_encoded(&again),
        Err(LogError::Sequence {
            expected: 25,
            found: 24
        })
    );
}

#[test]
fn a_flipped_byte_in_any_stored_entry_is_named() {
    let log = log(24);
    let cp = log.checkpoint(1);
    let entries = log.entries(0..24).unwrap().to_vec();
    let chain = log.chain().to_vec();
    verify_log(&cp, &entries, Some(&chain)).unwrap();
    verify_log(&cp, &entries, None).unwrap();
    for seq in 0..24u64 {
        for byte in 0..entries[seq as usize].len() {
            let mut tampered = entries.clone();
            tampered[seq as usize][byte] ^= 0x01;
            match verify_log(&cp, &tampered, Some(&chain)) {
                Err(VerifyError::Entry { seq: named, .. }) => {
                    assert_eq!(named, seq, "byte {byte}")
                }
                other => panic!("entry {seq} byte {byte}: {other:?}"),
            }
            // Without the chain, the change is still caught (maybe not located).
            match verify_log(&cp, &tampered, None) {
                Err(VerifyError::Entry { seq: named, .. }) => assert_eq!(named, seq),
                Err(VerifyError::RootMismatch) => {}
                other => panic!("entry {seq} byte {byte}: {other:?}"),
            }
        }
    }
    // A missing entry, and a changed chain value, are named too.
    let mut short = entries.clone();
    short.remove(10);
    assert!(matches!(
        verify_log(&cp, &short, None),
        Err(VerifyError::SizeMismatch { .. })
    ));
    let mut bad_chain = chain.clone();
    bad_chain[17][0] ^= 1;
    assert_eq!(
        verify_log(&cp, &entries, Some(&bad_chain)),
        Err(VerifyError::Entry {
            seq: 17,
            fault: EntryFault::ChainBreak
        })
    );
}

#[test]
fn a_range_is_checked_entry_by_entry() {
    let log = log(30);
    let cp = log.checkpoint(9);
    let (start, end) = (11u64, 23u64);
    let entries = log.entries(start..end).unwrap().to_vec();
    let proofs: Vec<InclusionProof> = (start..end)
        .map(|seq| log.inclusion_proof(seq, 30).unwrap())
        .collect();
    verify_range(&cp, start, &entries, &proofs).unwrap();
    verify_range(&cp, 30, &Vec::<Vec<u8>>::new(), &[]).unwrap();
    for k in 0..entries.len() {
        let seq = start + k as u64;
        for byte in 0..entries[k].len() {
            let mut tampered = entries.clone();
            tampered[k][byte] ^= 0x10;
            match verify_range(&cp, start, &tampered, &proofs) {
                Err(VerifyError::Entry { seq: named, .. }) => assert_eq!(named, seq),
                other => panic!("entry {seq} byte {byte}: {other:?}"),
            }
        }
        let mut bad = proofs.clone();
        bad[k].path[0][3] ^= 1;
        assert!(matches!(
            verify_range(&cp, start, &entries, &bad),
            Err(VerifyError::Entry { seq: named, fault: EntryFault::NotIncluded(_) }) if named == seq
        ));
        let other = (k + 1) % proofs.len();
        let mut swapped = proofs.clone();
        swapped.swap(k, other);
        let first = start + k.min(other) as u64;
        assert!(matches!(
            verify_range(&cp, start, &entries, &swapped),
            Err(VerifyError::Entry { seq: named, fault: EntryFault::ProofMismatch { .. } }) if named == first
        ));
    }
    assert!(matches!(
        verify_range(&cp, 25, &entries, &proofs),
        Err(VerifyError::OutOfRange { .. })
    ));
    assert!(matches!(
        verify_range(&cp, u64::MAX, &entries, &proofs),
        Err(VerifyError::OutOfRange { .. })
    ));
    assert!(matches!(
        verify_range(&cp, start, &entries, &proofs[1..]),
        Err(VerifyError::CountMismatch { .. })
    ));
}

#[test]
fn a_tampered_checkpoint_fails_every_verifier() {
    let log = log(12);
    let bytes = log.checkpoint(5).encode();
    let entries = log.entries(0..12).unwrap();
    let proofs: Vec<_> = (0..12)
        .map(|s| log.inclusion_proof(s, 12).unwrap())
        .collect();
    for i in 0..bytes.len() {
        let mut b = bytes;
        b[i] ^= 0x02;
        let Ok(cp) = Checkpoint::decode(&b) else {
            continue;
        };
        assert!(
            verify_log(&cp, entries, Some(log.chain())).is_err(),
            "byte {i}"
        );
        assert!(verify_range(&cp, 0, entries, &proofs).is_err(), "byte {i}");
    }
}

#[test]
fn a_node_that_rewrites_history_is_caught() {
    // The same key signs a checkpoint of one history, then of another that
    // changed entry 2 and grew: a fetcher holding the new entries proves it.
    let honest = log(5);
    let older = honest.checkpoint(100);
    let mut forked = MemoryLog::new(key());
    for i in 0..9 {
        let mut e = entry(i);
        if i == 2 {
            e.outcome = Outcome::Denied;
        }
        forked.append(e).unwrap();
    }
    let newer = forked.checkpoint(200);
    forked.verify(&newer).unwrap();
    let ev = ForkEvidence::inconsistent(&older, &newer, forked.leaves()).unwrap();
    let mut heads = AuditHeads::new();
    heads.insert_checkpoint(older.clone()).unwrap();
    heads.insert_checkpoint(newer.clone()).unwrap();
    assert_eq!(heads.forks().count(), 0, "different sizes: no proof yet");
    assert_eq!(heads.insert_evidence(ev).unwrap().new_evidence.len(), 1);
    assert_eq!(heads.forks().next().unwrap().0, &honest.owner());
    // The honest continuation yields no evidence.
    let grown = log(9);
    assert!(ForkEvidence::inconsistent(&older, &grown.checkpoint(300), grown.leaves()).is_none());
}
