//! Scenario files: every shipped one parses and schedules; bad input fails
//! with an error that names the field.

use std::path::PathBuf;
use std::time::Duration;

use osmoda_simulation::{Fault, NodeSet, Scenario, ScenarioError, Schedule, Topology};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

#[test]
fn every_shipped_scenario_parses_and_schedules() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                path.file_stem().unwrap().to_str(),
                Some(s.name.as_str()),
                "name matches file"
            );
            let schedule = Schedule::build(&s).unwrap_or_else(|e| panic!("{e}"));
            // idle-100 measures what nodes cost at rest.
            let idle = s.name.starts_with("idle-");
            assert_eq!(
                schedule.ops().count() > 0,
                !idle,
                "{} has a workload unless idle",
                s.name
            );
            names.push(s.name);
        }
    }
    names.sort();
    assert_eq!(
        names,
        [
            "churn-100",
            "ci-10",
            "ci-20",
            "idle-100",
            "lan-10",
            "lossy-edge",
            "partition-heal-50",
            "rogue-20",
            "rogue-8",
            "wan-100"
        ]
    );
}

#[test]
fn shipped_scenarios_say_what_the_issue_asks() {
    let load = |n: &str| Scenario::load(dir().join(format!("{n}.toml"))).unwrap();
    let ci = load("ci-20");
    assert_eq!(ci.nodes, 20);
    assert!(ci.duration + ci.quiescence <= Duration::from_secs(45));
    assert!(matches!(ci.faults[..], [Fault::Partition { .. }]));
    let wan = load("wan-100");
    assert!(matches!(wan.topology, Topology::Regions { count: 4, .. }));
    let p = load("partition-heal-50");
    let Fault::Partition {
        at,
        heal_at: Some(heal),
        ..
    } = &p.faults[0]
    else {
        panic!()
    };
    assert_eq!(*heal - *at, Duration::from_secs(60));
    let churn = load("churn-100");
    assert!(churn.faults.iter().any(|f| matches!(
        f,
        Fault::Crash {
            lose_disk: true,
            ..
        }
    )));
    assert!(churn.faults.iter().any(|f| matches!(
        f,
        Fault::Crash {
            lose_disk: false,
            ..
        }
    )));
    let lan = load("lan-10");
    assert_eq!(
        lan.profile("lan").unwrap().latency,
        Duration::from_millis(1)
    );
    let edge = load("lossy-edge");
    assert_eq!(edge.overrides[0].nodes, NodeSet::Ranges(vec![(0, 10)]));
}

const BASE: &str = r#"
name = "t"
seed = 1
nodes = 10
duration = "10s"
quiescence = "1s"
"#;

fn parse(extra: &str) -> Result<Scenario, ScenarioError> {
    Scenario::parse(&format!("{BASE}{extra}"), "test.toml")
}

/// The error's text must contain every one of `needles`.
fn fails_with(extra: &str, needles: &[&str]) {
    let err = parse(extra).map(|_| ()).unwrap_err().to_string();
    for n in needles {
        assert!(err.contains(n), "error {err:?} should mention {n:?}");
    }
}

#[test]
fn minimal_scenario_has_defaults() {
    let s = parse("").unwrap();
    assert!(matches!(&s.topology, Topology::FullMesh { profile } if profile == "default"));
    assert_eq!(s.observe_every, Duration::from_millis(50));
    assert!(s.faults.is_empty() && s.workload.is_empty());
}

#[test]
fn unknown_fields_are_named() {
    fails_with("colour = \"red\"", &["colour", "test.toml"]);
    fails_with("[profiles.x]\nlatncy = \"1ms\"", &["latncy", "latency"]);
    fails_with(
        "[[faults]]\nkind = \"crash\"\nat = \"1s\"\nnodes = [1]\nrestart = \"1s\"",
        &["restart", "restart_after"],
    );
    fails_with(
        "[[workload]]\nkind = \"knowledge-put\"\nrate = 1.0",
        &["rate"],
    );
    fails_with(
        "[topology]\nkind = \"star\"\nhub = 0\ndegree = 3",
        &["degree"],
    );
}

#[test]
fn bad_values_are_named() {
    fails_with(
        "[[faults]]\nkind = \"crash\"\nat = \"soon\"\nnodes = [1]",
        &["soon", "invalid duration", "at"],
    );
    fails_with(
        "[[faults]]\nkind = \"meteor\"\nat = \"1s\"",
        &["meteor", "partition"],
    );
    fails_with(
        "[profiles.x]\nbandwidth = \"10 furlongs/s\"",
        &["furlongs", "bandwidth"],
    );
    fails_with(
        "[[workload]]\nkind = \"knowledge-get\"\nrate_per_sec = 1.0",
        &["knowledge-get", "knowledge-put"],
    );
    fails_with(
        "[[faults]]\nkind = \"partition\"\nat = \"1s\"\ngroups = [[0, 4, 5], [6, 9]]",
        &["[first, last]", "groups"],
    );
    fails_with("nodes = -1", &["nodes"]);
}

#[test]
fn validation_names_the_field() {
    fails_with(
        "[[overrides]]\nnodes = \"0..2\"\nprofile = \"nope\"",
        &["overrides[0].profile", "nope"],
    );
    fails_with(
        "[[faults]]\nkind = \"partition\"\nat = \"1s\"\ngroups = [[0, 4], [5, 10]]",
        &["faults[0].groups[1]", "node 10 is out of range"],
    );
    fails_with(
        "[[faults]]\nkind = \"partition\"\nat = \"5s\"\ngroups = [[0, 4], [5, 9]]\nheal_at = \"2s\"",
        &["faults[0].heal_at", "after `at`"],
    );
    fails_with(
        "[[faults]]\nkind = \"partition\"\nat = \"1s\"\ngroups = [[0, 5], [5, 9]]",
        &["node 5 is in both groups"],
    );
    fails_with(
        "[[faults]]\nkind = \"stall\"\nat = \"20s\"\nfrom = \"0\"\nfor = \"1s\"",
        &["faults[0].at", "duration"],
    );
    fails_with(
        "[[faults]]\nkind = \"crash\"\nat = \"1s\"\nnodes = \"0..3\"\npick = 4",
        &["faults[0].pick"],
    );
    fails_with(
        "[[workload]]\nkind = \"broadcast\"\nrate_per_sec = 0.0",
        &["workload[0].rate_per_sec"],
    );
    fails_with(
        "[[workload]]\nkind = \"broadcast\"\nrate_per_sec = 1.0\nuntil = \"11s\"",
        &["workload[0].until"],
    );
    fails_with(
        "[topology]\nkind = \"random\"\ndegree = 10",
        &["topology.degree"],
    );
    fails_with("[topology]\nkind = \"star\"\nhub = 10", &["topology.hub"]);
    fails_with("[profiles.x]\nloss = 1.5", &["profiles.x", "loss"]);
}

#[test]
fn rogue_faults_are_checked_field_by_field() {
    let rogue = "[[faults]]\nkind = \"rogue\"\nat = \"1s\"\n";
    fails_with(
        &format!("{rogue}rate_per_sec = 1.0"),
        &["missing field `node`", "rogue"],
    );
    fails_with(
        &format!("{rogue}node = 2"),
        &["missing field `rate_per_sec`"],
    );
    fails_with(
        &format!("{rogue}node = 10\nrate_per_sec = 1.0"),
        &["faults[0].node", "node 10 is out of range"],
    );
    fails_with(
        &format!("{rogue}node = 2\nrate_per_sec = 0.0"),
        &["faults[0].rate_per_sec", "positive"],
    );
    fails_with(
        &format!("{rogue}node = 2\nrate_per_sec = 1000.0"),
        &["faults[0].rate_per_sec", "at most"],
    );
    fails_with(
        &format!("{rogue}node = 2\nrate_per_sec = 1.0\nuntil = \"1s\""),
        &["faults[0].until", "after `at`"],
    );
    fails_with(
        &format!("{rogue}node = 2\nrate_per_sec = 1.0\nuntil = \"12s\""),
        &["faults[0].until", "duration"],
    );
    fails_with(
        &format!("{rogue}node = 2\nrate_per_sec = 1.0\nnodes = [3]"),
        &["`nodes` is not a field of kind \"rogue\""],
    );
    let all: String = (0..10)
        .map(|n| format!("{rogue}node = {n}\nrate_per_sec = 1.0\n"))
        .collect();
    fails_with(&all, &["faults[9].node", "at least one must stay honest"]);
}

#[test]
fn schedule_level_errors_name_the_fault() {
    // Node 3 is still down from the first crash when the second one comes.
    let s = parse(
        "[[faults]]\nkind = \"crash\"\nat = \"1s\"\nnodes = [3]\nrestart_after = \"5s\"\n\
         [[faults]]\nkind = \"crash\"\nat = \"2s\"\nnodes = [3, 4]\n",
    )
    .unwrap();
    let err = Schedule::build(&s).unwrap_err().to_string();
    assert!(
        err.contains("faults[1].nodes") && err.contains("node 3 is already down"),
        "{err}"
    );
    // A late joiner cannot crash before it joins.
    let s = parse(
        "[[faults]]\nkind = \"crash\"\nat = \"1s\"\nnodes = [7]\n\
         [[faults]]\nkind = \"late-join\"\nat = \"5s\"\nnodes = \"7..10\"\n",
    )
    .unwrap();
    assert!(Schedule::build(&s)
        .unwrap_err()
        .to_string()
        .contains("not joined yet"));
}

#[test]
fn every_fault_kind_parses() {
    let s = parse(
        r#"
[profiles.slow]
latency = "100ms"
bandwidth = 125000

[[faults]]
kind = "partition"
at = "1s"
groups = ["0..3,7", [8, 9]]
one_way = true

[[faults]]
kind = "crash"
at = "2s"
nodes = 5
restart_after = "1s"
lose_disk = true

[[faults]]
kind = "stall"
at = "3s"
from = [1, 2]
for = "500ms"

[[faults]]
kind = "late-join"
at = "1s"
nodes = "4"

[[faults]]
kind = "link-change"
at = "4s"
from = "all"
to = "0..=2"
profile = "slow"
until = "6s"
"#,
    )
    .unwrap();
    let kinds: Vec<&str> = s.faults.iter().map(Fault::kind).collect();
    assert_eq!(
        kinds,
        ["partition", "crash", "stall", "late-join", "link-change"]
    );
    let Fault::Partition { groups, .. } = &s.faults[0] else {
        panic!()
    };
    assert_eq!(groups[0].0.resolve(10).unwrap(), [0, 1, 2, 7]);
    assert_eq!(groups[1].0.resolve(10).unwrap(), [8, 9]);
    assert_eq!(
        s.profile("slow").unwrap().bandwidth_bytes_per_sec,
        Some(125_000)
    );
    let schedule = Schedule::build(&s).unwrap();
    assert_eq!(schedule.initial, [0, 1, 2, 3, 5, 6, 7, 8, 9]);
}
