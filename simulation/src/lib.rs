//! Network simulation for osmoda: many real nodes in one process, connected
//! through an in-memory network the harness controls.
//!
//! The network layer, bottom up:
//! - `addr`: host ids and their `/ip4/10.x.y.z/tcp/port` addresses.
//! - `link`: the per-direction profile (latency, jitter, bandwidth, loss,
//!   up) and its deterministic sampler.
//! - `stream`: `SimStream`, the byte stream of one connection, with the link
//!   model applied to each direction and bounded buffers.
//! - `transport`: `SimTransport`, a libp2p `Transport` for one host, onto
//!   which the real security upgrade, yamux and behaviours are stacked.
//! - `network`: `SimNetwork`, the registry of hosts, listeners and live
//!   links, and the counters; `network/control.rs` holds the harness's
//!   controls (profiles, partitions, stalls, hosts up and down) and their
//!   semantics.
//!
//! The harness layer, on top:
//! - `scenario`: TOML scenario files (topology, link profiles, faults,
//!   workload) and their validation; `units` their value syntaxes.
//! - `topology`, `schedule`: the seed-determined plan of a run (profiles
//!   per pair, bootstrap peers, every timed fault and op).
//! - `fleet`: the `Fleet` trait the node implements to be driven.
//! - `runner`: executes a schedule in real time and records
//!   (`metrics`) what the nodes hold; `report`, `invariants`, `cost`,
//!   `plot`: the outcome, as JSON, text and SVG.
//!
//! ```no_run
//! # async fn demo(fleet: &mut dyn osmoda_simulation::Fleet) -> Result<(), Box<dyn std::error::Error>> {
//! use osmoda_simulation::{build_network, run, Scenario};
//! let scenario = Scenario::load("simulation/scenarios/ci-20.toml")?;
//! let net = build_network(&scenario)?; // give `net` to the fleet first
//! let report = run(&scenario, &net, fleet, true).await?;
//! report.write(std::path::Path::new("target/sim/ci-20"))?;
//! println!("{report}");
//! assert!(report.passed());
//! # Ok(()) }
//! ```
//!
//! Everything runs in real time on tokio timers: libp2p's own timers (ping,
//! idle timeouts, gossipsub heartbeats) are wall-clock, so the simulated
//! network is too. Randomness comes from one seed, split per directed link,
//! so a link's samples depend only on the seed and the writes on it (the
//! order of writes from several connections sharing one link, and all
//! timing, still depend on scheduling: this is a real-time simulation, not a
//! discrete-event one). Delays are rounded up to tokio's 1 ms timer tick.
//!
//! Cost (measured by `tests/cost.rs` and `examples/idle_cost.rs`): about
//! 1.3 KB per idle connection in this crate; the libp2p stack above it
//! (noise, yamux, the swarm) dominates with about 100 KiB per connection.
//!
//! ```no_run
//! use osmoda_simulation::{LinkProfile, SimConfig, SimNetwork};
//! # fn main() -> Result<(), osmoda_simulation::SimError> {
//! let net = SimNetwork::new(SimConfig { seed: 7, ..SimConfig::default() });
//! let hosts = net.add_hosts(4)?;
//! let transport = net.transport(hosts[0])?; // give it to a SwarmBuilder
//! net.set_link_both(hosts[0], hosts[1], LinkProfile::default().with_loss(0.01))?;
//! net.partition(&hosts[..2], &hosts[2..])?;
//! net.heal(&hosts[..2], &hosts[2..])?;
//! let sent = net.stats(hosts[0])?.bytes_sent;
//! # let _ = (transport, sent); Ok(()) }
//! ```

// Outside bytes, files and answers are errors, never panics; tests may
// unwrap what they made themselves.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod addr;
mod cost;
mod error;
mod fleet;
mod invariants;
mod link;
mod metrics;
mod network;
mod plot;
mod report;
mod rng;
mod runner;
mod scenario;
mod schedule;
mod stats;
mod stream;
mod sync;
mod topology;
mod transport;
mod units;

pub use addr::{host_index, host_ip, parse_multiaddr, to_multiaddr, HostId};
pub use error::SimError;
pub use link::{ChunkDelay, LinkProfile, LinkSampler, MAX_RETRANSMITS};
pub use network::{SimConfig, SimNetwork};
pub use stats::HostStats;
pub use stream::{SimStream, CHUNK_OVERHEAD, MAX_CHUNK};
pub use transport::SimTransport;

pub use cost::ProcSample;
pub use fleet::{
    Attack, AttackOutcome, Fleet, FleetError, Observation, OpKind, Operation, StartSpec,
    VerifyOutcome, OP_KEY_PREFIX,
};
pub use metrics::{FinalNode, FinishInput, Recorder};
pub use plot::{cdf, convergence as plot_convergence, dissemination_cdf as plot_dissemination_cdf};
pub use report::{
    percentile, AgreementPoint, Cost, Dissemination, FaultConvergence, Incident, Invariant,
    NodeCost, OpRecord, OpsSummary, Percentiles, Report, MAX_LISTED,
};
pub use runner::{build_network, run, run_schedule, RunError};
pub use scenario::{
    Fault, InterRegion, Override, ProfileSpec, Scenario, ScenarioError, Topology, Workload,
    MAX_OP_SIZE, MAX_ROGUE_RATE,
};
pub use schedule::{Event, FaultWindow, Schedule, TimedEvent};
pub use topology::TopologyPlan;
pub use units::{Bandwidth, Group, NodeSet};
