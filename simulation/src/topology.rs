//! From a scenario's topology and overrides to the profile of every
//! directed pair and the peers each node dials at start.
//!
//! Layouts (node `i` is `HostId(i)`):
//! - `full-mesh`: every pair on one profile; node `i` dials `0..i`, so all
//!   pairs are connected from the start.
//! - `regions`: region `r` is the consecutive block `r*n/count ..
//!   (r+1)*n/count`. Pairs inside a region use `intra`; a pair across
//!   regions `(ra, rb)` uses a latency drawn once per region pair in
//!   `latency_min..=latency_max` (same both ways, like a geographic
//!   distance). Each node dials `bootstrap` peers of its region (the first
//!   one among lower-numbered nodes of the region, so every region is
//!   connected) and one peer outside it (for a region's first node, in an
//!   earlier region, so the regions are connected too).
//! - `star`: every pair on one profile; every node dials only the hub. The
//!   other links exist: nodes may still find each other (Kademlia) and
//!   connect directly.
//! - `random`: every pair on one profile; each node dials `degree` distinct
//!   random peers, the first among lower-numbered nodes (a random tree,
//!   so the graph is connected whatever the draw).
//!
//! Overrides then replace the profile of the pairs they match, in order.
//! All draws come from the seed (`rng.rs`): the same scenario always gives
//! the same plan.

use serde::Serialize;

use crate::addr::HostId;
use crate::error::SimError;
use crate::link::LinkProfile;
use crate::network::{SimConfig, SimNetwork};
use crate::rng::Rng;
use crate::scenario::{Scenario, ScenarioError, Topology};

/// The links and bootstrap lists of a scenario.
#[derive(Debug, Clone, Serialize)]
pub struct TopologyPlan {
    nodes: usize,
    /// Region of each node (all 0 without regions).
    pub region_of: Vec<usize>,
    /// Nodes each node dials at start, in dial order.
    pub bootstrap: Vec<Vec<usize>>,
    /// The profile most pairs use: the network's default.
    pub default_profile: LinkProfile,
    /// With regions: the profile between region `a` and `b` at
    /// `a * count + b` (the diagonal is unused).
    inter: Vec<LinkProfile>,
    regions: usize,
    #[serde(skip)]
    overrides: Vec<(Vec<bool>, Vec<bool>, LinkProfile)>,
}

impl TopologyPlan {
    pub fn build(s: &Scenario) -> Result<TopologyPlan, ScenarioError> {
        s.validate()?;
        let n = s.nodes;
        let mut rng = Rng::stream(s.seed, "topology", 0);
        // Validated above: every referenced profile exists.
        let profile = |name: &str| {
            s.profile(name)
                .ok_or_else(|| s.invalid("topology", format!("unknown profile {name:?}")))
        };
        let mut plan = TopologyPlan {
            nodes: n,
            region_of: vec![0; n],
            bootstrap: vec![Vec::new(); n],
            default_profile: LinkProfile::default(),
            inter: Vec::new(),
            regions: 1,
            overrides: Vec::new(),
        };
        match &s.topology {
            Topology::FullMesh { profile: p } => {
                plan.default_profile = profile(p)?;
                for (i, b) in plan.bootstrap.iter_mut().enumerate() {
                    *b = (0..i).collect();
                }
            }
            Topology::Star { hub, profile: p } => {
                plan.default_profile = profile(p)?;
                for (i, b) in plan.bootstrap.iter_mut().enumerate() {
                    if i != *hub {
                        *b = vec![*hub];
                    }
                }
            }
            Topology::Random { degree, profile: p } => {
                plan.default_profile = profile(p)?;
                let all: Vec<usize> = (0..n).collect();
                for i in 0..n {
                    plan.bootstrap[i] = dial_list(&mut rng, &all[..i], &all, i, *degree);
                }
            }
            Topology::Regions {
                count,
                intra,
                inter,
                bootstrap,
            } => {
                plan.default_profile = profile(intra)?;
                plan.regions = *count;
                plan.region_of = (0..n).map(|i| i * count / n).collect();
                plan.inter = vec![LinkProfile::ideal(); count * count];
                let (lo, hi) = (inter.latency_min, inter.latency_max);
                for a in 0..*count {
                    for b in a + 1..*count {
                        let span = (hi - lo).as_nanos() as f64;
                        let latency =
                            lo + std::time::Duration::from_nanos((rng.unit() * span) as u64);
                        let p = LinkProfile::ideal()
                            .with_latency(latency)
                            .with_jitter(inter.jitter)
                            .with_bandwidth(inter.bandwidth.map(|b| b.0))
                            .with_loss(inter.loss);
                        plan.inter[a * count + b] = p.clone();
                        plan.inter[b * count + a] = p;
                    }
                }
                for i in 0..n {
                    let r = plan.region_of[i];
                    let mine: Vec<usize> = (0..n).filter(|&j| plan.region_of[j] == r).collect();
                    let earlier: Vec<usize> = mine.iter().copied().filter(|&j| j < i).collect();
                    let mut dials = dial_list(&mut rng, &earlier, &mine, i, *bootstrap);
                    let outside: Vec<usize> = if earlier.is_empty() {
                        (0..n).filter(|&j| plan.region_of[j] < r).collect()
                    } else {
                        (0..n).filter(|&j| plan.region_of[j] != r).collect()
                    };
                    dials.extend(rng.sample(&outside, 1));
                    plan.bootstrap[i] = dials;
                }
            }
        }
        for (k, o) in s.overrides.iter().enumerate() {
            let mask = |set, field: &str| -> Result<Vec<bool>, ScenarioError> {
                let mut m = vec![false; n];
                for i in s.nodes_of(set, &format!("overrides[{k}].{field}"))? {
                    m[i] = true;
                }
                Ok(m)
            };
            let p = s
                .profile(&o.profile)
                .ok_or_else(|| s.invalid(format!("overrides[{k}].profile"), "unknown profile"))?;
            plan.overrides
                .push((mask(&o.nodes, "nodes")?, mask(&o.peers, "peers")?, p));
        }
        Ok(plan)
    }

    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// The profile from `a` to `b` that the scenario sets (what a
    /// link-change reverts to).
    pub fn profile(&self, a: usize, b: usize) -> LinkProfile {
        for (nodes, peers, p) in self.overrides.iter().rev() {
            let hit =
                |x: usize, y: usize| nodes.get(x) == Some(&true) && peers.get(y) == Some(&true);
            if hit(a, b) || hit(b, a) {
                return p.clone();
            }
        }
        let (ra, rb) = (self.region_of.get(a), self.region_of.get(b));
        match (ra, rb) {
            (Some(&ra), Some(&rb)) if ra != rb => self.inter[ra * self.regions + rb].clone(),
            _ => self.default_profile.clone(),
        }
    }

    /// A network with one host per node and every pair's profile set;
    /// node `i` is `HostId(i)`.
    pub fn network(&self, seed: u64) -> Result<SimNetwork, SimError> {
        let net = SimNetwork::new(SimConfig {
            seed,
            default_profile: self.default_profile.clone(),
            ..SimConfig::default()
        });
        net.add_hosts(self.nodes)?;
        self.apply(&net)?;
        Ok(net)
    }

    /// Sets every pair whose profile differs from the network's default.
    pub fn apply(&self, net: &SimNetwork) -> Result<(), SimError> {
        let default = net.config().default_profile.clone();
        for a in 0..self.nodes {
            for b in 0..self.nodes {
                let p = self.profile(a, b);
                if a != b && p != default {
                    net.set_link(host(a), host(b), p)?;
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn host(node: usize) -> HostId {
    HostId(node as u32)
}

/// `k` distinct peers for node `me`: the first from `first_pool` (if not
/// empty, to connect it to what came before), the rest from `pool`.
fn dial_list(
    rng: &mut Rng,
    first_pool: &[usize],
    pool: &[usize],
    me: usize,
    k: usize,
) -> Vec<usize> {
    let mut out = rng.sample(first_pool, 1.min(k));
    let rest: Vec<usize> = pool
        .iter()
        .copied()
        .filter(|&j| j != me && !out.contains(&j))
        .collect();
    let more = k.saturating_sub(out.len());
    out.extend(rng.sample(&rest, more));
    out
}
