//! A page of another node's log as a relay serves it, checked the way a
//! fetching node does: every move a relay can make on the entries, the
//! proofs or the checkpoint is caught and named by the entry it touched,
//! and an old or contradicting checkpoint is reported as such.

use ed25519_dalek::SigningKey;
use osmoda_crdt_state::merkle::leaf_hash;
use osmoda_crdt_state::verify::EntryFault;
use osmoda_crdt_state::{
    standing, verify_served, Actor, AuditEntry, Checkpoint, ForkEvidence, InclusionProof,
    MemoryLog, Outcome, Standing, VerifyError,
};

fn owner() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn entry(i: u64) -> AuditEntry {
    AuditEntry {
        seq: 0,
        time_ms: 1_700_000_000_000 + i,
        actor: Actor::Operator,
        action: "mesh.broadcast".into(),
        target: format!("entry {i}"),
        ring: 0,
        outcome: Outcome::Ok,
        details: String::new(),
    }
}

fn log(key: SigningKey, n: u64) -> MemoryLog {
    let mut log = MemoryLog::new(key);
    for i in 0..n {
        log.append(entry(i)).unwrap();
    }
    log
}

/// What an honest source sends for entries `start..start + count`.
struct Page {
    checkpoint: Checkpoint,
    start: u64,
    entries: Vec<Vec<u8>>,
    proofs: Vec<InclusionProof>,
}

fn serve(log: &MemoryLog, start: u64, count: u64) -> Page {
    let checkpoint = log.checkpoint(1);
    let end = (start + count).min(checkpoint.size);
    Page {
        start,
        entries: log.entries(start..end).unwrap().to_vec(),
        proofs: log.inclusion_proofs(start..end, checkpoint.size).unwrap(),
        checkpoint,
    }
}

fn check(page: &Page, wanted: u64) -> Result<(), VerifyError> {
    let node = owner().verifying_key().to_bytes();
    verify_served(
        &node,
        &page.checkpoint,
        page.start,
        wanted,
        &page.entries,
        &page.proofs,
    )
}

fn named(result: Result<(), VerifyError>) -> (u64, EntryFault) {
    match result {
        Err(VerifyError::Entry { seq, fault }) => (seq, fault),
        other => panic!("expected an entry to be named, got {other:?}"),
    }
}

#[test]
fn an_honest_page_verifies_and_so_does_its_end() {
    let log = log(owner(), 30);
    for (start, count) in [(0, 10), (5, 48), (29, 1), (30, 10), (0, 30)] {
        check(&serve(&log, start, count), count).unwrap();
    }
}

#[test]
fn every_flipped_byte_of_every_entry_is_named() {
    let log = log(owner(), 12);
    let honest = serve(&log, 3, 6);
    for k in 0..honest.entries.len() {
        for i in 0..honest.entries[k].len() {
            let mut page = serve(&log, 3, 6);
            page.entries[k][i] ^= 0x01;
            let (seq, _) = named(check(&page, 6));
            assert_eq!(seq, 3 + k as u64, "entry {k} byte {i}");
        }
    }
}

#[test]
fn a_flipped_proof_hash_is_named() {
    let log = log(owner(), 20);
    let mut page = serve(&log, 4, 8);
    page.proofs[2].path[0][5] ^= 0x80;
    assert!(matches!(
        named(check(&page, 8)),
        (6, EntryFault::NotIncluded(_))
    ));
}

#[test]
fn a_dropped_entry_is_named_where_it_was_left_out() {
    let log = log(owner(), 20);
    // In the middle, with its proof: the next entry stands in its place.
    let mut page = serve(&log, 0, 10);
    page.entries.remove(4);
    page.proofs.remove(4);
    assert_eq!(named(check(&page, 10)), (4, EntryFault::Sequence(5)));
    // At the end: the page stops short of what the checkpoint covers.
    let mut page = serve(&log, 0, 10);
    page.entries.pop();
    page.proofs.pop();
    assert_eq!(named(check(&page, 10)), (9, EntryFault::Missing));
    // Everything: a source that sends nothing for a covered range.
    let mut page = serve(&log, 5, 10);
    page.entries.clear();
    page.proofs.clear();
    assert_eq!(named(check(&page, 10)), (5, EntryFault::Missing));
}

#[test]
fn reordered_entries_are_named() {
    let log = log(owner(), 20);
    // Entries swapped, proofs left in place.
    let mut page = serve(&log, 0, 10);
    page.entries.swap(3, 6);
    assert_eq!(named(check(&page, 10)), (3, EntryFault::Sequence(6)));
    // Entries and their proofs swapped together.
    let mut page = serve(&log, 0, 10);
    page.entries.swap(3, 6);
    page.proofs.swap(3, 6);
    assert_eq!(named(check(&page, 10)).0, 3);
}

#[test]
fn a_proof_for_another_place_or_tree_is_named() {
    let log = log(owner(), 20);
    let mut page = serve(&log, 0, 10);
    page.proofs[7] = log.inclusion_proof(7, 19).unwrap();
    assert_eq!(
        named(check(&page, 10)),
        (
            7,
            EntryFault::ProofMismatch {
                leaf_index: 7,
                tree_size: 19
            }
        )
    );
}

#[test]
fn a_checkpoint_of_the_wrong_key_is_refused() {
    let log = log(owner(), 10);
    let mut page = serve(&log, 0, 10);
    // The same log, signed by the relay's own key.
    let relay = SigningKey::from_bytes(&[9; 32]);
    let cp = &page.checkpoint;
    page.checkpoint = Checkpoint::sign(&relay, cp.size, cp.root, cp.time_ms);
    assert_eq!(check(&page, 10), Err(VerifyError::NotOwner));
    // The owner's name on it, the relay's signature under it.
    let mut bytes = page.checkpoint.encode();
    bytes[1..33].copy_from_slice(&owner().verifying_key().to_bytes());
    page.checkpoint = Checkpoint::decode(&bytes).unwrap();
    assert!(matches!(check(&page, 10), Err(VerifyError::Checkpoint(_))));
}

#[test]
fn entries_of_a_forged_log_under_the_wrong_key_are_refused() {
    // A relay makes up a log and signs it with its own key.
    let forged = log(SigningKey::from_bytes(&[9; 32]), 10);
    assert_eq!(
        check(&serve(&forged, 0, 10), 10),
        Err(VerifyError::NotOwner)
    );
}

#[test]
fn a_stale_checkpoint_verifies_but_stands_behind_the_known_heads() {
    let mut log = log(owner(), 10);
    let old = serve(&log, 0, 48);
    for i in 10..25 {
        log.append(entry(i)).unwrap();
    }
    let newer = log.checkpoint(2);
    // The old page is true as far as it goes...
    check(&old, 48).unwrap();
    // ...but the fleet knows more.
    assert_eq!(
        standing(&old.checkpoint, std::slice::from_ref(&newer), None),
        Standing::Behind {
            known: newer.clone()
        }
    );
    // The newest is current, whatever older ones are known.
    assert_eq!(
        standing(&newer, std::slice::from_ref(&old.checkpoint), None),
        Standing::Current
    );
    assert_eq!(standing(&newer, &[], None), Standing::Current);
    // Another node's checkpoints say nothing about this log.
    let other = MemoryLog::new(SigningKey::from_bytes(&[8; 32])).checkpoint(1);
    assert_eq!(standing(&old.checkpoint, &[other], None), Standing::Current);
}

#[test]
fn a_checkpoint_that_contradicts_the_known_heads_is_a_fork() {
    let honest = log(owner(), 12);
    // The owner signed a second history: same start, a different entry 8.
    let mut other = MemoryLog::new(owner());
    for i in 0..12 {
        let mut e = entry(i);
        if i == 8 {
            e.target = "rewritten".into();
        }
        other.append(e).unwrap();
    }
    let known = honest.checkpoint(1);
    let served = other.checkpoint(2);
    // Same size, other root: caught from the checkpoints alone.
    let Standing::Fork(ev) = standing(&served, std::slice::from_ref(&known), None) else {
        panic!("same-size fork not reported");
    };
    assert!(matches!(ev, ForkEvidence::SameSize { .. }));
    ev.verify().unwrap();
    // A smaller known checkpoint, contradicted by the leaves of the served
    // log: caught when the whole log was fetched.
    let mut longer = MemoryLog::new(owner());
    for i in 0..20 {
        let mut e = entry(i);
        if i == 8 {
            e.target = "rewritten".into();
        }
        longer.append(e).unwrap();
    }
    let served = longer.checkpoint(3);
    let leaves: Vec<_> = longer
        .entries(0..20)
        .unwrap()
        .iter()
        .map(|e| leaf_hash(e))
        .collect();
    let Standing::Fork(ev) = standing(&served, std::slice::from_ref(&known), Some(&leaves)) else {
        panic!("inconsistent fork not reported");
    };
    assert!(matches!(ev, ForkEvidence::Inconsistent { .. }));
    ev.verify().unwrap();
    // The honest extension of the known checkpoint is no fork.
    let mut extended = log(owner(), 12);
    for i in 12..20 {
        extended.append(entry(i)).unwrap();
    }
    let served = extended.checkpoint(3);
    assert_eq!(
        standing(&served, &[known], Some(extended.leaves())),
        Standing::Current
    );
}
