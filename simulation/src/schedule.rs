//! From a scenario to the exact timed list of what happens in a run.
//!
//! Everything random (which nodes a `pick` crash takes, when workload ops
//! arrive and on which node, the topology) is drawn here from the seed, so
//! the same scenario and seed always give the same schedule, byte for byte
//! once serialized; the runner then only executes it. Ops are only placed
//! on nodes that the schedule itself has up at that instant (not crashed,
//! already joined); arrivals with no such node are counted in
//! `ops_skipped`.
//!
//! Rogue nodes (`rogue` faults) take no workload ops at all, so that every
//! acknowledged op is an honest node's; their attempts are drawn like ops,
//! at the times their node is up (`attacks_skipped` counts the others).
//!
//! Events at the same instant run in this order: ends of faults (heal,
//! restart, join, revert, end of a rogue), then starts of faults, then ops
//! and rogue attempts, then the start
//! of quiescence. Every fault ends within `duration`: a partition without
//! `heal_at` heals and a crash without `restart_after` restarts at
//! `duration`, so the quiescence phase runs the whole fleet healed.

use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::fleet::{Attack, Operation};
use crate::link::LinkProfile;
use crate::rng::Rng;
use crate::scenario::{Fault, Scenario, ScenarioError};
use crate::topology::TopologyPlan;

pub(crate) fn ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e3)
}

/// One thing the runner does.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Event {
    /// Cut `from` → `to` (and back unless `one_way`).
    Partition {
        fault: usize,
        from: Vec<usize>,
        to: Vec<usize>,
        one_way: bool,
    },
    Heal {
        fault: usize,
        from: Vec<usize>,
        to: Vec<usize>,
        one_way: bool,
    },
    /// Host down, then `Fleet::crash`.
    Crash {
        fault: usize,
        node: usize,
        lose_disk: bool,
    },
    /// Host up, then `Fleet::start`.
    Restart {
        fault: usize,
        node: usize,
        fresh_disk: bool,
    },
    /// `SimNetwork::stall` on every pair `from` → `to`.
    Stall {
        fault: usize,
        from: Vec<usize>,
        to: Vec<usize>,
        #[serde(serialize_with = "ms", rename = "for_ms")]
        stall_for: Duration,
    },
    /// Nothing to do on the network (stalls expire by themselves): marks
    /// the end of the fault for the convergence measurement.
    StallEnd {
        fault: usize,
    },
    /// A late joiner: host up, then `Fleet::start` with an empty disk.
    Join {
        fault: usize,
        node: usize,
    },
    LinkChange {
        fault: usize,
        from: Vec<usize>,
        to: Vec<usize>,
        one_way: bool,
        profile: LinkProfile,
    },
    /// Back to the topology's profiles.
    LinkRevert {
        fault: usize,
        from: Vec<usize>,
        to: Vec<usize>,
        one_way: bool,
    },
    /// A rogue node's attempt (`Fleet::attack`).
    Attack {
        fault: usize,
        node: usize,
        attack: Attack,
    },
    /// Nothing to do: marks the end of a rogue fault for the convergence
    /// measurement.
    RogueEnd {
        fault: usize,
    },
    Op(Operation),
    /// End of the fault window: no more faults or ops.
    Quiesce,
}

impl Event {
    /// The fault this event belongs to.
    pub fn fault(&self) -> Option<usize> {
        match self {
            Event::Partition { fault, .. }
            | Event::Heal { fault, .. }
            | Event::Crash { fault, .. }
            | Event::Restart { fault, .. }
            | Event::Stall { fault, .. }
            | Event::StallEnd { fault }
            | Event::Join { fault, .. }
            | Event::LinkChange { fault, .. }
            | Event::LinkRevert { fault, .. }
            | Event::Attack { fault, .. }
            | Event::RogueEnd { fault } => Some(*fault),
            Event::Op(_) | Event::Quiesce => None,
        }
    }

    /// Order among events at the same instant (see the module docs).
    fn rank(&self) -> u8 {
        match self {
            Event::Heal { .. }
            | Event::Restart { .. }
            | Event::StallEnd { .. }
            | Event::Join { .. }
            | Event::LinkRevert { .. }
            | Event::RogueEnd { .. } => 0,
            Event::Partition { .. }
            | Event::Crash { .. }
            | Event::Stall { .. }
            | Event::LinkChange { .. } => 1,
            Event::Op(_) | Event::Attack { .. } => 2,
            Event::Quiesce => 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimedEvent {
    #[serde(serialize_with = "ms", rename = "at_ms")]
    pub at: Duration,
    pub event: Event,
}

/// When a fault is in force, from its first event to its last.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultWindow {
    pub index: usize,
    pub kind: &'static str,
    #[serde(serialize_with = "ms", rename = "start_ms")]
    pub start: Duration,
    #[serde(serialize_with = "ms", rename = "end_ms")]
    pub end: Duration,
}

/// The whole run, fixed in advance.
#[derive(Debug, Clone, Serialize)]
pub struct Schedule {
    pub scenario: String,
    pub seed: u64,
    pub nodes: usize,
    #[serde(serialize_with = "ms", rename = "duration_ms")]
    pub duration: Duration,
    #[serde(serialize_with = "ms", rename = "quiescence_ms")]
    pub quiescence: Duration,
    #[serde(serialize_with = "ms", rename = "observe_every_ms")]
    pub observe_every: Duration,
    /// Nodes started before the clock starts (all but the late joiners).
    pub initial: Vec<usize>,
    pub faults: Vec<FaultWindow>,
    /// Sorted by time, then by the order in the module docs.
    pub events: Vec<TimedEvent>,
    /// Workload arrivals dropped because no node of their set was up.
    pub ops_skipped: usize,
    /// Nodes that are rogue at some point (sorted): they take no workload
    /// and the invariants leave them out.
    pub rogues: Vec<usize>,
    /// Rogue attempts dropped because their node was down.
    pub attacks_skipped: usize,
    pub topology: TopologyPlan,
}

impl Schedule {
    pub fn build(s: &Scenario) -> Result<Schedule, ScenarioError> {
        let topology = TopologyPlan::build(s)?;
        let mut rogues: Vec<usize> = s
            .faults
            .iter()
            .filter_map(|f| match f {
                Fault::Rogue { node, .. } => Some(*node),
                _ => None,
            })
            .collect();
        rogues.sort_unstable();
        rogues.dedup();
        let mut b = Builder {
            s,
            down: vec![Vec::new(); s.nodes],
            events: Vec::new(),
            rogues,
            attacks_skipped: 0,
        };
        // Rogue faults last: their attempts skip the times their node is
        // down, which the other faults decide.
        let (rogue_faults, mut order): (Vec<usize>, Vec<usize>) =
            (0..s.faults.len()).partition(|&i| matches!(s.faults[i], Fault::Rogue { .. }));
        let mut faults = Vec::new();
        // Late joins first: later crashes must see those nodes as down
        // until they join.
        order.sort_by_key(|&i| {
            (
                !matches!(s.faults[i], Fault::LateJoin { .. }),
                s.faults[i].at(),
                i,
            )
        });
        order.extend(rogue_faults);
        for i in order {
            let end = b.fault(i, &s.faults[i])?;
            faults.push(FaultWindow {
                index: i,
                kind: s.faults[i].kind(),
                start: s.faults[i].at(),
                end,
            });
        }
        faults.sort_by_key(|f| f.index);
        let ops_skipped = b.workload()?;
        b.events.push(TimedEvent {
            at: s.duration,
            event: Event::Quiesce,
        });
        let mut events = b.events;
        events.sort_by_key(|e| (e.at, e.event.rank()));
        // Op ids in schedule order, from 1.
        let mut id = 0;
        for e in &mut events {
            if let Event::Op(op) = &mut e.event {
                id += 1;
                op.id = id;
            }
        }
        let initial = (0..s.nodes)
            .filter(|&n| b.down[n].first().is_none_or(|&(from, _)| !from.is_zero()))
            .collect();
        Ok(Schedule {
            scenario: s.name.clone(),
            seed: s.seed,
            nodes: s.nodes,
            duration: s.duration,
            quiescence: s.quiescence,
            observe_every: s.observe_every,
            initial,
            faults,
            events,
            ops_skipped,
            rogues: b.rogues,
            attacks_skipped: b.attacks_skipped,
            topology,
        })
    }

    pub fn ops(&self) -> impl Iterator<Item = &Operation> {
        self.events.iter().filter_map(|e| match &e.event {
            Event::Op(op) => Some(op),
            _ => None,
        })
    }

    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialization cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

struct Builder<'a> {
    s: &'a Scenario,
    /// Per node, the intervals [from, to) during which it is down.
    down: Vec<Vec<(Duration, Duration)>>,
    events: Vec<TimedEvent>,
    rogues: Vec<usize>,
    attacks_skipped: usize,
}

impl Builder<'_> {
    fn is_up(&self, node: usize, t: Duration) -> bool {
        !self.down[node].iter().any(|&(a, b)| a <= t && t < b)
    }

    fn push(&mut self, at: Duration, event: Event) {
        self.events.push(TimedEvent { at, event });
    }

    /// Adds the events of fault `i`; returns when it ends.
    fn fault(&mut self, i: usize, f: &Fault) -> Result<Duration, ScenarioError> {
        let s = self.s;
        let field = |name: &str| format!("faults[{i}].{name}");
        let end_of_window = s.duration;
        match f {
            Fault::Partition {
                at,
                groups,
                one_way,
                heal_at,
            } => {
                let from = s.nodes_of(&groups[0].0, &field("groups[0]"))?;
                let to = s.nodes_of(&groups[1].0, &field("groups[1]"))?;
                let heal = heal_at.unwrap_or(end_of_window).min(end_of_window);
                let one_way = *one_way;
                self.push(
                    *at,
                    Event::Partition {
                        fault: i,
                        from: from.clone(),
                        to: to.clone(),
                        one_way,
                    },
                );
                self.push(
                    heal,
                    Event::Heal {
                        fault: i,
                        from,
                        to,
                        one_way,
                    },
                );
                Ok(heal)
            }
            Fault::Crash {
                at,
                nodes,
                pick,
                restart_after,
                lose_disk,
            } => {
                let set = s.nodes_of(nodes, &field("nodes"))?;
                let up: Vec<usize> = set
                    .iter()
                    .copied()
                    .filter(|&n| self.is_up(n, *at))
                    .collect();
                let chosen = match pick {
                    None => {
                        if let Some(n) = set.iter().find(|&&n| !self.is_up(n, *at)) {
                            return Err(s.invalid(field("nodes"), format!(
                                "node {n} is already down at {} (crashed earlier or not joined yet)",
                                humantime::format_duration(*at)
                            )));
                        }
                        set
                    }
                    Some(k) => {
                        if up.len() < *k {
                            return Err(s.invalid(
                                field("pick"),
                                format!("only {} of the nodes are up at that time", up.len()),
                            ));
                        }
                        let mut rng = Rng::stream(s.seed, "fault", i as u64);
                        let mut chosen = rng.sample(&up, *k);
                        chosen.sort_unstable();
                        chosen
                    }
                };
                let restart = restart_after.map_or(end_of_window, |d| (*at + d).min(end_of_window));
                for n in chosen {
                    self.down[n].push((*at, restart));
                    self.push(
                        *at,
                        Event::Crash {
                            fault: i,
                            node: n,
                            lose_disk: *lose_disk,
                        },
                    );
                    self.push(
                        restart,
                        Event::Restart {
                            fault: i,
                            node: n,
                            fresh_disk: *lose_disk,
                        },
                    );
                }
                Ok(restart)
            }
            Fault::Stall {
                at,
                from,
                to,
                stall_for,
            } => {
                let from = s.nodes_of(from, &field("from"))?;
                let to = s.nodes_of(to, &field("to"))?;
                let end = (*at + *stall_for).min(end_of_window);
                self.push(
                    *at,
                    Event::Stall {
                        fault: i,
                        from,
                        to,
                        stall_for: end - *at,
                    },
                );
                self.push(end, Event::StallEnd { fault: i });
                Ok(end)
            }
            Fault::LateJoin { at, nodes } => {
                for n in s.nodes_of(nodes, &field("nodes"))? {
                    if !self.down[n].is_empty() {
                        return Err(s.invalid(
                            field("nodes"),
                            format!("node {n} already joins late in another fault"),
                        ));
                    }
                    self.down[n].push((Duration::ZERO, *at));
                    self.push(*at, Event::Join { fault: i, node: n });
                }
                Ok(*at)
            }
            Fault::LinkChange {
                at,
                from,
                to,
                one_way,
                profile,
                until,
            } => {
                let from = s.nodes_of(from, &field("from"))?;
                let to = s.nodes_of(to, &field("to"))?;
                let profile = s
                    .profile(profile)
                    .ok_or_else(|| s.invalid(field("profile"), "unknown profile"))?;
                let one_way = *one_way;
                self.push(
                    *at,
                    Event::LinkChange {
                        fault: i,
                        from: from.clone(),
                        to: to.clone(),
                        one_way,
                        profile,
                    },
                );
                match until {
                    Some(u) => {
                        let end = (*u).min(end_of_window);
                        self.push(
                            end,
                            Event::LinkRevert {
                                fault: i,
                                from,
                                to,
                                one_way,
                            },
                        );
                        Ok(end)
                    }
                    None => Ok(*at),
                }
            }
            Fault::Rogue {
                at,
                node,
                until,
                rate_per_sec,
            } => {
                let end = until.unwrap_or(end_of_window).min(end_of_window);
                let mut rng = Rng::stream(s.seed, "rogue", i as u64);
                let mut t = at.as_secs_f64();
                let mut turn = 0;
                loop {
                    t += rng.exp(*rate_per_sec);
                    if t >= end.as_secs_f64() {
                        break;
                    }
                    let when = Duration::from_micros((t * 1e6) as u64);
                    if !self.is_up(*node, when) {
                        self.attacks_skipped += 1;
                        continue;
                    }
                    // In turn, so that even a short run tries every move.
                    let attack = Attack::ALL[turn % Attack::ALL.len()];
                    turn += 1;
                    self.push(
                        when,
                        Event::Attack {
                            fault: i,
                            node: *node,
                            attack,
                        },
                    );
                }
                self.push(end, Event::RogueEnd { fault: i });
                Ok(end)
            }
        }
    }

    /// Adds every workload op (ids are assigned after sorting); returns how
    /// many arrivals found no live node.
    fn workload(&mut self) -> Result<usize, ScenarioError> {
        let s = self.s;
        let mut skipped = 0;
        for (w, spec) in s.workload.iter().enumerate() {
            let set = s.nodes_of(&spec.nodes, &format!("workload[{w}].nodes"))?;
            let until = spec.until.unwrap_or(s.duration).as_secs_f64();
            let mut rng = Rng::stream(s.seed, "workload", w as u64);
            let mut t = spec.from.as_secs_f64();
            loop {
                t += rng.exp(spec.rate_per_sec);
                if t >= until {
                    break;
                }
                // Microsecond resolution keeps serialized times short and exact.
                let at = Duration::from_micros((t * 1e6) as u64);
                let up: Vec<usize> = set
                    .iter()
                    .copied()
                    .filter(|&n| self.is_up(n, at) && self.rogues.binary_search(&n).is_err())
                    .collect();
                if up.is_empty() {
                    skipped += 1;
                    continue;
                }
                let node = up[rng.below(up.len())];
                let op = Operation {
                    id: 0,
                    kind: spec.kind,
                    node,
                    size: spec.size,
                };
                self.push(at, Event::Op(op));
            }
        }
        Ok(skipped)
    }
}
