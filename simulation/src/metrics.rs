//! The recorder: what the runner saw, turned into a `Report`.
//!
//! Pure bookkeeping with times passed in (no clock, no IO), so the report
//! math is tested with made-up timelines. The runner calls, in time order:
//! `node_up`/`node_down` around starts and crashes, `acked`/`rejected`/
//! `skipped` for ops, `observe` for each live node at every poll followed
//! by `sample`, and `fault_started`/`fault_ended`/`quiesce`; then `finish`.
//! Definitions are in `report.rs`.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::fleet::{Attack, AttackOutcome, FleetError, Observation, Operation, VerifyOutcome};
use crate::report::{
    AgreementPoint, AttackCount, Cost, Dissemination, FaultConvergence, Incident, OpRecord,
    OpsSummary, Report, RogueSummary,
};
use crate::schedule::{Event, Schedule};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct OpState {
    op: Operation,
    scheduled: Duration,
    acked: Option<Duration>,
    error: Option<String>,
    /// Nodes live at the acknowledgement.
    targets: Vec<usize>,
    /// Per node, when it was first seen holding the op (empty until the
    /// first sighting, to keep unreplicated ops cheap).
    first_seen: Vec<Option<Duration>>,
    lost_with_disk: bool,
}

impl FaultRec {
    /// The fleet's bytes sent between the fault's end and `now`, when both
    /// are known.
    fn bytes_since_end(&self, now: Option<u64>) -> Option<u64> {
        Some(now?.saturating_sub(self.bytes_at_end?))
    }
}

struct FaultRec {
    conv: FaultConvergence,
    end: Option<Duration>,
    /// The fleet's bytes sent so far when the fault ended.
    bytes_at_end: Option<u64>,
    /// Durable ops acknowledged before the end that some live node was not
    /// yet seen holding (for `caught_up_after_ms`).
    pending: Vec<u64>,
}

/// The final state of one node, gathered by the runner after quiescence.
pub struct FinalNode {
    pub live: bool,
    pub observation: Option<Observation>,
    /// `None` if the node was down; `Err` if `verify` failed.
    pub verify: Option<Result<VerifyOutcome, String>>,
}

/// What only the runner knows, for `finish`.
pub struct FinishInput {
    pub nodes: Vec<FinalNode>,
    pub expected_forks: Option<usize>,
    pub cost: Cost,
    pub wall: Duration,
    pub max_lag: Duration,
}

pub struct Recorder {
    scenario: String,
    seed: u64,
    nodes: usize,
    duration: Duration,
    quiescence: Duration,
    ops: Vec<OpState>,
    skipped_by_schedule: usize,
    /// Per node, the op ids it holds (as far as the polls saw), since it
    /// last lost its disk.
    held: Vec<HashSet<u64>>,
    live: Vec<bool>,
    /// This poll's digests per live node.
    digests: Vec<Option<([u8; 16], [u8; 16])>>,
    faults: Vec<FaultRec>,
    agreement: Vec<AgreementPoint>,
    incidents: Vec<Incident>,
    /// Bytes the whole fleet has sent, as of the runner's last report.
    fleet_bytes: Option<u64>,
    /// Per node, whether it is rogue at some point: left out of every
    /// measure and invariant.
    rogue: Vec<bool>,
    /// Per rogue fault: its attempts, per move.
    attacks: BTreeMap<usize, BTreeMap<Attack, AttackCount>>,
    attacks_skipped: usize,
}

impl Recorder {
    pub fn new(schedule: &Schedule) -> Recorder {
        let n = schedule.nodes;
        let ops = schedule
            .events
            .iter()
            .filter_map(|e| match &e.event {
                Event::Op(op) => Some(OpState {
                    op: op.clone(),
                    scheduled: e.at,
                    acked: None,
                    error: None,
                    targets: Vec::new(),
                    first_seen: Vec::new(),
                    lost_with_disk: false,
                }),
                _ => None,
            })
            .collect();
        let mut faults: Vec<FaultRec> = schedule
            .faults
            .iter()
            .map(|f| FaultRec {
                conv: FaultConvergence {
                    fault: Some(f.index),
                    kind: f.kind.to_string(),
                    start_ms: None,
                    end_ms: None,
                    converged_after_ms: None,
                    caught_up_after_ms: None,
                    bytes_to_converge: None,
                    bytes_to_catch_up: None,
                },
                end: None,
                bytes_at_end: None,
                pending: Vec::new(),
            })
            .collect();
        faults.push(FaultRec {
            conv: FaultConvergence {
                fault: None,
                kind: "quiescence".into(),
                start_ms: None,
                end_ms: None,
                converged_after_ms: None,
                caught_up_after_ms: None,
                bytes_to_converge: None,
                bytes_to_catch_up: None,
            },
            end: None,
            bytes_at_end: None,
            pending: Vec::new(),
        });
        Recorder {
            scenario: schedule.scenario.clone(),
            seed: schedule.seed,
            nodes: n,
            duration: schedule.duration,
            quiescence: schedule.quiescence,
            ops,
            skipped_by_schedule: schedule.ops_skipped,
            held: vec![HashSet::new(); n],
            live: vec![false; n],
            digests: vec![None; n],
            faults,
            agreement: Vec::new(),
            incidents: Vec::new(),
            fleet_bytes: None,
            rogue: (0..n).map(|i| schedule.rogues.contains(&i)).collect(),
            attacks: schedule
                .faults
                .iter()
                .filter(|f| f.kind == "rogue")
                .map(|f| (f.index, BTreeMap::new()))
                .collect(),
            attacks_skipped: schedule.attacks_skipped,
        }
    }

    /// Live and honest: a node the measures and invariants count.
    fn counted(&self, node: usize) -> bool {
        self.is_live(node) && !self.rogue.get(node).copied().unwrap_or(false)
    }

    /// One attempt of rogue fault `fault`: `None` when its node was down.
    pub fn attack(
        &mut self,
        fault: usize,
        attack: Attack,
        outcome: Option<Result<AttackOutcome, FleetError>>,
    ) {
        let Some(outcome) = outcome else {
            self.attacks_skipped += 1;
            return;
        };
        let c = self
            .attacks
            .entry(fault)
            .or_default()
            .entry(attack)
            .or_default();
        c.attempted += 1;
        match outcome {
            Ok(AttackOutcome::Sent { refused }) => {
                c.sent += 1;
                match refused {
                    Some(true) => c.refused += 1,
                    Some(false) => c.accepted += 1,
                    None => {}
                }
            }
            Ok(AttackOutcome::NoTarget) => c.no_target += 1,
            Err(e) => {
                c.failed += 1;
                c.last_error = Some(e.to_string());
            }
        }
    }

    /// The rogue nodes' attempts; an incident for each rogue fault that
    /// could not make a single one (the fleet cannot play a rogue, or its
    /// node never got to send), since then nothing was tested.
    fn rogue_summary(&mut self) -> RogueSummary {
        let mut summary = RogueSummary {
            nodes: (0..self.nodes).filter(|&n| self.rogue[n]).collect(),
            skipped: self.attacks_skipped,
            ..RogueSummary::default()
        };
        let mut idle = Vec::new();
        for (fault, by_attack) in &self.attacks {
            let mut total = AttackCount::default();
            for (attack, c) in by_attack {
                total.add(c);
                summary.by_attack.entry(*attack).or_default().add(c);
            }
            if total.sent + total.no_target == 0 {
                let why = total.last_error.clone().unwrap_or_else(|| {
                    format!("{} attempts, none while its node was up", total.attempted)
                });
                idle.push((*fault, why));
            }
            summary.total.add(&total);
        }
        for (fault, why) in idle {
            self.incidents.push(Incident {
                t_ms: ms(self.duration),
                node: None,
                what: format!("rogue faults[{fault}] made no attempt: {why}"),
            });
        }
        summary
    }

    /// The bytes the fleet has sent so far (all traffic); lets the report
    /// say what converging after a fault cost. Reported before each poll
    /// and each fault's end.
    pub fn fleet_bytes(&mut self, total: u64) {
        self.fleet_bytes = Some(total);
    }

    /// Op ids are 1..=ops in schedule order (`Schedule::build`).
    fn op_mut(&mut self, id: u64) -> Option<&mut OpState> {
        let i = usize::try_from(id.checked_sub(1)?).ok()?;
        self.ops.get_mut(i)
    }

    pub fn is_live(&self, node: usize) -> bool {
        self.live.get(node).copied().unwrap_or(false)
    }

    pub fn live_count(&self) -> usize {
        self.live.iter().filter(|&&l| l).count()
    }

    pub fn acked_count(&self) -> usize {
        self.ops.iter().filter(|o| o.acked.is_some()).count()
    }

    pub fn incident(&mut self, t: Duration, node: Option<usize>, what: String) {
        self.incidents.push(Incident {
            t_ms: ms(t),
            node,
            what,
        });
    }

    pub fn node_up(&mut self, node: usize) {
        if let Some(l) = self.live.get_mut(node) {
            *l = true;
        }
    }

    /// A crash. With `lose_disk`, the node no longer holds anything: ops no
    /// other node was seen holding are lost with the disk (exempt from the
    /// loss invariant).
    pub fn node_down(&mut self, node: usize, lose_disk: bool) {
        if node >= self.nodes {
            return;
        }
        self.live[node] = false;
        self.digests[node] = None;
        if lose_disk {
            let gone = std::mem::take(&mut self.held[node]);
            for id in gone {
                if !self.held.iter().any(|h| h.contains(&id)) {
                    if let Some(op) = self.op_mut(id) {
                        op.lost_with_disk = op.op.kind.durable() && op.acked.is_some();
                    }
                }
            }
        }
    }

    /// The op's node acknowledged it at `t`: it holds it from then on.
    pub fn acked(&mut self, id: u64, t: Duration) {
        let targets: Vec<usize> = (0..self.nodes).filter(|&n| self.counted(n)).collect();
        let Some(op) = self.op_mut(id) else { return };
        op.acked = Some(t);
        op.targets = targets;
        let origin = op.op.node;
        self.record_seen(origin, id, t);
    }

    pub fn rejected(&mut self, id: u64, error: String) {
        if let Some(op) = self.op_mut(id) {
            op.error = Some(error);
        }
    }

    fn record_seen(&mut self, node: usize, id: u64, t: Duration) {
        let nodes = self.nodes;
        if node >= nodes || !self.held[node].insert(id) {
            return;
        }
        if let Some(op) = self.op_mut(id) {
            if op.first_seen.is_empty() {
                op.first_seen = vec![None; nodes];
            }
            op.first_seen[node].get_or_insert(t);
        }
    }

    /// One node's poll at `t` (`None`: it reported itself down).
    pub fn observe(&mut self, node: usize, t: Duration, obs: Option<Observation>) {
        if node >= self.nodes {
            return;
        }
        match obs {
            None => self.digests[node] = None,
            Some(o) => {
                for id in o.new_ops {
                    self.record_seen(node, id, t);
                }
                self.digests[node] = Some((o.state_digest, o.audit_heads_digest));
            }
        }
    }

    /// Closes a poll at `t`: the agreement point and convergence checks.
    /// Returns the share of live nodes that agree.
    pub fn sample(&mut self, t: Duration) -> f64 {
        let live = (0..self.nodes).filter(|&n| self.counted(n)).count();
        let mut keys: Vec<_> = (0..self.nodes)
            .filter(|&n| self.counted(n))
            .filter_map(|n| self.digests[n])
            .collect();
        keys.sort_unstable();
        let mut largest = 0;
        let mut run = 0;
        for (i, k) in keys.iter().enumerate() {
            run = if i > 0 && keys[i - 1] == *k {
                run + 1
            } else {
                1
            };
            largest = largest.max(run);
        }
        let fraction = if live == 0 {
            0.0
        } else {
            largest as f64 / live as f64
        };
        let changed = self
            .agreement
            .last()
            .is_none_or(|p| p.fraction != fraction || p.live != live);
        if changed {
            self.agreement.push(AgreementPoint {
                t_ms: ms(t),
                fraction,
                live,
            });
        }
        let bytes = self.fleet_bytes;
        if live > 0 && largest == live {
            for f in &mut self.faults {
                if let (Some(end), None) = (f.end, f.conv.converged_after_ms) {
                    f.conv.converged_after_ms = Some(ms(t.saturating_sub(end)));
                    f.conv.bytes_to_converge = f.bytes_since_end(bytes);
                }
            }
        }
        self.catch_up(t);
        fraction
    }

    /// Drops from each fault's pending ops those every live node now holds
    /// (or that were lost with a disk); an empty list means caught up.
    fn catch_up(&mut self, t: Duration) {
        let (held, ops) = (&self.held, &self.ops);
        let live: Vec<bool> = (0..self.nodes).map(|n| self.counted(n)).collect();
        let bytes = self.fleet_bytes;
        let everywhere = |id: &u64| {
            let lost = id
                .checked_sub(1)
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| ops.get(i))
                .is_some_and(|o| o.lost_with_disk);
            lost || (0..held.len()).all(|n| !live[n] || held[n].contains(id))
        };
        for f in &mut self.faults {
            let Some(end) = f.end else { continue };
            if f.conv.caught_up_after_ms.is_some() {
                continue;
            }
            f.pending.retain(|id| !everywhere(id));
            if f.pending.is_empty() {
                f.conv.caught_up_after_ms = Some(ms(t.saturating_sub(end)));
                f.conv.bytes_to_catch_up = f.bytes_since_end(bytes);
            }
        }
    }

    /// Durable ops acknowledged so far: what a fault ending now must bring
    /// to every node.
    fn acked_durable(&self) -> Vec<u64> {
        self.ops
            .iter()
            .filter(|o| o.acked.is_some() && o.op.kind.durable())
            .map(|o| o.op.id)
            .collect()
    }

    pub fn fault_started(&mut self, fault: usize, t: Duration) {
        if let Some(f) = self.faults.iter_mut().find(|f| f.conv.fault == Some(fault)) {
            f.conv.start_ms.get_or_insert(ms(t));
        }
    }

    /// The fault's last event ran at `t`: convergence is measured from here.
    pub fn fault_ended(&mut self, fault: usize, t: Duration) {
        let pending = self.acked_durable();
        if let Some(f) = self.faults.iter_mut().find(|f| f.conv.fault == Some(fault)) {
            f.end = Some(t);
            f.bytes_at_end = self.fleet_bytes;
            f.conv.end_ms = Some(ms(t));
            f.conv.converged_after_ms = None;
            f.conv.caught_up_after_ms = None;
            f.conv.bytes_to_converge = None;
            f.conv.bytes_to_catch_up = None;
            f.pending = pending;
        }
    }

    pub fn quiesce(&mut self, t: Duration) {
        let pending = self.acked_durable();
        if let Some(f) = self.faults.iter_mut().find(|f| f.conv.fault.is_none()) {
            f.end = Some(t);
            f.bytes_at_end = self.fleet_bytes;
            f.pending = pending;
            f.conv.start_ms = Some(ms(t));
            f.conv.end_ms = Some(ms(t));
        }
    }

    fn op_record(&self, o: &OpState) -> OpRecord {
        let mut times: Vec<f64> = Vec::new();
        if let Some(ack) = o.acked {
            for &n in &o.targets {
                if let Some(Some(seen)) = o.first_seen.get(n) {
                    times.push(ms(seen.saturating_sub(ack)));
                }
            }
        }
        times.sort_by(f64::total_cmp);
        let need = (o.targets.len() as f64 * 0.99).ceil() as usize;
        let complete = o.acked.is_some() && times.len() == o.targets.len();
        OpRecord {
            id: o.op.id,
            kind: o.op.kind,
            node: o.op.node,
            scheduled_ms: ms(o.scheduled),
            acked_ms: o.acked.map(ms),
            error: o.error.clone(),
            targets: o.targets.len(),
            reached: times.len(),
            all_ms: if complete {
                times.last().copied()
            } else {
                None
            },
            p99_nodes_ms: if o.acked.is_some() && need > 0 && times.len() >= need {
                Some(times[need - 1])
            } else {
                None
            },
            lost_with_disk: o.lost_with_disk,
        }
    }

    pub fn finish(mut self, input: FinishInput) -> Report {
        let rogue = self.rogue_summary();
        let records: Vec<OpRecord> = self.ops.iter().map(|o| self.op_record(o)).collect();
        let dissemination = Dissemination::of(&records);
        let ops = OpsSummary {
            scheduled: records.len() + self.skipped_by_schedule,
            acked: dissemination.acked,
            rejected: records
                .iter()
                .filter(|r| r.acked_ms.is_none() && r.error.is_some())
                .count(),
            skipped: self.skipped_by_schedule
                + records
                    .iter()
                    .filter(|r| r.acked_ms.is_none() && r.error.is_none())
                    .count(),
            lost_with_disk: records.iter().filter(|r| r.lost_with_disk).count(),
        };
        let invariants = crate::invariants::check(
            &self.ops_view(),
            &input,
            &self.incidents,
            &self.rogue,
            &rogue,
        );
        Report {
            scenario: self.scenario,
            seed: self.seed,
            nodes: self.nodes,
            duration_ms: ms(self.duration),
            quiescence_ms: ms(self.quiescence),
            wall_ms: ms(input.wall),
            max_lag_ms: ms(input.max_lag),
            ops,
            dissemination_by_kind: Dissemination::by_kind(&records),
            dissemination,
            convergence: self.faults.into_iter().map(|f| f.conv).collect(),
            agreement: self.agreement,
            cost: input.cost,
            invariants,
            incidents: self.incidents,
            rogue,
            op_records: records,
        }
    }

    /// The acknowledged durable ops the loss invariant must find everywhere.
    fn ops_view(&self) -> Vec<crate::invariants::AckedOp> {
        self.ops
            .iter()
            .filter(|o| o.acked.is_some() && o.op.kind.durable())
            .map(|o| crate::invariants::AckedOp {
                id: o.op.id,
                kind: o.op.kind.as_str(),
                node: o.op.node,
                acked_ms: o.acked.map_or(0.0, ms),
                lost_with_disk: o.lost_with_disk,
                held_by: (0..self.nodes)
                    .filter(|&n| self.held[n].contains(&o.op.id))
                    .collect(),
            })
            .collect()
    }
}
