//! `SimTransport`: a libp2p `Transport` for one simulated host.
//!
//! Its output is a raw `SimStream` (like libp2p's TCP transport), so the
//! usual upgrade chain runs on top:
//!
//! ```ignore
//! sim.transport(host)?
//!     .upgrade(Version::V1)
//!     .authenticate(security)       // our PqUpgrade, or noise in tests
//!     .multiplex(yamux::Config::default())
//! ```
//!
//! Addresses are `/ip4/<ip>/tcp/<port>` (`addr.rs`). The transport claims
//! *every* `/ip4/../tcp/..` address, the unknown ones failing with
//! `NoRoute`, so that nothing leaks to a real socket:
//! - In simulation mode, give the swarm this transport *instead of* libp2p's
//!   TCP one (and no QUIC, no mDNS: they open real sockets).
//! - If TCP must stay in the same swarm, chain the simulated transport
//!   *first*: libp2p's `OrTransport` (what `SwarmBuilder::with_other_transport`
//!   builds) offers each dial and listen to the transports in the order they
//!   were added and stops at the first that does not answer
//!   `MultiaddrNotSupported`, so TCP never sees an ip4/tcp address. Chained
//!   after TCP, TCP would dial 10.x addresses for real.
//!
//! Listening on `/ip4/0.0.0.0/tcp/0` or on the host's IP with port 0 gets a
//! free port (49152..=65535) and reports `/ip4/<host ip>/tcp/<port>` as
//! `NewAddress`. Dial timing: the connection exists after one one-way
//! latency (the listener sees `Incoming` then) and the dialer gets it after
//! one round trip; failures as `SimError` documents (`NoRoute` and
//! `HostDown` at once, `Refused` after a round trip, `TimedOut` after the
//! dial timeout).

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use futures::future::{self, BoxFuture, Ready};
use libp2p::core::transport::{DialOpts, ListenerId, PortUse, TransportError, TransportEvent};
use libp2p::core::Transport;
use libp2p::Multiaddr;
use tokio::time::Instant;

use crate::addr::{parse_multiaddr, to_multiaddr, HostId};
use crate::error::SimError;
use crate::network::{ConnectError, SimNetwork};
use crate::stream::SimStream;
use crate::sync::lock;

/// The inbound queue of one listener, filled by dialers (under the network
/// lock) and drained by the transport's `poll`.
pub(crate) struct ListenerShared {
    backlog: usize,
    queue: Mutex<ListenerQueue>,
}

struct ListenerQueue {
    pending: VecDeque<(SimStream, SocketAddrV4)>,
    waker: Option<Waker>,
}

impl ListenerShared {
    pub(crate) fn new(backlog: usize) -> Self {
        Self {
            backlog: backlog.max(1),
            queue: Mutex::new(ListenerQueue {
                pending: VecDeque::new(),
                waker: None,
            }),
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        lock(&self.queue).pending.len() >= self.backlog
    }

    /// Queues an accepted connection; beyond the backlog it is dropped (the
    /// dialer reads EOF), though `connect` checks `is_full` first.
    pub(crate) fn push(&self, stream: SimStream, from: SocketAddrV4) {
        let waker = {
            let mut q = lock(&self.queue);
            if q.pending.len() >= self.backlog {
                return;
            }
            q.pending.push_back((stream, from));
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Drops the queued connections (the host went down or the listener
    /// closed).
    pub(crate) fn clear(&self) {
        let dropped = std::mem::take(&mut lock(&self.queue).pending);
        drop(dropped);
    }

    fn poll_next(&self, cx: &Context<'_>) -> Poll<(SimStream, SocketAddrV4)> {
        let mut q = lock(&self.queue);
        match q.pending.pop_front() {
            Some(next) => Poll::Ready(next),
            None => {
                if !q.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    q.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

struct Listener {
    id: ListenerId,
    addr: SocketAddrV4,
    shared: Arc<ListenerShared>,
    announced: bool,
    closed: bool,
}

/// The transport of one simulated host. Create it with
/// `SimNetwork::transport`.
pub struct SimTransport {
    net: SimNetwork,
    host: HostId,
    listeners: Vec<Listener>,
    waker: Option<Waker>,
}

impl SimTransport {
    pub(crate) fn new(net: SimNetwork, host: HostId) -> Self {
        Self {
            net,
            host,
            listeners: Vec::new(),
            waker: None,
        }
    }

    pub fn host(&self) -> HostId {
        self.host
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

impl Transport for SimTransport {
    type Output = SimStream;
    type Error = SimError;
    type ListenerUpgrade = Ready<Result<SimStream, SimError>>;
    type Dial = BoxFuture<'static, Result<SimStream, SimError>>;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        let Some(requested) = parse_multiaddr(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let (addr, shared) = self
            .net
            .register_listener(self.host, requested)
            .map_err(TransportError::Other)?;
        self.listeners.push(Listener {
            id,
            addr,
            shared,
            announced: false,
            closed: false,
        });
        self.wake();
        Ok(())
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        let Some(l) = self.listeners.iter_mut().find(|l| l.id == id && !l.closed) else {
            return false;
        };
        l.closed = true;
        self.net
            .unregister_listener(self.host, l.addr.port(), &l.shared);
        self.wake();
        true
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let Some(target) = parse_multiaddr(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let net = self.net.clone();
        let host = self.host;
        let reuse_port = opts.port_use == PortUse::Reuse;
        Ok(Box::pin(async move {
            let mut guard = DialGuard {
                net: &net,
                host,
                finished: false,
            };
            let result = dial(&net, host, target, reuse_port).await;
            guard.finished = true;
            if result.is_err() {
                net.count_dial_end(host, false);
            }
            result
        }))
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        let this = self.get_mut();
        let mut i = 0;
        while i < this.listeners.len() {
            let l = &mut this.listeners[i];
            if l.closed {
                let l = this.listeners.remove(i);
                return Poll::Ready(TransportEvent::ListenerClosed {
                    listener_id: l.id,
                    reason: Ok(()),
                });
            }
            if !l.announced {
                l.announced = true;
                return Poll::Ready(TransportEvent::NewAddress {
                    listener_id: l.id,
                    listen_addr: to_multiaddr(l.addr),
                });
            }
            if let Poll::Ready((stream, from)) = l.shared.poll_next(cx) {
                return Poll::Ready(TransportEvent::Incoming {
                    listener_id: l.id,
                    upgrade: future::ready(Ok(stream)),
                    local_addr: to_multiaddr(l.addr),
                    send_back_addr: to_multiaddr(from),
                });
            }
            i += 1;
        }
        if !this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            this.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for SimTransport {
    fn drop(&mut self) {
        for l in &self.listeners {
            if !l.closed {
                self.net
                    .unregister_listener(self.host, l.addr.port(), &l.shared);
            }
        }
    }
}

/// Counts a dial future dropped before it finished.
struct DialGuard<'a> {
    net: &'a SimNetwork,
    host: HostId,
    finished: bool,
}

impl Drop for DialGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.net.count_dial_end(self.host, true);
        }
    }
}

/// A dial, timed like TCP's handshake (see the module docs).
async fn dial(
    net: &SimNetwork,
    from: HostId,
    target: SocketAddrV4,
    reuse_port: bool,
) -> Result<SimStream, SimError> {
    let start = Instant::now();
    let timeout = net.config().dial_timeout;
    let timed_out = || SimError::TimedOut {
        addr: target,
        after: timeout,
    };
    let plan = net.dial_plan(from, target)?;
    let Some((forward, back)) = plan.latencies else {
        tokio::time::sleep_until(start + timeout).await;
        return Err(timed_out());
    };
    tokio::time::sleep(forward).await;
    match net.connect(from, plan.target, target, reuse_port) {
        Ok(stream) => {
            tokio::time::sleep(back).await;
            Ok(stream)
        }
        Err(ConnectError::LinkDown) => {
            tokio::time::sleep_until(start + timeout).await;
            Err(timed_out())
        }
        Err(ConnectError::Failed(e @ SimError::Refused(_))) => {
            tokio::time::sleep(back).await;
            Err(e)
        }
        Err(ConnectError::Failed(e)) => Err(e),
    }
}
