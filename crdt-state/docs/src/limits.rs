//! The size of one change, and of a saved document, as every hop that
//! carries a write bounds them.
//!
//! A knowledge write makes one Automerge change, and that change must be
//! able to reach every member: by push (a gossip message, 64 KiB, so only
//! small changes) and always by sync, one change whole in one sync message
//! (`osmoda-node`'s `MAX_SHARD_MESSAGE`, 1 MiB). Automerge encodes a text
//! as one operation per character, and the value of each operation behind
//! a length byte that is run-length encoded only while lengths repeat: a
//! 256 KiB body costs 264,697 bytes of change in ASCII, 439,460 when one-
//! and two-byte characters alternate, 526,839 as `a a é` repeated (about
//! 2 bytes per byte, the worst measured). So the largest entry the field
//! limits allow (that body, a 256-byte title, 32 tags of 64 bytes) and a
//! rewrite of all of it make changes of at most some 530 KB (528,913
//! measured), and [`MAX_CHANGE_BYTES`] leaves a third more above it. What a
//! sync message carries besides its changes (heads, needs, a bloom filter
//! of 10 bits per change since the last sync, and the signatures a
//! verified change will carry: some 100 bytes per change and 200 per
//! author) gets the rest of the 1 MiB. `tests/limits.rs` builds the
//! largest entries and updates and fails if their changes stop fitting.
//!
//! A change over [`MAX_CHANGE_BYTES`] is refused where it is made, before
//! anything is saved or sent, and undone: the limit is a property of the
//! change alone, so every replica can check it the same way.

use automerge::ChangeHash;

use crate::doc::Doc;
use crate::error::DocError;

/// Largest change a local write may make, in bytes of its change chunk.
pub const MAX_CHANGE_BYTES: usize = 768 * 1024;

/// Checks the change `doc` just made on top of `before` (its heads before
/// the write); one over [`MAX_CHANGE_BYTES`] is undone and is an error.
pub(crate) fn check_change(doc: &mut Doc, before: &[ChangeHash]) -> Result<(), DocError> {
    if doc.heads() == before {
        return Ok(());
    }
    let len = doc.last_local_change_len().unwrap_or(0);
    if len <= MAX_CHANGE_BYTES {
        return Ok(());
    }
    doc.revert_to(before)?;
    Err(DocError::ChangeTooLarge {
        len,
        max: MAX_CHANGE_BYTES,
    })
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use automerge::ROOT;

    use super::*;
    use crate::ids::NodeActor;

    #[test]
    fn a_change_over_the_limit_is_undone_and_named() {
        let mut doc = Doc::new(&NodeActor::new("node-a").expect("valid"));
        doc.transact(1, |tx| tx.put(ROOT, "small", "v").map(|_| ()))
            .expect("put");
        let before = doc.heads();
        check_change(&mut doc, &before).expect("no change is fine");
        let big = "x".repeat(MAX_CHANGE_BYTES + 1);
        doc.transact(2, |tx| tx.put(ROOT, "big", big.as_str()).map(|_| ()))
            .expect("put");
        let err = check_change(&mut doc, &before).expect_err("over the limit");
        assert!(
            err.to_string()
                .contains(&format!("{MAX_CHANGE_BYTES}-byte limit")),
            "{err}"
        );
        assert_eq!(doc.heads(), before);
        // The document still takes writes, as the same actor.
        doc.transact(3, |tx| tx.put(ROOT, "after", "v").map(|_| ()))
            .expect("put");
        check_change(&mut doc, &before).expect("small");
        assert_eq!(doc.heads().len(), 1);
    }
}
