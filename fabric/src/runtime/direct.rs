//! The direct (one peer to one peer) protocol inside the fabric loop: our
//! requests and their answers, peers' requests answered here (texts,
//! revocations) or handed to the application untouched (its registered
//! protocols).

use libp2p::{request_response, PeerId};
use osmoda_fabric_proto::Revocation;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::FabricLoop;
use crate::direct::{AppProtocol, DirectRequest, DirectResponse};
use crate::handle::{FabricError, FabricEvent};

/// Peers' requests the application may have in hand at once; more are refused.
const MAX_PENDING_INBOUND: usize = 64;

impl FabricLoop {
    fn app_protocol(&self, id: u16) -> Option<AppProtocol> {
        self.protocols.iter().copied().find(|p| p.id == id)
    }

    pub(super) fn send_request(
        &mut self,
        peer: PeerId,
        request: DirectRequest,
        reply: oneshot::Sender<Result<DirectResponse, FabricError>>,
    ) {
        if let DirectRequest::App { protocol, .. } = &request {
            if self.app_protocol(*protocol).is_none() {
                let _ = reply.send(Err(FabricError::UnknownProtocol(*protocol)));
                return;
            }
        }
        if !self.connected.contains_key(&peer) {
            let _ = reply.send(Err(FabricError::NotConnected(peer)));
            return;
        }
        let id = self
            .swarm
            .behaviour_mut()
            .direct
            .send_request(&peer, request);
        self.pending_requests.insert(id, reply);
    }

    pub(super) fn respond(&mut self, id: u64, response: DirectResponse) {
        if let Some(channel) = self.pending_inbound.remove(&id) {
            let _ = self
                .swarm
                .behaviour_mut()
                .direct
                .send_response(channel, response);
        }
    }

    /// Hands a request to the application, or refuses it when the
    /// application is busy.
    fn forward(
        &mut self,
        peer: PeerId,
        protocol: u16,
        body: Vec<u8>,
        channel: request_response::ResponseChannel<DirectResponse>,
    ) {
        // Channels whose requester gave up are dropped on the next pass.
        self.pending_inbound.retain(|_, c| c.is_open());
        let id = self.next_inbound;
        let request = FabricEvent::Request {
            id,
            peer,
            protocol,
            body,
        };
        let handed = self.pending_inbound.len() < MAX_PENDING_INBOUND
            && self.events.try_send(request).is_ok();
        if handed {
            self.next_inbound += 1;
            self.pending_inbound.insert(id, channel);
        } else {
            let busy = DirectResponse::Refused {
                reason: "busy".into(),
            };
            let _ = self
                .swarm
                .behaviour_mut()
                .direct
                .send_response(channel, busy);
        }
    }

    pub(super) fn on_direct(
        &mut self,
        event: request_response::Event<DirectRequest, DirectResponse>,
    ) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let response = match request {
                    DirectRequest::Text(msg) => {
                        self.push_inbox("direct", Some(peer), msg);
                        DirectResponse::Ack
                    }
                    DirectRequest::Revocations(revocations) => {
                        for rev in &revocations {
                            if let Err(e) = self.apply_revocation(rev, true, Some(peer)) {
                                warn!(%peer, error = %e, "peer sent an invalid revocation");
                            }
                        }
                        DirectResponse::Ack
                    }
                    DirectRequest::Certificate(bytes) => self.take_renewed(peer, &bytes),
                    DirectRequest::App { protocol, body } => match self.app_protocol(protocol) {
                        Some(_) => {
                            self.forward(peer, protocol, body, channel);
                            return;
                        }
                        None => {
                            debug!(%peer, protocol, "request on an unknown protocol");
                            DirectResponse::Refused {
                                reason: format!("unknown protocol {protocol}"),
                            }
                        }
                    },
                };
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .direct
                    .send_response(channel, response);
            }
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(reply) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Err(FabricError::Delivery(error.to_string())));
                }
            }
            _ => {}
        }
    }
}

/// A revocation as gossip carries it (hex), if it parses.
pub(super) fn decode_revocation(hex: &str) -> Option<Revocation> {
    if hex.len() != 2 * osmoda_fabric_proto::cert::REVOCATION_LEN {
        return None;
    }
    let bytes =
        osmoda_fabric_proto::parse_hex::<{ osmoda_fabric_proto::cert::REVOCATION_LEN }>(hex)?;
    Revocation::decode(&bytes).ok()
}
