//! The checks of a parsed scenario that its types cannot express: node
//! indexes in range, profiles that exist, times in order. Each error names
//! its field as a path (`faults[2].heal_at`).

use std::time::Duration;

use crate::link::LinkProfile;

use super::{Fault, Scenario, ScenarioError, Topology, MAX_OP_SIZE, MAX_ROGUE_RATE};

impl Scenario {
    fn check_profile(&self, name: &str, field: &str) -> Result<(), ScenarioError> {
        match self.profile(name) {
            None => {
                let known: Vec<&str> = self.profiles.keys().map(String::as_str).collect();
                Err(self.invalid(
                    field,
                    format!("unknown profile {name:?} (defined: {known:?}; built in: \"default\", \"ideal\")"),
                ))
            }
            Some(p) => p.validate().map_err(|e| self.invalid(field, e.to_string())),
        }
    }

    /// Checks what the types cannot: ranges, references, times.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.nodes == 0 {
            return Err(self.invalid("nodes", "must be at least 1"));
        }
        if self.duration.is_zero() {
            return Err(self.invalid("duration", "must be longer than 0s"));
        }
        if self.observe_every.is_zero() {
            return Err(self.invalid("observe_every", "must be longer than 0s"));
        }
        for (name, spec) in &self.profiles {
            spec.to_profile()
                .validate()
                .map_err(|e| self.invalid(format!("profiles.{name}"), e.to_string()))?;
        }
        self.validate_topology()?;
        for (i, o) in self.overrides.iter().enumerate() {
            self.nodes_of(&o.nodes, &format!("overrides[{i}].nodes"))?;
            self.nodes_of(&o.peers, &format!("overrides[{i}].peers"))?;
            self.check_profile(&o.profile, &format!("overrides[{i}].profile"))?;
        }
        for (i, f) in self.faults.iter().enumerate() {
            self.validate_fault(i, f)?;
        }
        // The invariants are checked over the honest nodes: keep one.
        let mut rogues: Vec<(usize, usize)> = self
            .faults
            .iter()
            .enumerate()
            .filter_map(|(i, f)| match f {
                Fault::Rogue { node, .. } => Some((*node, i)),
                _ => None,
            })
            .collect();
        rogues.sort_unstable();
        rogues.dedup_by_key(|(node, _)| *node);
        if let Some((_, last)) = rogues.last().filter(|_| rogues.len() >= self.nodes) {
            return Err(self.invalid(
                format!("faults[{last}].node"),
                "every node is rogue: at least one must stay honest",
            ));
        }
        for (i, w) in self.workload.iter().enumerate() {
            let field = |f: &str| format!("workload[{i}].{f}");
            if !(w.rate_per_sec.is_finite() && w.rate_per_sec > 0.0) {
                return Err(self.invalid(field("rate_per_sec"), "must be a positive number"));
            }
            self.nodes_of(&w.nodes, &field("nodes"))?;
            let until = w.until.unwrap_or(self.duration);
            if until > self.duration {
                return Err(self.invalid(field("until"), "must not be after `duration`"));
            }
            if w.from >= until {
                return Err(self.invalid(field("from"), "must be before `until`"));
            }
            if w.size > MAX_OP_SIZE {
                return Err(self.invalid(field("size"), format!("at most {MAX_OP_SIZE} bytes")));
            }
        }
        Ok(())
    }

    fn validate_topology(&self) -> Result<(), ScenarioError> {
        match &self.topology {
            Topology::FullMesh { profile } => self.check_profile(profile, "topology.profile"),
            Topology::Star { hub, profile } => {
                if *hub >= self.nodes {
                    return Err(self.invalid("topology.hub", format!("node {hub} is out of range")));
                }
                self.check_profile(profile, "topology.profile")
            }
            Topology::Random { degree, profile } => {
                if *degree == 0 || (self.nodes > 1 && *degree >= self.nodes) {
                    return Err(
                        self.invalid("topology.degree", format!("must be in 1..{}", self.nodes))
                    );
                }
                self.check_profile(profile, "topology.profile")
            }
            Topology::Regions {
                count,
                intra,
                inter,
                ..
            } => {
                if *count == 0 || *count > self.nodes {
                    return Err(
                        self.invalid("topology.count", format!("must be in 1..={}", self.nodes))
                    );
                }
                self.check_profile(intra, "topology.intra")?;
                if inter.latency_min > inter.latency_max {
                    return Err(
                        self.invalid("topology.inter.latency_min", "must not exceed latency_max")
                    );
                }
                let p = LinkProfile::ideal()
                    .with_bandwidth(inter.bandwidth.map(|b| b.0))
                    .with_loss(inter.loss);
                p.validate()
                    .map_err(|e| self.invalid("topology.inter", e.to_string()))
            }
        }
    }

    fn validate_fault(&self, i: usize, f: &Fault) -> Result<(), ScenarioError> {
        let field = |name: &str| format!("faults[{i}].{name}");
        if f.at() >= self.duration {
            return Err(self.invalid(field("at"), "must be before `duration` (the fault window)"));
        }
        let after_at = |t: Option<Duration>, name: &str| match t {
            Some(t) if t <= f.at() => Err(self.invalid(field(name), "must be after `at`")),
            _ => Ok(()),
        };
        match f {
            Fault::Partition {
                groups, heal_at, ..
            } => {
                let [a, b] = &groups[..] else {
                    return Err(self.invalid(
                        field("groups"),
                        format!("needs exactly 2 groups, got {}", groups.len()),
                    ));
                };
                let a = self.nodes_of(&a.0, &field("groups[0]"))?;
                let b = self.nodes_of(&b.0, &field("groups[1]"))?;
                if let Some(n) = a.iter().find(|n| b.binary_search(n).is_ok()) {
                    return Err(
                        self.invalid(field("groups"), format!("node {n} is in both groups"))
                    );
                }
                after_at(*heal_at, "heal_at")
            }
            Fault::Crash {
                nodes,
                pick,
                restart_after,
                ..
            } => {
                let set = self.nodes_of(nodes, &field("nodes"))?;
                if let Some(k) = pick {
                    if *k == 0 || *k > set.len() {
                        return Err(
                            self.invalid(field("pick"), format!("must be in 1..={}", set.len()))
                        );
                    }
                }
                match restart_after {
                    Some(d) if d.is_zero() => {
                        Err(self.invalid(field("restart_after"), "must be longer than 0s"))
                    }
                    _ => Ok(()),
                }
            }
            Fault::Stall {
                from,
                to,
                stall_for,
                ..
            } => {
                self.nodes_of(from, &field("from"))?;
                self.nodes_of(to, &field("to"))?;
                if stall_for.is_zero() {
                    return Err(self.invalid(field("for"), "must be longer than 0s"));
                }
                Ok(())
            }
            Fault::LateJoin { at, nodes } => {
                self.nodes_of(nodes, &field("nodes"))?;
                if at.is_zero() {
                    return Err(self.invalid(field("at"), "a late join must be after 0s"));
                }
                Ok(())
            }
            Fault::LinkChange {
                from,
                to,
                profile,
                until,
                ..
            } => {
                self.nodes_of(from, &field("from"))?;
                self.nodes_of(to, &field("to"))?;
                self.check_profile(profile, &field("profile"))?;
                after_at(*until, "until")
            }
            Fault::Rogue {
                node,
                until,
                rate_per_sec,
                ..
            } => {
                if *node >= self.nodes {
                    return Err(self.invalid(
                        field("node"),
                        format!("node {node} is out of range (0..{})", self.nodes),
                    ));
                }
                if !(rate_per_sec.is_finite()
                    && *rate_per_sec > 0.0
                    && *rate_per_sec <= MAX_ROGUE_RATE)
                {
                    return Err(self.invalid(
                        field("rate_per_sec"),
                        format!("must be a positive number, at most {MAX_ROGUE_RATE}"),
                    ));
                }
                if until.is_some_and(|u| u > self.duration) {
                    return Err(self.invalid(field("until"), "must not be after `duration`"));
                }
                after_at(*until, "until")
            }
        }
    }
}
