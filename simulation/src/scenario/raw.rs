//! The file form of the two tagged tables, `[topology]` and `[[faults]]`.
//!
//! They are read as flat tables (every field of every kind optional) and
//! then checked against their `kind`, rather than with serde's internally
//! tagged enums: those buffer the table first, which loses the TOML
//! parser's positions, so a bad value deep inside would be reported
//! against the table header instead of its own line. Here a bad value is
//! reported on its line, and a field of the wrong kind or a missing one is
//! reported by name.

use std::time::Duration;

use serde::de::{Deserializer, Error};
use serde::Deserialize;

use super::{default_profile, Fault, InterRegion, Topology};
use crate::units::{self, Group, NodeSet};

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum TopologyKind {
    FullMesh,
    Regions,
    Star,
    Random,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    kind: TopologyKind,
    profile: Option<String>,
    count: Option<usize>,
    intra: Option<String>,
    inter: Option<InterRegion>,
    bootstrap: Option<usize>,
    hub: Option<usize>,
    degree: Option<usize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum FaultKind {
    Partition,
    Crash,
    Stall,
    LateJoin,
    LinkChange,
    Rogue,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    kind: FaultKind,
    #[serde(deserialize_with = "units::duration")]
    at: Duration,
    groups: Option<Vec<Group>>,
    one_way: Option<bool>,
    #[serde(default, deserialize_with = "units::opt_duration")]
    heal_at: Option<Duration>,
    nodes: Option<NodeSet>,
    pick: Option<usize>,
    #[serde(default, deserialize_with = "units::opt_duration")]
    restart_after: Option<Duration>,
    lose_disk: Option<bool>,
    from: Option<NodeSet>,
    to: Option<NodeSet>,
    #[serde(default, rename = "for", deserialize_with = "units::opt_duration")]
    stall_for: Option<Duration>,
    profile: Option<String>,
    #[serde(default, deserialize_with = "units::opt_duration")]
    until: Option<Duration>,
    node: Option<usize>,
    rate_per_sec: Option<f64>,
}

/// Rejects the fields that are set but not in `allowed` for `kind`.
fn only(kind: &str, set: &[(&str, bool)], allowed: &[&str]) -> Result<(), String> {
    match set
        .iter()
        .find(|(name, present)| *present && !allowed.contains(name))
    {
        Some((name, _)) => Err(format!(
            "`{name}` is not a field of kind \"{kind}\" (its fields: kind, {})",
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

fn need<T>(v: Option<T>, kind: &str, field: &str) -> Result<T, String> {
    v.ok_or_else(|| format!("missing field `{field}` (required for kind \"{kind}\")"))
}

impl RawTopology {
    fn convert(self) -> Result<Topology, String> {
        let set = [
            ("profile", self.profile.is_some()),
            ("count", self.count.is_some()),
            ("intra", self.intra.is_some()),
            ("inter", self.inter.is_some()),
            ("bootstrap", self.bootstrap.is_some()),
            ("hub", self.hub.is_some()),
            ("degree", self.degree.is_some()),
        ];
        let profile = self.profile.unwrap_or_else(default_profile);
        Ok(match self.kind {
            TopologyKind::FullMesh => {
                only("full-mesh", &set, &["profile"])?;
                Topology::FullMesh { profile }
            }
            TopologyKind::Star => {
                only("star", &set, &["hub", "profile"])?;
                Topology::Star {
                    hub: need(self.hub, "star", "hub")?,
                    profile,
                }
            }
            TopologyKind::Random => {
                only("random", &set, &["degree", "profile"])?;
                Topology::Random {
                    degree: need(self.degree, "random", "degree")?,
                    profile,
                }
            }
            TopologyKind::Regions => {
                only("regions", &set, &["count", "intra", "inter", "bootstrap"])?;
                Topology::Regions {
                    count: need(self.count, "regions", "count")?,
                    intra: need(self.intra, "regions", "intra")?,
                    inter: need(self.inter, "regions", "inter")?,
                    bootstrap: self.bootstrap.unwrap_or(2),
                }
            }
        })
    }
}

impl RawFault {
    fn convert(self) -> Result<Fault, String> {
        let set = [
            ("groups", self.groups.is_some()),
            ("one_way", self.one_way.is_some()),
            ("heal_at", self.heal_at.is_some()),
            ("nodes", self.nodes.is_some()),
            ("pick", self.pick.is_some()),
            ("restart_after", self.restart_after.is_some()),
            ("lose_disk", self.lose_disk.is_some()),
            ("from", self.from.is_some()),
            ("to", self.to.is_some()),
            ("for", self.stall_for.is_some()),
            ("profile", self.profile.is_some()),
            ("until", self.until.is_some()),
            ("node", self.node.is_some()),
            ("rate_per_sec", self.rate_per_sec.is_some()),
        ];
        let at = self.at;
        Ok(match self.kind {
            FaultKind::Partition => {
                only("partition", &set, &["at", "groups", "one_way", "heal_at"])?;
                Fault::Partition {
                    at,
                    groups: need(self.groups, "partition", "groups")?,
                    one_way: self.one_way.unwrap_or(false),
                    heal_at: self.heal_at,
                }
            }
            FaultKind::Crash => {
                only(
                    "crash",
                    &set,
                    &["at", "nodes", "pick", "restart_after", "lose_disk"],
                )?;
                Fault::Crash {
                    at,
                    nodes: need(self.nodes, "crash", "nodes")?,
                    pick: self.pick,
                    restart_after: self.restart_after,
                    lose_disk: self.lose_disk.unwrap_or(false),
                }
            }
            FaultKind::Stall => {
                only("stall", &set, &["at", "from", "to", "for"])?;
                Fault::Stall {
                    at,
                    from: need(self.from, "stall", "from")?,
                    to: self.to.unwrap_or_default(),
                    stall_for: need(self.stall_for, "stall", "for")?,
                }
            }
            FaultKind::LateJoin => {
                only("late-join", &set, &["at", "nodes"])?;
                Fault::LateJoin {
                    at,
                    nodes: need(self.nodes, "late-join", "nodes")?,
                }
            }
            FaultKind::LinkChange => {
                only(
                    "link-change",
                    &set,
                    &["at", "from", "to", "one_way", "profile", "until"],
                )?;
                Fault::LinkChange {
                    at,
                    from: need(self.from, "link-change", "from")?,
                    to: self.to.unwrap_or_default(),
                    one_way: self.one_way.unwrap_or(false),
                    profile: need(self.profile, "link-change", "profile")?,
                    until: self.until,
                }
            }
            FaultKind::Rogue => {
                only("rogue", &set, &["at", "node", "until", "rate_per_sec"])?;
                Fault::Rogue {
                    at,
                    node: need(self.node, "rogue", "node")?,
                    until: self.until,
                    rate_per_sec: need(self.rate_per_sec, "rogue", "rate_per_sec")?,
                }
            }
        })
    }
}

impl<'de> Deserialize<'de> for Topology {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RawTopology::deserialize(d)?
            .convert()
            .map_err(D::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Fault {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RawFault::deserialize(d)?
            .convert()
            .map_err(D::Error::custom)
    }
}
