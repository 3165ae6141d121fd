//! The harness's controls over a `SimNetwork`: link profiles, partitions,
//! stalls, hosts going down and up.
//!
//! Partition semantics (`partition`, `partition_one_way`, `up: false`):
//! - Existing connections across a down link stall silently: nothing is
//!   delivered in that direction, no error, no RST. Writers fill the
//!   bounded buffer and then block. libp2p's ping timeout is what closes
//!   the connection. Data still buffered when the link heals is delivered.
//! - A dial needs both directions (SYN and SYN-ACK): if either is down, the
//!   dial fails with `TimedOut` after `SimConfig::dial_timeout` (10 s by
//!   default), as an unanswered TCP SYN does. So a one-way partition blocks
//!   new connections both ways and existing connections one way.
//! - After `heal`, new dials succeed.
//!
//! Host down (`set_host_up(h, false)`, a crashed process on a live
//! machine): all its connections are reset at once on both ends, pending
//! inbound connections are dropped, its dials fail with `HostDown`, dials
//! to it are refused after one round trip. Its listeners stay registered,
//! so a host brought back up accepts again on the same addresses; a
//! harness that drops the node's swarm drops the listeners with it and
//! listens again on the restarted swarm (use a fixed port, e.g. 4001, to
//! keep the address).

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::SimNetwork;
use crate::addr::HostId;
use crate::error::SimError;
use crate::link::{Link, LinkProfile};
use crate::sync::lock;

impl SimNetwork {
    /// The profile in force from `from` to `to`.
    pub fn link_profile(&self, from: HostId, to: HostId) -> Result<LinkProfile, SimError> {
        let st = lock(&self.inner.state);
        st.host(from)?;
        st.host(to)?;
        Ok(st.profile(from, to))
    }

    /// Changes the profile of every link without an override.
    pub fn set_default_profile(&self, profile: LinkProfile) -> Result<(), SimError> {
        profile.validate()?;
        let mut st = lock(&self.inner.state);
        st.default_profile = profile.clone();
        for (pair, link) in &st.links {
            if let (false, Some(link)) = (st.overrides.contains_key(pair), link.upgrade()) {
                link.set_profile(profile.clone());
            }
        }
        Ok(())
    }

    /// Sets the profile from `from` to `to` (one direction).
    pub fn set_link(&self, from: HostId, to: HostId, profile: LinkProfile) -> Result<(), SimError> {
        profile.validate()?;
        self.update_links(&[from], &[to], |p| *p = profile.clone())
    }

    /// Sets the profile both ways between `a` and `b`.
    pub fn set_link_both(
        &self,
        a: HostId,
        b: HostId,
        profile: LinkProfile,
    ) -> Result<(), SimError> {
        self.set_link(a, b, profile.clone())?;
        self.set_link(b, a, profile)
    }

    /// Changes every link from a host in `from` to a host in `to` with `f`
    /// (applied to the profile in force). Links that end up equal to the
    /// default lose their override, so healed partitions cost no memory.
    pub fn update_links(
        &self,
        from: &[HostId],
        to: &[HostId],
        f: impl Fn(&mut LinkProfile),
    ) -> Result<(), SimError> {
        let mut st = lock(&self.inner.state);
        for &h in from.iter().chain(to) {
            st.host(h)?;
        }
        let mut changed = Vec::new();
        for &a in from {
            for &b in to {
                let mut p = st.profile(a, b);
                f(&mut p);
                p.validate()?;
                changed.push(((a, b), p));
            }
        }
        for (pair, p) in changed {
            if let Some(link) = st.links.get(&pair).and_then(Weak::upgrade) {
                link.set_profile(p.clone());
            }
            if p == st.default_profile {
                st.overrides.remove(&pair);
            } else {
                st.overrides.insert(pair, p);
            }
        }
        Ok(())
    }

    /// Cuts every link between the two groups, both ways.
    pub fn partition(&self, a: &[HostId], b: &[HostId]) -> Result<(), SimError> {
        self.partition_one_way(a, b)?;
        self.partition_one_way(b, a)
    }

    /// Cuts the links from `from` to `to` only.
    pub fn partition_one_way(&self, from: &[HostId], to: &[HostId]) -> Result<(), SimError> {
        self.update_links(from, to, |p| p.up = false)
    }

    /// Restores every link between the two groups, both ways.
    pub fn heal(&self, a: &[HostId], b: &[HostId]) -> Result<(), SimError> {
        self.heal_one_way(a, b)?;
        self.heal_one_way(b, a)
    }

    pub fn heal_one_way(&self, from: &[HostId], to: &[HostId]) -> Result<(), SimError> {
        self.update_links(from, to, |p| p.up = true)
    }

    /// Restores every link that is down.
    pub fn heal_all(&self) {
        let mut st = lock(&self.inner.state);
        let down: Vec<_> = st
            .overrides
            .iter()
            .filter(|(_, p)| !p.up)
            .map(|(pair, _)| *pair)
            .collect();
        for pair in down {
            let mut p = st.profile(pair.0, pair.1);
            p.up = true;
            if let Some(link) = st.links.get(&pair).and_then(Weak::upgrade) {
                link.set_profile(p.clone());
            }
            if p == st.default_profile {
                st.overrides.remove(&pair);
            } else {
                st.overrides.insert(pair, p);
            }
        }
    }

    /// Holds all data of the existing connections from `from` to `to` for
    /// `duration` from now (a stalled path: a routing flap, a full queue).
    /// New connections made during the stall are stalled too, as long as one
    /// connection keeps the link alive; dials are not delayed.
    pub fn stall(&self, from: HostId, to: HostId, duration: Duration) -> Result<(), SimError> {
        let st = lock(&self.inner.state);
        st.host(from)?;
        st.host(to)?;
        if let Some(link) = st.links.get(&(from, to)).and_then(Weak::upgrade) {
            link.stall_until(Instant::now() + duration);
        }
        Ok(())
    }

    /// Takes a host down (its connections reset, dials fail) or up again.
    pub fn set_host_up(&self, host: HostId, up: bool) -> Result<(), SimError> {
        let mut st = lock(&self.inner.state);
        let h = st.host_mut(host)?;
        let was_up = std::mem::replace(&mut h.up, up);
        if up || !was_up {
            return Ok(());
        }
        for listener in h.listeners.values() {
            listener.clear();
        }
        let touching: Vec<Arc<Link>> = st
            .links
            .iter()
            .filter(|((a, b), _)| *a == host || *b == host)
            .filter_map(|(_, l)| l.upgrade())
            .collect();
        drop(st);
        for link in touching {
            for pipe in link.live_pipes() {
                pipe.reset();
            }
        }
        Ok(())
    }

    pub fn is_host_up(&self, host: HostId) -> Result<bool, SimError> {
        Ok(lock(&self.inner.state).host(host)?.up)
    }
}
