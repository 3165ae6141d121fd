//! Eager push of local writes: each write's Automerge change is gossiped on
//! `osmoda/docs/1` as it is made, and every member applies it on arrival
//! when it already holds the change's history (`osmoda_docs::Doc::
//! apply_pushed`). A push that cannot be applied, or never arrives, is
//! left to anti-entropy and sync (`anti_entropy.rs`, `sync.rs`), which
//! also tell neighbours of what they bring; pushed changes are not told
//! again, since gossip already took them everywhere.
//!
//! Payload: `0x01 || document (u16, big-endian: a shard's index, or a
//! single document's wire number, `state::docs::Kind::wire`) || plain
//! Automerge change chunks`, inside the fabric's signed envelope.

use std::sync::{Arc, Weak};

use libp2p::PeerId;
use osmoda_crdt_state::{Actor, Outcome};
use osmoda_docs::Pushed;
use osmoda_fabric::FabricHandle;
use tokio::sync::mpsc;
use tracing::debug;

use crate::state::audit_log::AuditLog;
use crate::state::docs::Docs;

const PUSH_VERSION: u8 = 2;

/// Local writes waiting to be gossiped; when full, a write is told to
/// neighbours by notice instead.
pub const OUTBOX: usize = 256;

/// One write's change to one document.
#[derive(Debug, Clone)]
pub struct Push {
    /// A knowledge shard's index, or a single document's wire number.
    pub doc: u16,
    pub change: Vec<u8>,
}

impl Push {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.change.len());
        out.push(PUSH_VERSION);
        out.extend_from_slice(&self.doc.to_be_bytes());
        out.extend_from_slice(&self.change);
        out
    }

    /// Whether the encoded push fits one gossip message; a larger change
    /// is announced by notice and travels by sync.
    pub fn fits_gossip(&self) -> bool {
        3 + self.change.len() <= osmoda_fabric::topics::MAX_GOSSIP_MESSAGE
    }

    /// The document number and change bytes of a push, if its header is
    /// sound; the document is checked by [`check`], the change when
    /// applied.
    pub fn decode(bytes: &[u8]) -> Option<(u16, &[u8])> {
        let (&version, rest) = bytes.split_first()?;
        if version != PUSH_VERSION || rest.len() < 2 {
            return None;
        }
        let (doc, change) = rest.split_at(2);
        Some((u16::from_be_bytes([doc[0], doc[1]]), change))
    }
}

/// Checked before a push is relayed: its header, that it names a document
/// of `docs`, its framing, and the verdict every replica reaches on its
/// changes (seal, author, what that author may change). Garbage, forgeries
/// and changes no replica takes stop at the first hop and count against
/// the sender's gossip score.
pub fn check(docs: &Docs, bytes: &[u8]) -> Option<Push> {
    let (doc, change) = Push::decode(bytes)?;
    if !docs.is_document(doc) {
        return None;
    }
    docs.judge_pushed(doc, change).ok()?;
    Some(Push {
        doc,
        change: change.to_vec(),
    })
}

/// Gossips local writes as they come, until the documents are dropped
/// (held weakly, so that this task does not keep them alive).
pub async fn publish(fabric: FabricHandle, docs: Weak<Docs>, mut outbox: mpsc::Receiver<Push>) {
    while let Some(push) = outbox.recv().await {
        if let Err(error) = fabric
            .publish(crate::runtime::topics::DOCS, push.encode())
            .await
        {
            // No gossip peer yet, or too large a change: neighbours hear
            // of it by notice and pull it.
            debug!(%error, doc = push.doc, "a write goes by notice instead of push");
            if let Some(docs) = docs.upgrade() {
                docs.unheard();
            }
        }
    }
}

/// Applies a member's push (as [`check`] returned it); audits it when it
/// changed a document. Returns whether the change was refused.
pub fn receive(docs: &Docs, audit: &Arc<AuditLog>, origin: Option<PeerId>, push: Push) -> bool {
    let Push { doc, change } = push;
    match docs.apply_pushed(doc, &change) {
        Ok((Pushed::Applied, touched)) => {
            let audit = audit.clone();
            let target = origin.map(|p| p.to_string()).unwrap_or_default();
            let actor = origin
                .and_then(|p| osmoda_fabric::node_key_of(&p))
                .map(Actor::Peer)
                .unwrap_or(Actor::Node);
            // In the background, as for a sync: a replica's copy is not an
            // acknowledged write, and must not wait for the audit's fsync.
            tokio::spawn(async move {
                for (action, details) in touched.audit_entries("push") {
                    if let Err(e) = audit
                        .record(actor.clone(), &action, &target, Outcome::Ok, &details)
                        .await
                    {
                        tracing::warn!(error = %e, "cannot audit a push");
                    }
                }
            });
        }
        Ok((Pushed::Known, _)) => {}
        Ok((Pushed::MissingDeps, _)) => debug!(?origin, doc, "a push waits for sync"),
        // A sealed change refused by the rules every replica applies (an
        // entry of another author, a member's routine) is not applied
        // anywhere; sync refuses it too, and strikes whoever sends it.
        Err(error) => {
            debug!(?origin, doc, %error, "ignoring a push that does not apply");
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::docs::ROUTINES;

    #[test]
    fn header_round_trips() {
        let push = Push {
            doc: 7,
            change: vec![1, 2, 3],
        };
        assert_eq!(Push::decode(&push.encode()), Some((7, &[1u8, 2, 3][..])));
        assert!(Push::decode(&[]).is_none());
        assert!(Push::decode(&[1, 0]).is_none());
        assert!(Push::decode(&[1, 0, 0, 1]).is_none(), "version 1 is gone");
    }

    #[tokio::test]
    async fn only_pushes_to_documents_the_node_holds_pass_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let store = osmoda_store::Store::open(dir.path().join("state.redb")).unwrap();
        let docs = Docs::open(&store, &"ab".repeat(32), None).unwrap();
        assert!(docs.is_document(0));
        assert!(docs.is_document(osmoda_docs::SHARD_COUNT - 1));
        assert!(docs.is_document(ROUTINES.wire));
        assert!(!docs.is_document(osmoda_docs::SHARD_COUNT));
        let beyond = Push {
            doc: osmoda_docs::SHARD_COUNT,
            change: vec![1],
        };
        assert!(check(&docs, &beyond.encode()).is_none());
    }
}
