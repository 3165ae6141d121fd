//! Which top-level keys a range of changes touched: in a knowledge shard
//! the entry ids, in the routine book the routine ids (both documents keep
//! one map per entry or routine at the root). A node records these when a
//! peer's push or sync round changed a document, to say what changed, not
//! only that shard 7 did.
//!
//! Read from the changes' operations: an operation on the root names its
//! key; one inside a nested object (an entry's body text, its tags map, a
//! routine's action) belongs to the root key that object hangs under.
//! Objects created by the range itself are mapped as their creating
//! operations go by; older ones by one walk of the document's objects,
//! done only when needed. Automerge's own `diff` would do it too, but it
//! materialises every patch (every character of a new body) first.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use automerge::legacy::{Key, ObjectId, OpId, OpType};
use automerge::{ActorId, Automerge, ChangeHash, ObjId, ObjType, ReadDoc, ValueRef, ROOT};

use crate::doc::Doc;

/// Nesting the walk follows. The documents here nest three deep (a
/// routine's target node list); deeper objects a faulty peer made are not
/// attributed.
const MAX_WALK_DEPTH: usize = 8;

/// The top-level keys touched by a range of changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangedKeys {
    /// Distinct keys, in the order the changes first touched them; at most
    /// the `limit` asked for.
    pub keys: Vec<String>,
    /// How many more distinct keys were touched and are not listed.
    pub more: usize,
}

impl ChangedKeys {
    /// Whether no key was touched.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.more == 0
    }

    /// How many distinct keys, listed or not.
    pub fn len(&self) -> usize {
        self.keys.len() + self.more
    }

    /// Adds the keys of another range (another shard, another round),
    /// listing at most `limit` in all. A key listed on both sides is listed
    /// once; one only counted on either side may be counted twice, so the
    /// count of a merge is an upper bound.
    pub fn merge(&mut self, other: ChangedKeys, limit: usize) {
        self.more += other.more;
        for key in other.keys {
            if self.keys.contains(&key) {
                continue;
            }
            if self.keys.len() < limit {
                self.keys.push(key);
            } else {
                self.more += 1;
            }
        }
    }
}

impl Doc {
    /// The top-level keys (entry or routine ids) touched by the changes
    /// applied since `before` (e.g. the heads taken before a push or a
    /// sync message was applied). A key is listed if any change wrote it
    /// or anything nested under it, deletes and overwritten values
    /// included, so a key can be listed whose value ends up as it was.
    ///
    /// At most `limit` keys are listed; the rest are only counted (by a
    /// 64-bit hash each, so the count is exact but for hash collisions).
    /// Work is in proportion to the operations in the range, plus, when
    /// they touch objects created before it, one walk of the document's
    /// objects.
    pub fn changed_keys(&self, before: &[ChangeHash], limit: usize) -> ChangedKeys {
        let am = self.am();
        let mut tally = Tally::new(limit);
        // Objects the range created, by the id of their creating operation.
        let mut created: HashMap<OpId, Rc<str>> = HashMap::new();
        let mut walked: Option<HashMap<(u64, ActorId), Rc<str>>> = None;
        for change in am.get_changes(before) {
            let change = change.decode();
            let start = change.start_op.get();
            for (n, op) in (0u64..).zip(&change.operations) {
                let top = match &op.obj {
                    ObjectId::Root => match &op.key {
                        Key::Map(key) => Some(Rc::from(key.as_str())),
                        Key::Seq(_) => None,
                    },
                    ObjectId::Id(obj) => created.get(obj).cloned().or_else(|| {
                        walked
                            .get_or_insert_with(|| walk(am))
                            .get(&(obj.counter(), obj.actor().clone()))
                            .cloned()
                    }),
                };
                let Some(top) = top else { continue };
                if matches!(op.action, OpType::Make(_)) {
                    let id = OpId::new(start + n, &change.actor_id);
                    created.insert(id, Rc::clone(&top));
                }
                tally.touch(top);
            }
        }
        tally.finish()
    }
}

/// Distinct keys: the first `limit` listed, the others counted.
struct Tally {
    limit: usize,
    listed: Vec<String>,
    seen: HashSet<Rc<str>>,
    extra: HashSet<u64>,
    last: Option<Rc<str>>,
}

impl Tally {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            listed: Vec::new(),
            seen: HashSet::new(),
            extra: HashSet::new(),
            last: None,
        }
    }

    fn touch(&mut self, key: Rc<str>) {
        // Operations come in runs on one object: skip the look-ups.
        if self.last.as_ref().is_some_and(|last| *last == key) {
            return;
        }
        self.last = Some(Rc::clone(&key));
        if self.seen.contains(&key) {
            return;
        }
        if self.listed.len() < self.limit {
            self.listed.push(key.to_string());
            self.seen.insert(key);
        } else {
            let mut h = DefaultHasher::new();
            key.hash(&mut h);
            self.extra.insert(h.finish());
        }
    }

    fn finish(self) -> ChangedKeys {
        ChangedKeys {
            keys: self.listed,
            more: self.extra.len(),
        }
    }
}

/// Every object reachable from the root, by its id's counter and actor,
/// with the root key it hangs under. Conflicting values are followed too:
/// a change may write into the losing one.
fn walk(am: &Automerge) -> HashMap<(u64, ActorId), Rc<str>> {
    let mut out = HashMap::new();
    let mut stack: Vec<(ObjId, ObjType, Rc<str>, usize)> = Vec::new();
    for item in am.map_range(ROOT, ..) {
        let key: Rc<str> = Rc::from(item.key.as_ref());
        for (obj, ty) in objects_at(am, &ROOT, &item.key, item.conflict, &item.value, item.id()) {
            stack.push((obj, ty, Rc::clone(&key), 1));
        }
    }
    while let Some((obj, ty, key, depth)) = stack.pop() {
        if let ObjId::Id(counter, actor, _) = &obj {
            out.insert((*counter, actor.clone()), Rc::clone(&key));
        }
        if depth >= MAX_WALK_DEPTH {
            continue;
        }
        let mut children = Vec::new();
        match ty {
            ObjType::Map | ObjType::Table => {
                for item in am.map_range(&obj, ..) {
                    children.extend(objects_at(
                        am,
                        &obj,
                        &item.key,
                        item.conflict,
                        &item.value,
                        item.id(),
                    ));
                }
            }
            ObjType::List => {
                for item in am.list_range(&obj, ..) {
                    if let ValueRef::Object(ty) = item.value {
                        children.push((item.id(), ty));
                    }
                }
            }
            ObjType::Text => {}
        }
        for (child, ty) in children {
            stack.push((child, ty, Rc::clone(&key), depth + 1));
        }
    }
    out
}

/// The objects under `parent[key]`: the visible one, and when the key is
/// conflicted, the others.
fn objects_at(
    am: &Automerge,
    parent: &ObjId,
    key: &str,
    conflict: bool,
    value: &ValueRef<'_>,
    id: ObjId,
) -> Vec<(ObjId, ObjType)> {
    if !conflict {
        return match value {
            ValueRef::Object(ty) => vec![(id, *ty)],
            _ => Vec::new(),
        };
    }
    am.get_all(parent, key)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(v, id)| match v {
            automerge::Value::Object(ty) => Some((id, ty)),
            automerge::Value::Scalar(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::ChangedKeys;

    fn keys(listed: &[&str], more: usize) -> ChangedKeys {
        ChangedKeys {
            keys: listed.iter().map(|k| k.to_string()).collect(),
            more,
        }
    }

    #[test]
    fn a_merge_lists_each_key_once_up_to_the_limit_and_counts_the_rest() {
        let mut all = keys(&["a", "b"], 0);
        all.merge(keys(&["b", "c", "d"], 2), 3);
        assert_eq!(all, keys(&["a", "b", "c"], 3));
        assert_eq!(all.len(), 6);
        let mut none = ChangedKeys::default();
        assert!(none.is_empty());
        none.merge(ChangedKeys::default(), 3);
        assert!(none.is_empty());
    }
}
