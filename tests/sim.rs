//! The CI-sized scenarios: ten real nodes on the simulated network split
//! 5/5 for twelve seconds while both sides write, then healed; and eight
//! with one malicious member. Each run must keep every invariant (no
//! divergence, nothing acknowledged lost, every audit log verifies,
//! nothing of the rogue's taken). Figures are reported, not asserted.

mod common;

/// Runs a shipped scenario and returns its `report.json`, once it passed.
fn run_passing(name: &str, out: &std::path::Path) -> serde_json::Value {
    let run = std::process::Command::new(common::BIN)
        .args(["sim", name, "--no-progress", "--out"])
        .arg(out)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    eprintln!("{stdout}");
    assert!(
        run.status.success(),
        "the simulation failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    for i in report["invariants"].as_array().unwrap() {
        assert_eq!(i["passed"], true, "invariant {} failed: {i}", i["name"]);
    }
    report
}

#[test]
fn a_malicious_member_changes_nothing_and_the_others_converge() {
    let out = tempfile::tempdir().unwrap();
    let report = run_passing("rogue-8", out.path());
    let names: Vec<&str> = report["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert!(names.contains(&"rogue-refused"), "{names:?}");
    assert_eq!(report["rogue"]["nodes"], serde_json::json!([3]));
    // Every move was made and refused at least once, none taken.
    let by_attack = report["rogue"]["by_attack"].as_object().unwrap();
    for attack in [
        "edit-foreign",
        "delete-foreign",
        "forge-actor",
        "unsealed",
        "routine-add",
        "emergency-junk",
    ] {
        let c = &by_attack[attack];
        assert!(c["refused"].as_u64().unwrap_or(0) >= 1, "{attack}: {c}");
        assert_eq!(c["accepted"], 0, "{attack}: {c}");
    }
    assert!(report["ops"]["acked"].as_u64().unwrap_or(0) > 0);
}

#[test]
fn ci_scenario_keeps_every_invariant() {
    let out = tempfile::tempdir().unwrap();
    let report = run_passing("ci-10", out.path());
    assert!(
        report["invariants"].as_array().unwrap().len() >= 4,
        "{report}"
    );
    assert!(
        report["ops"]["acked"].as_u64().unwrap_or(0) > 0,
        "{}",
        report["ops"]
    );
    for plot in ["dissemination-cdf.svg", "convergence.svg"] {
        let svg = std::fs::read_to_string(out.path().join(plot)).unwrap();
        assert!(svg.contains("<svg"), "{plot} is not an SVG");
    }
}

#[test]
fn a_node_count_that_does_not_fit_the_scenario_is_refused() {
    // partition-heal-50 splits nodes 0..25 from 25..50.
    let run = std::process::Command::new(common::BIN)
        .args(["sim", "partition-heal-50", "--no-progress", "--nodes", "10"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains("partition-heal-50 with 10 nodes"),
        "{stderr}"
    );
}
