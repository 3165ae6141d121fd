//! A relay's answers as an attacker would shape them, from a real node log
//! over a real store: each move is caught, named by the entry it touched,
//! or reported (an old checkpoint, a fork), and no entry of a page that
//! fails is shown.

use ed25519_dalek::SigningKey;
use osmoda_crdt_state::{Actor, Checkpoint, EntryFault, MemoryLog, Outcome, Standing};
use osmoda_store::Store;

use super::*;
use crate::state::audit_log::AuditLog;

fn owner() -> SigningKey {
    SigningKey::from_bytes(&[11; 32])
}

fn key() -> NodeKey {
    owner().verifying_key().to_bytes()
}

/// A node's log of `n` entries over a store in `dir`.
async fn log_of(dir: &std::path::Path, n: u64) -> AuditLog {
    let store = Store::open(dir.join("state.redb")).unwrap();
    let log = AuditLog::open(&store, owner()).unwrap();
    for i in 0..n {
        log.record(
            Actor::Operator,
            "mesh.broadcast",
            &format!("entry {i}"),
            Outcome::Ok,
            "",
        )
        .await
        .unwrap();
    }
    log
}

/// What the owner serves for `start..start+count`, with proofs.
fn served(log: &AuditLog, start: u64, count: u32) -> Page {
    let s = log.serve_range(start, count, true).unwrap();
    Page {
        checkpoint: s.checkpoint,
        records: s.records,
        proofs: s.proofs,
    }
}

fn named(r: Result<(Vec<AuditEntryView>, Standing), VerifyError>) -> (u64, EntryFault) {
    match r {
        Err(VerifyError::Entry { seq, fault }) => (seq, fault),
        Err(other) => panic!("no entry named: {other}"),
        Ok(_) => panic!("a tampered page verified"),
    }
}

#[tokio::test]
async fn an_honest_page_is_shown_and_current() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_of(dir.path(), 30).await;
    let page = served(&log, 10, 10);
    let (entries, standing) = check_page(&key(), 10, 10, &page, &[]).unwrap();
    assert_eq!(entries.len(), 10);
    assert_eq!(entries[0].seq, 10);
    assert_eq!(entries[9].target, "entry 19");
    assert_eq!(standing, Standing::Current);
    // The owner's own checkpoint in the heads changes nothing.
    let (_, standing) = check_page(
        &key(),
        10,
        10,
        &page,
        std::slice::from_ref(&page.checkpoint),
    )
    .unwrap();
    assert_eq!(standing, Standing::Current);
}

#[tokio::test]
async fn a_relay_that_alters_drops_reorders_or_withholds_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_of(dir.path(), 30).await;
    // A byte of entry 13's body flipped (past its chain value).
    let mut page = served(&log, 10, 10);
    let last = page.records[3].len() - 1;
    page.records[3][last] ^= 0x20;
    assert_eq!(named(check_page(&key(), 10, 10, &page, &[])).0, 13);
    // The chain value alone changed: the entry is still the owner's.
    let mut page = served(&log, 10, 10);
    page.records[3][0] ^= 1;
    check_page(&key(), 10, 10, &page, &[]).unwrap();
    // Entry 15 dropped, with its proof.
    let mut page = served(&log, 10, 10);
    page.records.remove(5);
    page.proofs.remove(5);
    assert_eq!(
        named(check_page(&key(), 10, 10, &page, &[])),
        (15, EntryFault::Sequence(16))
    );
    // Entries 11 and 12 swapped, proofs and all.
    let mut page = served(&log, 10, 10);
    page.records.swap(1, 2);
    page.proofs.swap(1, 2);
    assert_eq!(named(check_page(&key(), 10, 10, &page, &[])).0, 11);
    // The last entry withheld.
    let mut page = served(&log, 10, 10);
    page.records.pop();
    page.proofs.pop();
    assert_eq!(
        named(check_page(&key(), 10, 10, &page, &[])),
        (19, EntryFault::Missing)
    );
    // No proofs at all.
    let mut page = served(&log, 10, 10);
    page.proofs.clear();
    assert!(check_page(&key(), 10, 10, &page, &[]).is_err());
    // A record cut short of a chain value.
    let mut page = served(&log, 10, 10);
    page.records[0].truncate(20);
    assert!(matches!(
        named(check_page(&key(), 10, 10, &page, &[])),
        (10, EntryFault::Decode(_))
    ));
}

#[tokio::test]
async fn a_checkpoint_signed_by_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_of(dir.path(), 12).await;
    let mut page = served(&log, 0, 12);
    let cp = &page.checkpoint;
    let relay = SigningKey::from_bytes(&[12; 32]);
    page.checkpoint = Checkpoint::sign(&relay, cp.size, cp.root, cp.time_ms);
    assert_eq!(
        check_page(&key(), 0, 12, &page, &[]).unwrap_err(),
        VerifyError::NotOwner
    );
}

#[tokio::test]
async fn a_stale_checkpoint_is_reported_behind_the_heads() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_of(dir.path(), 12).await;
    // What a relay kept when the log had 12 entries...
    let old = served(&log, 0, 48);
    for i in 12..20 {
        log.record(
            Actor::Operator,
            "mesh.broadcast",
            &format!("entry {i}"),
            Outcome::Ok,
            "",
        )
        .await
        .unwrap();
    }
    // ...while the fleet's heads hold the owner's newer checkpoint.
    let newer = log.signed_checkpoint();
    let (entries, standing) =
        check_page(&key(), 0, 48, &old, std::slice::from_ref(&newer)).unwrap();
    assert_eq!(entries.len(), 12);
    assert_eq!(standing, Standing::Behind { known: newer });
    let (fleet_size, fork, _) = standing_fields(&standing);
    assert_eq!((fleet_size, fork), (Some(20), None));
}

#[tokio::test]
async fn a_checkpoint_that_contradicts_the_heads_is_a_fork() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_of(dir.path(), 12).await;
    let page = served(&log, 0, 12);
    // The owner signed another history of the same size, which the heads hold.
    let mut other = MemoryLog::new(owner());
    for i in 0..12 {
        other
            .append(osmoda_crdt_state::AuditEntry {
                seq: 0,
                time_ms: i,
                actor: Actor::Operator,
                action: "mesh.broadcast".into(),
                target: "another story".into(),
                ring: 0,
                outcome: Outcome::Ok,
                details: String::new(),
            })
            .unwrap();
    }
    let known = other.checkpoint(1);
    let (_, standing) = check_page(&key(), 0, 12, &page, &[known]).unwrap();
    let (fleet_size, fork, evidence) = standing_fields(&standing);
    assert_eq!(fleet_size, None);
    assert!(fork.unwrap().contains("two different logs"));
    evidence.unwrap().verify().unwrap();
}
