//! The invariants checked after quiescence (definitions in `report.rs`),
//! over the honest nodes: rogue ones are left out.

use std::collections::{BTreeMap, HashSet};

use crate::metrics::FinishInput;
use crate::report::{Incident, Invariant, RogueSummary};

/// An acknowledged durable op, as the recorder saw it.
pub(crate) struct AckedOp {
    pub id: u64,
    pub kind: &'static str,
    pub node: usize,
    pub acked_ms: f64,
    pub lost_with_disk: bool,
    /// Nodes the polls saw holding it (used when `verify` failed).
    pub held_by: Vec<usize>,
}

fn hex(d: &[u8; 16]) -> String {
    d.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

fn list(nodes: &[usize]) -> String {
    const SHOWN: usize = 10;
    let mut s: Vec<String> = nodes.iter().take(SHOWN).map(usize::to_string).collect();
    if nodes.len() > SHOWN {
        s.push(format!("... ({} more)", nodes.len() - SHOWN));
    }
    s.join(", ")
}

/// `rogue[n]`: node `n` is rogue at some point (its length is the fleet's).
pub(crate) fn check(
    ops: &[AckedOp],
    input: &FinishInput,
    incidents: &[Incident],
    rogue: &[bool],
    attempts: &RogueSummary,
) -> Vec<Invariant> {
    let honest: Vec<usize> = (0..rogue.len()).filter(|&n| !rogue[n]).collect();
    let live: Vec<usize> = honest
        .iter()
        .copied()
        .filter(|&n| input.nodes.get(n).is_some_and(|f| f.live))
        .collect();
    vec![
        Invariant::new("no-divergence", divergence(input, &honest)),
        Invariant::new("no-acked-op-lost", lost(ops, input, &live)),
        Invariant::new("audit-verifies", audit(input, &live)),
        Invariant::new("forks-detected", forks(input, &live)),
        Invariant::new(
            "schedule-followed",
            incidents.iter().map(|i| i.what.clone()).collect(),
        ),
        Invariant::new("rogue-refused", rogue_refused(input, &live, attempts)),
    ]
}

/// Every attempt of a rogue node refused by the fleet's verdict, and
/// nothing a rogue node wrote on an honest node.
fn rogue_refused(input: &FinishInput, live: &[usize], attempts: &RogueSummary) -> Vec<String> {
    let mut out: Vec<String> = attempts
        .by_attack
        .iter()
        .filter(|(_, c)| c.accepted > 0)
        .map(|(attack, c)| {
            format!(
                "{} of {} {} attempts accepted by the fleet's verdict",
                c.accepted,
                c.sent,
                attack.as_str()
            )
        })
        .collect();
    for &n in live {
        if let Some(Ok(v)) = input.nodes.get(n).and_then(|f| f.verify.as_ref()) {
            out.extend(
                v.rogue_held
                    .iter()
                    .map(|what| format!("node {n} holds {what}")),
            );
        }
    }
    out
}

fn divergence(input: &FinishInput, honest: &[usize]) -> Vec<String> {
    let mut out = Vec::new();
    // Digest pair -> nodes with it.
    let mut groups: BTreeMap<([u8; 16], [u8; 16]), Vec<usize>> = BTreeMap::new();
    for &n in honest {
        match input.nodes.get(n) {
            Some(f) if f.live => match &f.observation {
                Some(o) => groups
                    .entry((o.state_digest, o.audit_heads_digest))
                    .or_default()
                    .push(n),
                None => out.push(format!("node {n} is live but reported no observation")),
            },
            _ => out.push(format!("node {n} is down at the end")),
        }
    }
    if groups.len() > 1 {
        let mut sorted: Vec<_> = groups.into_iter().collect();
        sorted.sort_by_key(|(_, members)| std::cmp::Reverse(members.len()));
        for ((state, audit), members) in sorted {
            out.push(format!(
                "state {} audit-heads {}: nodes {}",
                hex(&state),
                hex(&audit),
                list(&members)
            ));
        }
    }
    out
}

fn lost(ops: &[AckedOp], input: &FinishInput, live: &[usize]) -> Vec<String> {
    // Each live node's complete holdings from `verify`, or `None` to fall
    // back on what the polls saw.
    let held: Vec<Option<HashSet<u64>>> = (0..input.nodes.len())
        .map(
            |n| match input.nodes.get(n).and_then(|f| f.verify.as_ref()) {
                Some(Ok(v)) => Some(v.held_ops.iter().copied().collect()),
                _ => None,
            },
        )
        .collect();
    let mut out = Vec::new();
    for op in ops.iter().filter(|o| !o.lost_with_disk) {
        let missing: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&n| match held.get(n) {
                Some(Some(set)) => !set.contains(&op.id),
                _ => !op.held_by.contains(&n),
            })
            .collect();
        if !missing.is_empty() {
            out.push(format!(
                "op {} ({}, acked by node {} at {:.1} s) missing on {} of {} nodes: {}",
                op.id,
                op.kind,
                op.node,
                op.acked_ms / 1e3,
                missing.len(),
                live.len(),
                list(&missing)
            ));
        }
    }
    out
}

fn audit(input: &FinishInput, live: &[usize]) -> Vec<String> {
    let mut out = Vec::new();
    for &n in live {
        match input.nodes.get(n).and_then(|f| f.verify.as_ref()) {
            None => out.push(format!("node {n}: not verified")),
            Some(Err(e)) => out.push(format!("node {n}: verify failed: {e}")),
            Some(Ok(v)) if !v.audit_ok => {
                let why = if v.audit_errors.is_empty() {
                    "no detail".to_string()
                } else {
                    v.audit_errors.join("; ")
                };
                out.push(format!("node {n}: audit log does not verify: {why}"));
            }
            Some(Ok(_)) => {}
        }
    }
    out
}

fn forks(input: &FinishInput, live: &[usize]) -> Vec<String> {
    let known: Vec<(usize, usize)> = live
        .iter()
        .filter_map(
            |&n| match input.nodes.get(n).and_then(|f| f.verify.as_ref()) {
                Some(Ok(v)) => Some((n, v.forks_detected)),
                _ => None,
            },
        )
        .collect();
    let expected = input
        .expected_forks
        .unwrap_or_else(|| known.iter().map(|&(_, k)| k).max().unwrap_or(0));
    known
        .into_iter()
        .filter(|&(_, k)| k != expected)
        .map(|(n, k)| format!("node {n} knows {k} forks, expected {expected}"))
        .collect()
}
