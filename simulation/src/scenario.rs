//! Scenario files: what a simulation run does, in TOML.
//!
//! ```toml
//! name = "ci-20"
//! seed = 7
//! nodes = 20
//! duration = "30s"     # the fault window: faults and workload happen in it
//! quiescence = "10s"   # then everything is healed and nothing is written
//!
//! [topology]           # which pairs get which profile; whom each node dials
//! kind = "full-mesh"   # full-mesh | regions | star | random
//! profile = "lan"
//!
//! [profiles.lan]       # named link profiles; "default" and "ideal" are built in
//! latency = "1ms"
//! jitter = "200us"
//! bandwidth = "1Gbit/s"
//! loss = 0.0
//!
//! [[overrides]]        # links touching `nodes` (to `peers`) use another profile
//! nodes = "0..5"
//! profile = "lan"
//!
//! [[faults]]
//! kind = "partition"
//! at = "10s"
//! groups = [[0, 9], [10, 19]]
//! heal_at = "20s"
//!
//! [[faults]]
//! kind = "rogue"       # a member with real credentials turns malicious
//! node = 7
//! at = "5s"
//! until = "25s"
//! rate_per_sec = 2.0
//!
//! [[workload]]
//! kind = "knowledge-put"
//! rate_per_sec = 2.0
//! ```
//!
//! Unknown fields are errors; every error names its field, either through
//! the TOML parser (key, line and column) or through `validate`
//! (`faults[2].heal_at: ...`). Times (`at`, `heal_at`, `from`, `until`) are
//! offsets from the start of the run. Semantics of each fault are on
//! `Fault`; how topologies are laid out is in `topology.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::fleet::OpKind;
use crate::link::LinkProfile;
use crate::units::{self, Bandwidth, Group, NodeSet};

mod raw;
mod validate;

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The TOML parser's message names the key, line and column.
    #[error("scenario {origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("scenario {scenario}: {field}: {reason}")]
    Invalid {
        scenario: String,
        field: String,
        reason: String,
    },
}

/// The largest payload a workload op may ask for.
pub const MAX_OP_SIZE: usize = 1 << 20;

/// A whole scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Seeds the schedule, the topology and the network's link samplers.
    pub seed: u64,
    pub nodes: usize,
    /// The fault window.
    #[serde(deserialize_with = "units::duration")]
    pub duration: Duration,
    /// After `duration`: partitions healed, crashed nodes restarted, no
    /// workload; the invariants are checked at its end.
    #[serde(deserialize_with = "units::duration")]
    pub quiescence: Duration,
    /// How often every node is observed (dissemination resolution).
    #[serde(default = "default_observe", deserialize_with = "units::duration")]
    pub observe_every: Duration,
    #[serde(default)]
    pub topology: Topology,
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileSpec>,
    #[serde(default)]
    pub overrides: Vec<Override>,
    #[serde(default)]
    pub faults: Vec<Fault>,
    #[serde(default)]
    pub workload: Vec<Workload>,
}

fn default_observe() -> Duration {
    Duration::from_millis(50)
}

pub(crate) fn default_profile() -> String {
    "default".into()
}

fn default_size() -> usize {
    256
}

/// How nodes are laid out (details in `topology.rs`). In the file: a
/// `[topology]` table with `kind` and the fields of that kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Topology {
    /// Every pair on `profile`; every node dials every lower-numbered node.
    FullMesh { profile: String },
    /// `count` regions of consecutive nodes; pairs inside a region use
    /// `intra`, pairs across use `inter` with a latency drawn per region
    /// pair; each node dials `bootstrap` peers of its region (default 2)
    /// and one outside.
    Regions {
        count: usize,
        intra: String,
        inter: InterRegion,
        bootstrap: usize,
    },
    /// Every node dials only `hub`; all pairs on `profile`.
    Star { hub: usize, profile: String },
    /// Every node dials `degree` random peers (connected by construction).
    Random { degree: usize, profile: String },
}

impl Default for Topology {
    fn default() -> Self {
        Topology::FullMesh {
            profile: default_profile(),
        }
    }
}

/// Links between two regions: the latency of each region pair is uniform
/// in `latency_min..=latency_max`, drawn from the seed, the same both ways.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterRegion {
    #[serde(deserialize_with = "units::duration")]
    pub latency_min: Duration,
    #[serde(deserialize_with = "units::duration")]
    pub latency_max: Duration,
    #[serde(default, deserialize_with = "units::duration")]
    pub jitter: Duration,
    #[serde(default)]
    pub bandwidth: Option<Bandwidth>,
    #[serde(default)]
    pub loss: f64,
}

/// A named link profile; missing fields are zero (no bandwidth limit).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    #[serde(default, deserialize_with = "units::duration")]
    pub latency: Duration,
    #[serde(default, deserialize_with = "units::duration")]
    pub jitter: Duration,
    #[serde(default)]
    pub bandwidth: Option<Bandwidth>,
    #[serde(default)]
    pub loss: f64,
}

impl ProfileSpec {
    pub fn to_profile(&self) -> LinkProfile {
        LinkProfile::ideal()
            .with_latency(self.latency)
            .with_jitter(self.jitter)
            .with_bandwidth(self.bandwidth.map(|b| b.0))
            .with_loss(self.loss)
    }
}

/// Links with one end in `nodes` and the other in `peers` use `profile`
/// (both directions). Later overrides win over earlier ones.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    #[serde(default)]
    pub name: String,
    pub nodes: NodeSet,
    #[serde(default)]
    pub peers: NodeSet,
    pub profile: String,
}

/// One entry of the fault timeline: a `[[faults]]` table with `kind`,
/// `at` and the fields of that kind (others are errors).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Cuts every link between the two groups (only first → second with
    /// `one_way`) until `heal_at`, or until the end of `duration`.
    Partition {
        at: Duration,
        groups: Vec<Group>,
        one_way: bool,
        heal_at: Option<Duration>,
    },
    /// Kills `nodes` abruptly (or `pick` of them, chosen from the seed among
    /// those up at `at`); each restarts after `restart_after`, or at the end
    /// of `duration`, with an empty data folder if `lose_disk`.
    Crash {
        at: Duration,
        nodes: NodeSet,
        pick: Option<usize>,
        restart_after: Option<Duration>,
        lose_disk: bool,
    },
    /// Holds all data on the live connections from `from` to `to` (default
    /// all) for `for` (a routing flap); new dials are not affected.
    Stall {
        at: Duration,
        from: NodeSet,
        to: NodeSet,
        stall_for: Duration,
    },
    /// `nodes` are not started at the beginning but at `at`, with an empty
    /// data folder.
    LateJoin { at: Duration, nodes: NodeSet },
    /// Links from `from` to `to` (default all; both ways unless `one_way`)
    /// switch to `profile` until `until` (then back to the topology's), or
    /// for good.
    LinkChange {
        at: Duration,
        from: NodeSet,
        to: NodeSet,
        one_way: bool,
        profile: String,
        until: Option<Duration>,
    },
    /// `node` turns malicious from `at` until `until` (or the end of
    /// `duration`): with its real key and certificate, it tries at
    /// `rate_per_sec` (Poisson arrivals) one move after another of
    /// `fleet::Attack` in turn, through its own fabric. A rogue node takes
    /// no workload in the whole run, and the invariants are checked over
    /// the other (honest) nodes.
    Rogue {
        at: Duration,
        node: usize,
        until: Option<Duration>,
        rate_per_sec: f64,
    },
}

/// The most attempts a second a rogue fault may make.
pub const MAX_ROGUE_RATE: f64 = 100.0;

impl Fault {
    pub fn at(&self) -> Duration {
        match self {
            Fault::Partition { at, .. }
            | Fault::Crash { at, .. }
            | Fault::Stall { at, .. }
            | Fault::LateJoin { at, .. }
            | Fault::LinkChange { at, .. }
            | Fault::Rogue { at, .. } => *at,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Partition { .. } => "partition",
            Fault::Crash { .. } => "crash",
            Fault::Stall { .. } => "stall",
            Fault::LateJoin { .. } => "late-join",
            Fault::LinkChange { .. } => "link-change",
            Fault::Rogue { .. } => "rogue",
        }
    }
}

/// A stream of operations: Poisson arrivals at `rate_per_sec` (over all
/// of `nodes` together) from `from` to `until` (default: `duration`), each
/// on a node of the set that is up at that moment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub kind: OpKind,
    pub rate_per_sec: f64,
    #[serde(default)]
    pub nodes: NodeSet,
    #[serde(default, deserialize_with = "units::duration")]
    pub from: Duration,
    #[serde(default, deserialize_with = "units::opt_duration")]
    pub until: Option<Duration>,
    /// Payload bytes of each op (see `Operation::body`).
    #[serde(default = "default_size")]
    pub size: usize,
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates scenario text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        // Name the file rather than the scenario: that is what to open.
        scenario.validate().map_err(|e| match e {
            ScenarioError::Invalid { field, reason, .. } => ScenarioError::Invalid {
                scenario: origin.to_string(),
                field,
                reason,
            },
            other => other,
        })?;
        Ok(scenario)
    }

    /// The resolved profile of a name ("default" and "ideal" are built in
    /// unless the file defines them).
    pub fn profile(&self, name: &str) -> Option<LinkProfile> {
        match (self.profiles.get(name), name) {
            (Some(spec), _) => Some(spec.to_profile()),
            (None, "default") => Some(LinkProfile::default()),
            (None, "ideal") => Some(LinkProfile::ideal()),
            (None, _) => None,
        }
    }

    pub(crate) fn invalid(
        &self,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> ScenarioError {
        ScenarioError::Invalid {
            scenario: self.name.clone(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Resolves a node set, naming `field` on error.
    pub(crate) fn nodes_of(&self, set: &NodeSet, field: &str) -> Result<Vec<usize>, ScenarioError> {
        set.resolve(self.nodes).map_err(|e| self.invalid(field, e))
    }
}
