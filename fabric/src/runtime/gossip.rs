//! Gossip inside the fabric loop: publishing in a signed envelope, and
//! checking each arriving message once (after gossipsub dropped duplicates,
//! before it forwards) by origin signature, membership, standing and
//! sequence number (`origin.rs`). The
//! fabric's own topics are then judged here; the application's go to
//! their validator's queue and wait, still unforwarded, for the verdict
//! (`FabricHandle::report`), at most `VALIDATION_TIMEOUT`.

use std::sync::PoisonError;
use std::time::Instant;

use libp2p::{gossipsub, PeerId};
use osmoda_fabric_proto::gossip;
use tracing::{debug, info};

use super::{now_ms, FabricLoop};
use crate::handle::{FabricError, InboxEntry};
use crate::membership::unix_now;
use crate::topics::{
    self, FleetMessage, GossipMessage, MeshText, Route, Ticket, Verdict, MAX_AWAITING,
    MAX_TEXT_LEN, VALIDATION_TIMEOUT,
};

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

/// One topic's gossip since start (`TopicCounts`).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Counts {
    published: u64,
    received: u64,
    dropped: u64,
}

impl FabricLoop {
    pub(super) fn topic_counts(&self) -> Vec<crate::handle::TopicCounts> {
        self.topics
            .iter()
            .map(|(_, spec)| {
                let c = self
                    .topic_counts
                    .get(spec.name())
                    .copied()
                    .unwrap_or_default();
                crate::handle::TopicCounts {
                    topic: spec.name().to_owned(),
                    published: c.published,
                    received: c.received,
                    dropped: c.dropped,
                }
            })
            .collect()
    }

    /// `topic` is a registered topic's name (the callers looked it up).
    fn count(&mut self, topic: &'static str) -> &mut Counts {
        self.topic_counts.entry(topic).or_default()
    }

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
        let own = self.credentials.current();
        let sealed = gossip::seal(
            own.signing_key(),
            own.cert(),
            topic,
            self.gossip_seqno,
            &data,
        )
        .map_err(|e| FabricError::Publish(e.to_string()))?;
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(gossipsub::IdentTopic::new(topic), sealed)
        {
            Ok(_) => {
                self.count(topic).published += 1;
                Ok(())
            }
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

    /// Decides whether gossipsub forwards a message and hands it on, or
    /// (`None`) leaves the decision to the application.
    pub(super) fn on_gossip(
        &mut self,
        id: &gossipsub::MessageId,
        source: PeerId,
        message: gossipsub::Message,
    ) -> Option<gossipsub::MessageAcceptance> {
        let Some(spec) = self.topics.by_hash(&message.topic) else {
            return Some(gossipsub::MessageAcceptance::Reject);
        };
        let (topic, route) = (spec.name(), spec.route.clone());
        self.count(topic).received += 1;
        let verdict = self.judge(id, source, topic, route, message);
        if matches!(
            verdict,
            Some(gossipsub::MessageAcceptance::Reject | gossipsub::MessageAcceptance::Ignore)
        ) {
            self.count(topic).dropped += 1;
        }
        verdict
    }

    fn judge(
        &mut self,
        id: &gossipsub::MessageId,
        source: PeerId,
        topic: &'static str,
        route: Route,
        message: gossipsub::Message,
    ) -> Option<gossipsub::MessageAcceptance> {
        use gossipsub::MessageAcceptance::{Accept, Ignore, Reject};
        let checked = super::origin::check(
            topic,
            &message.data,
            &self.membership,
            &self.penalties,
            &mut self.replay,
            self.swarm.local_peer_id(),
            unix_now(),
        );
        let (envelope, origin) = match checked {
            Ok(checked) => checked,
            Err(refusal) => {
                debug!(%topic, %source, ?refusal, "gossip stopped at the origin checks");
                if refusal.strikes() && self.penalties.strike(source, Instant::now()) {
                    self.penalize(source, "relayed gossip that no member signed");
                }
                return Some(refusal.acceptance());
            }
        };
        let data = envelope.payload;
        Some(match route {
            Route::Mesh => {
                let Ok(msg) = serde_json::from_slice::<MeshText>(data) else {
                    return Some(Reject);
                };
                if msg.text.len() > MAX_TEXT_LEN {
                    return Some(Reject);
                }
                self.push_inbox("broadcast", Some(origin), msg);
                Accept
            }
            Route::Fleet => {
                let Ok(FleetMessage::Revocation { revocation }) = serde_json::from_slice(data)
                else {
                    return Some(Reject);
                };
                match decode_revocation(&revocation)
                    .map(|rev| self.apply_revocation(&rev, false, Some(origin)))
                {
                    Some(Ok(_)) => Accept,
                    _ => Reject,
                }
            }
            Route::App(validator) => {
                if self.awaiting.len() >= MAX_AWAITING {
                    self.gossip_dropped += 1;
                    return Some(Ignore);
                }
                let arrived = Instant::now();
                let pending = GossipMessage {
                    topic,
                    origin,
                    data: data.to_vec(),
                    ticket: Ticket {
                        id: id.clone(),
                        source,
                        arrived,
                    },
                };
                if validator.0.try_send(pending).is_err() {
                    debug!(%topic, "validation queue full; a message ignored");
                    self.gossip_dropped += 1;
                    return Some(Ignore);
                }
                self.awaiting.insert(id.clone(), (source, arrived));
                return None;
            }
        })
    }

    /// Applies the application's verdict, unless the loop gave up on it.
    pub(super) fn apply_verdict(&mut self, ticket: Ticket, verdict: Verdict) {
        if self.awaiting.remove(&ticket.id).is_none() {
            return;
        }
        let acceptance = match verdict {
            Verdict::Accept => gossipsub::MessageAcceptance::Accept,
            Verdict::Reject => gossipsub::MessageAcceptance::Reject,
            Verdict::Ignore => gossipsub::MessageAcceptance::Ignore,
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&ticket.id, &ticket.source, acceptance);
    }

    /// Ignores the messages whose verdict is overdue, so that gossipsub
    /// drops them now rather than when they fall out of its cache.
    pub(super) fn expire_verdicts(&mut self) {
        let now = Instant::now();
        let overdue: Vec<(gossipsub::MessageId, PeerId)> = self
            .awaiting
            .iter()
            .filter(|(_, (_, arrived))| now.duration_since(*arrived) >= VALIDATION_TIMEOUT)
            .map(|(id, (source, _))| (id.clone(), *source))
            .collect();
        for (id, source) in overdue {
            self.awaiting.remove(&id);
            self.gossip_expired += 1;
            let _ = self
                .swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(
                    &id,
                    &source,
                    gossipsub::MessageAcceptance::Ignore,
                );
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
