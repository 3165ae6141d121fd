//! Who may change what: the rules every replica applies to a change from
//! outside, before it joins a document.
//!
//! A verdict depends only on the change, its seal (judged by the node's
//! [`Authority`]) and the change's history, which every replica holds
//! before it judges (a change whose dependencies are missing waits), so
//! every replica reaches the same verdict whatever order changes arrive
//! in, and replicas that took the same changes converge.
//!
//! Knowledge shards: the root map only ever gains entries, each a new map
//! under an id in its author's namespace ([`id_belongs_to`]); everything
//! inside an entry is written by the entry's author (the actor that made
//! its map, which is who the entry names as author) or by an admin.
//! Routine books: admins only, since routines run as code on members.

use std::collections::HashMap;

use automerge::legacy::{Key, ObjectId, OpId, OpType};
use automerge::{ActorId, Automerge, Change, ExpandedChange, ObjType, Prop, ReadDoc};

use crate::ids::id_belongs_to;
use crate::seal::Standing;

/// The rules of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    /// A knowledge shard: entries, each changed by its author or an admin.
    Knowledge,
    /// Written by admins only (the routine book).
    AdminOnly,
}

/// Why a change from outside was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("change {0} carries no seal")]
    Unsealed(String),
    #[error("change {hash}: the seal does not hold: {why}")]
    Seal { hash: String, why: String },
    #[error("change {hash} is {len} bytes, over the {max}-byte limit of one change")]
    TooLarge {
        hash: String,
        len: usize,
        max: usize,
    },
    #[error("change {0} does not encode the way a document saves it")]
    NotCanonical(String),
    #[error("change {0} depends on a refused change")]
    RefusedHistory(String),
    #[error("change {hash}: only admins may write {what}")]
    AdminOnly { hash: String, what: &'static str },
    #[error("change {hash}: entry {entry} belongs to {author}; only its author or an admin may change it")]
    NotAuthor {
        hash: String,
        entry: String,
        author: String,
    },
    #[error("change {hash}: entry id {id} is not in its author's namespace")]
    ForeignId { hash: String, id: String },
    #[error("change {hash}: {what}")]
    Forbidden { hash: String, what: &'static str },
}

/// The entry an object belongs to: its id and author.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    pub id: String,
    pub author: ActorId,
}

/// Objects made by changes judged in the same batch, not yet in the
/// document, with the entries they belong to.
pub(crate) type Made = HashMap<OpId, Owner>;

/// A verdict short of taking a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotYet {
    /// Refused for good, on every replica.
    Refused(Refusal),
    /// The change edits an object this replica does not hold yet (made by
    /// a change that has not arrived): judged again when it has.
    Wait,
}

impl From<Refusal> for NotYet {
    fn from(r: Refusal) -> Self {
        Self::Refused(r)
    }
}

/// Checks the operations of `change`, whose author has `standing`, against
/// `rules`, given `am`, which holds the change's history (together with
/// what `made` records). Returns the objects the change makes.
pub(crate) fn check_ops(
    am: &Automerge,
    change: &Change,
    expanded: &ExpandedChange,
    rules: Rules,
    standing: Standing,
    made: &Made,
) -> Result<Made, NotYet> {
    let hash = change.hash().to_string();
    let mut mine = Made::new();
    match rules {
        Rules::AdminOnly if standing == Standing::Admin => return Ok(mine),
        Rules::AdminOnly => {
            return Err(Refusal::AdminOnly {
                hash,
                what: "routines",
            }
            .into())
        }
        Rules::Knowledge => {}
    }
    let actor = change.actor_id();
    let start = expanded.start_op.get();
    let forbidden = |what| Refusal::Forbidden {
        hash: hash.clone(),
        what,
    };
    for (i, op) in expanded.operations.iter().enumerate() {
        let owner = match &op.obj {
            ObjectId::Root => {
                let Key::Map(id) = &op.key else {
                    return Err(forbidden("a list position in the root map").into());
                };
                let fresh_map = matches!(op.action, OpType::Make(ObjType::Map))
                    && op.pred.is_empty()
                    && !op.insert;
                if !fresh_map {
                    return Err(forbidden("the root map only gains new entries").into());
                }
                if !id_belongs_to(id, actor.to_bytes()) {
                    return Err(Refusal::ForeignId {
                        hash,
                        id: id.to_string(),
                    }
                    .into());
                }
                Owner {
                    id: id.to_string(),
                    author: actor.clone(),
                }
            }
            ObjectId::Id(obj) => match mine.get(obj).or_else(|| made.get(obj)) {
                Some(owner) => owner.clone(),
                None => {
                    let owner = owner_in(am, obj).ok_or(NotYet::Wait)?;
                    mine.insert(obj.clone(), owner.clone());
                    owner
                }
            },
        };
        if owner.author != *actor && standing != Standing::Admin {
            return Err(Refusal::NotAuthor {
                hash,
                entry: owner.id,
                author: String::from_utf8_lossy(owner.author.to_bytes()).into_owned(),
            }
            .into());
        }
        if matches!(op.action, OpType::Make(_)) {
            mine.insert(OpId(start + i as u64, actor.clone()), owner);
        }
    }
    Ok(mine)
}

/// The entry holding `obj` in `am`: the map under the root that `obj` is
/// (or is inside), and the actor that made it.
fn owner_in(am: &Automerge, obj: &OpId) -> Option<Owner> {
    let exid = am.import_obj(&format!("{}@{}", obj.0, obj.1)).ok()?;
    let path = am.parents(&exid).ok()?.path();
    let entry = match path.get(1) {
        Some((entry, _)) => entry.clone(),
        None => exid,
    };
    let (_, Prop::Map(id)) = path.first()? else {
        return None;
    };
    match entry {
        automerge::ObjId::Id(_, author, _) => Some(Owner {
            id: id.clone(),
            author,
        }),
        automerge::ObjId::Root => None,
    }
}

/// Whether `change` encodes the way Automerge re-encodes it when it saves
/// a document. A change chunk is only checksummed, so a peer can frame
/// ops in a way Automerge imports and keeps by its raw bytes, but saves
/// differently: the saved document then fails to load (its change hashes
/// come out different). Such a change would make the document unloadable
/// on every replica it reached.
pub(crate) fn is_canonical(change: &Change, expanded: &ExpandedChange) -> bool {
    let again = expanded.clone();
    std::panic::catch_unwind(|| Change::from(again).hash()).is_ok_and(|h| h == change.hash())
}

/// A change's operations, decoded. Automerge's decoder panics on some
/// inputs its parser lets through (an actor index out of range, a counter
/// action with a text value): those are `None`.
pub(crate) fn expand(change: &Change) -> Option<ExpandedChange> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| change.decode())).ok()
}
