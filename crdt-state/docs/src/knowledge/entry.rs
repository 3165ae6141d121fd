//! A knowledge entry: its fields, bounds, and how it is laid out in a
//! shard's Automerge document.
//!
//! Layout: the shard's root map holds one map per entry, keyed by id. Entries
//! sit directly at the root (not under a shared "entries" map) because shards
//! are created lazily on every node: two nodes creating the same container
//! concurrently would make two conflicting maps, and one would hide the
//! other's entries. Inside an entry:
//!
//! | key          | type                 | merge behaviour                        |
//! |--------------|----------------------|----------------------------------------|
//! | `title`      | string               | last writer wins                       |
//! | `body`       | Text                 | concurrent edits merge as text         |
//! | `tags`       | map tag → `true`     | a set: concurrent adds and removes merge |
//! | `author_node`, `actor`, `created_ms` | scalars | written once, by the creator |
//! | `updated_ms` | u64                  | the largest concurrent value is read; never decreases |
//! | `deleted`    | bool                 | tombstone, only ever set to true       |

use std::collections::{BTreeSet, HashMap};

use automerge::transaction::Transactable;
use automerge::{hydrate, ObjId, ObjType, ReadDoc, ScalarValue, ROOT};

use super::prepared::PreparedUpdate;
use super::read::{child, malformed, owned_u64};

use crate::error::KnowledgeError;

/// Longest title, in bytes of UTF-8.
pub const MAX_TITLE_BYTES: usize = 256;
/// Longest body, in bytes of UTF-8.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Most tags on one entry.
pub const MAX_TAGS: usize = 32;
/// Longest tag, in bytes.
pub const MAX_TAG_BYTES: usize = 64;

pub(crate) const TITLE: &str = "title";
pub(crate) const BODY: &str = "body";
pub(crate) const TAGS: &str = "tags";
pub(crate) const AUTHOR_NODE: &str = "author_node";
pub(crate) const ACTOR: &str = "actor";
pub(crate) const CREATED: &str = "created_ms";
pub(crate) const UPDATED: &str = "updated_ms";
pub(crate) const DELETED: &str = "deleted";

/// A knowledge entry as read from a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub title: String,
    pub body: String,
    pub tags: BTreeSet<String>,
    /// The node that created the entry.
    pub author_node: String,
    /// The agent or user on whose behalf it was created.
    pub actor: String,
    pub created_ms: u64,
    /// The time of the last write. A write stamps the larger of its own
    /// time and the current value, so it never decreases, even when the
    /// writer's clock lags: listing pages rely on that (see
    /// [`crate::ListPage`]).
    pub updated_ms: u64,
    /// Tombstone: deleted entries stay (see [`crate::KnowledgeStore::delete`]).
    pub deleted: bool,
}

/// What the caller gives to create an entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewEntry {
    /// 1..=64 bytes of `[A-Za-z0-9._-]`; see [`crate::derive_id`].
    pub id: String,
    /// Not empty nor only whitespace; at most [`MAX_TITLE_BYTES`].
    pub title: String,
    pub body: String,
    pub tags: Vec<String>,
    /// Agent id or user name, 1..=128 bytes without whitespace.
    pub actor: String,
}

/// A change to an entry; `None` fields are left alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryUpdate {
    pub title: Option<String>,
    /// The whole new body. It is applied as a diff against the current
    /// text (see [`crate::PreparedUpdate`]), so a concurrent edit elsewhere
    /// in the body survives the merge.
    pub body: Option<String>,
    /// The whole new tag set, applied as adds and removes.
    pub tags: Option<Vec<String>>,
}

fn too_long(field: &'static str, len: usize, max: usize) -> KnowledgeError {
    KnowledgeError::TooLong { field, len, max }
}

pub(crate) fn check_title(title: &str) -> Result<(), KnowledgeError> {
    if title.trim().is_empty() {
        return Err(KnowledgeError::Blank { field: "title" });
    }
    if title.len() > MAX_TITLE_BYTES {
        return Err(too_long("title", title.len(), MAX_TITLE_BYTES));
    }
    Ok(())
}

pub(crate) fn check_body(body: &str) -> Result<(), KnowledgeError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(too_long("body", body.len(), MAX_BODY_BYTES));
    }
    Ok(())
}

pub(crate) fn check_actor(actor: &str) -> Result<(), KnowledgeError> {
    crate::ids::check_actor(actor).map_err(KnowledgeError::InvalidActor)
}

/// Validates and deduplicates tags.
pub(crate) fn check_tags(tags: &[String]) -> Result<BTreeSet<String>, KnowledgeError> {
    let mut set = BTreeSet::new();
    for tag in tags {
        let reason = if tag.is_empty() {
            Some("empty")
        } else if tag.len() > MAX_TAG_BYTES {
            Some("over 64 bytes")
        } else if tag.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Some("contains whitespace or a control character")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(KnowledgeError::InvalidTag {
                tag: tag.clone(),
                reason,
            });
        }
        set.insert(tag.clone());
    }
    if set.len() > MAX_TAGS {
        return Err(KnowledgeError::TooManyTags {
            count: set.len(),
            max: MAX_TAGS,
        });
    }
    Ok(set)
}

/// Writes a new entry; the caller validated it. The entry is built as one
/// value and inserted with `batch_create_object`: the same operations as
/// field-by-field puts (and a body whose characters are ordinary text ops),
/// but over twice as fast, since a 200-byte body is 200 ops.
pub(crate) fn write_new<T: Transactable + ReadDoc>(
    tx: &mut T,
    new: &NewEntry,
    tags: &BTreeSet<String>,
    author_node: &str,
    now_ms: u64,
) -> Result<(), KnowledgeError> {
    let str_value = |s: &str| hydrate::Value::from(ScalarValue::from(s));
    let tag_map: HashMap<&str, hydrate::Value> = tags
        .iter()
        .map(|t| (t.as_str(), ScalarValue::from(true).into()))
        .collect();
    let fields: HashMap<&str, hydrate::Value> = HashMap::from([
        (TITLE, str_value(&new.title)),
        (
            BODY,
            hydrate::Text::new(tx.text_encoding(), &new.body).into(),
        ),
        (TAGS, tag_map.into()),
        (AUTHOR_NODE, str_value(author_node)),
        (ACTOR, str_value(&new.actor)),
        (CREATED, now_ms.into()),
        (UPDATED, now_ms.into()),
        (DELETED, ScalarValue::from(false).into()),
    ]);
    tx.batch_create_object(ROOT, new.id.as_str(), &fields.into(), false)?;
    Ok(())
}

/// Validates an update; returns its tag set, deduplicated.
pub(crate) fn check_update(
    update: &EntryUpdate,
) -> Result<Option<BTreeSet<String>>, KnowledgeError> {
    if let Some(title) = &update.title {
        check_title(title)?;
    }
    if let Some(body) = &update.body {
        check_body(body)?;
    }
    update.tags.as_deref().map(check_tags).transpose()
}

/// Applies a prepared update to an existing live entry.
pub(crate) fn write_update<T: Transactable + ReadDoc>(
    tx: &mut T,
    id: &str,
    obj: &ObjId,
    update: &PreparedUpdate,
    now_ms: u64,
) -> Result<(), KnowledgeError> {
    if let Some(title) = &update.title {
        tx.put(obj, TITLE, title.as_str())?;
    }
    if let Some(edit) = &update.body {
        // Splices touching only what changed, so that concurrent edits
        // elsewhere merge (or, for a rewrite of most of it, a fresh text).
        edit.apply(tx, id, obj)?;
    }
    if let Some(tags) = &update.tags {
        let map =
            child(tx, obj, TAGS, ObjType::Map).ok_or_else(|| malformed(id, "tags is not a map"))?;
        let current: Vec<String> = tx.keys(&map).collect();
        for old in current.iter().filter(|t| !tags.contains(*t)) {
            tx.delete(&map, old.as_str())?;
        }
        for new in tags.iter().filter(|t| !current.contains(t)) {
            tx.put(&map, new.as_str(), true)?;
        }
    }
    stamp(tx, obj, now_ms)
}

/// Sets `updated_ms` to `now_ms`, or keeps it if it is already later (a
/// lagging clock, or a concurrent write merged): it never goes back.
fn stamp<T: Transactable + ReadDoc>(
    tx: &mut T,
    obj: &ObjId,
    now_ms: u64,
) -> Result<(), KnowledgeError> {
    let current = tx
        .get_all(obj, UPDATED)?
        .iter()
        .filter_map(|(v, _)| owned_u64(v))
        .max()
        .unwrap_or(0);
    tx.put(obj, UPDATED, now_ms.max(current))?;
    Ok(())
}

/// Sets the tombstone.
pub(crate) fn write_delete<T: Transactable + ReadDoc>(
    tx: &mut T,
    obj: &ObjId,
    now_ms: u64,
) -> Result<(), KnowledgeError> {
    tx.put(obj, DELETED, true)?;
    stamp(tx, obj, now_ms)
}
