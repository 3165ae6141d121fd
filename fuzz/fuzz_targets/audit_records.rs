//! Arbitrary bytes as the audit log's records: entries, checkpoints, fork
//! evidence, inclusion and consistency proofs, and audit-heads states.
//!
//! Every input goes to every decoder; what decodes must encode back to the
//! same bytes, and is then verified (and an `AuditHeads` merged into an
//! empty one and re-decoded). Inputs starting with `0xFF` also drive a
//! structured run, since random bytes never carry a valid signature: the
//! rest of the input picks checkpoints to sign, forks to build, logs to
//! tamper with and states to merge, and the laws of the crate are checked on
//! the result.
#![no_main]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use ed25519_dalek::SigningKey;
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use osmoda_crdt_state::heads::RECENT_PER_NODE;
use osmoda_crdt_state::merkle::empty_root;
use osmoda_crdt_state::{
    verify_log, verify_range, Actor, AuditEntry, AuditHeads, Checkpoint, ConsistencyProof,
    ForkEvidence, InclusionProof, MemoryLog, NodeKey, Outcome, VerifyError,
};

fuzz_target!(|data: &[u8]| {
    raw(data);
    if let Some((&0xFF, rest)) = data.split_first() {
        structured(rest);
    }
});

/// Every decoder on the raw bytes.
fn raw(data: &[u8]) {
    if let Ok(entry) = AuditEntry::decode(data) {
        assert_eq!(entry.encode().expect("a decoded entry encodes"), data);
        let mut log = MemoryLog::new(keys()[0].clone());
        if entry.seq == 0 {
            log.append_encoded(data).expect("entry 0 appends");
            log.verify(&log.checkpoint(1)).expect("own log verifies");
        } else {
            assert!(log.append_encoded(data).is_err(), "gap accepted");
        }
    }
    if let Ok(cp) = Checkpoint::decode(data) {
        assert_eq!(cp.encode(), data, "checkpoint decode and encode must agree");
        if cp.verify().is_ok() {
            AuditHeads::new()
                .insert_checkpoint(cp)
                .expect("a verified checkpoint is accepted");
        }
    }
    if let Ok(ev) = ForkEvidence::decode(data) {
        assert_eq!(ev.encode(), data, "evidence decode and encode must agree");
        let verified = ev.verify().is_ok();
        let mut heads = AuditHeads::new();
        assert_eq!(heads.insert_evidence(ev).is_ok(), verified);
    }
    if let Ok(p) = InclusionProof::decode(data) {
        assert_eq!(p.encode().expect("decoded path fits"), data);
        let _ = p.verify(&[0; 32], &[0; 32]);
    }
    if let Ok(p) = ConsistencyProof::decode(data) {
        assert_eq!(p.encode().expect("decoded path fits"), data);
        let _ = p.verify(&[0; 32], &[0; 32]);
    }
    if let Ok(heads) = AuditHeads::decode(data) {
        assert_eq!(heads.encode(), data, "decode accepts only canonical bytes");
        let mut merged = AuditHeads::new();
        merged.merge(&heads);
        assert_eq!(merged, heads, "merging into an empty state is the identity");
        let again = AuditHeads::decode(&merged.encode()).expect("a merged state re-decodes");
        assert_eq!(again, merged);
        for cp in heads.heads() {
            cp.verify()
                .expect("decoded heads hold verified checkpoints");
        }
        for (_, evs) in heads.forks() {
            for ev in evs {
                ev.verify().expect("decoded heads hold verified evidence");
            }
        }
    }
}

fn keys() -> &'static [SigningKey; 3] {
    static KEYS: OnceLock<[SigningKey; 3]> = OnceLock::new();
    KEYS.get_or_init(|| [1u8, 2, 3].map(|s| SigningKey::from_bytes(&[s; 32])))
}

fn pick(u: &mut Unstructured<'_>, max: u64) -> u64 {
    u.int_in_range(0..=max).unwrap_or(0)
}

fn byte(u: &mut Unstructured<'_>) -> u8 {
    u.arbitrary().unwrap_or(0)
}

/// A valid entry whose content the input picks (`seq` is set by the log).
fn entry(u: &mut Unstructured<'_>) -> AuditEntry {
    let actor = match pick(u, 3) {
        0 => Actor::Operator,
        1 => Actor::Agent(format!("agent-{}", byte(u))),
        2 => Actor::Peer([byte(u); 32]),
        _ => Actor::Node,
    };
    let outcome = match pick(u, 2) {
        0 => Outcome::Ok,
        1 => Outcome::Denied,
        _ => Outcome::Failed(format!("reason {}", byte(u))),
    };
    let len = pick(u, 24) as usize;
    let details = String::from_utf8_lossy(u.bytes(len).unwrap_or(&[])).into_owned();
    AuditEntry {
        seq: 0,
        time_ms: pick(u, u64::MAX),
        actor,
        action: "fuzz.op".into(),
        target: format!("t{}", byte(u)),
        ring: pick(u, 2) as u8,
        outcome,
        details,
    }
}

/// A log of `n` entries owned by `key`; `changed` alters one entry's content
/// (position, value) so that a second log forks from the first there.
fn build_log(key: &SigningKey, base: &[AuditEntry], changed: Option<(usize, u8)>) -> MemoryLog {
    let mut log = MemoryLog::new(key.clone());
    for (i, e) in base.iter().enumerate() {
        let mut e = e.clone();
        if let Some((at, v)) = changed {
            if at == i {
                e.target = format!("forked-{v}");
            }
        }
        log.append(e).expect("a valid entry appends");
    }
    log
}

struct Run {
    states: [AuditHeads; 3],
    /// Every checkpoint inserted anywhere.
    checkpoints: Vec<Checkpoint>,
    /// Nodes whose fork evidence was inserted directly.
    evidence_nodes: BTreeSet<NodeKey>,
}

impl Run {
    fn insert_cp(&mut self, side: usize, cp: Checkpoint) {
        self.states[side]
            .insert_checkpoint(cp.clone())
            .expect("a signed checkpoint is accepted");
        raw(&cp.encode());
        self.checkpoints.push(cp);
    }

    fn insert_ev(&mut self, side: usize, ev: ForkEvidence) {
        ev.verify().expect("built evidence verifies");
        let bytes = ev.encode();
        assert_eq!(ForkEvidence::decode(&bytes).as_ref(), Ok(&ev));
        raw(&bytes);
        self.evidence_nodes.insert(*ev.node());
        self.states[side]
            .insert_evidence(ev)
            .expect("verified evidence is accepted");
    }
}

fn structured(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut run = Run {
        states: [AuditHeads::new(), AuditHeads::new(), AuditHeads::new()],
        checkpoints: Vec::new(),
        evidence_nodes: BTreeSet::new(),
    };
    for _ in 0..pick(&mut u, 12) {
        let side = pick(&mut u, 2) as usize;
        let key = &keys()[pick(&mut u, 2) as usize];
        match pick(&mut u, 3) {
            0 => {
                let size = pick(&mut u, 6);
                let root = if size == 0 {
                    empty_root()
                } else {
                    [pick(&mut u, 2) as u8; 32]
                };
                let cp = Checkpoint::sign(key, size, root, pick(&mut u, 3));
                run.insert_cp(side, cp);
            }
            1 => {
                if run.checkpoints.is_empty() {
                    continue;
                }
                let n = run.checkpoints.len() as u64 - 1;
                let x = run.checkpoints[pick(&mut u, n) as usize].clone();
                let y = run.checkpoints[pick(&mut u, n) as usize].clone();
                if let Some(ev) = ForkEvidence::same_size(x, y) {
                    run.insert_ev(side, ev);
                }
            }
            2 => fork_from_logs(&mut u, &mut run, key, side),
            _ => tamper(&mut u, key),
        }
    }
    check_laws(&mut u, &run);
}

/// Two logs of one owner that differ in one entry: their checkpoints make
/// inconsistency evidence, and checkpoints of one log never do.
fn fork_from_logs(u: &mut Unstructured<'_>, run: &mut Run, key: &SigningKey, side: usize) {
    let n = 2 + pick(u, 6) as usize;
    let base: Vec<AuditEntry> = (0..n).map(|_| entry(u)).collect();
    let m = 1 + pick(u, n as u64 - 2);
    let at = pick(u, m - 1) as usize;
    let honest = build_log(key, &base, None);
    let forked = build_log(key, &base, Some((at, byte(u))));
    let time = pick(u, 3);
    let older = Checkpoint::sign(key, m, honest.root_at(m).expect("m <= n"), time);
    let newer = forked.checkpoint(time);
    assert!(
        ForkEvidence::inconsistent(&older, &honest.checkpoint(time), honest.leaves()).is_none(),
        "an honest log was flagged"
    );
    let proof = honest.consistency_proof(m, n as u64).expect("m <= n");
    let bytes = proof.encode().expect("short path");
    assert_eq!(ConsistencyProof::decode(&bytes).as_ref(), Ok(&proof));
    raw(&bytes);
    proof
        .verify(&older.root, &honest.root())
        .expect("an honest consistency proof verifies");
    assert!(
        proof.verify(&older.root, &forked.root()).is_err(),
        "a fork passed a consistency proof"
    );
    let ev = ForkEvidence::inconsistent(&older, &newer, forked.leaves())
        .expect("a forked log is caught");
    run.insert_cp(side, older);
    run.insert_cp(pick(u, 2) as usize, newer);
    run.insert_ev(side, ev);
}

/// A log whose stored entries are altered: the verifiers must name the
/// first altered entry.
fn tamper(u: &mut Unstructured<'_>, key: &SigningKey) {
    let n = 1 + pick(u, 5) as usize;
    let base: Vec<AuditEntry> = (0..n).map(|_| entry(u)).collect();
    let log = build_log(key, &base, None);
    let cp = log.checkpoint(pick(u, 3));
    let mut entries: Vec<Vec<u8>> = log.entries(0..n as u64).expect("in range").to_vec();
    verify_log(&cp, &entries, Some(log.chain())).expect("an intact log verifies");
    raw(&entries[0]);
    let start = pick(u, n as u64 - 1);
    let proofs: Vec<InclusionProof> = (start..n as u64)
        .map(|s| {
            let p = log.inclusion_proof(s, n as u64).expect("in range");
            let bytes = p.encode().expect("short path");
            assert_eq!(InclusionProof::decode(&bytes).as_ref(), Ok(&p));
            raw(&bytes);
            p
        })
        .collect();
    verify_range(&cp, start, &entries[start as usize..], &proofs)
        .expect("an intact range verifies");

    let at = pick(u, n as u64 - 1) as usize;
    let len = entries[at].len();
    let pos = pick(u, len as u64 - 1) as usize;
    let x = u.int_in_range(1..=255u8).unwrap_or(1);
    if pick(u, 3) == 0 {
        entries[at].truncate(pos);
    } else {
        entries[at][pos] ^= x;
    }
    raw(&entries[at]);
    let names_at = |r: Result<(), VerifyError>, what: &str| match r {
        Err(VerifyError::Entry { seq, .. }) => {
            assert_eq!(seq, at as u64, "{what} named the wrong entry")
        }
        other => panic!("{what} missed an altered entry {at}: {other:?}"),
    };
    names_at(verify_log(&cp, &entries, Some(log.chain())), "verify_log");
    assert!(
        verify_log(&cp, &entries, None).is_err(),
        "verify_log without chain"
    );
    if at as u64 >= start {
        names_at(
            verify_range(&cp, start, &entries[start as usize..], &proofs),
            "verify_range",
        );
    }
}

fn flagged(s: &AuditHeads) -> BTreeSet<NodeKey> {
    s.forks().map(|(k, _)| *k).collect()
}

fn check_laws(u: &mut Unstructured<'_>, run: &Run) {
    let [a, b, c] = &run.states;
    let join = |x: &AuditHeads, y: &AuditHeads| {
        let mut z = x.clone();
        z.merge(y);
        z
    };
    let ab = join(a, b);
    assert_eq!(ab, join(b, a), "merge must commute");
    let mut again = ab.clone();
    assert!(
        !again.merge(a) && !again.merge(b),
        "merge must be idempotent"
    );
    assert_eq!(again, ab);
    for s in [a, b] {
        for (node, evs) in s.forks() {
            assert!(
                !evs.is_empty() && !ab.evidence(node).is_empty(),
                "evidence lost"
            );
        }
    }

    // Within the bounds, merge is associative and flags exactly the forks.
    let abc = join(&ab, c);
    let mut distinct: Vec<&Checkpoint> = run.checkpoints.iter().collect();
    distinct.sort();
    distinct.dedup();
    let within = keys().iter().all(|k| {
        let node = k.verifying_key().to_bytes();
        distinct.iter().filter(|cp| cp.node == node).count() <= RECENT_PER_NODE
    });
    if within {
        assert_eq!(abc, join(a, &join(b, c)), "merge must be associative");
        let mut expected = run.evidence_nodes.clone();
        for x in &distinct {
            for y in &distinct {
                if x.node == y.node && x.size == y.size && x.root != y.root {
                    expected.insert(x.node);
                }
            }
        }
        assert_eq!(flagged(&abc), expected, "forks flagged");
        assert_eq!(flagged(&join(c, &join(b, a))), expected);
    }

    // Encodings: whole, in chunks, and altered.
    for s in [a, b, c, &abc] {
        let bytes = s.encode();
        assert_eq!(
            AuditHeads::decode(&bytes).as_ref(),
            Ok(s),
            "state round trip"
        );
        raw(&bytes);
        let max = 9 + pick(u, 4000) as usize;
        let mut rebuilt = AuditHeads::new();
        for chunk in s.encode_chunks(max) {
            let part = AuditHeads::decode(&chunk).expect("a chunk decodes");
            rebuilt.merge(&part);
        }
        assert_eq!(&rebuilt, s, "chunks rebuild the state");
    }
    let mut bytes = abc.encode();
    let pos = pick(u, bytes.len() as u64 - 1) as usize;
    bytes[pos] ^= u.int_in_range(1..=255u8).unwrap_or(1);
    if let Ok(s) = AuditHeads::decode(&bytes) {
        assert_eq!(
            s.encode(),
            bytes,
            "an altered state decoded non-canonically"
        );
    }
    raw(&bytes);
}
