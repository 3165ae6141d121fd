//! The CI-sized scenario: ten real nodes on the simulated network split
//! 5/5 for twelve seconds while both sides write, then healed; the run must
//! keep every
//! invariant (no divergence, nothing acknowledged lost, every audit log
//! verifies). Figures are reported, not asserted.

mod common;

#[test]
fn ci_scenario_keeps_every_invariant() {
    let out = tempfile::tempdir().unwrap();
    let run = std::process::Command::new(common::BIN)
        .args(["sim", "ci-10", "--no-progress", "--out"])
        .arg(out.path())
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
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    let invariants = report["invariants"].as_array().unwrap();
    assert!(invariants.len() >= 4, "{report}");
    for i in invariants {
        assert_eq!(i["passed"], true, "invariant {} failed: {i}", i["name"]);
    }
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
