//! Eager push: one write's change, sent to every replica at once (the node
//! gossips it), applied where it fits.
//!
//! Sync sessions cost round trips per hop; a pushed change costs none, so a
//! write reaches the fleet in about the gossip mesh's latency diameter.
//! A pushed change is applied only when every change it depends on is
//! already here (or in the same push): otherwise it is left for sync to
//! bring with its history. So nothing waits inside Automerge's queue of
//! changes with missing dependencies, which has no bound, and a peer cannot
//! fill it.
//!
//! The same input rules as sync apply: plain change chunks only (Automerge
//! inflates compressed ones without a limit), and at most
//! [`MAX_PUSH_CHANGES`] changes in one push.

use crate::admit::incoming;
use crate::chunks::{self, ChunkKind};
use crate::doc::Doc;
use crate::error::DocError;
use crate::seal::{decode_bundle, encode_bundle};

/// Changes accepted in one push (a local operation makes one).
pub const MAX_PUSH_CHANGES: usize = 16;

/// What applying a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The changes are new here and now part of the document.
    Applied,
    /// Every change was already here.
    Known,
    /// A change depends on one this replica lacks: it was not applied;
    /// sync will bring the change with its history.
    MissingDeps,
}

/// The seals and change chunks of a push, once its framing is checked.
fn push_chunks(bytes: &[u8]) -> Result<(crate::seal::Bundle<'_>, Vec<&[u8]>), DocError> {
    let bundle = decode_bundle(bytes)?;
    let chunks = chunks::split(bundle.body).map_err(DocError::Framing)?;
    if chunks.len() > MAX_PUSH_CHANGES {
        return Err(DocError::Framing("too many changes in one push"));
    }
    if chunks.len() != bundle.seals.len() {
        return Err(DocError::Framing("not one seal slot per change"));
    }
    let chunks = chunks
        .into_iter()
        .map(|(kind, chunk)| match kind {
            ChunkKind::Change => Ok(chunk),
            _ => Err(DocError::Framing(
                "not a plain change (a document or compressed chunk)",
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((bundle, chunks))
}

impl Doc {
    /// The last change this replica made, sealed, as the bytes a peer's
    /// [`Doc::apply_pushed`] takes. `None` before its first write.
    pub fn last_local_change(&self) -> Option<Vec<u8>> {
        let change = self.am().get_last_local_change()?;
        let seal = self.seal_of(&change.hash());
        Some(encode_bundle(&[seal], change.raw_bytes()))
    }

    /// Judges a peer's push without applying it, as every replica will
    /// (see [`crate::verdict`]): run before the push is relayed, so what no
    /// replica takes stops at the first hop. A change whose history is not
    /// here cannot be judged yet and passes; the replicas that hold its
    /// history judge it.
    pub fn judge_pushed(&self, bytes: &[u8]) -> Result<(), DocError> {
        let (bundle, chunks) = push_chunks(bytes)?;
        let batch = incoming(chunks.into_iter().map(<[u8]>::to_vec), bundle.seals)?;
        match self.admit(batch).refused.into_iter().next() {
            Some(why) => Err(DocError::Refused(why)),
            None => Ok(()),
        }
    }

    /// Applies a peer's push (see the module notes): each change judged
    /// as every replica judges it. Malformed bytes and refused changes are
    /// errors; changes accepted before a refused one in the same push stay.
    /// [`Doc::changed_keys`] with the heads taken before says which
    /// entries or routines the push touched.
    pub fn apply_pushed(&mut self, bytes: &[u8]) -> Result<Pushed, DocError> {
        let (bundle, chunks) = push_chunks(bytes)?;
        let batch = incoming(chunks.into_iter().map(<[u8]>::to_vec), bundle.seals)?;
        let total = batch.len();
        let admission = self.admit(batch);
        let waiting = !admission.waiting.is_empty();
        let known = admission.known == total;
        let refused = admission.refused.into_iter().next();
        let moved = self.take(admission.accepted)?;
        if let Some(why) = refused {
            return Err(DocError::Refused(why));
        }
        Ok(if waiting {
            Pushed::MissingDeps
        } else if moved || !known {
            Pushed::Applied
        } else {
            Pushed::Known
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeActor;
    use automerge::transaction::Transactable;
    use automerge::ROOT;

    fn doc(name: &str) -> Doc {
        Doc::new(&NodeActor::new(name).expect("valid node id"))
    }

    fn put(doc: &mut Doc, key: &str) -> Vec<u8> {
        doc.transact(1, |tx| tx.put(ROOT, key, "v").map(|_| ()))
            .expect("put");
        doc.last_local_change().expect("a change was made")
    }

    #[test]
    fn a_push_applies_once_its_history_is_here() {
        let (mut a, mut b) = (doc("node-a"), doc("node-b"));
        let first = put(&mut a, "one");
        let second = put(&mut a, "two");
        // The second change depends on the first, which b lacks.
        assert_eq!(
            b.apply_pushed(&second).expect("well-formed"),
            Pushed::MissingDeps
        );
        assert!(
            b.is_empty(),
            "nothing applied while a dependency is missing"
        );
        assert_eq!(
            b.apply_pushed(&first).expect("well-formed"),
            Pushed::Applied
        );
        assert_eq!(
            b.apply_pushed(&second).expect("well-formed"),
            Pushed::Applied
        );
        assert_eq!(b.heads(), a.heads());
        assert_eq!(b.apply_pushed(&second).expect("well-formed"), Pushed::Known);
        // Both in one push, in either order: complete by themselves.
        let mut c = doc("node-c");
        let raw = |b: &[u8]| decode_bundle(b).unwrap().body.to_vec();
        let both = encode_bundle(&[None, None], &[raw(&second), raw(&first)].concat());
        assert_eq!(c.apply_pushed(&both).expect("well-formed"), Pushed::Applied);
        assert_eq!(c.heads(), a.heads());
    }

    #[test]
    fn concurrent_pushes_merge() {
        let (mut a, mut b) = (doc("node-a"), doc("node-b"));
        let from_a = put(&mut a, "a");
        let from_b = put(&mut b, "b");
        assert_eq!(a.apply_pushed(&from_b).expect("ok"), Pushed::Applied);
        assert_eq!(b.apply_pushed(&from_a).expect("ok"), Pushed::Applied);
        assert_eq!(a.heads(), b.heads());
    }

    #[test]
    fn malformed_pushes_are_errors_and_change_nothing() {
        let mut a = doc("node-a");
        let change = put(&mut a, "k");
        let mut b = doc("node-b");
        assert!(b.apply_pushed(b"").is_err());
        assert!(b.apply_pushed(b"garbage").is_err());
        // A whole document is not a push.
        assert!(b.apply_pushed(&a.save()).is_err());
        // A flipped byte breaks the chunk checksum.
        let mut bad = change.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        assert!(b.apply_pushed(&bad).is_err());
        // Too many changes at once.
        let raw = a.am().get_last_local_change().unwrap().raw_bytes().to_vec();
        let many = std::iter::repeat_n(raw, MAX_PUSH_CHANGES + 1)
            .collect::<Vec<_>>()
            .concat();
        let slots = vec![None; MAX_PUSH_CHANGES + 1];
        assert!(b.apply_pushed(&encode_bundle(&slots, &many)).is_err());
        assert!(b.is_empty());
        assert_eq!(b.apply_pushed(&change).expect("ok"), Pushed::Applied);
    }
}
