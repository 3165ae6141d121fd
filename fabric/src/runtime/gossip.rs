//! Gossip inside the fabric loop: publishing in a signed envelope, and
//! checking each arriving message once (after gossipsub dropped duplicates,
//! before it forwards) by origin signature, origin standing, and the
//! topic's own validator.

use std::sync::PoisonError;

use libp2p::{gossipsub, PeerId};
use osmoda_fabric_proto::gossip;
use tracing::{debug, info};

use super::{now_ms, FabricLoop};
use crate::handle::{FabricError, FabricEvent, InboxEntry};
use crate::membership::peer_id_of;
use crate::topics::{self, FleetMessage, MeshText, Route, MAX_TEXT_LEN};

use super::direct::decode_revocation;

/// Gossipsub's own bytes around a message (protobuf fields, topic).
const RPC_OVERHEAD: usize = 1024;

/// Largest gossipsub message the fabric sends or accepts.
pub(crate) const MAX_TRANSMIT: usize =
    topics::MAX_GOSSIP_MESSAGE + gossip::ENVELOPE_OVERHEAD + RPC_OVERHEAD;

/// Gossipsub message id: a hash of the whole envelope. Content addressing
/// means a forged copy (other bytes under a valid-looking origin) has an id
/// of its own and cannot shadow the real message in the duplicate cache.
pub(crate) fn message_id(message: &gossipsub::Message) -> gossipsub::MessageId {
    let hash = blake3::hash(&message.data);
    gossipsub::MessageId::new(&hash.as_bytes()[..20])
}

impl FabricLoop {
    pub(super) fn publish(
        &mut self,
        topic: &'static str,
        data: Vec<u8>,
    ) -> Result<(), FabricError> {
        if self.topics.by_name(topic).is_none() {
            return Err(FabricError::UnknownTopic(topic.to_owned()));
        }
        if data.len() > topics::MAX_GOSSIP_MESSAGE {
            return Err(FabricError::TooLarge(data.len()));
        }
        self.gossip_seqno = self.gossip_seqno.wrapping_add(1);
        let sealed = gossip::seal(&self.signing, topic, self.gossip_seqno, &data);
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(gossipsub::IdentTopic::new(topic), sealed)
        {
            Ok(_) => Ok(()),
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => Err(FabricError::NoPeers),
            Err(e) => Err(FabricError::Publish(e.to_string())),
        }
    }

    pub(super) fn broadcast(&mut self, text: String) -> Result<(), FabricError> {
        if text.len() > MAX_TEXT_LEN {
            return Err(FabricError::TooLarge(text.len()));
        }
        let msg = MeshText {
            text,
            sent_at_ms: now_ms(),
        };
        let data = serde_json::to_vec(&msg).map_err(|e| FabricError::Publish(e.to_string()))?;
        self.publish(topics::MESH, data)
    }

    /// Decides whether gossipsub forwards a message, and hands it on.
    pub(super) fn on_gossip(
        &mut self,
        message: gossipsub::Message,
    ) -> gossipsub::MessageAcceptance {
        use gossipsub::MessageAcceptance::{Accept, Ignore, Reject};
        let Some(spec) = self.topics.by_hash(&message.topic) else {
            return Reject;
        };
        let (topic, route) = (spec.name(), spec.route.clone());
        let envelope = match gossip::open(topic, &message.data) {
            Ok(envelope) => envelope,
            Err(error) => {
                debug!(%topic, %error, "rejecting a gossip message");
                return Reject;
            }
        };
        let Some(origin) = peer_id_of(&envelope.origin) else {
            return Reject;
        };
        // A revoked or penalized node's messages stop here, whoever relays them.
        if self.membership.is_revoked(&envelope.origin)
            || self
                .penalties
                .is_penalized(&origin, std::time::Instant::now())
        {
            return Ignore;
        }
        if origin == *self.swarm.local_peer_id() {
            return Ignore;
        }
        let data = envelope.payload;
        match route {
            Route::Mesh => {
                let Ok(msg) = serde_json::from_slice::<MeshText>(data) else {
                    return Reject;
                };
                if msg.text.len() > MAX_TEXT_LEN {
                    return Reject;
                }
                self.push_inbox("broadcast", Some(origin), msg);
                Accept
            }
            Route::Fleet => {
                let Ok(FleetMessage::Revocation { revocation }) = serde_json::from_slice(data)
                else {
                    return Reject;
                };
                match decode_revocation(&revocation)
                    .map(|rev| self.apply_revocation(&rev, false, Some(origin)))
                {
                    Some(Ok(_)) => Accept,
                    _ => Reject,
                }
            }
            Route::App(validator) => {
                if !(validator.0)(data) {
                    debug!(%topic, %origin, "rejecting an invalid gossip message");
                    return Reject;
                }
                self.emit(FabricEvent::Gossip {
                    topic,
                    origin,
                    data: data.to_vec(),
                });
                Accept
            }
        }
    }

    pub(super) fn push_inbox(&mut self, kind: &'static str, from: Option<PeerId>, msg: MeshText) {
        let from_name = from
            .and_then(|p| self.membership.peer(&p))
            .map(|r| r.cert.name);
        let entry = InboxEntry {
            kind: kind.to_owned(),
            from: from.map(|p| p.to_string()).unwrap_or_default(),
            from_name,
            text: msg.text,
            sent_at_ms: msg.sent_at_ms,
            received_at_ms: now_ms(),
        };
        info!(kind, from = %entry.from, bytes = entry.text.len(), "message received");
        self.inbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(entry);
    }
}
