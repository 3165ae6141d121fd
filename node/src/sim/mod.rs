//! `osmoda sim SCENARIO [--out DIR]`: a fleet of real nodes on the
//! simulated network, driven by a scenario; writes the report (JSON, a
//! summary, plots) into DIR and fails when an invariant does not hold.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use osmoda_simulation::Scenario;

mod fleet;

use fleet::SimFleet;

/// The scenarios shipped with osmoda, so `osmoda sim lan-10` works anywhere.
const SHIPPED: &[(&str, &str)] = &[
    (
        "lan-10",
        include_str!("../../../simulation/scenarios/lan-10.toml"),
    ),
    (
        "wan-100",
        include_str!("../../../simulation/scenarios/wan-100.toml"),
    ),
    (
        "partition-heal-50",
        include_str!("../../../simulation/scenarios/partition-heal-50.toml"),
    ),
    (
        "churn-100",
        include_str!("../../../simulation/scenarios/churn-100.toml"),
    ),
    (
        "lossy-edge",
        include_str!("../../../simulation/scenarios/lossy-edge.toml"),
    ),
    (
        "idle-100",
        include_str!("../../../simulation/scenarios/idle-100.toml"),
    ),
    (
        "ci-20",
        include_str!("../../../simulation/scenarios/ci-20.toml"),
    ),
    (
        "ci-10",
        include_str!("../../../simulation/scenarios/ci-10.toml"),
    ),
];

/// A file path, or the name of a shipped scenario.
pub fn load(name: &str) -> Result<Scenario> {
    let path = Path::new(name);
    if path.exists() {
        return Scenario::load(path).with_context(|| format!("cannot load {name}"));
    }
    match SHIPPED.iter().find(|(n, _)| *n == name) {
        Some((n, text)) => {
            Scenario::parse(text, n).with_context(|| format!("shipped scenario {n}"))
        }
        None => bail!(
            "no scenario file {name:?}, and no shipped scenario of that name (shipped: {})",
            SHIPPED
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

pub async fn run(
    name: &str,
    out: Option<PathBuf>,
    nodes: Option<usize>,
    progress: bool,
) -> Result<()> {
    let mut scenario = load(name)?;
    if let Some(nodes) = nodes {
        scenario.nodes = nodes;
        scenario
            .validate()
            .with_context(|| format!("{name} with {nodes} nodes"))?;
    }
    let out = out.unwrap_or_else(|| PathBuf::from("sim-out").join(&scenario.name));
    let network = osmoda_simulation::build_network(&scenario)?;
    let work = std::env::temp_dir().join(format!(
        "osmoda-sim-{}-{}",
        scenario.name,
        std::process::id()
    ));
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let mut fleet = SimFleet::new(network.clone(), scenario.nodes, work.clone());
    let result = osmoda_simulation::run(&scenario, &network, &mut fleet, progress).await;
    fleet.shutdown().await;
    let _ = std::fs::remove_dir_all(&work);
    let report = result?;
    report
        .write(&out)
        .with_context(|| format!("cannot write the report into {}", out.display()))?;
    crate::cli::out::line(report.to_string());
    crate::cli::out::line(format!("report and plots: {}", out.display()));
    if !report.passed() {
        bail!("the run broke an invariant (see above)");
    }
    Ok(())
}
