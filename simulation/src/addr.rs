//! Host identities and their addresses.
//!
//! Host `i` (the `i`-th host added, from 0) gets the IP `10.0.0.0 + i + 1`,
//! so host 0 is `10.0.0.1`, host 255 is `10.0.1.0`, host 65,535 is
//! `10.1.0.0`. Its listeners are `/ip4/<ip>/tcp/<port>`: the rest of the
//! stack (identify, Kademlia, address scoring) sees ordinary TCP addresses.
//! They are never passed to a socket: only `SimTransport` understands them,
//! and it claims every `/ip4/../tcp/..` address (see `transport.rs` for why
//! and for how to chain it with libp2p's TCP transport).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;

use crate::error::SimError;

/// One simulated host: an index into the network's host table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct HostId(pub u32);

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "h{}", self.0)
    }
}

/// Base of the simulated address block, 10.0.0.0/8.
const BASE: u32 = 0x0A00_0000;
/// Host indexes map to 10.0.0.1 ..= 10.255.255.254; .255.255.255 is left out
/// because it looks like a broadcast address.
const MAX_HOSTS: u32 = 0x00FF_FFFE;

/// The IP of the host with this index.
pub fn host_ip(index: u32) -> Result<Ipv4Addr, SimError> {
    if index >= MAX_HOSTS {
        return Err(SimError::AddressesExhausted);
    }
    Ok(Ipv4Addr::from(BASE + index + 1))
}

/// The index of the host with this IP, if it is in the simulated block.
pub fn host_index(ip: Ipv4Addr) -> Option<u32> {
    let n = u32::from(ip);
    let offset = n.checked_sub(BASE + 1)?;
    (offset < MAX_HOSTS).then_some(offset)
}

/// `/ip4/<ip>/tcp/<port>`.
pub fn to_multiaddr(addr: SocketAddrV4) -> Multiaddr {
    Multiaddr::empty()
        .with(Protocol::Ip4(*addr.ip()))
        .with(Protocol::Tcp(addr.port()))
}

/// Parses `/ip4/<ip>/tcp/<port>`, optionally followed by `/p2p/<peer>`
/// (the swarm appends it when dialing a known peer). Anything else is not
/// ours.
pub fn parse_multiaddr(addr: &Multiaddr) -> Option<SocketAddrV4> {
    let mut it = addr.iter();
    let ip = match it.next()? {
        Protocol::Ip4(ip) => ip,
        _ => return None,
    };
    let port = match it.next()? {
        Protocol::Tcp(port) => port,
        _ => return None,
    };
    match it.next() {
        None => Some(SocketAddrV4::new(ip, port)),
        Some(Protocol::P2p(_)) if it.next().is_none() => Some(SocketAddrV4::new(ip, port)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_round_trip() {
        for i in [0, 1, 254, 255, 256, 65_535, 65_536, MAX_HOSTS - 1] {
            let ip = host_ip(i).unwrap();
            assert_eq!(host_index(ip), Some(i), "{ip}");
        }
        assert_eq!(host_ip(0).unwrap(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(host_ip(255).unwrap(), Ipv4Addr::new(10, 0, 1, 0));
        assert!(host_ip(MAX_HOSTS).is_err());
        assert_eq!(host_index(Ipv4Addr::new(10, 0, 0, 0)), None);
        assert_eq!(host_index(Ipv4Addr::new(192, 168, 0, 1)), None);
    }

    #[test]
    fn parses_only_ip4_tcp() {
        let ok: Multiaddr = "/ip4/10.0.0.1/tcp/4001".parse().unwrap();
        assert_eq!(
            parse_multiaddr(&ok),
            Some(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 4001))
        );
        let with_peer: Multiaddr =
            "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
                .parse()
                .unwrap();
        assert!(parse_multiaddr(&with_peer).is_some());
        for bad in [
            "/ip4/10.0.0.1/udp/4001/quic-v1",
            "/ip6/::1/tcp/4001",
            "/memory/5",
            "/ip4/10.0.0.1/tcp/4001/ws",
            "/dns4/example.com/tcp/4001",
        ] {
            let a: Multiaddr = bad.parse().unwrap();
            assert_eq!(parse_multiaddr(&a), None, "{bad}");
        }
        assert_eq!(
            to_multiaddr(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 7)),
            "/ip4/10.0.0.2/tcp/7".parse::<Multiaddr>().unwrap()
        );
    }
}
