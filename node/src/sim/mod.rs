//! The simulator's front: the scenarios shipped in the binary, and
//! [`SimFleet`], real nodes on the simulated network for the harness of
//! `osmoda-simulation` (`osmoda sim` runs it, `cli/sim.rs`).

use std::path::Path;

use osmoda_simulation::Scenario;

use crate::error::{NodeError, NodeResult};

mod fleet;

pub use fleet::SimFleet;

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
pub fn load(name: &str) -> NodeResult<Scenario> {
    let path = Path::new(name);
    if path.exists() {
        return Scenario::load(path)
            .map_err(|e| NodeError::Invalid(format!("cannot load {name}: {e}")));
    }
    match SHIPPED.iter().find(|(n, _)| *n == name) {
        Some((n, text)) => Scenario::parse(text, n)
            .map_err(|e| NodeError::Internal(format!("shipped scenario {n}: {e}"))),
        None => Err(NodeError::not_found(
            "scenario file or shipped scenario",
            format!("{name} (shipped: {})", shipped_names().join(", ")),
        )),
    }
}

/// The names of the scenarios shipped in the binary.
pub fn shipped_names() -> Vec<&'static str> {
    SHIPPED.iter().map(|(n, _)| *n).collect()
}
