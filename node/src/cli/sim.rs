//! `osmoda sim SCENARIO [--out DIR]`: a fleet of real nodes on the
//! simulated network, driven by a scenario; writes the report (JSON, a
//! summary, plots) into DIR and fails when an invariant does not hold.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::out;
use crate::sim::{load, SimFleet};

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
    let rogues = scenario.faults.iter().filter_map(|f| match f {
        osmoda_simulation::Fault::Rogue { node, .. } => Some(*node),
        _ => None,
    });
    let mut fleet =
        SimFleet::new(network.clone(), scenario.nodes, work.clone()).with_members(rogues);
    let result = osmoda_simulation::run(&scenario, &network, &mut fleet, progress).await;
    fleet.shutdown().await;
    let _ = std::fs::remove_dir_all(&work);
    let report = result?;
    report
        .write(&out)
        .with_context(|| format!("cannot write the report into {}", out.display()))?;
    out::line(report.to_string());
    out::line(format!("report and plots: {}", out.display()));
    if !report.passed() {
        bail!("the run broke an invariant (see above)");
    }
    Ok(())
}
