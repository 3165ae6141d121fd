//! Executes a schedule in real time against a `Fleet` and a `SimNetwork`.
//!
//! The runner owns the network controls (see `fleet.rs` for the split):
//! partitions and heals (`update_links` on the `up` flag, counted per
//! directed pair so overlapping partitions heal correctly), stalls, link
//! profile changes (which keep a link's `up` flag, so they never heal a
//! partition), and the host up/down flag around crashes and starts.
//!
//! The clock starts once every initial node's `start` has returned, so
//! start-up time is not part of any measurement. Every `observe_every` all
//! live nodes are observed; an event that is due runs before the next poll,
//! and a crash is preceded by an extra poll so the recorder knows exactly
//! who held what when a disk is lost. Events run one at a time: a slow
//! `apply` delays the events behind it, which `max_lag_ms` reports.

use std::collections::HashMap;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::time::Instant;

use crate::cost::{cost, ProcSample};
use crate::error::SimError;
use crate::fleet::{Fleet, StartSpec};
use crate::metrics::{FinalNode, FinishInput, Recorder};
use crate::network::SimNetwork;
use crate::report::Report;
use crate::scenario::{Scenario, ScenarioError};
use crate::schedule::{Event, Schedule, TimedEvent};
use crate::topology::host;

/// Why a run could not be carried out (failures of nodes are not errors:
/// they end up in the report).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("the network has {have} hosts but the scenario needs {need}")]
    TooFewHosts { have: usize, need: usize },
    #[error("network control failed: {0}")]
    Network(#[from] SimError),
}

/// A network for `scenario`: one host per node, every link's profile set
/// from the topology and overrides, seeded with the scenario's seed.
pub fn build_network(scenario: &Scenario) -> Result<SimNetwork, RunError> {
    let plan = crate::topology::TopologyPlan::build(scenario)?;
    Ok(plan.network(scenario.seed)?)
}

/// Builds the schedule of `scenario` and runs it; see `run_schedule`.
pub async fn run(
    scenario: &Scenario,
    network: &SimNetwork,
    fleet: &mut dyn Fleet,
    progress: bool,
) -> Result<Report, RunError> {
    let schedule = Schedule::build(scenario)?;
    run_schedule(&schedule, network, fleet, progress).await
}

/// Runs `schedule`: node `i` is `HostId(i)` of `network`, whose links the
/// caller has already set up (`TopologyPlan::network` does both). Shows a
/// progress bar on stderr if `progress` and stderr is a terminal.
pub async fn run_schedule(
    schedule: &Schedule,
    network: &SimNetwork,
    fleet: &mut dyn Fleet,
    progress: bool,
) -> Result<Report, RunError> {
    let have = network.host_count();
    if have < schedule.nodes {
        return Err(RunError::TooFewHosts {
            have,
            need: schedule.nodes,
        });
    }
    let total = schedule.duration + schedule.quiescence;
    let bar = if progress {
        ProgressBar::with_draw_target(Some(total.as_millis() as u64), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(schedule.scenario.clone());
    let mut remaining = vec![0usize; schedule.faults.len()];
    for f in schedule.events.iter().filter_map(|e| e.event.fault()) {
        if let Some(r) = remaining.get_mut(f) {
            *r += 1;
        }
    }
    let mut r = Runner {
        s: schedule,
        net: network,
        fleet,
        rec: Recorder::new(schedule),
        t0: Instant::now(),
        cuts: HashMap::new(),
        remaining,
        bar,
        max_lag: Duration::ZERO,
    };
    let initial: Vec<usize> = schedule.initial.clone();
    for n in 0..schedule.nodes {
        if !initial.contains(&n) {
            network.set_host_up(host(n), false)?;
        }
    }
    r.bar
        .set_message(format!("starting {} nodes", initial.len()));
    for n in initial {
        r.start(n, true).await?;
    }
    r.t0 = Instant::now();
    let (stats0, proc0) = (network.all_stats(), ProcSample::now());
    let mut next_poll = Duration::ZERO;
    let mut i = 0;
    loop {
        while let Some(e) = schedule.events.get(i).filter(|e| e.at <= r.now()) {
            r.execute(e).await?;
            i += 1;
        }
        let now = r.now();
        if now >= next_poll {
            r.observe_all();
            // Skip polls missed while an event ran long, rather than
            // bunching them.
            next_poll = (next_poll + schedule.observe_every).max(now);
        }
        if now >= total {
            break;
        }
        let wake = schedule
            .events
            .get(i)
            .map_or(total, |e| e.at)
            .min(next_poll)
            .min(total);
        tokio::time::sleep_until(r.t0 + wake).await;
    }
    let window = r.now();
    let (stats1, proc1) = (network.all_stats(), ProcSample::now());
    r.bar.set_message("verifying");
    let mut finals = Vec::with_capacity(schedule.nodes);
    let t = r.now();
    for n in 0..schedule.nodes {
        let live = r.rec.is_live(n);
        let observation = if live { r.fleet.observe(n) } else { None };
        r.rec.observe(n, t, observation.clone());
        let verify = if live {
            Some(r.fleet.verify(n).await.map_err(|e| e.to_string()))
        } else {
            None
        };
        finals.push(FinalNode {
            live,
            observation,
            verify,
        });
    }
    r.rec.sample(t);
    r.bar.finish_and_clear();
    let input = FinishInput {
        nodes: finals,
        expected_forks: r.fleet.expected_forks(),
        cost: cost(
            &stats0,
            &stats1,
            window.as_secs_f64(),
            proc0,
            proc1,
            schedule.nodes,
        ),
        wall: r.now(),
        max_lag: r.max_lag,
    };
    Ok(r.rec.finish(input))
}

struct Runner<'a> {
    s: &'a Schedule,
    net: &'a SimNetwork,
    fleet: &'a mut dyn Fleet,
    rec: Recorder,
    t0: Instant,
    /// Partitions in force per directed pair: the link is down while > 0.
    cuts: HashMap<(usize, usize), u32>,
    /// Events left per fault; the fault ends with its last one.
    remaining: Vec<usize>,
    bar: ProgressBar,
    max_lag: Duration,
}

impl Runner<'_> {
    fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// Host up, then the node; a failed start leaves the host down.
    async fn start(&mut self, node: usize, fresh_disk: bool) -> Result<(), SimError> {
        self.net.set_host_up(host(node), true)?;
        let bootstrap = self
            .s
            .topology
            .bootstrap
            .get(node)
            .cloned()
            .unwrap_or_default();
        match self
            .fleet
            .start(
                node,
                StartSpec {
                    fresh_disk,
                    bootstrap,
                },
            )
            .await
        {
            Ok(()) => self.rec.node_up(node),
            Err(e) => {
                let t = self.now();
                self.rec
                    .incident(t, Some(node), format!("start failed: {e}"));
                self.net.set_host_up(host(node), false)?;
            }
        }
        Ok(())
    }

    fn report_fleet_bytes(&mut self) {
        let total = self.net.all_stats().iter().map(|h| h.bytes_sent).sum();
        self.rec.fleet_bytes(total);
    }

    fn observe_all(&mut self) {
        let t = self.now();
        for n in 0..self.s.nodes {
            if self.rec.is_live(n) {
                let obs = self.fleet.observe(n);
                self.rec.observe(n, t, obs);
            }
        }
        self.report_fleet_bytes();
        let agree = self.rec.sample(t);
        self.bar.set_position(t.as_millis() as u64);
        self.bar.set_message(format!(
            "{:.1}s live {}/{} agree {:.0}% acked {}",
            t.as_secs_f64(),
            self.rec.live_count(),
            self.s.nodes,
            agree * 100.0,
            self.rec.acked_count()
        ));
    }

    /// Sets the `up` flag of one directed link, keeping the rest.
    fn set_up(&self, a: usize, b: usize, up: bool) -> Result<(), SimError> {
        self.net.update_links(&[host(a)], &[host(b)], |p| p.up = up)
    }

    /// Counts one more (`cut`) or one less partition on every pair.
    fn partition(
        &mut self,
        from: &[usize],
        to: &[usize],
        one_way: bool,
        cut: bool,
    ) -> Result<(), SimError> {
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        for &a in from {
            for &b in to {
                pairs.push((a, b));
                if !one_way {
                    pairs.push((b, a));
                }
            }
        }
        for (a, b) in pairs {
            let count = self.cuts.entry((a, b)).or_insert(0);
            let before = *count;
            *count = if cut {
                before + 1
            } else {
                before.saturating_sub(1)
            };
            match (before, *count) {
                (0, 1) => self.set_up(a, b, false)?,
                (1, 0) => self.set_up(a, b, true)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Sets each pair's profile to `profile(a, b)`, keeping its `up` flag.
    fn set_profiles(
        &self,
        from: &[usize],
        to: &[usize],
        one_way: bool,
        profile: impl Fn(usize, usize) -> crate::link::LinkProfile,
    ) -> Result<(), SimError> {
        for &a in from {
            for &b in to {
                let dirs: &[(usize, usize)] = if one_way {
                    &[(a, b)]
                } else {
                    &[(a, b), (b, a)]
                };
                for &(x, y) in dirs.iter().filter(|(x, y)| x != y) {
                    let new = profile(x, y);
                    self.net.update_links(&[host(x)], &[host(y)], |p| {
                        let up = p.up;
                        *p = new.clone();
                        p.up = up;
                    })?;
                }
            }
        }
        Ok(())
    }

    async fn execute(&mut self, e: &TimedEvent) -> Result<(), SimError> {
        let now = self.now();
        self.max_lag = self.max_lag.max(now.saturating_sub(e.at));
        if let Some(f) = e.event.fault() {
            self.rec.fault_started(f, now);
        }
        match &e.event {
            Event::Partition {
                from, to, one_way, ..
            } => self.partition(from, to, *one_way, true)?,
            Event::Heal {
                from, to, one_way, ..
            } => self.partition(from, to, *one_way, false)?,
            Event::Crash {
                node, lose_disk, ..
            } => {
                self.observe_all();
                self.net.set_host_up(host(*node), false)?;
                if let Err(err) = self.fleet.crash(*node).await {
                    self.rec
                        .incident(now, Some(*node), format!("crash failed: {err}"));
                }
                self.rec.node_down(*node, *lose_disk);
            }
            Event::Restart {
                node, fresh_disk, ..
            } => self.start(*node, *fresh_disk).await?,
            Event::Join { node, .. } => self.start(*node, true).await?,
            Event::Stall {
                from,
                to,
                stall_for,
                ..
            } => {
                for &a in from {
                    for &b in to.iter().filter(|&&b| b != a) {
                        self.net.stall(host(a), host(b), *stall_for)?;
                    }
                }
            }
            Event::StallEnd { .. } | Event::RogueEnd { .. } => {}
            Event::Attack {
                fault,
                node,
                attack,
            } => {
                let outcome = if self.rec.is_live(*node) {
                    Some(self.fleet.attack(*node, *attack).await)
                } else {
                    None
                };
                self.rec.attack(*fault, *attack, outcome);
            }
            Event::LinkChange {
                from,
                to,
                one_way,
                profile,
                ..
            } => {
                self.set_profiles(from, to, *one_way, |_, _| profile.clone())?;
            }
            Event::LinkRevert {
                from, to, one_way, ..
            } => {
                let topology = &self.s.topology;
                self.set_profiles(from, to, *one_way, |a, b| topology.profile(a, b))?;
            }
            Event::Op(op) => {
                if self.rec.is_live(op.node) {
                    match self.fleet.apply(op.node, op).await {
                        Ok(()) => {
                            let t = self.now();
                            self.rec.acked(op.id, t);
                        }
                        Err(err) => self.rec.rejected(op.id, err.to_string()),
                    }
                }
            }
            Event::Quiesce => {
                self.report_fleet_bytes();
                self.rec.quiesce(now)
            }
        }
        if let Some(f) = e.event.fault() {
            if let Some(left) = self.remaining.get_mut(f) {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    let t = self.now();
                    self.report_fleet_bytes();
                    self.rec.fault_ended(f, t);
                }
            }
        }
        Ok(())
    }
}
