//! One listening QUIC endpoint, as a stream of libp2p transport events.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::future::{self, BoxFuture};
use futures::{FutureExt, Stream};
use if_watch::tokio::IfWatcher;
use if_watch::IfEvent;
use libp2p::core::transport::{ListenerId, TransportEvent};
use libp2p::PeerId;
use tracing::warn;

use super::connecting::establish;
use super::transport::socketaddr_to_multiaddr;
use super::{QuicError, QuicMuxer};
use crate::Membership;

pub(crate) type Upgrade = BoxFuture<'static, Result<(PeerId, QuicMuxer), QuicError>>;
pub(crate) type Event = TransportEvent<Upgrade, QuicError>;

pub(crate) struct Listener {
    pub(crate) id: ListenerId,
    /// Also used to dial, so that peers see our listening port.
    pub(crate) endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    accept: Option<BoxFuture<'static, Option<quinn::Incoming>>>,
    /// For a listener on an unspecified address: reports the addresses of
    /// the machine's interfaces as they come and go.
    if_watcher: Option<IfWatcher>,
    pending: VecDeque<Event>,
    closed: bool,
    handshake_timeout: Duration,
    membership: Arc<Membership>,
}

impl Listener {
    pub(crate) fn new(
        id: ListenerId,
        endpoint: quinn::Endpoint,
        handshake_timeout: Duration,
        membership: Arc<Membership>,
    ) -> Result<Self, QuicError> {
        let local_addr = endpoint.local_addr()?;
        let mut pending = VecDeque::new();
        let mut if_watcher = None;
        if local_addr.ip().is_unspecified() {
            match IfWatcher::new() {
                Ok(watcher) => if_watcher = Some(watcher),
                // Without interface events the best we can say is the
                // address we bound, port included.
                Err(error) => warn!(%error, "cannot watch network interfaces"),
            }
        }
        if if_watcher.is_none() {
            pending.push_back(TransportEvent::NewAddress {
                listener_id: id,
                listen_addr: socketaddr_to_multiaddr(&local_addr),
            });
        }
        Ok(Self {
            id,
            endpoint,
            local_addr,
            accept: None,
            if_watcher,
            pending,
            closed: false,
            handshake_timeout,
            membership,
        })
    }

    /// Stops accepting and reports the listener closed. Connections already
    /// made on this endpoint stay up; quinn keeps the socket until they end.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    pub(crate) fn close(&mut self, reason: Result<(), QuicError>) {
        if self.closed {
            return;
        }
        self.endpoint.set_server_config(None);
        self.accept = None;
        self.if_watcher = None;
        self.pending.push_back(TransportEvent::ListenerClosed {
            listener_id: self.id,
            reason,
        });
        self.closed = true;
    }

    /// Whether dialing `remote` from this listener's socket can work: same
    /// address family, and a loopback socket only reaches loopback peers
    /// (and the other way round).
    pub(crate) fn can_dial(&self, remote: &SocketAddr) -> bool {
        let ip = self.local_addr.ip();
        !self.closed
            && ip.is_ipv4() == remote.is_ipv4()
            && (ip.is_unspecified() || ip.is_loopback() == remote.ip().is_loopback())
    }

    fn listen_addr(&self, ip: IpAddr) -> Option<libp2p::Multiaddr> {
        (ip.is_ipv4() == self.local_addr.is_ipv4())
            .then(|| socketaddr_to_multiaddr(&SocketAddr::new(ip, self.local_addr.port())))
    }

    fn poll_if_watcher(&mut self, cx: &mut Context<'_>) -> Option<Event> {
        loop {
            let event = match self.if_watcher.as_mut()?.poll_if_event(cx) {
                Poll::Pending => return None,
                Poll::Ready(event) => event,
            };
            match event {
                Ok(IfEvent::Up(net)) => {
                    if let Some(listen_addr) = self.listen_addr(net.addr()) {
                        return Some(TransportEvent::NewAddress {
                            listener_id: self.id,
                            listen_addr,
                        });
                    }
                }
                Ok(IfEvent::Down(net)) => {
                    if let Some(listen_addr) = self.listen_addr(net.addr()) {
                        return Some(TransportEvent::AddressExpired {
                            listener_id: self.id,
                            listen_addr,
                        });
                    }
                }
                Err(error) => {
                    return Some(TransportEvent::ListenerError {
                        listener_id: self.id,
                        error: error.into(),
                    })
                }
            }
        }
    }

    fn incoming(&self, incoming: quinn::Incoming) -> Event {
        let send_back_addr = socketaddr_to_multiaddr(&incoming.remote_address());
        // quinn processes the ClientHello right here, so a peer refused by
        // TLS (no common group, wrong ALPN) fails now; report it like any
        // other failed inbound upgrade, with the peer's address.
        let upgrade = match incoming.accept() {
            Ok(connecting) => establish(
                connecting,
                self.handshake_timeout,
                self.membership.clone(),
                None,
            )
            .boxed(),
            Err(error) => future::ready(Err(QuicError::Connection(error))).boxed(),
        };
        TransportEvent::Incoming {
            listener_id: self.id,
            upgrade,
            local_addr: socketaddr_to_multiaddr(&self.local_addr),
            send_back_addr,
        }
    }
}

impl Stream for Listener {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let this = self.get_mut();
        loop {
            if let Some(event) = this.pending.pop_front() {
                return Poll::Ready(Some(event));
            }
            if this.closed {
                return Poll::Ready(None);
            }
            if let Some(event) = this.poll_if_watcher(cx) {
                return Poll::Ready(Some(event));
            }
            let accept = this.accept.get_or_insert_with(|| {
                let endpoint = this.endpoint.clone();
                async move { endpoint.accept().await }.boxed()
            });
            match accept.poll_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    // The endpoint was closed underneath us.
                    this.close(Ok(()));
                }
                Poll::Ready(Some(incoming)) => {
                    this.accept = None;
                    return Poll::Ready(Some(this.incoming(incoming)));
                }
            }
        }
    }
}

/// Wakes the transport when a listener is added or closed from outside `poll`.
pub(crate) fn wake(waker: &mut Option<Waker>) {
    if let Some(waker) = waker.take() {
        waker.wake();
    }
}
