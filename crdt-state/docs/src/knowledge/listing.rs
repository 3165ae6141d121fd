//! Listing (paged) and searching the knowledge store.
//!
//! Both scan every shard: no index is kept (it would have to be rebuilt by
//! every merge). What a scan keeps is bounded by the page: the best `limit`
//! hits so far sit in a heap whose top is the last of them, so a page of
//! 1,000 out of 100,000 entries costs O(n log 1,000) comparisons and holds
//! 1,000 ids, instead of sorting 100,000.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::entry::Entry;
use super::read;
use super::store::KnowledgeStore;
use crate::cursor::{rank, ListCursor};
use crate::error::KnowledgeError;
use crate::search::{ListPage, ListQuery, SearchHits, TextQuery};
use crate::shard::ShardId;

/// An entry found by a scan, ordered by its place in listing order.
#[derive(Debug, PartialEq, Eq)]
struct Hit {
    updated_ms: u64,
    id: String,
    shard: ShardId,
}

impl Ord for Hit {
    fn cmp(&self, other: &Self) -> Ordering {
        rank(self.updated_ms, &self.id).cmp(&rank(other.updated_ms, &other.id))
    }
}

impl PartialOrd for Hit {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The first `k` hits in listing order among all offered.
struct TopK {
    k: usize,
    /// A max-heap: its top is the last kept hit, the one a better hit
    /// replaces.
    heap: BinaryHeap<Hit>,
    offered: usize,
}

impl TopK {
    fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::new(),
            offered: 0,
        }
    }

    fn offer(&mut self, hit: Hit) {
        self.offered += 1;
        if self.heap.len() < self.k {
            self.heap.push(hit);
        } else if let Some(mut last) = self.heap.peek_mut() {
            if hit < *last {
                // Dropping the `PeekMut` restores the heap order.
                *last = hit;
            }
        }
    }

    /// The kept hits, in listing order.
    fn into_sorted(self) -> Vec<Hit> {
        self.heap.into_sorted_vec()
    }
}

impl KnowledgeStore {
    /// Entries matching `query`, newest first: [`list_page`](Self::list_page)
    /// without its cursor.
    pub fn list(&self, query: &ListQuery) -> Vec<Entry> {
        self.list_page(query).entries
    }

    /// One page of the entries matching `query`, newest first (ties by
    /// id), starting strictly after `query.after`. Malformed entries
    /// (written by a faulty or incompatible replica) are skipped. See
    /// [`ListPage`] for what paging guarantees while entries change.
    pub fn list_page(&self, query: &ListQuery) -> ListPage {
        // One more than asked for tells whether a next page exists.
        let mut top = TopK::new(query.limit.saturating_add(1));
        let after = query.after.as_ref();
        for (shard, doc) in self.docs() {
            let am = doc.am();
            for (id, obj) in read::entries(am) {
                if query
                    .id_prefix
                    .as_ref()
                    .is_some_and(|p| !id.starts_with(p.as_str()))
                {
                    continue;
                }
                let fields = read::read_fields(am, &obj);
                let Some(meta) = fields.meta().filter(|_| fields.is_complete()) else {
                    continue;
                };
                if meta.deleted && !query.include_deleted {
                    continue;
                }
                if after.is_some_and(|c| rank(meta.updated_ms, &id) <= c.rank()) {
                    continue;
                }
                if query.tag.as_ref().is_some_and(|t| !fields.has_tag(am, t)) {
                    continue;
                }
                top.offer(Hit {
                    updated_ms: meta.updated_ms,
                    id,
                    shard,
                });
            }
        }
        let mut hits = top.into_sorted();
        let more = hits.len() > query.limit;
        hits.truncate(query.limit);
        let next = hits.last().filter(|_| more).map(|last| ListCursor {
            updated_ms: last.updated_ms,
            id: last.id.clone(),
        });
        ListPage {
            entries: self.materialise(hits),
            next,
        }
    }

    /// Live entries whose title or body contain every whitespace-separated
    /// token of `query`, ignoring case; newest first, at most `limit`.
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<Entry>, KnowledgeError> {
        Ok(self.search_hits(query, limit)?.entries)
    }

    /// As [`search`](Self::search), and how many entries matched in all,
    /// so the caller can tell that the limit cut the results.
    pub fn search_hits(&self, query: &str, limit: usize) -> Result<SearchHits, KnowledgeError> {
        let query = TextQuery::parse(query)?;
        if query.is_empty() {
            return Ok(SearchHits {
                entries: Vec::new(),
                matched: 0,
            });
        }
        let mut top = TopK::new(limit);
        for (shard, doc) in self.docs() {
            let am = doc.am();
            for (id, obj) in read::entries(am) {
                let fields = read::read_fields(am, &obj);
                let Some(meta) = fields.meta().filter(|_| fields.is_complete()) else {
                    continue;
                };
                if meta.deleted {
                    continue;
                }
                let Some((title, body)) = fields.text(am) else {
                    continue;
                };
                if query.matches(&title, &body) {
                    top.offer(Hit {
                        updated_ms: meta.updated_ms,
                        id,
                        shard,
                    });
                }
            }
        }
        let matched = top.offered;
        Ok(SearchHits {
            entries: self.materialise(top.into_sorted()),
            matched,
        })
    }

    fn materialise(&self, hits: Vec<Hit>) -> Vec<Entry> {
        hits.into_iter()
            .filter_map(|hit| {
                let am = self.shard(hit.shard)?.am();
                let obj = read::entry_obj(am, &hit.id).ok()??;
                read::read_entry(am, &hit.id, &obj).ok()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(updated_ms: u64, id: &str) -> Hit {
        Hit {
            updated_ms,
            id: id.to_owned(),
            shard: ShardId::of(id),
        }
    }

    #[test]
    fn top_k_keeps_the_first_in_listing_order() {
        let mut top = TopK::new(3);
        for (t, id) in [(1, "a"), (5, "b"), (3, "c"), (5, "a"), (2, "d"), (9, "z")] {
            top.offer(hit(t, id));
        }
        let kept: Vec<(u64, String)> = top
            .into_sorted()
            .into_iter()
            .map(|h| (h.updated_ms, h.id))
            .collect();
        assert_eq!(
            kept,
            [(9, "z".into()), (5, "a".into()), (5, "b".into())] as [(u64, String); 3]
        );
        let mut none = TopK::new(0);
        none.offer(hit(1, "a"));
        assert_eq!(none.offered, 1);
        assert!(none.into_sorted().is_empty());
    }
}
