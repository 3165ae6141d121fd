//! Errors of the simulated network.
//!
//! Two families: mistakes of the harness calling the API (an unknown host, a
//! bad profile) and failures a real network would report to a dialer or a
//! listener (refused, timed out, no route). Stream IO reports
//! `std::io::Error` like a socket does; see `stream.rs` for the kinds.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use crate::addr::HostId;

/// Everything the simulated network can fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// The harness named a host the network does not have.
    #[error("unknown simulated host {0}")]
    UnknownHost(HostId),
    /// The network ran out of addresses (16,777,214 hosts).
    #[error("no simulated address left for another host")]
    AddressesExhausted,
    /// A link profile with a loss outside 0..=1 (or not a number).
    #[error("invalid link profile: loss {0} is not within 0..=1")]
    InvalidLoss(f64),
    /// A link profile with a bandwidth of zero bytes per second (use
    /// `up: false` for a link that carries nothing).
    #[error("invalid link profile: bandwidth must be at least 1 byte/s")]
    ZeroBandwidth,
    /// The local host is down: it cannot dial.
    #[error("simulated host {0} is down")]
    HostDown(HostId),
    /// No simulated host has this IP (like "no route to host").
    #[error("no simulated host has address {0}")]
    NoRoute(Ipv4Addr),
    /// The target host is down, has no listener on the port, or its accept
    /// backlog is full (like a TCP RST).
    #[error("connection to {0} refused")]
    Refused(SocketAddrV4),
    /// A link on the way is down (partition): the handshake went unanswered.
    #[error("dial to {addr} timed out after {after:?}")]
    TimedOut { addr: SocketAddrV4, after: Duration },
    /// A listener already holds this port on this host.
    #[error("address {0} is already in use")]
    AddrInUse(SocketAddrV4),
    /// Listening on an IP that is not the host's own (nor 0.0.0.0).
    #[error("address {0} is not an address of this host")]
    AddrNotAvailable(Ipv4Addr),
    /// Every port of the host is taken by a listener.
    #[error("no free port on {0}")]
    PortsExhausted(Ipv4Addr),
}
