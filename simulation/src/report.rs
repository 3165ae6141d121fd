//! The outcome of a run: dissemination, convergence, cost, invariants.
//!
//! Definitions (all times in milliseconds from the start of the clock, which
//! is when every initial node's `start` has returned):
//! - Dissemination of an op: from its acknowledgement to the first poll at
//!   which a node is seen holding it, over the op's *targets*: the nodes
//!   live when it was acknowledged. `all` is when the last target has it,
//!   `p99_nodes` when 99% of them (rounded up) have it; an op some target
//!   never got within the run counts as incomplete. Resolution: one poll
//!   (`observe_every`, 50 ms by default).
//! - Dissemination is summarised per op kind, because the kinds travel at
//!   speeds orders of magnitude apart (a knowledge write is pushed at once;
//!   an audit append is seen through its node's next checkpoint, every
//!   5 s). In `report.json`, `dissemination_by_kind` maps each kind that
//!   had ops in the run (`knowledge-put`, `audit-append`, `routine-add`,
//!   `broadcast`) to a `Dissemination`: `acked` (its acknowledged ops),
//!   `all` and `p99_nodes` (`Percentiles` in ms: `count`, `p50_ms`,
//!   `p95_ms`, `p99_ms`, `max_ms`, over the ops that got that far) and
//!   `incomplete` (acknowledged ops some target never held).
//!   `dissemination` is the same over every kind together, kept for
//!   totals; its percentiles mix the kinds' speeds.
//! - Convergence after a fault: from the fault's last event (heal, restart,
//!   join, stall end, revert) to the first poll at which all live nodes
//!   have the same state and audit-heads digests; `None` if that never
//!   happened before the end of the run. `caught_up_after_ms`: from the
//!   same instant until every durable op acknowledged before it is held by
//!   every live node. The `quiescence` entry measures both from the end of
//!   the fault window.
//! - Invariants, checked after quiescence (`passed()` needs all of them):
//!   `no-divergence` (every node is live and all have equal digests),
//!   `no-acked-op-lost` (every acknowledged durable op is held by every
//!   node, as it was written: a fleet reports an entry that was since
//!   edited or deleted as not held,
//!   except ops *lost with a disk*: at some point every node holding the op
//!   was one that then crashed with `lose_disk`, e.g. acknowledged by a node
//!   that lost its disk before any other node was seen holding it; holding
//!   is what the polls saw, refreshed just before each crash),
//!   `audit-verifies` (every node's `verify` succeeded and its audit logs
//!   verify), `forks-detected` (every node knows the forks the fleet
//!   injected, or as many as any node knows), `schedule-followed` (every
//!   start, crash and verify the schedule asked for succeeded, and every
//!   rogue fault made at least one attempt), `rogue-refused` (no attempt of
//!   a rogue node was accepted by the verdict of the fleet's rules, and no
//!   node holds anything a rogue node wrote).
//! - Rogue nodes (`rogue` faults) are left out of all of this: ops are
//!   never placed on them, dissemination and convergence are measured
//!   over the other live nodes, and every invariant is checked over those
//!   honest nodes. `rogue` counts their attempts per move (`AttackCount`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Serialize;

use crate::fleet::{Attack, OpKind};

/// Nearest-rank summary of a set of durations (ms).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// The nearest-rank `p`-th percentile (0 < p <= 100) of sorted values: the
/// smallest value with at least p% of the values at or below it.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

impl Percentiles {
    pub fn of(values: &[f64]) -> Percentiles {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        Percentiles {
            count: v.len(),
            p50_ms: percentile(&v, 50.0),
            p95_ms: percentile(&v, 95.0),
            p99_ms: percentile(&v, 99.0),
            max_ms: v.last().copied(),
        }
    }
}

/// One workload op.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpRecord {
    pub id: u64,
    pub kind: OpKind,
    pub node: usize,
    pub scheduled_ms: f64,
    pub acked_ms: Option<f64>,
    /// Why it was not acknowledged (refused, or its node was down).
    pub error: Option<String>,
    pub targets: usize,
    pub reached: usize,
    pub all_ms: Option<f64>,
    pub p99_nodes_ms: Option<f64>,
    pub lost_with_disk: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OpsSummary {
    pub scheduled: usize,
    pub acked: usize,
    pub rejected: usize,
    /// Arrivals the schedule dropped (no live node) plus ops whose node was
    /// down when their time came (its start had failed).
    pub skipped: usize,
    pub lost_with_disk: usize,
}

/// Dissemination of a group of ops (one kind, or all of them).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Dissemination {
    /// Acknowledged ops in the group: the ones measured.
    pub acked: usize,
    /// Time until every target node holds the op (complete ops only).
    pub all: Percentiles,
    /// Time until 99% of the target nodes hold it (ops that got there).
    pub p99_nodes: Percentiles,
    /// Acknowledged ops that some target never held.
    pub incomplete: usize,
}

impl Dissemination {
    /// Over the acknowledged ops among `records`.
    pub fn of<'a>(records: impl IntoIterator<Item = &'a OpRecord>) -> Dissemination {
        let acked: Vec<&OpRecord> = records
            .into_iter()
            .filter(|r| r.acked_ms.is_some())
            .collect();
        let all: Vec<f64> = acked.iter().filter_map(|r| r.all_ms).collect();
        let p99: Vec<f64> = acked.iter().filter_map(|r| r.p99_nodes_ms).collect();
        Dissemination {
            acked: acked.len(),
            all: Percentiles::of(&all),
            p99_nodes: Percentiles::of(&p99),
            incomplete: acked.len() - all.len(),
        }
    }

    /// One entry per kind with at least one op in `records` (acknowledged
    /// or not, so that a kind whose every op failed still shows).
    pub fn by_kind(records: &[OpRecord]) -> BTreeMap<OpKind, Dissemination> {
        let mut kinds: Vec<OpKind> = records.iter().map(|r| r.kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        kinds
            .into_iter()
            .map(|k| (k, Dissemination::of(records.iter().filter(|r| r.kind == k))))
            .collect()
    }
}

/// Convergence after one fault.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultConvergence {
    /// Index in the scenario's `faults`; `None` for the quiescence entry.
    pub fault: Option<usize>,
    pub kind: String,
    pub start_ms: Option<f64>,
    pub end_ms: Option<f64>,
    pub converged_after_ms: Option<f64>,
    /// From the same instant until every durable op acknowledged before it
    /// was seen on every live node (ops lost with a disk excepted). Unlike
    /// `converged_after_ms` it does not need a moment with no write in
    /// flight, so it stays meaningful under a steady workload in a big
    /// fleet, where all digests may rarely be equal at one poll.
    pub caught_up_after_ms: Option<f64>,
    /// Bytes the whole fleet sent from the fault's end until it converged
    /// (all traffic, repair and background alike; polls are 50 ms apart).
    pub bytes_to_converge: Option<u64>,
    /// The same, until it caught up.
    pub bytes_to_catch_up: Option<u64>,
}

/// The share of live nodes in the largest group with equal digests, from
/// `t_ms` until the next point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AgreementPoint {
    pub t_ms: f64,
    pub fraction: f64,
    pub live: usize,
}

/// Network cost of one node over the clocked run, per second.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NodeCost {
    pub node: usize,
    pub bytes_sent_per_sec: f64,
    pub bytes_received_per_sec: f64,
    pub chunks_sent_per_sec: f64,
    pub chunks_received_per_sec: f64,
    pub connections_opened: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Cost {
    pub window_secs: f64,
    pub per_node: Vec<NodeCost>,
    /// Means over the nodes.
    pub mean: NodeCost,
    /// The busiest node's bytes sent per second.
    pub max_bytes_sent_per_sec: f64,
    /// Process CPU (user + system, all threads) during the window, and per
    /// node; `None` where /proc is missing.
    pub cpu_secs: Option<f64>,
    pub cpu_secs_per_node: Option<f64>,
    /// Cores busy on average: CPU seconds per wall second.
    pub cpu_cores: Option<f64>,
    pub rss_start_mib: Option<f64>,
    pub rss_end_mib: Option<f64>,
    pub rss_peak_mib: Option<f64>,
    /// (end - start) / nodes.
    pub rss_per_node_mib: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Invariant {
    pub name: &'static str,
    pub passed: bool,
    /// How many things violated it; `violations` lists the first ones.
    pub violation_count: usize,
    pub violations: Vec<String>,
}

/// At most this many violations are listed per invariant.
pub const MAX_LISTED: usize = 20;

impl Invariant {
    pub fn new(name: &'static str, violations: Vec<String>) -> Invariant {
        Invariant {
            name,
            passed: violations.is_empty(),
            violation_count: violations.len(),
            violations: violations.into_iter().take(MAX_LISTED).collect(),
        }
    }
}

/// What rogue nodes tried, for one move or all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AttackCount {
    /// Attempts due while the rogue node was live.
    pub attempted: usize,
    /// Published through the rogue's own fabric.
    pub sent: usize,
    /// Sent and refused by the verdict of the fleet's rules.
    pub refused: usize,
    /// Sent and taken by that verdict: a breach (`rogue-refused` fails).
    pub accepted: usize,
    /// Nothing to aim at yet (no entry of another node held).
    pub no_target: usize,
    /// Could not be made, e.g. no gossip peer left to publish to once the
    /// fleet has cut the rogue off.
    pub failed: usize,
    pub last_error: Option<String>,
}

impl AttackCount {
    pub(crate) fn add(&mut self, other: &AttackCount) {
        self.attempted += other.attempted;
        self.sent += other.sent;
        self.refused += other.refused;
        self.accepted += other.accepted;
        self.no_target += other.no_target;
        self.failed += other.failed;
        if other.last_error.is_some() {
            self.last_error.clone_from(&other.last_error);
        }
    }
}

/// The rogue nodes of the run (`rogue` faults) and what they tried.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RogueSummary {
    pub nodes: Vec<usize>,
    /// Attempts dropped because their node was down.
    pub skipped: usize,
    pub total: AttackCount,
    pub by_attack: BTreeMap<Attack, AttackCount>,
}

/// Something the harness could not do (a node did not start, ...).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    pub t_ms: f64,
    pub node: Option<usize>,
    pub what: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    pub nodes: usize,
    pub duration_ms: f64,
    pub quiescence_ms: f64,
    pub wall_ms: f64,
    /// The latest an event ran after its scheduled time.
    pub max_lag_ms: f64,
    pub ops: OpsSummary,
    /// Every kind together (see the module's doc: it mixes speeds).
    pub dissemination: Dissemination,
    /// Per kind, in `OpKind` order; the summary prints these.
    pub dissemination_by_kind: BTreeMap<OpKind, Dissemination>,
    pub convergence: Vec<FaultConvergence>,
    pub agreement: Vec<AgreementPoint>,
    pub cost: Cost,
    pub invariants: Vec<Invariant>,
    pub incidents: Vec<Incident>,
    /// Empty (no nodes) unless the scenario has `rogue` faults.
    pub rogue: RogueSummary,
    pub op_records: Vec<OpRecord>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.invariants.iter().all(|i| i.passed)
    }

    pub fn invariant(&self, name: &str) -> Option<&Invariant> {
        self.invariants.iter().find(|i| i.name == name)
    }

    pub fn to_json(&self) -> String {
        // Plain data: serialization cannot fail (non-finite floats become null).
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Writes `report.json`, `summary.txt`, `dissemination-cdf.svg` and
    /// `convergence.svg` into `dir` (created if needed).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), self.to_json())?;
        std::fs::write(dir.join("summary.txt"), self.to_string())?;
        crate::plot::dissemination_cdf(self, &dir.join("dissemination-cdf.svg"))?;
        crate::plot::convergence(self, &dir.join("convergence.svg"))
    }
}

/// A duration for the summary's columns: `35 ms`, `2.70 s`, `41.3 s`.
fn duration(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v < 999.5 => format!("{v:.0} ms"),
        Some(v) if v < 9_995.0 => format!("{:.2} s", v / 1e3),
        Some(v) => format!("{:.1} s", v / 1e3),
    }
}

/// One aligned line per kind: `p` picks the percentiles, `missing` how
/// many ops did not get that far and `why` names that.
fn kind_lines(
    f: &mut fmt::Formatter<'_>,
    kinds: &BTreeMap<OpKind, Dissemination>,
    p: impl Fn(&Dissemination) -> &Percentiles,
    why: &str,
) -> fmt::Result {
    let width = kinds.keys().map(|k| k.as_str().len()).max().unwrap_or(0);
    for (kind, d) in kinds {
        let pct = p(d);
        let missing = d.acked.saturating_sub(pct.count);
        let note = if missing > 0 {
            format!("  {missing} {why}")
        } else {
            String::new()
        };
        writeln!(
            f,
            "    {:<width$}  {:>5} acked  p50 {:>7}  p95 {:>7}  p99 {:>7}  max {:>7}{note}",
            kind.as_str(),
            d.acked,
            duration(pct.p50_ms),
            duration(pct.p95_ms),
            duration(pct.p99_ms),
            duration(pct.max_ms),
        )?;
    }
    Ok(())
}

impl Report {
    /// The dissemination part of the summary: a block of one line per kind
    /// to all target nodes, and a second one to 99% of them where that
    /// differs (fleets of 100 nodes or more).
    fn fmt_dissemination(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds = &self.dissemination_by_kind;
        if kinds.is_empty() {
            return writeln!(f, "  dissemination: no workload ops");
        }
        let same = kinds.values().all(|d| d.all == d.p99_nodes);
        let also = if same { " (and 99% of them)" } else { "" };
        writeln!(
            f,
            "  dissemination, from the ack until seen on every target node{also}:"
        )?;
        kind_lines(f, kinds, |d| &d.all, "never reached every target")?;
        if !same {
            writeln!(
                f,
                "  dissemination, from the ack until seen on 99% of the target nodes:"
            )?;
            kind_lines(f, kinds, |d| &d.p99_nodes, "never reached 99% of them")?;
        }
        Ok(())
    }
}

impl Report {
    /// One line for the rogue nodes' attempts, one per move.
    fn fmt_rogue(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.rogue;
        if r.nodes.is_empty() {
            return Ok(());
        }
        let nodes: Vec<String> = r.nodes.iter().map(usize::to_string).collect();
        let line = |c: &AttackCount| {
            format!(
                "{} attempts: {} sent, {} refused, {} accepted, {} without a target, {} failed",
                c.attempted, c.sent, c.refused, c.accepted, c.no_target, c.failed
            )
        };
        writeln!(f, "  rogue node {}: {}", nodes.join(", "), line(&r.total))?;
        for (attack, c) in &r.by_attack {
            writeln!(f, "    {:<14}  {}", attack.as_str(), line(c))?;
        }
        if let Some(e) = &r.total.last_error {
            writeln!(f, "    last failure: {e}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed() { "PASSED" } else { "FAILED" };
        writeln!(
            f,
            "scenario {} (seed {}, {} nodes): {verdict}",
            self.scenario, self.seed, self.nodes
        )?;
        writeln!(
            f,
            "  run: {:.1} s fault window + {:.1} s quiescence, wall {:.1} s, max lag {:.0} ms",
            self.duration_ms / 1e3,
            self.quiescence_ms / 1e3,
            self.wall_ms / 1e3,
            self.max_lag_ms
        )?;
        let o = &self.ops;
        writeln!(
            f,
            "  ops: {} scheduled, {} acked, {} rejected, {} skipped, {} lost with a disk",
            o.scheduled, o.acked, o.rejected, o.skipped, o.lost_with_disk
        )?;
        self.fmt_dissemination(f)?;
        for c in &self.convergence {
            let name = c
                .fault
                .map_or_else(|| c.kind.clone(), |i| format!("faults[{i}] {}", c.kind));
            let after = |v: Option<f64>, bytes: Option<u64>| {
                let cost = bytes.map_or_else(String::new, |b| format!(", {}", human_bytes(b)));
                v.map_or_else(|| "never".into(), |v| format!("{v:.0} ms{cost}"))
            };
            writeln!(
                f,
                "  converged after {name}: {} (caught up: {})",
                after(c.converged_after_ms, c.bytes_to_converge),
                after(c.caught_up_after_ms, c.bytes_to_catch_up)
            )?;
        }
        let c = &self.cost;
        writeln!(
            f,
            "  cost per node: {:.0} B/s sent, {:.0} B/s received, {:.1} chunks/s sent (busiest {:.0} B/s)",
            c.mean.bytes_sent_per_sec, c.mean.bytes_received_per_sec, c.mean.chunks_sent_per_sec, c.max_bytes_sent_per_sec
        )?;
        if let (Some(cpu), Some(cores)) = (c.cpu_secs_per_node, c.cpu_cores) {
            writeln!(f, "  cpu: {cpu:.3} s per node, {cores:.2} cores busy")?;
        }
        if let (Some(end), Some(per)) = (c.rss_end_mib, c.rss_per_node_mib) {
            writeln!(
                f,
                "  memory: {end:.0} MiB resident at the end, {per:.2} MiB per node"
            )?;
        }
        self.fmt_rogue(f)?;
        for i in &self.invariants {
            let mark = if i.passed { "ok  " } else { "FAIL" };
            writeln!(f, "  [{mark}] {}", i.name)?;
            for v in &i.violations {
                writeln!(f, "         {v}")?;
            }
            if i.violation_count > i.violations.len() {
                writeln!(
                    f,
                    "         ... {} more",
                    i.violation_count - i.violations.len()
                )?;
            }
        }
        for inc in &self.incidents {
            let node = inc.node.map_or_else(String::new, |n| format!(" node {n}"));
            writeln!(
                f,
                "  incident at {:.1} s{node}: {}",
                inc.t_ms / 1e3,
                inc.what
            )?;
        }
        Ok(())
    }
}

/// Bytes for people: `812 B`, `45.3 KB`, `12.1 MB` (powers of 1000, as the
/// cost line's B/s).
fn human_bytes(b: u64) -> String {
    match b {
        0..=999 => format!("{b} B"),
        1_000..=999_999 => format!("{:.1} KB", b as f64 / 1e3),
        _ => format!("{:.1} MB", b as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 95.0), Some(95.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 50.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        // 10 values: p95 is the 10th (ceil 9.5), p50 the 5th.
        let w: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&w, 95.0), Some(10.0));
        assert_eq!(percentile(&w, 50.0), Some(5.0));
        let p = Percentiles::of(&[30.0, 10.0, 20.0, f64::NAN]);
        assert_eq!((p.count, p.p50_ms, p.max_ms), (3, Some(20.0), Some(30.0)));
    }
}
