//! Schedules and topology plans are functions of the scenario and seed.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use osmoda_simulation::{
    build_network, Attack, Event, Fault, HostId, Scenario, Schedule, TopologyPlan,
};

fn load(name: &str) -> Scenario {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(format!("{name}.toml"));
    Scenario::load(path).unwrap()
}

const NAMES: [&str; 10] = [
    "lan-10",
    "idle-100",
    "wan-100",
    "partition-heal-50",
    "churn-100",
    "lossy-edge",
    "ci-20",
    "ci-10",
    "rogue-20",
    "rogue-8",
];

#[test]
fn a_rogue_tries_every_move_in_turn_and_takes_no_workload() {
    for name in ["rogue-20", "rogue-8"] {
        let s = load(name);
        let Some(Fault::Rogue {
            node, at, until, ..
        }) = s.faults.iter().find(|f| f.kind() == "rogue").cloned()
        else {
            panic!("{name} has a rogue fault")
        };
        let schedule = Schedule::build(&s).unwrap();
        assert_eq!(schedule.rogues, [node]);
        assert!(schedule.ops().all(|op| op.node != node), "{name}");
        let attacks: Vec<(Duration, Attack)> = schedule
            .events
            .iter()
            .filter_map(|e| match e.event {
                Event::Attack {
                    node: n, attack, ..
                } => {
                    assert_eq!(n, node);
                    Some((e.at, attack))
                }
                _ => None,
            })
            .collect();
        assert!(attacks.len() >= Attack::ALL.len(), "{name}: {attacks:?}");
        for (i, (t, attack)) in attacks.iter().enumerate() {
            assert!(*t >= at && until.is_none_or(|u| *t < u), "{name}");
            assert_eq!(*attack, Attack::ALL[i % Attack::ALL.len()], "{name}");
        }
        let end = schedule.events.iter().find_map(|e| match e.event {
            Event::RogueEnd { .. } => Some(e.at),
            _ => None,
        });
        assert_eq!(end, until, "{name}");
    }
}

#[test]
fn same_seed_same_schedule_byte_for_byte() {
    for name in NAMES {
        let s = load(name);
        let a = Schedule::build(&s).unwrap().to_json();
        let b = Schedule::build(&s).unwrap().to_json();
        assert_eq!(a, b, "{name}");
        assert!(a.len() > 1000);
        let mut other = s.clone();
        other.seed += 1;
        assert_ne!(
            a,
            Schedule::build(&other).unwrap().to_json(),
            "{name} with another seed"
        );
    }
}

#[test]
fn same_seed_same_topology() {
    for name in NAMES {
        let s = load(name);
        let (a, b) = (
            TopologyPlan::build(&s).unwrap(),
            TopologyPlan::build(&s).unwrap(),
        );
        assert_eq!(a.bootstrap, b.bootstrap, "{name}");
        for x in 0..s.nodes {
            for y in 0..s.nodes {
                assert_eq!(a.profile(x, y), b.profile(x, y));
            }
        }
    }
    // The random layout changes with the seed.
    let mut s = load("churn-100");
    let a = TopologyPlan::build(&s).unwrap().bootstrap;
    s.seed += 1;
    assert_ne!(a, TopologyPlan::build(&s).unwrap().bootstrap);
}

/// Every node reaches every other one over the bootstrap dials.
fn connected(plan: &TopologyPlan) -> bool {
    let n = plan.nodes();
    let mut adj = vec![Vec::new(); n];
    for (a, peers) in plan.bootstrap.iter().enumerate() {
        for &b in peers {
            adj[a].push(b);
            adj[b].push(a);
        }
    }
    let mut seen = vec![false; n];
    let mut stack = vec![0];
    seen[0] = true;
    while let Some(x) = stack.pop() {
        for &y in &adj[x] {
            if !seen[y] {
                seen[y] = true;
                stack.push(y);
            }
        }
    }
    seen.iter().all(|&s| s)
}

#[test]
fn bootstrap_graphs_are_connected_and_sane() {
    for name in NAMES {
        let s = load(name);
        for seed in 0..20 {
            let mut s = s.clone();
            s.seed = seed;
            let plan = TopologyPlan::build(&s).unwrap();
            assert!(connected(&plan), "{name} seed {seed}");
            for (i, peers) in plan.bootstrap.iter().enumerate() {
                assert!(!peers.contains(&i), "{name}: node {i} dials itself");
                let distinct: HashSet<_> = peers.iter().collect();
                assert_eq!(
                    distinct.len(),
                    peers.len(),
                    "{name}: node {i} dials a peer twice"
                );
            }
        }
    }
    let random = TopologyPlan::build(&load("churn-100")).unwrap();
    assert!(random.bootstrap.iter().all(|p| p.len() == 4));
    let mesh = TopologyPlan::build(&load("lan-10")).unwrap();
    assert_eq!(mesh.bootstrap[3], [0, 1, 2]);
}

#[test]
fn regions_and_overrides_set_profiles() {
    let s = load("wan-100");
    let plan = TopologyPlan::build(&s).unwrap();
    assert_eq!(plan.region_of[24], 0);
    assert_eq!(plan.region_of[25], 1);
    assert_eq!(plan.region_of[99], 3);
    assert_eq!(plan.profile(0, 1).latency, Duration::from_millis(20));
    for (a, b) in [(0, 30), (30, 0), (10, 99), (60, 80)] {
        let p = plan.profile(a, b);
        assert!(p.latency >= Duration::from_millis(80) && p.latency <= Duration::from_millis(200));
        assert_eq!(p, plan.profile(b, a), "same both ways");
        assert_eq!(p.bandwidth_bytes_per_sec, Some(12_500_000));
    }
    // One latency per region pair: all pairs of regions 0 and 1 agree.
    assert_eq!(plan.profile(0, 25).latency, plan.profile(24, 49).latency);
    let edge = load("lossy-edge");
    let plan = TopologyPlan::build(&edge).unwrap();
    assert_eq!(plan.profile(3, 20).loss, 0.05);
    assert_eq!(plan.profile(20, 3).loss, 0.05);
    assert_eq!(plan.profile(20, 21).loss, 0.0);
    // The network gets the same profiles.
    let net = build_network(&edge).unwrap();
    assert_eq!(net.host_count(), 30);
    assert_eq!(
        net.link_profile(HostId(3), HostId(20)).unwrap(),
        plan.profile(3, 20)
    );
    assert_eq!(
        net.link_profile(HostId(20), HostId(21)).unwrap(),
        plan.profile(20, 21)
    );
}

#[test]
fn schedules_are_well_formed() {
    for name in NAMES {
        let s = load(name);
        let schedule = Schedule::build(&s).unwrap();
        assert!(
            schedule.events.windows(2).all(|w| w[0].at <= w[1].at),
            "{name}: sorted"
        );
        let ids: Vec<u64> = schedule.ops().map(|o| o.id).collect();
        assert_eq!(
            ids,
            (1..=ids.len() as u64).collect::<Vec<_>>(),
            "{name}: ids 1..=n in order"
        );
        assert!(matches!(
            schedule.events.last().map(|e| &e.event),
            Some(Event::Quiesce)
        ));
        // Replay the up/down state: ops only ever go to live nodes, crashes
        // only hit live nodes, restarts only down ones.
        let mut up: BTreeSet<usize> = schedule.initial.iter().copied().collect();
        for e in &schedule.events {
            assert!(e.at <= s.duration);
            match &e.event {
                Event::Op(op) => {
                    assert!(up.contains(&op.node), "{name}: op {} on a down node", op.id)
                }
                Event::Crash { node, .. } => {
                    assert!(up.remove(node), "{name}: crash of down node {node}")
                }
                Event::Restart { node, .. } | Event::Join { node, .. } => {
                    assert!(up.insert(*node), "{name}: start of live node {node}")
                }
                _ => {}
            }
        }
        assert_eq!(up.len(), s.nodes, "{name}: everyone is up for quiescence");
    }
}

#[test]
fn workload_rate_and_crash_picks() {
    let s = load("lan-10");
    let schedule = Schedule::build(&s).unwrap();
    // 5.2 ops/s over 28 s: 145.6 expected; Poisson sd ~12.
    let n = schedule.ops().count() as f64;
    assert!((85.0..=206.0).contains(&n), "{n} ops");
    let churn = Schedule::build(&load("churn-100")).unwrap();
    let crashes = churn
        .events
        .iter()
        .filter(|e| matches!(e.event, Event::Crash { .. }))
        .count();
    assert_eq!(crashes, 3 + 3 + 5 + 3 + 5 + 2 + 4 + 3);
    let lost = churn
        .events
        .iter()
        .filter(|e| {
            matches!(
                e.event,
                Event::Restart {
                    fresh_disk: true,
                    ..
                }
            )
        })
        .count();
    assert_eq!(lost, 3 + 3 + 2 + 3);
    assert_eq!(churn.initial.len(), 95);
    // Fault windows: the late join ends when it starts; crashes end at the restart.
    assert_eq!(churn.faults[0].kind, "late-join");
    assert_eq!(churn.faults[0].start, churn.faults[0].end);
    assert_eq!(
        churn.faults[1].end - churn.faults[1].start,
        Duration::from_secs(10)
    );
    assert_eq!(
        churn.faults[6].end,
        Duration::from_secs(120),
        "no restart_after: at the end of the window"
    );
}
