//! Changes from outside, judged before they join a document: sealed by a
//! member ([`crate::seal`]), encoded canonically, allowed by the
//! document's rules ([`crate::verdict`]), and only once their history is
//! here. The same for pushes and sync.

use std::collections::HashSet;

use automerge::{Change, ChangeHash};

use crate::doc::Doc;
use crate::error::DocError;
use crate::limits::MAX_CHANGE_BYTES;
use crate::seal::{CarriedSeal, Seal};
use crate::verdict::{check_ops, expand, is_canonical, Made, NotYet, Refusal};

/// A change from outside and the seal that came with it.
#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    pub change: Change,
    pub seal: Option<CarriedSeal>,
}

impl Incoming {
    pub(crate) fn len(&self) -> usize {
        self.change.raw_bytes().len()
    }
}

/// The verdicts on a batch of incoming changes.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    /// Judged and taken, in an order where each comes after its history.
    pub accepted: Vec<Incoming>,
    /// Their history is not all here yet (or not judged: see
    /// [`NotYet::Wait`]).
    pub waiting: Vec<Incoming>,
    pub refused: Vec<Refusal>,
    /// Already part of the document.
    pub known: usize,
}

/// Pairs change chunks with their seals (as many as there are changes).
pub(crate) fn incoming(
    chunks: impl IntoIterator<Item = Vec<u8>>,
    seals: Vec<Option<CarriedSeal>>,
) -> Result<Vec<Incoming>, DocError> {
    let changes = chunks
        .into_iter()
        .map(|c| Change::from_bytes(c).map_err(|e| DocError::Change(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if changes.len() != seals.len() {
        return Err(DocError::Framing("not one seal slot per change"));
    }
    Ok(changes
        .into_iter()
        .zip(seals)
        .map(|(change, seal)| Incoming { change, seal })
        .collect())
}

impl Doc {
    fn has(&self, hash: &ChangeHash) -> bool {
        self.am().get_change_meta_by_hash(hash).is_some()
    }

    /// Judges `batch`: each change once its dependencies are in the
    /// document or accepted earlier in the batch.
    pub(crate) fn admit(&self, batch: Vec<Incoming>) -> Admission {
        let mut out = Admission::default();
        let mut seen = HashSet::new();
        let mut pending: Vec<Option<Incoming>> = Vec::with_capacity(batch.len());
        for inc in batch {
            let hash = inc.change.hash();
            if self.has(&hash) {
                out.known += 1;
            } else if seen.insert(hash) {
                pending.push(Some(inc));
            }
        }
        let mut accepted: HashSet<ChangeHash> = HashSet::new();
        let mut refused: HashSet<ChangeHash> = HashSet::new();
        let mut made = Made::new();
        loop {
            let mut progress = false;
            for slot in pending.iter_mut() {
                let Some(inc) = slot.as_ref() else { continue };
                let deps = inc.change.deps();
                let hash = inc.change.hash();
                if deps.iter().any(|d| refused.contains(d)) {
                    out.refused.push(Refusal::RefusedHistory(hash.to_string()));
                    refused.insert(hash);
                    *slot = None;
                    progress = true;
                    continue;
                }
                if !deps.iter().all(|d| accepted.contains(d) || self.has(d)) {
                    continue;
                }
                match self.judge(inc, &made) {
                    Ok(mine) => {
                        made.extend(mine);
                        accepted.insert(hash);
                        out.accepted.extend(slot.take());
                        progress = true;
                    }
                    Err(NotYet::Refused(why)) => {
                        out.refused.push(why);
                        refused.insert(hash);
                        *slot = None;
                        progress = true;
                    }
                    Err(NotYet::Wait) => {}
                }
            }
            if !progress {
                break;
            }
        }
        out.waiting = pending.into_iter().flatten().collect();
        out
    }

    /// The verdict on one change whose history is here.
    fn judge(&self, inc: &Incoming, made: &Made) -> Result<Made, NotYet> {
        let change = &inc.change;
        let hash = change.hash().to_string();
        let len = change.raw_bytes().len();
        if len > MAX_CHANGE_BYTES {
            return Err(Refusal::TooLarge {
                hash,
                len,
                max: MAX_CHANGE_BYTES,
            }
            .into());
        }
        let expanded = expand(change).ok_or_else(|| Refusal::Forbidden {
            hash: hash.clone(),
            what: "operations that do not decode",
        })?;
        if !is_canonical(change, &expanded) {
            return Err(Refusal::NotCanonical(hash).into());
        }
        let Some(authority) = &self.authority else {
            return Ok(Made::new());
        };
        let carried = inc
            .seal
            .as_ref()
            .ok_or_else(|| Refusal::Unsealed(hash.clone()))?;
        let standing = authority
            .judge(
                change.actor_id().to_bytes(),
                &change.hash(),
                change.timestamp(),
                &carried.seal,
                &carried.credential,
            )
            .map_err(|why| Refusal::Seal {
                hash: hash.clone(),
                why,
            })?;
        check_ops(self.am(), change, &expanded, self.rules, standing, made)
    }

    /// Keeps the seals of changes now part of the document.
    pub(crate) fn keep_seals(&mut self, accepted: &[Incoming]) {
        for inc in accepted {
            if let Some(c) = &inc.seal {
                let hash = inc.change.hash();
                if self.has(&hash) {
                    self.seals.insert(hash, c.seal, &c.credential);
                }
            }
        }
    }

    /// The seal of a change of this document, with its credential.
    pub(crate) fn seal_of(&self, hash: &ChangeHash) -> Option<(&Seal, &[u8])> {
        self.seals.get(hash)
    }

    /// Applies accepted changes (one Automerge import) and keeps their
    /// seals. Returns whether the heads moved.
    pub(crate) fn take(&mut self, accepted: Vec<Incoming>) -> Result<bool, DocError> {
        if accepted.is_empty() {
            return Ok(false);
        }
        let before = self.heads();
        let changes: Vec<Change> = accepted.iter().map(|i| i.change.clone()).collect();
        self.guarded(|am| am.apply_changes(changes))
            .ok_or(DocError::Change(
                "Automerge parses the change but cannot import it".into(),
            ))?
            .map_err(DocError::load)?;
        self.keep_seals(&accepted);
        Ok(self.heads() != before)
    }
}
