//! The report's numbers from made-up timelines fed to the recorder (no
//! clock, no fleet): dissemination (per op kind), convergence, the
//! disk-loss exemption.

use std::time::Duration;

use osmoda_simulation::{
    Cost, FinalNode, FinishInput, Observation, OpKind, Recorder, Report, Scenario, Schedule,
    VerifyOutcome,
};

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn schedule(nodes: usize) -> Schedule {
    let toml = format!(
        "name = \"math\"\nseed = 5\nnodes = {nodes}\nduration = \"10s\"\nquiescence = \"1s\"\n\
         [[faults]]\nkind = \"partition\"\nat = \"1s\"\ngroups = [[0, 0], [1, {}]]\nheal_at = \"2s\"\n\
         [[workload]]\nkind = \"knowledge-put\"\nrate_per_sec = 5.0\nnodes = [0]\n",
        nodes - 1
    );
    Schedule::build(&Scenario::parse(&toml, "inline").unwrap()).unwrap()
}

fn seen(ids: &[u64], digest: u8) -> Option<Observation> {
    Some(Observation {
        state_digest: [digest; 16],
        audit_heads_digest: [0; 16],
        new_ops: ids.to_vec(),
        forks_known: 0,
    })
}

/// Everyone live, agreeing, holding `held`.
fn finish(rec: Recorder, nodes: usize, held: &[u64]) -> Report {
    let finals = (0..nodes)
        .map(|_| FinalNode {
            live: true,
            observation: seen(&[], 9),
            verify: Some(Ok(VerifyOutcome {
                audit_ok: true,
                audit_errors: Vec::new(),
                forks_detected: 0,
                held_ops: held.to_vec(),
                rogue_held: Vec::new(),
            })),
        })
        .collect();
    rec.finish(FinishInput {
        nodes: finals,
        expected_forks: None,
        cost: Cost::default(),
        wall: ms(11_000),
        max_lag: ms(3),
    })
}

#[test]
fn dissemination_times_per_op() {
    let s = schedule(4);
    let ids: Vec<u64> = s.ops().map(|o| o.id).collect();
    assert!(ids.len() > 10);
    let mut rec = Recorder::new(&s);
    for n in 0..4 {
        rec.node_up(n);
    }
    rec.acked(1, ms(1000));
    rec.acked(2, ms(1000));
    rec.observe(1, ms(1100), seen(&[1, 2], 1));
    rec.observe(2, ms(1300), seen(&[1, 2], 1));
    rec.observe(3, ms(1500), seen(&[1], 1)); // never gets op 2
    rec.observe(3, ms(1600), seen(&[1], 1)); // repeats are harmless
    let report = finish(rec, 4, &ids);
    let r1 = &report.op_records[0];
    assert_eq!(
        (r1.targets, r1.reached, r1.all_ms, r1.p99_nodes_ms),
        (4, 4, Some(500.0), Some(500.0))
    );
    let r2 = &report.op_records[1];
    assert_eq!((r2.reached, r2.all_ms, r2.p99_nodes_ms), (3, None, None));
    assert_eq!(report.ops.acked, 2);
    assert_eq!(report.ops.skipped, ids.len() - 2, "never applied");
    assert_eq!(report.dissemination.incomplete, 1);
    assert_eq!(report.dissemination.all.count, 1);
    assert_eq!(report.dissemination.all.p50_ms, Some(500.0));
    assert!(report.passed(), "{report}");
}

#[test]
fn p99_of_nodes_is_the_99th_of_100() {
    let s = schedule(100);
    let mut rec = Recorder::new(&s);
    for n in 0..100 {
        rec.node_up(n);
    }
    rec.acked(1, ms(0));
    // The origin (node 0) has it at 0; node k at k ms.
    for n in 1..100 {
        rec.observe(n, ms(n as u64), seen(&[1], 1));
    }
    let report = finish(rec, 100, &s.ops().map(|o| o.id).collect::<Vec<_>>());
    let r = &report.op_records[0];
    assert_eq!(r.all_ms, Some(99.0));
    // ceil(0.99 * 100) = 99 nodes: times 0..=98.
    assert_eq!(r.p99_nodes_ms, Some(98.0));
}

#[test]
fn targets_are_the_nodes_live_at_the_ack() {
    let s = schedule(3);
    let mut rec = Recorder::new(&s);
    rec.node_up(0);
    rec.node_up(1);
    rec.acked(1, ms(100));
    rec.node_up(2); // joins after the ack: not a target
    rec.observe(1, ms(150), seen(&[1], 1));
    let report = finish(rec, 3, &s.ops().map(|o| o.id).collect::<Vec<_>>());
    assert_eq!(
        (report.op_records[0].targets, report.op_records[0].all_ms),
        (2, Some(50.0))
    );
}

#[test]
fn convergence_is_the_first_agreeing_poll_after_the_end() {
    let s = schedule(3);
    let mut rec = Recorder::new(&s);
    for n in 0..3 {
        rec.node_up(n);
    }
    let poll = |rec: &mut Recorder, t: u64, digests: [u8; 3]| {
        for (n, d) in digests.into_iter().enumerate() {
            rec.observe(n, ms(t), seen(&[], d));
        }
        rec.sample(ms(t))
    };
    assert_eq!(poll(&mut rec, 900, [1, 1, 1]), 1.0);
    rec.fault_started(0, ms(1000));
    assert!((poll(&mut rec, 1500, [1, 2, 2]) - 2.0 / 3.0).abs() < 1e-9);
    // Agreement during the fault does not count: it has not ended yet.
    assert_eq!(poll(&mut rec, 1800, [3, 3, 3]), 1.0);
    rec.fault_ended(0, ms(2000));
    poll(&mut rec, 2050, [4, 3, 3]);
    poll(&mut rec, 2100, [4, 5, 6]);
    poll(&mut rec, 2250, [7, 7, 7]);
    poll(&mut rec, 2300, [8, 7, 7]); // later disagreement does not undo it
    rec.quiesce(ms(10_000));
    poll(&mut rec, 10_050, [7, 7, 7]);
    let report = finish(rec, 3, &s.ops().map(|o| o.id).collect::<Vec<_>>());
    let fault = &report.convergence[0];
    assert_eq!(
        (fault.start_ms, fault.end_ms, fault.converged_after_ms),
        (Some(1000.0), Some(2000.0), Some(250.0))
    );
    let quiet = &report.convergence[1];
    assert_eq!(
        (quiet.kind.as_str(), quiet.converged_after_ms),
        ("quiescence", Some(50.0))
    );
    // Points only where the share or the live count changed.
    let fractions: Vec<f64> = report
        .agreement
        .iter()
        .map(|p| (p.fraction * 3.0).round())
        .collect();
    assert_eq!(fractions, [3.0, 2.0, 3.0, 2.0, 1.0, 3.0, 2.0, 3.0]);
}

#[test]
fn never_converging_is_none() {
    let s = schedule(2);
    let mut rec = Recorder::new(&s);
    rec.node_up(0);
    rec.node_up(1);
    rec.fault_started(0, ms(1000));
    rec.fault_ended(0, ms(2000));
    rec.observe(0, ms(2050), seen(&[], 1));
    rec.observe(1, ms(2050), seen(&[], 2));
    rec.sample(ms(2050));
    let report = finish(rec, 2, &[]);
    assert_eq!(report.convergence[0].converged_after_ms, None);
    assert!(report
        .to_string()
        .contains("converged after faults[0] partition: never"));
}

#[test]
fn disk_loss_exempts_only_ops_nobody_else_held() {
    let s = schedule(3);
    let mut rec = Recorder::new(&s);
    for n in 0..3 {
        rec.node_up(n);
    }
    rec.acked(1, ms(100)); // on node 0 only
    rec.acked(2, ms(100));
    rec.observe(1, ms(150), seen(&[2], 1)); // node 1 copied op 2
    rec.node_down(0, true);
    rec.node_up(0);
    // Nobody holds op 1 at the end, and node 2 lacks op 2 too.
    let held: Vec<u64> = s.ops().map(|o| o.id).filter(|&id| id > 2).collect();
    let report = finish(rec, 3, &held);
    assert!(report.op_records[0].lost_with_disk);
    assert!(!report.op_records[1].lost_with_disk);
    assert_eq!(report.ops.lost_with_disk, 1);
    let lost = report.invariant("no-acked-op-lost").unwrap();
    assert_eq!(lost.violation_count, 1, "{:?}", lost.violations);
    assert!(lost.violations[0].starts_with("op 2 "));
}

#[test]
fn caught_up_waits_for_ops_acked_before_the_end() {
    let s = schedule(3);
    let mut rec = Recorder::new(&s);
    for n in 0..3 {
        rec.node_up(n);
    }
    rec.fault_started(0, ms(1000));
    rec.acked(1, ms(1200)); // held by node 0 only
    rec.fault_ended(0, ms(2000));
    rec.acked(2, ms(2010)); // after the end: not waited for
    rec.observe(1, ms(2100), seen(&[1], 1));
    rec.sample(ms(2100));
    rec.observe(2, ms(2300), seen(&[1], 2));
    rec.sample(ms(2300));
    let report = finish(rec, 3, &s.ops().map(|o| o.id).collect::<Vec<_>>());
    let fault = &report.convergence[0];
    assert_eq!(fault.caught_up_after_ms, Some(300.0));
    assert_eq!(fault.converged_after_ms, None, "digests never agreed");
}

#[test]
fn convergence_costs_the_bytes_sent_since_the_end() {
    let s = schedule(2);
    let mut rec = Recorder::new(&s);
    for n in 0..2 {
        rec.node_up(n);
    }
    rec.fault_started(0, ms(1000));
    rec.acked(1, ms(1100));
    rec.fleet_bytes(10_000);
    rec.fault_ended(0, ms(2000));
    rec.fleet_bytes(14_000);
    rec.observe(0, ms(2050), seen(&[1], 1));
    rec.observe(1, ms(2050), seen(&[], 2));
    rec.sample(ms(2050));
    rec.fleet_bytes(25_000);
    rec.observe(0, ms(2100), seen(&[1], 3));
    rec.observe(1, ms(2100), seen(&[1], 3));
    rec.sample(ms(2100));
    rec.fleet_bytes(99_000);
    rec.observe(0, ms(2150), seen(&[1], 3));
    rec.observe(1, ms(2150), seen(&[1], 3));
    rec.sample(ms(2150));
    let report = finish(rec, 2, &s.ops().map(|o| o.id).collect::<Vec<_>>());
    let fault = &report.convergence[0];
    assert_eq!(fault.converged_after_ms, Some(100.0));
    assert_eq!(fault.bytes_to_converge, Some(15_000));
    assert_eq!(fault.bytes_to_catch_up, Some(15_000));
    assert!(report.to_string().contains("100 ms, 15.0 KB"), "{report}");
}

/// Knowledge writes and audit appends on node 0 of three nodes.
fn two_kinds() -> Schedule {
    let toml = "name = \"kinds\"\nseed = 7\nnodes = 3\nduration = \"10s\"\nquiescence = \"1s\"\n\
                [[workload]]\nkind = \"knowledge-put\"\nrate_per_sec = 5.0\nnodes = [0]\n\
                [[workload]]\nkind = \"audit-append\"\nrate_per_sec = 2.0\nnodes = [0]\n";
    Schedule::build(&Scenario::parse(toml, "inline").unwrap()).unwrap()
}

#[test]
fn dissemination_is_kept_per_kind() {
    let s = two_kinds();
    let of = |kind| -> Vec<u64> { s.ops().filter(|o| o.kind == kind).map(|o| o.id).collect() };
    let (writes, audits) = (of(OpKind::KnowledgePut), of(OpKind::AuditAppend));
    assert!(
        writes.len() >= 10 && audits.len() >= 6,
        "{writes:?} {audits:?}"
    );
    let mut rec = Recorder::new(&s);
    for n in 0..3 {
        rec.node_up(n);
    }
    // Ten writes reach both other nodes after 10, 20, ..., 100 ms; five
    // audit appends after 1, 2, ..., 5 s, and a sixth never reaches node 2.
    for (i, &id) in writes.iter().take(10).enumerate() {
        let at = 1000 * (i as u64 + 1);
        rec.acked(id, ms(at));
        rec.observe(1, ms(at + 5), seen(&[id], 1));
        rec.observe(2, ms(at + 10 * (i as u64 + 1)), seen(&[id], 1));
    }
    for (i, &id) in audits.iter().take(6).enumerate() {
        let at = 20_000 + 10_000 * i as u64;
        rec.acked(id, ms(at));
        rec.observe(1, ms(at + 500), seen(&[id], 1));
        if i < 5 {
            rec.observe(2, ms(at + 1000 * (i as u64 + 1)), seen(&[id], 1));
        }
    }
    let report = finish(rec, 3, &s.ops().map(|o| o.id).collect::<Vec<_>>());
    let kinds: Vec<OpKind> = report.dissemination_by_kind.keys().copied().collect();
    assert_eq!(kinds, [OpKind::KnowledgePut, OpKind::AuditAppend]);

    let w = &report.dissemination_by_kind[&OpKind::KnowledgePut];
    assert_eq!((w.acked, w.incomplete, w.all.count), (10, 0, 10));
    // Nearest rank over 10..=100: p50 the 5th, p95 and p99 the 10th.
    assert_eq!(
        (w.all.p50_ms, w.all.p95_ms, w.all.p99_ms, w.all.max_ms),
        (Some(50.0), Some(100.0), Some(100.0), Some(100.0))
    );
    assert_eq!(w.p99_nodes, w.all, "3 targets: 99% of them is all");

    let a = &report.dissemination_by_kind[&OpKind::AuditAppend];
    assert_eq!((a.acked, a.incomplete, a.all.count), (6, 1, 5));
    assert_eq!(
        (a.all.p50_ms, a.all.p95_ms, a.all.max_ms),
        (Some(3000.0), Some(5000.0), Some(5000.0))
    );
    // The mixed figure is still there, over both kinds.
    let d = &report.dissemination;
    assert_eq!((d.acked, d.incomplete, d.all.count), (16, 1, 15));
    assert_eq!(d.all.max_ms, Some(5000.0));

    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    let by_kind = &json["dissemination_by_kind"];
    assert_eq!(by_kind["knowledge-put"]["all"]["p95_ms"], 100.0);
    assert_eq!(by_kind["audit-append"]["incomplete"], 1);
    assert_eq!(json["op_records"][0]["kind"], "knowledge-put");

    // One line per kind, aligned, naming the kind with an incomplete op;
    // no second block for 99% of the nodes, which is the same here.
    let summary = report.to_string();
    let lines: Vec<&str> = summary
        .lines()
        .filter(|l| l.contains(" acked  p50 "))
        .collect();
    assert_eq!(lines.len(), 2, "{summary}");
    assert!(lines[0].starts_with("    knowledge-put     10 acked  p50   50 ms  p95  100 ms"));
    assert!(!lines[0].contains("never"), "{summary}");
    assert!(lines[1].starts_with("    audit-append"), "{summary}");
    assert!(lines[1].contains("p50  3.00 s"), "{summary}");
    assert!(
        lines[1].ends_with("1 never reached every target"),
        "{summary}"
    );
    let column = |l: &str| l.find("p50");
    assert_eq!(column(lines[0]), column(lines[1]), "{summary}");
    assert!(summary.contains("every target node (and 99% of them):"));
}

#[test]
fn the_99_percent_block_appears_where_it_differs() {
    let s = schedule(100);
    let mut rec = Recorder::new(&s);
    for n in 0..100 {
        rec.node_up(n);
    }
    rec.acked(1, ms(0));
    for n in 1..99 {
        rec.observe(n, ms(n as u64), seen(&[1], 1));
    }
    // Node 99 never gets it: incomplete to all nodes, 98 ms to 99% of them.
    let report = finish(rec, 100, &[]);
    let summary = report.to_string();
    let lines: Vec<&str> = summary
        .lines()
        .filter(|l| l.contains(" acked  p50 "))
        .collect();
    assert_eq!(lines.len(), 2, "{summary}");
    assert!(
        lines[0].ends_with("1 never reached every target"),
        "{summary}"
    );
    assert!(lines[1].contains("max   98 ms"), "{summary}");
    assert!(
        summary.contains("seen on 99% of the target nodes:"),
        "{summary}"
    );
}
