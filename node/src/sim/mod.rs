//! The simulator's front: the scenarios shipped in the binary, and
//! [`SimFleet`], real nodes on the simulated network for the harness of
//! `osmoda-simulation` (`osmoda sim` runs it, `cli/sim.rs`).

use std::path::Path;

use libp2p::core::transport::Transport as _;
use osmoda_fabric::proto::FleetCert;
use osmoda_fabric::{FabricConfig, RawStream, StreamTransportSlot};
use osmoda_simulation::{HostId, Scenario, SimError, SimNetwork};
use osmoda_store::Store;
use zeroize::Zeroizing;

use crate::datadir::FleetInfo;
use crate::error::{NodeError, NodeResult};
use crate::runtime::builder::NodeBuilder;
use crate::state::agent_uids::UidRange;
use crate::state::agents::AgentsConfig;

mod fleet;
pub mod rogue;

pub use fleet::SimFleet;

/// Where a node sits on the simulation's in-memory network.
#[derive(Clone, Copy)]
pub struct SimHost<'a> {
    pub net: &'a SimNetwork,
    pub host: HostId,
    pub port: u16,
}

impl SimHost<'_> {
    /// The builder `osmoda run` uses, for a node on this host: the
    /// network's transport, no mDNS, no cgroups, no data folder; its agents
    /// and agent socket in `folder`. The caller may adjust `fabric`
    /// (bootstrap, limits) before starting it.
    pub fn builder(
        &self,
        store: Store,
        identity: [u8; 32],
        cert: FleetCert,
        fleet: FleetInfo,
        folder: &Path,
    ) -> Result<NodeBuilder, SimError> {
        let transport = self
            .net
            .transport(self.host)?
            .map(|s, _| Box::new(s) as Box<dyn RawStream>)
            .boxed();
        Ok(NodeBuilder {
            cert_lifetime: std::time::Duration::from_secs(
                crate::config::DEFAULT_CERT_LIFETIME_DAYS * 24 * 3600,
            ),
            store,
            identity: Zeroizing::new(identity),
            cert,
            fleet,
            holds_root_key: false,
            fabric: FabricConfig {
                listen: vec![self.net.host_addr(self.host, self.port)?],
                mdns: false,
                stream_transport: Some(StreamTransportSlot::new(transport)),
                ..FabricConfig::default()
            },
            fallback_listen: None,
            revocations: Vec::new(),
            agents: AgentsConfig {
                dir: folder.join("agents"),
                socket: folder.join("agent.sock"),
                cgroups: false,
                uids: UidRange::default(),
            },
            data: None,
            labels: std::collections::BTreeMap::new(),
            vault_key: folder.join(crate::state::vault::KEY_FILE),
        })
    }
}

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
    (
        "rogue-20",
        include_str!("../../../simulation/scenarios/rogue-20.toml"),
    ),
    (
        "rogue-8",
        include_str!("../../../simulation/scenarios/rogue-8.toml"),
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
