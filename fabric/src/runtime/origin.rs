//! Who may originate gossip: the checks every message passes, once, before
//! its topic's own validation. The envelope must be signed by the key its
//! certificate names, that certificate must be the fleet root's for a
//! member in good standing, and its sequence number must be news.
//!
//! Without the membership check any key could sign: a member could publish
//! under throwaway keys, and every origin-keyed defence (the penalty box,
//! the sequence windows) would see a stranger each time.

use std::time::Instant;

use libp2p::gossipsub::MessageAcceptance;
use libp2p::PeerId;
use osmoda_fabric_proto::gossip::{self, Envelope, EnvelopeError};

use super::penalty::PenaltyBox;
use super::replay::{Replay, Seen};
use crate::membership::{peer_id_of, MemberError, Membership};

/// Why a message stops at the origin checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    Envelope(EnvelopeError),
    NotMember(MemberError),
    /// A member the node has penalized: kept out, whoever relays it.
    Penalized,
    /// This node's own message, back again.
    Own,
    /// A number its origin used before, or one older than the window.
    Stale(Seen),
}

impl Refusal {
    /// What gossipsub is told: rejected (not forwarded, and the sender's
    /// score pays) when no honest relay would have passed it on, ignored
    /// otherwise.
    pub(crate) fn acceptance(&self) -> MessageAcceptance {
        if self.strikes() {
            MessageAcceptance::Reject
        } else {
            MessageAcceptance::Ignore
        }
    }

    /// Whether the peer that sent it earns a strike (`PenaltyBox`): it
    /// forwarded what it must have found invalid itself. An old envelope
    /// version (a fleet halfway through an upgrade), a revocation or an
    /// expiry that the relay may not have seen yet are not held against it.
    pub(crate) fn strikes(&self) -> bool {
        match self {
            Refusal::Envelope(EnvelopeError::Version(_)) => false,
            Refusal::Envelope(_) => true,
            Refusal::NotMember(e) => !e.is_excusable(),
            Refusal::Penalized | Refusal::Own | Refusal::Stale(_) => false,
        }
    }
}

/// Checks what every gossip message must pass, in order of cost, and
/// returns the envelope and its origin's peer id. `now` is Unix seconds.
pub(crate) fn check<'a>(
    topic: &str,
    data: &'a [u8],
    membership: &Membership,
    penalties: &PenaltyBox,
    replay: &mut Replay,
    local: &PeerId,
    now: u64,
) -> Result<(Envelope<'a>, PeerId), Refusal> {
    let envelope = gossip::open(topic, data).map_err(Refusal::Envelope)?;
    membership
        .admit(envelope.cert_bytes, &envelope.cert, now)
        .map_err(Refusal::NotMember)?;
    let origin =
        peer_id_of(&envelope.origin).ok_or(Refusal::Envelope(EnvelopeError::BadSignature))?;
    if penalties.is_penalized(&origin, Instant::now()) {
        return Err(Refusal::Penalized);
    }
    if origin == *local {
        return Err(Refusal::Own);
    }
    // Marked only now, once the origin is known to be a member: strangers
    // cannot fill the windows, nor burn a member's numbers.
    match replay.check_and_mark(&envelope.origin, envelope.seqno) {
        Seen::Fresh => Ok((envelope, origin)),
        seen => Err(Refusal::Stale(seen)),
    }
}

#[cfg(test)]
mod tests;
