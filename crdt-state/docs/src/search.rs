//! Listing and text search over knowledge entries.
//!
//! Search is deliberately simple and exact: the query is split on
//! whitespace, and an entry matches when every token occurs, ignoring case,
//! as a substring of its title or its body. No index is kept: a scan of
//! 100,000 small entries is fast enough for an agent's look-up, and an index
//! would have to be rebuilt from every merge.

use crate::cursor::ListCursor;
use crate::error::KnowledgeError;
use crate::knowledge::Entry;

/// Longest search query, in bytes.
pub const MAX_QUERY_BYTES: usize = 1024;

/// Which entries [`crate::KnowledgeStore::list_page`] returns. Results are
/// newest first (largest `updated_ms`, ties by id), at most `limit` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Only entries carrying this exact tag.
    pub tag: Option<String>,
    /// Only entries whose id starts with this.
    pub id_prefix: Option<String>,
    /// Include tombstones.
    pub include_deleted: bool,
    /// A limit of 0 returns an empty page without a cursor.
    pub limit: usize,
    /// Only entries strictly after this one in listing order: the `next`
    /// of the previous [`ListPage`].
    pub after: Option<ListCursor>,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            tag: None,
            id_prefix: None,
            include_deleted: false,
            limit: 100,
            after: None,
        }
    }
}

/// One page of a listing.
///
/// Following `next` until it is `None` returns every entry that matched
/// throughout, exactly once, in listing order. An entry written while
/// someone pages gets a newer `updated_ms` (it never decreases, see
/// [`crate::Entry::updated_ms`]), so it moves to the front, before the
/// cursor: if the pass had not reached it yet it skips it, and it is never
/// returned twice. An entry deleted meanwhile is skipped unless tombstones
/// are listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    pub entries: Vec<Entry>,
    /// Where the next page starts; `None` when nothing more matched.
    pub next: Option<ListCursor>,
}

/// What [`crate::KnowledgeStore::search_hits`] found: the newest matches,
/// and how many entries matched in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHits {
    pub entries: Vec<Entry>,
    /// Every live entry that matched, returned or not.
    pub matched: usize,
}

impl SearchHits {
    /// Whether the limit cut the results.
    pub fn truncated(&self) -> bool {
        self.matched > self.entries.len()
    }
}

/// A parsed search query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TextQuery {
    tokens: Vec<String>,
}

impl TextQuery {
    pub(crate) fn parse(query: &str) -> Result<Self, KnowledgeError> {
        if query.len() > MAX_QUERY_BYTES {
            return Err(KnowledgeError::TooLong {
                field: "query",
                len: query.len(),
                max: MAX_QUERY_BYTES,
            });
        }
        let mut tokens: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
        tokens.sort();
        tokens.dedup();
        Ok(Self { tokens })
    }

    /// An empty query matches nothing (listing is what `list` is for).
    pub(crate) fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub(crate) fn matches(&self, title: &str, body: &str) -> bool {
        if self.tokens.is_empty() {
            return false;
        }
        let title = title.to_lowercase();
        let body = body.to_lowercase();
        self.tokens
            .iter()
            .all(|t| title.contains(t.as_str()) || body.contains(t.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_case_insensitively_in_title_or_body() {
        let q = TextQuery::parse("  Disk FULL ").expect("parse");
        assert!(q.matches("disk usage", "the volume is full"));
        assert!(q.matches("DISKFULL alert", ""));
        assert!(!q.matches("disk usage", "fine"));
        assert!(TextQuery::parse("Überlauf")
            .expect("parse")
            .matches("ÜBERLAUF", ""));
        assert!(!TextQuery::parse("   ").expect("parse").matches("a", "b"));
        assert!(TextQuery::parse(&"x".repeat(MAX_QUERY_BYTES + 1)).is_err());
    }
}
