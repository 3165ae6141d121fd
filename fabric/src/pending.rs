//! Who may hold an inbound connection that has not finished its handshake.
//!
//! A pending connection costs a slot until its handshake ends or times out,
//! and anyone who can reach the port can open one without proving
//! anything. Two hundred idle connections from one stranger once held all
//! the slots, and no member could join until the flood stopped. So each IP
//! address gets a few pending slots of its own, and part of the pool is
//! kept for addresses members connected from before: a flood from
//! strangers, from one address or many, leaves room for the fleet.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;

use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::Multiaddr;

/// Addresses remembered as the fleet's; the oldest go first. Bounded
/// because they come from the network (peers' identify messages).
pub(crate) const MAX_KNOWN_IPS: usize = 4096;

/// Why an inbound connection was refused before its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("{0} inbound connections are already in their handshake")]
    Full(usize),
    #[error("{0} inbound connections from this address are already in their handshake")]
    PerAddress(usize),
    #[error("the {0} pending slots open to unknown addresses are taken")]
    StrangersFull(usize),
}

/// The limits, as `behaviour::Limits` sets them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PendingLimits {
    pub(crate) total: usize,
    pub(crate) per_ip: usize,
    pub(crate) reserved_for_known: usize,
}

/// The inbound connections in their handshake, by address.
pub(crate) struct Pending {
    limits: PendingLimits,
    /// Each pending connection, its address, and whether it was known.
    /// Never more than `limits.total` entries: admission checks first.
    conns: HashMap<ConnectionId, (Option<IpAddr>, bool)>,
    per_ip: HashMap<IpAddr, usize>,
    strangers: usize,
    known: KnownIps,
}

impl Pending {
    pub(crate) fn new(limits: PendingLimits) -> Self {
        Self {
            limits,
            conns: HashMap::new(),
            per_ip: HashMap::new(),
            strangers: 0,
            known: KnownIps::default(),
        }
    }

    /// Takes a slot for a new inbound connection, or says why not.
    pub(crate) fn admit(&mut self, id: ConnectionId, from: &Multiaddr) -> Result<(), Refusal> {
        let ip = ip_of(from);
        let known = ip.is_some_and(|ip| self.known.contains(&ip));
        if self.conns.len() >= self.limits.total {
            return Err(Refusal::Full(self.limits.total));
        }
        if let Some(ip) = ip {
            if self.per_ip.get(&ip).copied().unwrap_or(0) >= self.limits.per_ip {
                return Err(Refusal::PerAddress(self.limits.per_ip));
            }
        }
        let open_to_strangers = self
            .limits
            .total
            .saturating_sub(self.limits.reserved_for_known);
        if !known && self.strangers >= open_to_strangers {
            return Err(Refusal::StrangersFull(open_to_strangers));
        }
        if let Some(ip) = ip {
            *self.per_ip.entry(ip).or_insert(0) += 1;
        }
        if !known {
            self.strangers += 1;
        }
        self.conns.insert(id, (ip, known));
        Ok(())
    }

    /// Gives the slot back: the handshake ended, well or not.
    pub(crate) fn release(&mut self, id: ConnectionId) {
        let Some((ip, known)) = self.conns.remove(&id) else {
            return;
        };
        if let Some(ip) = ip {
            if let Some(n) = self.per_ip.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_ip.remove(&ip);
                }
            }
        }
        if !known {
            self.strangers = self.strangers.saturating_sub(1);
        }
    }

    /// Remembers an address as one a member used.
    pub(crate) fn know(&mut self, addr: &Multiaddr) {
        if let Some(ip) = ip_of(addr) {
            self.known.insert(ip);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.conns.len()
    }
}

/// The address a multiaddr comes from, as the limits count it: the IPv4
/// address, or the /64 of an IPv6 one (one host usually holds a whole /64,
/// and could otherwise take a fresh address for every connection).
pub(crate) fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => {
            let prefix = u128::from(ip) & !((1u128 << 64) - 1);
            Some(IpAddr::V6(prefix.into()))
        }
        _ => None,
    }
}

/// A bounded set of addresses, oldest first out.
#[derive(Default)]
struct KnownIps {
    set: HashSet<IpAddr>,
    order: VecDeque<IpAddr>,
}

impl KnownIps {
    fn contains(&self, ip: &IpAddr) -> bool {
        self.set.contains(ip)
    }

    fn insert(&mut self, ip: IpAddr) {
        // Unspecified addresses (0.0.0.0 in a listen address) name no one.
        if ip.is_unspecified() || !self.set.insert(ip) {
            return;
        }
        self.order.push_back(ip);
        if self.order.len() > MAX_KNOWN_IPS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: &str) -> Multiaddr {
        format!("/ip4/{ip}/tcp/4000").parse().unwrap()
    }

    fn limits() -> PendingLimits {
        PendingLimits {
            total: 10,
            per_ip: 3,
            reserved_for_known: 4,
        }
    }

    #[test]
    fn one_address_gets_only_its_share() {
        let mut p = Pending::new(limits());
        for i in 0..3 {
            p.admit(ConnectionId::new_unchecked(i), &addr("10.0.0.1"))
                .unwrap();
        }
        assert_eq!(
            p.admit(ConnectionId::new_unchecked(9), &addr("10.0.0.1")),
            Err(Refusal::PerAddress(3))
        );
        // Another address is counted on its own.
        p.admit(ConnectionId::new_unchecked(10), &addr("10.0.0.2"))
            .unwrap();
        // A slot given back is free again.
        p.release(ConnectionId::new_unchecked(0));
        p.admit(ConnectionId::new_unchecked(11), &addr("10.0.0.1"))
            .unwrap();
        assert_eq!(p.len(), 4);
    }

    #[test]
    fn strangers_leave_the_reserved_slots_to_known_addresses() {
        let mut p = Pending::new(limits());
        p.know(&addr("10.9.9.9"));
        let mut id = 0;
        let mut next = || {
            id += 1;
            ConnectionId::new_unchecked(id)
        };
        for i in 0..3 {
            for _ in 0..3 {
                let _ = p.admit(next(), &addr(&format!("10.0.0.{i}")));
            }
        }
        // Six strangers fill the ten slots less the four kept.
        assert_eq!(
            p.admit(next(), &addr("10.0.1.1")),
            Err(Refusal::StrangersFull(6))
        );
        for _ in 0..3 {
            p.admit(next(), &addr("10.9.9.9")).unwrap();
        }
        assert_eq!(p.len(), 9);
        p.know(&addr("10.0.2.2"));
        p.admit(next(), &addr("10.0.2.2")).unwrap();
        assert_eq!(p.admit(next(), &addr("10.0.2.2")), Err(Refusal::Full(10)));
    }

    #[test]
    fn an_ipv6_host_counts_as_its_64() {
        let a: Multiaddr = "/ip6/2001:db8:1:2::1/tcp/1".parse().unwrap();
        let b: Multiaddr = "/ip6/2001:db8:1:2:ffff::9/tcp/1".parse().unwrap();
        let c: Multiaddr = "/ip6/2001:db8:1:3::1/tcp/1".parse().unwrap();
        assert_eq!(ip_of(&a), ip_of(&b));
        assert_ne!(ip_of(&a), ip_of(&c));
    }

    #[test]
    fn the_known_set_stays_bounded() {
        let mut k = KnownIps::default();
        for i in 0..(MAX_KNOWN_IPS as u32 + 10) {
            k.insert(IpAddr::V4(i.into()));
        }
        assert_eq!(k.set.len(), MAX_KNOWN_IPS);
        assert_eq!(k.order.len(), MAX_KNOWN_IPS);
        assert!(!k.contains(&IpAddr::V4(1u32.into())));
    }
}
