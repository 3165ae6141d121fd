//! `SimNetwork`: the registry of hosts, their listeners and the links
//! between them, and the harness's controls.
//!
//! One mutex guards the registry; it is taken by the harness's controls, by
//! dials and by listen calls, never on the data path (streams touch only
//! their pipes and links). Lock order: network, then listener queue or link,
//! then pipe; streams take pipe, then link state.
//!
//! The harness's controls (profiles, partitions, stalls, hosts up and
//! down) are in `control.rs`, with their semantics.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;

use crate::addr::{host_index, host_ip, HostId};
use crate::error::SimError;
use crate::link::{Link, LinkProfile};
use crate::stats::{HostCounters, HostStats};
use crate::stream::{Pipe, SimStream};
use crate::sync::lock;
use crate::transport::{ListenerShared, SimTransport};

mod control;

/// Ports handed out for port-0 listeners and outbound connections.
const EPHEMERAL: std::ops::RangeInclusive<u16> = 49152..=65535;

/// Settings fixed when the network is created.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seeds every link's random stream.
    pub seed: u64,
    /// The profile of every link without an override.
    pub default_profile: LinkProfile,
    /// Bytes written and not yet read, per connection and direction, before
    /// the writer gets `Pending`.
    pub buffer_bytes: usize,
    /// How long a dial across a down link takes to fail.
    pub dial_timeout: Duration,
    /// Inbound connections a listener holds before the transport takes them;
    /// more are refused.
    pub backlog: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            default_profile: LinkProfile::default(),
            buffer_bytes: 1 << 20,
            dial_timeout: Duration::from_secs(10),
            backlog: 128,
        }
    }
}

/// The simulated network. Cheap to clone; all clones are the same network.
#[derive(Clone)]
pub struct SimNetwork {
    inner: Arc<Inner>,
}

struct Inner {
    config: SimConfig,
    epoch: Instant,
    state: Mutex<State>,
}

struct State {
    hosts: Vec<Host>,
    default_profile: LinkProfile,
    /// Profiles differing from the default, per directed pair.
    overrides: HashMap<(HostId, HostId), LinkProfile>,
    /// Links in use by at least one connection.
    links: HashMap<(HostId, HostId), Weak<Link>>,
    links_sweep_at: usize,
}

struct Host {
    ip: Ipv4Addr,
    up: bool,
    counters: Arc<HostCounters>,
    listeners: BTreeMap<u16, Arc<ListenerShared>>,
    next_ephemeral: u16,
}

/// What a dial needs to know before it starts.
pub(crate) struct DialPlan {
    pub(crate) target: HostId,
    /// `None` when a link between the two is down either way.
    pub(crate) latencies: Option<(Duration, Duration)>,
}

/// Why `connect` did not create a connection.
pub(crate) enum ConnectError {
    /// A link went down while the SYN travelled: the dial times out.
    LinkDown,
    Failed(SimError),
}

impl SimNetwork {
    pub fn new(config: SimConfig) -> Self {
        let default_profile = config.default_profile.clone();
        Self {
            inner: Arc::new(Inner {
                config,
                epoch: Instant::now(),
                state: Mutex::new(State {
                    hosts: Vec::new(),
                    default_profile,
                    overrides: HashMap::new(),
                    links: HashMap::new(),
                    links_sweep_at: 64,
                }),
            }),
        }
    }

    pub fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    /// Adds a host; it is up, with the next address (`addr.rs`).
    pub fn add_host(&self) -> Result<HostId, SimError> {
        let mut st = lock(&self.inner.state);
        let index = u32::try_from(st.hosts.len()).map_err(|_| SimError::AddressesExhausted)?;
        let ip = host_ip(index)?;
        st.hosts.push(Host {
            ip,
            up: true,
            counters: Arc::default(),
            listeners: BTreeMap::new(),
            next_ephemeral: *EPHEMERAL.start(),
        });
        Ok(HostId(index))
    }

    pub fn add_hosts(&self, n: usize) -> Result<Vec<HostId>, SimError> {
        (0..n).map(|_| self.add_host()).collect()
    }

    pub fn host_count(&self) -> usize {
        lock(&self.inner.state).hosts.len()
    }

    pub fn host_ip(&self, host: HostId) -> Result<Ipv4Addr, SimError> {
        Ok(lock(&self.inner.state).host(host)?.ip)
    }

    /// `/ip4/<host ip>/tcp/<port>`, e.g. to listen on a fixed port that
    /// survives restarts.
    pub fn host_addr(&self, host: HostId, port: u16) -> Result<libp2p::Multiaddr, SimError> {
        Ok(crate::addr::to_multiaddr(SocketAddrV4::new(
            self.host_ip(host)?,
            port,
        )))
    }

    pub fn host_by_ip(&self, ip: Ipv4Addr) -> Option<HostId> {
        let st = lock(&self.inner.state);
        let index = host_index(ip)?;
        ((index as usize) < st.hosts.len()).then_some(HostId(index))
    }

    /// A libp2p transport for `host`. A host may have several (e.g. one per
    /// restart of its swarm); their listeners share the host's ports.
    pub fn transport(&self, host: HostId) -> Result<SimTransport, SimError> {
        lock(&self.inner.state).host(host)?;
        Ok(SimTransport::new(self.clone(), host))
    }

    pub fn stats(&self, host: HostId) -> Result<HostStats, SimError> {
        Ok(lock(&self.inner.state).host(host)?.counters.snapshot(host))
    }

    /// Every host's counters, in host order.
    pub fn all_stats(&self) -> Vec<HostStats> {
        let st = lock(&self.inner.state);
        st.hosts
            .iter()
            .enumerate()
            .map(|(i, h)| h.counters.snapshot(HostId(i as u32)))
            .collect()
    }

    // ---- used by the transport ----

    pub(crate) fn register_listener(
        &self,
        host: HostId,
        addr: SocketAddrV4,
    ) -> Result<(SocketAddrV4, Arc<ListenerShared>), SimError> {
        let backlog = self.inner.config.backlog;
        let mut st = lock(&self.inner.state);
        let h = st.host_mut(host)?;
        if !addr.ip().is_unspecified() && *addr.ip() != h.ip {
            return Err(SimError::AddrNotAvailable(*addr.ip()));
        }
        let port = match addr.port() {
            0 => h.free_port()?,
            p if h.listeners.contains_key(&p) => {
                return Err(SimError::AddrInUse(SocketAddrV4::new(h.ip, p)))
            }
            p => p,
        };
        let shared = Arc::new(ListenerShared::new(backlog));
        h.listeners.insert(port, shared.clone());
        Ok((SocketAddrV4::new(h.ip, port), shared))
    }

    /// Removes the listener on `port` if it is still `shared` (a later
    /// transport of the same host may have taken the port since).
    pub(crate) fn unregister_listener(
        &self,
        host: HostId,
        port: u16,
        shared: &Arc<ListenerShared>,
    ) {
        let mut st = lock(&self.inner.state);
        if let Ok(h) = st.host_mut(host) {
            if h.listeners
                .get(&port)
                .is_some_and(|l| Arc::ptr_eq(l, shared))
            {
                h.listeners.remove(&port);
            }
        }
        shared.clear();
    }

    pub(crate) fn dial_plan(
        &self,
        from: HostId,
        target: SocketAddrV4,
    ) -> Result<DialPlan, SimError> {
        let st = lock(&self.inner.state);
        if !st.host(from)?.up {
            return Err(SimError::HostDown(from));
        }
        let to = st.host_at(*target.ip())?;
        let fwd = st.profile(from, to);
        let back = st.profile(to, from);
        Ok(DialPlan {
            target: to,
            latencies: (fwd.up && back.up).then_some((fwd.latency, back.latency)),
        })
    }

    /// Creates the connection once the SYN arrived: queues the listener's
    /// end with the target's listener and returns the dialer's end.
    pub(crate) fn connect(
        &self,
        from: HostId,
        to: HostId,
        target: SocketAddrV4,
        reuse_port: bool,
    ) -> Result<SimStream, ConnectError> {
        let capacity = self.inner.config.buffer_bytes;
        let mut st = lock(&self.inner.state);
        let failed = ConnectError::Failed;
        if !st.host(from).map_err(failed)?.up {
            return Err(failed(SimError::HostDown(from)));
        }
        if !(st.profile(from, to).up && st.profile(to, from).up) {
            return Err(ConnectError::LinkDown);
        }
        let target_host = st.host(to).map_err(failed)?;
        let listener = match (target_host.up, target_host.listeners.get(&target.port())) {
            (true, Some(l)) if !l.is_full() => l.clone(),
            _ => return Err(failed(SimError::Refused(target))),
        };
        let target_counters = target_host.counters.clone();
        let source = {
            let h = st.host_mut(from).map_err(failed)?;
            let port = match h.listeners.keys().next() {
                Some(&p) if reuse_port => p,
                _ => h.next_port(),
            };
            SocketAddrV4::new(h.ip, port)
        };
        let forward = Pipe::new(st.link(&self.inner, from, to), capacity);
        let backward = Pipe::new(st.link(&self.inner, to, from), capacity);
        let from_counters = st.host(from).map_err(failed)?.counters.clone();
        let dialer = SimStream::new(
            forward.clone(),
            backward.clone(),
            from_counters.clone(),
            source,
            target,
        );
        let accepted = SimStream::new(backward, forward, target_counters.clone(), target, source);
        // Cannot fail: checked `is_full` under the network lock, and only
        // connects (under the same lock) push.
        listener.push(accepted, source);
        HostCounters::add(&from_counters.connections_opened, 1);
        HostCounters::add(&target_counters.connections_opened, 1);
        Ok(dialer)
    }

    /// Counts a dial that failed (`abandoned: false`) or was dropped
    /// unfinished (`true`).
    pub(crate) fn count_dial_end(&self, host: HostId, abandoned: bool) {
        if let Ok(h) = lock(&self.inner.state).host(host) {
            let c = &h.counters;
            HostCounters::add(
                if abandoned {
                    &c.dials_abandoned
                } else {
                    &c.dials_failed
                },
                1,
            );
        }
    }
}

impl State {
    fn host(&self, id: HostId) -> Result<&Host, SimError> {
        self.hosts
            .get(id.0 as usize)
            .ok_or(SimError::UnknownHost(id))
    }

    fn host_mut(&mut self, id: HostId) -> Result<&mut Host, SimError> {
        self.hosts
            .get_mut(id.0 as usize)
            .ok_or(SimError::UnknownHost(id))
    }

    fn host_at(&self, ip: Ipv4Addr) -> Result<HostId, SimError> {
        match host_index(ip) {
            Some(i) if (i as usize) < self.hosts.len() => Ok(HostId(i)),
            _ => Err(SimError::NoRoute(ip)),
        }
    }

    fn profile(&self, from: HostId, to: HostId) -> LinkProfile {
        self.overrides
            .get(&(from, to))
            .unwrap_or(&self.default_profile)
            .clone()
    }

    /// The live link from `from` to `to`, created if no connection uses it.
    fn link(&mut self, inner: &Inner, from: HostId, to: HostId) -> Arc<Link> {
        if let Some(link) = self.links.get(&(from, to)).and_then(Weak::upgrade) {
            return link;
        }
        if self.links.len() >= self.links_sweep_at {
            self.links.retain(|_, l| l.strong_count() > 0);
            self.links_sweep_at = (self.links.len() * 2).max(64);
        }
        let link = Arc::new(Link::new(
            inner.epoch,
            inner.config.seed,
            from,
            to,
            self.profile(from, to),
        ));
        self.links.insert((from, to), Arc::downgrade(&link));
        link
    }
}

impl Host {
    /// The next ephemeral port, for an outbound connection (may repeat
    /// after 16,384 connections, harmlessly: nothing is keyed by it).
    fn next_port(&mut self) -> u16 {
        let port = self.next_ephemeral;
        self.next_ephemeral = if port == *EPHEMERAL.end() {
            *EPHEMERAL.start()
        } else {
            port + 1
        };
        port
    }

    /// An ephemeral port no listener holds.
    fn free_port(&mut self) -> Result<u16, SimError> {
        for _ in EPHEMERAL {
            let port = self.next_port();
            if !self.listeners.contains_key(&port) {
                return Ok(port);
            }
        }
        Err(SimError::PortsExhausted(self.ip))
    }
}
