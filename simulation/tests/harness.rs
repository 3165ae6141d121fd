//! The runner end to end, in real time, with fake fleets instead of nodes:
//! a fake "replicates" an op to a node once some live holder has had it
//! for `delay` and the simulated link from that holder is up, so
//! partitions and crashes on the `SimNetwork` shape what it observes.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use async_trait::async_trait;
use osmoda_simulation::{
    build_network, run, Attack, AttackOutcome, Fleet, FleetError, HostId, Observation, OpKind,
    Operation, Report, Scenario, SimNetwork, StartSpec, VerifyOutcome,
};
use tokio::time::Instant;

#[derive(Default)]
struct FakeNode {
    up: bool,
    held: BTreeMap<u64, Instant>,
    unreported: Vec<u64>,
}

#[derive(Default)]
struct Faults {
    /// Acknowledged but never stored anywhere.
    drop_op: Option<u64>,
    /// Never receives anything from others.
    deaf: Option<usize>,
    bad_audit: Option<usize>,
    fail_start: Option<usize>,
    /// The rogue's attempts are taken: node 0 holds what they wrote.
    breach: bool,
}

struct Fake {
    net: SimNetwork,
    delay: Duration,
    nodes: Vec<FakeNode>,
    kinds: HashMap<u64, OpKind>,
    faults: Faults,
    /// Rogue attempts made, in order.
    attacks: Vec<(usize, Attack)>,
}

impl Fake {
    fn new(net: &SimNetwork, nodes: usize, delay: Duration, faults: Faults) -> Fake {
        Fake {
            net: net.clone(),
            delay,
            nodes: (0..nodes).map(|_| FakeNode::default()).collect(),
            kinds: HashMap::new(),
            faults,
            attacks: Vec::new(),
        }
    }

    fn digest(&self, node: usize, audit: bool) -> [u8; 16] {
        let ids: Vec<u64> = self.nodes[node]
            .held
            .keys()
            .copied()
            .filter(|id| match self.kinds.get(id) {
                Some(OpKind::AuditAppend) => audit,
                Some(OpKind::Broadcast) | None => false,
                Some(_) => !audit,
            })
            .collect();
        let mut out = [0u8; 16];
        for (i, salt) in [1u8, 2].into_iter().enumerate() {
            let mut h = DefaultHasher::new();
            (salt, &ids).hash(&mut h);
            out[i * 8..i * 8 + 8].copy_from_slice(&h.finish().to_le_bytes());
        }
        out
    }

    /// Pulls every op some live node has held for `delay`, over up links.
    fn pull(&mut self, node: usize) {
        if self.faults.deaf == Some(node) {
            return;
        }
        let now = Instant::now();
        let mut got = Vec::new();
        for (m, other) in self.nodes.iter().enumerate() {
            let link_up = self
                .net
                .link_profile(HostId(m as u32), HostId(node as u32))
                .is_ok_and(|p| p.up);
            if m == node || !other.up || !link_up {
                continue;
            }
            for (&id, &since) in &other.held {
                if now.duration_since(since) >= self.delay
                    && !self.nodes[node].held.contains_key(&id)
                {
                    got.push(id);
                }
            }
        }
        for id in got {
            if self.nodes[node].held.insert(id, now).is_none() {
                self.nodes[node].unreported.push(id);
            }
        }
    }
}

#[async_trait]
impl Fleet for Fake {
    async fn start(&mut self, node: usize, spec: StartSpec) -> Result<(), FleetError> {
        if self.faults.fail_start == Some(node) {
            return Err(FleetError::new("no such binary"));
        }
        let n = &mut self.nodes[node];
        if spec.fresh_disk {
            n.held.clear();
        }
        n.up = true;
        n.unreported = n.held.keys().copied().collect();
        Ok(())
    }

    async fn crash(&mut self, node: usize) -> Result<(), FleetError> {
        self.nodes[node].up = false;
        Ok(())
    }

    async fn apply(&mut self, node: usize, op: &Operation) -> Result<(), FleetError> {
        self.kinds.insert(op.id, op.kind);
        if self.faults.drop_op != Some(op.id) {
            let n = &mut self.nodes[node];
            n.held.insert(op.id, Instant::now());
            n.unreported.push(op.id);
        }
        Ok(())
    }

    fn observe(&mut self, node: usize) -> Option<Observation> {
        if !self.nodes[node].up {
            return None;
        }
        self.pull(node);
        Some(Observation {
            state_digest: self.digest(node, false),
            audit_heads_digest: self.digest(node, true),
            new_ops: std::mem::take(&mut self.nodes[node].unreported),
            forks_known: 0,
        })
    }

    async fn verify(&mut self, node: usize) -> Result<VerifyOutcome, FleetError> {
        let bad = self.faults.bad_audit == Some(node);
        Ok(VerifyOutcome {
            audit_ok: !bad,
            audit_errors: if bad {
                vec!["entry 4: bad signature".into()]
            } else {
                Vec::new()
            },
            forks_detected: 0,
            held_ops: self.nodes[node].held.keys().copied().collect(),
            rogue_held: if self.faults.breach && node == 0 && !self.attacks.is_empty() {
                vec!["the rogue's routine".into()]
            } else {
                Vec::new()
            },
        })
    }

    async fn attack(&mut self, node: usize, attack: Attack) -> Result<AttackOutcome, FleetError> {
        self.attacks.push((node, attack));
        Ok(AttackOutcome::Sent {
            refused: Some(!self.faults.breach),
        })
    }
}

/// A fleet that cannot play a rogue: `Fleet::attack` as the trait has it.
struct Honest(Fake);

#[async_trait]
impl Fleet for Honest {
    async fn start(&mut self, node: usize, spec: StartSpec) -> Result<(), FleetError> {
        self.0.start(node, spec).await
    }
    async fn crash(&mut self, node: usize) -> Result<(), FleetError> {
        self.0.crash(node).await
    }
    async fn apply(&mut self, node: usize, op: &Operation) -> Result<(), FleetError> {
        self.0.apply(node, op).await
    }
    fn observe(&mut self, node: usize) -> Option<Observation> {
        self.0.observe(node)
    }
    async fn verify(&mut self, node: usize) -> Result<VerifyOutcome, FleetError> {
        self.0.verify(node).await
    }
}

async fn run_fake(toml: &str, delay: Duration, faults: Faults) -> Report {
    let scenario = Scenario::parse(toml, "inline").unwrap();
    let net = build_network(&scenario).unwrap();
    let mut fake = Fake::new(&net, scenario.nodes, delay, faults);
    run(
        &scenario,
        &net,
        &mut fake,
        std::env::var("SIM_PROGRESS").is_ok(),
    )
    .await
    .unwrap()
}

const SMALL: &str = r#"
name = "small"
seed = 11
nodes = 6
duration = "2s"
quiescence = "1s"
[topology]
kind = "full-mesh"
profile = "ideal"
[[workload]]
kind = "knowledge-put"
rate_per_sec = 15.0
[[workload]]
kind = "audit-append"
rate_per_sec = 5.0
[[workload]]
kind = "broadcast"
rate_per_sec = 5.0
"#;

#[tokio::test]
async fn instant_replication_passes_and_reports() {
    let report = run_fake(SMALL, Duration::ZERO, Faults::default()).await;
    assert!(report.passed(), "{report}");
    assert!(report.ops.acked > 20, "{:?}", report.ops);
    assert_eq!(report.ops.acked + report.ops.skipped, report.ops.scheduled);
    assert_eq!(report.dissemination.incomplete, 0);
    assert_eq!(report.dissemination.all.count, report.ops.acked);
    let per_kind: usize = report
        .dissemination_by_kind
        .values()
        .map(|d| d.all.count)
        .sum();
    assert_eq!(per_kind, report.ops.acked);
    // Everything shows up at the next poll (50 ms), give or take timer slack.
    let p99 = report.dissemination.all.p99_ms.unwrap();
    assert!(p99 <= 150.0, "p99 {p99}");
    let quiet = report.convergence.last().unwrap();
    assert_eq!(quiet.kind, "quiescence");
    assert!(quiet.converged_after_ms.unwrap() <= 150.0);
    assert_eq!(report.agreement.last().unwrap().fraction, 1.0);
    assert!(report.wall_ms >= 3000.0);
    // Output files.
    let dir = tempfile::tempdir().unwrap();
    report.write(dir.path()).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["scenario"], "small");
    assert!(json["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["passed"] == true));
    for (file, label) in [
        ("dissemination-cdf.svg", "time after acknowledgement"),
        ("convergence.svg", "time (s)"),
    ] {
        let svg = std::fs::read_to_string(dir.path().join(file)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("<text") && svg.contains(label),
            "{file}"
        );
        assert!(svg.contains("<polyline"), "{file} has a line");
    }
    let summary = std::fs::read_to_string(dir.path().join("summary.txt")).unwrap();
    assert!(summary.contains("PASSED"), "{summary}");
    // One line per kind of the workload, in `OpKind` order.
    let kinds: Vec<&str> = summary
        .lines()
        .filter(|l| l.contains(" acked  p50 "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        kinds,
        ["knowledge-put", "audit-append", "broadcast"],
        "{summary}"
    );
}

#[tokio::test]
async fn partition_delays_dissemination_until_heal() {
    let toml = r#"
name = "split"
seed = 12
nodes = 6
duration = "3s"
quiescence = "1500ms"
[topology]
kind = "full-mesh"
profile = "ideal"
[[faults]]
kind = "partition"
at = "1s"
groups = [[0, 2], [3, 5]]
heal_at = "2s"
[[workload]]
kind = "knowledge-put"
rate_per_sec = 12.0
"#;
    let delay = Duration::from_millis(200);
    let report = run_fake(toml, delay, Faults::default()).await;
    assert!(report.passed(), "{report}");
    let fault = &report.convergence[0];
    let (start, end) = (fault.start_ms.unwrap(), fault.end_ms.unwrap());
    assert!((end - start - 1000.0).abs() < 100.0);
    // The fake copies whatever a peer has held for `delay` as soon as the
    // link is up, so both sides agree at the first poll or two after the heal.
    let conv = fault.converged_after_ms.unwrap();
    assert!(conv <= 300.0, "converged after {conv}");
    assert!(fault.caught_up_after_ms.unwrap() <= conv);
    // ... and not before it: writes on both sides kept them apart.
    let split: Vec<_> = report
        .agreement
        .iter()
        .filter(|p| p.t_ms > start + 300.0 && p.t_ms < end)
        .collect();
    assert!(split.iter().all(|p| p.fraction <= 0.5 + 1e-9), "{split:?}");
    assert!(report.dissemination.all.p50_ms.unwrap() >= 200.0);
    let mut during = 0;
    for r in &report.op_records {
        let (acked, all) = (r.acked_ms.unwrap(), r.all_ms.unwrap());
        assert!(all >= 200.0 - 1.0, "op {} faster than the delay", r.id);
        if acked > start && acked < end {
            during += 1;
            assert!(
                acked + all >= end,
                "op {} crossed the partition before the heal",
                r.id
            );
        }
    }
    assert!(during > 3);
    // SIM_TEST_OUT=<dir> keeps this run's report and plots to look at.
    if let Ok(dir) = std::env::var("SIM_TEST_OUT") {
        report.write(std::path::Path::new(&dir)).unwrap();
    }
    // The agreement timeline dips during the partition and recovers.
    assert!(report.agreement.iter().any(|p| p.fraction < 1.0));
    assert_eq!(report.agreement.last().unwrap().fraction, 1.0);
}

#[tokio::test]
async fn a_lost_op_fails_loudly() {
    let report = run_fake(
        SMALL,
        Duration::ZERO,
        Faults {
            drop_op: Some(3),
            ..Faults::default()
        },
    )
    .await;
    assert!(!report.passed());
    let lost = report.invariant("no-acked-op-lost").unwrap();
    assert!(!lost.passed);
    assert_eq!(lost.violation_count, 1);
    assert!(
        lost.violations[0].starts_with("op 3 ")
            && lost.violations[0].contains("missing on 6 of 6 nodes")
    );
    // Nobody has it, so everybody still agrees: only the loss check sees it.
    assert!(report.invariant("no-divergence").unwrap().passed);
    let text = report.to_string();
    assert!(
        text.contains("FAILED")
            && text.contains("[FAIL] no-acked-op-lost")
            && text.contains("op 3 "),
        "{text}"
    );
    assert_eq!(report.dissemination.incomplete, 1);
}

fn disk_scenario(lose_disk: bool) -> String {
    format!(
        r#"
name = "disk"
seed = 13
nodes = 4
duration = "2s"
quiescence = "2s"
[topology]
kind = "full-mesh"
profile = "ideal"
[[faults]]
kind = "crash"
at = "500ms"
nodes = [2]
restart_after = "500ms"
lose_disk = {lose_disk}
[[workload]]
kind = "knowledge-put"
rate_per_sec = 30.0
nodes = [2]
from = "100ms"
until = "400ms"
"#
    )
}

#[tokio::test]
async fn ops_lost_with_their_only_disk_are_exempt() {
    // Replication takes 1 s: node 2 loses its disk before anyone copied.
    let report = run_fake(
        &disk_scenario(true),
        Duration::from_secs(1),
        Faults::default(),
    )
    .await;
    assert!(report.passed(), "{report}");
    assert!(report.ops.acked > 0);
    assert_eq!(report.ops.lost_with_disk, report.ops.acked);
    assert_eq!(report.dissemination.incomplete, report.ops.acked);
    // Same run, disk kept: everything replicates after the restart.
    let report = run_fake(
        &disk_scenario(false),
        Duration::from_secs(1),
        Faults::default(),
    )
    .await;
    assert!(report.passed(), "{report}");
    assert_eq!(report.ops.lost_with_disk, 0);
    assert_eq!(report.dissemination.incomplete, 0);
    assert!(report.convergence[0].converged_after_ms.is_some());
}

#[tokio::test]
async fn divergence_bad_audit_and_failed_start_are_reported() {
    let toml = format!("{SMALL}\n[[faults]]\nkind = \"late-join\"\nat = \"500ms\"\nnodes = [5]\n");
    let faults = Faults {
        deaf: Some(1),
        bad_audit: Some(2),
        fail_start: Some(5),
        ..Faults::default()
    };
    let report = run_fake(&toml, Duration::ZERO, faults).await;
    assert!(!report.passed());
    let failed = |name: &str| report.invariant(name).unwrap().violations.join("\n");
    assert!(failed("no-divergence").contains("node 5 is down at the end"));
    assert!(
        failed("no-divergence").contains("nodes 1"),
        "{}",
        failed("no-divergence")
    );
    assert!(
        failed("no-acked-op-lost").contains(": 1"),
        "{}",
        failed("no-acked-op-lost")
    );
    assert!(failed("audit-verifies")
        .contains("node 2: audit log does not verify: entry 4: bad signature"));
    assert!(failed("schedule-followed").contains("start failed: no such binary"));
    assert!(report.invariant("forks-detected").unwrap().passed);
    assert_eq!(report.incidents[0].node, Some(5));
}

const ROGUE: &str =
    "\n[[faults]]\nkind = \"rogue\"\nnode = 2\nat = \"200ms\"\nrate_per_sec = 8.0\n";

#[tokio::test]
async fn a_rogue_node_is_left_out_of_the_invariants_and_its_attempts_counted() {
    // The rogue hears nothing: it diverges, and that is not the fleet's.
    let scenario = Scenario::parse(&format!("{SMALL}{ROGUE}"), "inline").unwrap();
    let net = build_network(&scenario).unwrap();
    let faults = Faults {
        deaf: Some(2),
        ..Faults::default()
    };
    let mut fake = Fake::new(&net, scenario.nodes, Duration::ZERO, faults);
    let report = run(&scenario, &net, &mut fake, false).await.unwrap();
    assert!(report.passed(), "{report}");
    assert_eq!(report.rogue.nodes, [2]);
    assert!(report.op_records.iter().all(|r| r.node != 2));
    let total = &report.rogue.total;
    assert!(total.attempted >= 6, "{report}");
    assert_eq!(
        (total.sent, total.refused, total.accepted),
        (total.attempted, total.attempted, 0)
    );
    assert_eq!(fake.attacks.len(), total.attempted);
    assert!(fake.attacks.iter().all(|(n, _)| *n == 2));
    assert!(report.to_string().contains("rogue node 2:"), "{report}");
}

#[tokio::test]
async fn a_rogue_attempt_taken_fails_the_run() {
    let faults = Faults {
        breach: true,
        ..Faults::default()
    };
    let report = run_fake(&format!("{SMALL}{ROGUE}"), Duration::ZERO, faults).await;
    let failed = report
        .invariant("rogue-refused")
        .unwrap()
        .violations
        .join("\n");
    assert!(
        failed.contains("accepted by the fleet's verdict"),
        "{failed}"
    );
    assert!(
        failed.contains("node 0 holds the rogue's routine"),
        "{failed}"
    );
    assert!(!report.passed());
}

#[tokio::test]
async fn a_fleet_that_cannot_play_a_rogue_does_not_pass() {
    let scenario = Scenario::parse(&format!("{SMALL}{ROGUE}"), "inline").unwrap();
    let net = build_network(&scenario).unwrap();
    let mut fleet = Honest(Fake::new(
        &net,
        scenario.nodes,
        Duration::ZERO,
        Faults::default(),
    ));
    let report = run(&scenario, &net, &mut fleet, false).await.unwrap();
    let failed = report
        .invariant("schedule-followed")
        .unwrap()
        .violations
        .join("\n");
    assert!(failed.contains("cannot make a node rogue"), "{failed}");
    assert_eq!(report.rogue.total.failed, report.rogue.total.attempted);
}
