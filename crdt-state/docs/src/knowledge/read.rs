//! Reading entries back out of a shard document.
//!
//! Reads are the hot path of `list` and `search`, and each Automerge `get`
//! costs a few microseconds, so an entry's fields are read in one pass over
//! its map (`map_range`), falling back to `get_all` only for conflicted
//! keys. Everything is checked: a replica may have written anything.

use automerge::{ObjId, ObjType, ReadDoc, ScalarValue, ScalarValueRef, Value, ValueRef, ROOT};

use super::entry::{Entry, ACTOR, AUTHOR_NODE, BODY, CREATED, DELETED, TAGS, TITLE, UPDATED};
use crate::error::KnowledgeError;

pub(crate) fn malformed(id: &str, reason: &'static str) -> KnowledgeError {
    KnowledgeError::Malformed {
        id: id.to_owned(),
        reason,
    }
}

/// The object at `obj[key]` if it has type `ty`.
pub(crate) fn child<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str, ty: ObjType) -> Option<ObjId> {
    match doc.get(obj, key) {
        Ok(Some((Value::Object(t), id))) if t == ty => Some(id),
        _ => None,
    }
}

/// Every entry map of a shard, with its id, in id order.
pub(crate) fn entries<R: ReadDoc>(doc: &R) -> impl Iterator<Item = (String, ObjId)> + '_ {
    doc.map_range(ROOT, ..).filter_map(|item| match item.value {
        ValueRef::Object(ObjType::Map) => Some((item.key.to_string(), item.id())),
        _ => None,
    })
}

/// The entry map for `id`, `None` if there is no such key.
pub(crate) fn entry_obj<R: ReadDoc>(doc: &R, id: &str) -> Result<Option<ObjId>, KnowledgeError> {
    match doc.get(ROOT, id) {
        Ok(Some((Value::Object(ObjType::Map), obj))) => Ok(Some(obj)),
        Ok(Some(_)) => Err(malformed(id, "not a map")),
        Ok(None) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// An entry's fields as found, before checking that all are there.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    title: Option<String>,
    body: Option<ObjId>,
    tags: Option<ObjId>,
    author_node: Option<String>,
    actor: Option<String>,
    created_ms: Option<u64>,
    pub(crate) updated_ms: Option<u64>,
    pub(crate) deleted: Option<bool>,
}

fn as_u64(v: &ScalarValueRef<'_>) -> Option<u64> {
    match v {
        ScalarValueRef::Uint(n) => Some(*n),
        ScalarValueRef::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

pub(crate) fn owned_u64(v: &Value<'_>) -> Option<u64> {
    match v {
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Uint(n) => Some(*n),
            ScalarValue::Int(n) => u64::try_from(*n).ok(),
            _ => None,
        },
        Value::Object(_) => None,
    }
}

/// Reads every field in one pass. For `updated_ms` the largest concurrent
/// value is the truthful one; `deleted` is true if any concurrent write
/// says so (nothing ever resets it).
pub(crate) fn read_fields<R: ReadDoc>(doc: &R, obj: &ObjId) -> Fields {
    let mut f = Fields {
        author_node: author_of(obj),
        ..Fields::default()
    };
    for item in doc.map_range(obj, ..) {
        let key = item.key.as_ref();
        match (key, &item.value) {
            (TITLE, ValueRef::Scalar(ScalarValueRef::Str(s))) => f.title = Some(s.to_string()),
            // Written by the creator for readers of older versions; the
            // author shown is the actor that made the entry's map, which a
            // seal proves, not what a field says.
            (AUTHOR_NODE, ValueRef::Scalar(ScalarValueRef::Str(_))) => {}
            (ACTOR, ValueRef::Scalar(ScalarValueRef::Str(s))) => f.actor = Some(s.to_string()),
            (BODY, ValueRef::Object(ObjType::Text)) => f.body = Some(item.id()),
            (TAGS, ValueRef::Object(ObjType::Map)) => f.tags = Some(item.id()),
            (CREATED, ValueRef::Scalar(v)) => f.created_ms = as_u64(v),
            (UPDATED, ValueRef::Scalar(v)) if !item.conflict => f.updated_ms = as_u64(v),
            (UPDATED, _) => {
                let all = doc.get_all(obj, UPDATED).unwrap_or_default();
                f.updated_ms = all.iter().filter_map(|(v, _)| owned_u64(v)).max();
            }
            (DELETED, ValueRef::Scalar(ScalarValueRef::Boolean(b))) if !item.conflict => {
                f.deleted = Some(*b)
            }
            (DELETED, _) => {
                let all = doc.get_all(obj, DELETED).unwrap_or_default();
                f.deleted = Some(all.iter().any(|(v, _)| {
                    matches!(v, Value::Scalar(s) if matches!(s.as_ref(), ScalarValue::Boolean(true)))
                }));
            }
            _ => {}
        }
    }
    f
}

/// What listing needs without materialising bodies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub updated_ms: u64,
    pub deleted: bool,
}

impl Fields {
    pub(crate) fn meta(&self) -> Option<Meta> {
        Some(Meta {
            updated_ms: self.updated_ms?,
            deleted: self.deleted?,
        })
    }

    /// Whether every field is there, so that [`Fields::into_entry`] can
    /// only fail on a read error: listings check this before ranking an
    /// entry, so malformed ones neither take a place on a page nor end it.
    pub(crate) fn is_complete(&self) -> bool {
        self.meta().is_some()
            && self.title.is_some()
            && self.body.is_some()
            && self.tags.is_some()
            && self.author_node.is_some()
            && self.actor.is_some()
            && self.created_ms.is_some()
    }

    pub(crate) fn has_tag<R: ReadDoc>(&self, doc: &R, tag: &str) -> bool {
        self.tags
            .as_ref()
            .is_some_and(|map| matches!(doc.get(map, tag), Ok(Some(_))))
    }

    /// Title and body, for matching a search without reading the rest.
    pub(crate) fn text<R: ReadDoc>(&self, doc: &R) -> Option<(String, String)> {
        Some((self.title.clone()?, doc.text(self.body.as_ref()?).ok()?))
    }

    pub(crate) fn into_entry<R: ReadDoc>(self, doc: &R, id: &str) -> Result<Entry, KnowledgeError> {
        let meta = self
            .meta()
            .ok_or_else(|| malformed(id, "bad updated_ms or deleted"))?;
        let body = self.body.ok_or_else(|| malformed(id, "no body text"))?;
        let tags = self.tags.ok_or_else(|| malformed(id, "no tags map"))?;
        Ok(Entry {
            id: id.to_owned(),
            title: self.title.ok_or_else(|| malformed(id, "no title"))?,
            body: doc.text(&body)?,
            tags: doc.keys(&tags).collect(),
            author_node: self.author_node.ok_or_else(|| malformed(id, "no author"))?,
            actor: self.actor.ok_or_else(|| malformed(id, "no actor"))?,
            created_ms: self.created_ms.ok_or_else(|| malformed(id, "no created"))?,
            updated_ms: meta.updated_ms,
            deleted: meta.deleted,
        })
    }
}

pub(crate) fn read_entry<R: ReadDoc>(
    doc: &R,
    id: &str,
    obj: &ObjId,
) -> Result<Entry, KnowledgeError> {
    read_fields(doc, obj).into_entry(doc, id)
}

/// The node that made an entry's map: its author.
pub(crate) fn author_of(obj: &ObjId) -> Option<String> {
    match obj {
        ObjId::Id(_, actor, _) => Some(String::from_utf8_lossy(actor.to_bytes()).into_owned()),
        ObjId::Root => None,
    }
}
