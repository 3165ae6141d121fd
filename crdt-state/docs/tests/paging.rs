//! Paged listings: following cursors returns every matching entry exactly
//! once and in order, with filters, ties on `updated_ms`, writes while
//! paging, and a store of 25,000 entries.

mod common;

use std::collections::HashSet;
use std::time::Instant;

use common::{new_entry, store};
use osmoda_docs::{KnowledgeStore, ListCursor, ListQuery};
use proptest::prelude::*;

/// Every page of `query`, each cursor passed through its token as an API
/// caller would. Panics if paging does not end within `max_pages`.
fn all_pages(s: &KnowledgeStore, query: &ListQuery, max_pages: usize) -> Vec<Vec<String>> {
    let mut query = query.clone();
    let mut pages = Vec::new();
    for _ in 0..max_pages {
        let page = s.list_page(&query);
        pages.push(page.entries.iter().map(|e| e.id.clone()).collect());
        match page.next {
            Some(next) => {
                let token = next.encode();
                query.after = Some(ListCursor::decode(&token).expect("own token"));
            }
            None => return pages,
        }
    }
    panic!("paging did not end within {max_pages} pages");
}

#[derive(Debug, Clone)]
struct Spec {
    id: String,
    time: u64,
    tags: Vec<&'static str>,
    deleted: bool,
}

fn spec() -> impl Strategy<Value = Vec<Spec>> {
    let one = (
        prop::sample::select(vec!["a", "ab", "b"]),
        0u64..6,
        prop::sample::subsequence(vec!["x", "y"], 0..=2),
        prop::bool::weighted(0.2),
    );
    prop::collection::vec(one, 0..40).prop_map(|items| {
        items
            .into_iter()
            .enumerate()
            .map(|(i, (prefix, time, tags, deleted))| Spec {
                id: format!("{prefix}{i}"),
                time,
                tags,
                deleted,
            })
            .collect()
    })
}

fn query() -> impl Strategy<Value = ListQuery> {
    (
        prop::option::of(prop::sample::select(vec!["x", "y"])),
        prop::option::of(prop::sample::select(vec!["a", "ab", "b"])),
        any::<bool>(),
        1usize..7,
    )
        .prop_map(|(tag, prefix, include_deleted, limit)| ListQuery {
            tag: tag.map(str::to_owned),
            id_prefix: prefix.map(str::to_owned),
            include_deleted,
            limit,
            after: None,
        })
}

proptest! {
    #[test]
    fn following_cursors_returns_every_match_once_in_order(
        entries in spec(),
        query in query(),
    ) {
        let mut s = store("node-a");
        for e in &entries {
            s.put(new_entry(&e.id, "t", "b", &e.tags), e.time).expect("put");
            if e.deleted {
                s.delete(&e.id, e.time).expect("delete");
            }
        }
        let mut expected: Vec<&Spec> = entries
            .iter()
            .filter(|e| query.include_deleted || !e.deleted)
            .filter(|e| query.tag.as_deref().is_none_or(|t| e.tags.contains(&t)))
            .filter(|e| query.id_prefix.as_deref().is_none_or(|p| e.id.starts_with(p)))
            .collect();
        expected.sort_by(|a, b| b.time.cmp(&a.time).then(a.id.cmp(&b.id)));
        let expected: Vec<String> = expected.into_iter().map(|e| e.id.clone()).collect();

        let pages = all_pages(&s, &query, entries.len() + 2);
        let (last, full) = pages.split_last().expect("at least one page");
        for page in full {
            prop_assert_eq!(page.len(), query.limit, "only the last page is short");
        }
        prop_assert!(last.len() <= query.limit);
        let listed: Vec<String> = pages.concat();
        prop_assert_eq!(listed, expected);
    }
}

#[test]
fn an_entry_written_while_paging_is_never_returned_twice() {
    let mut s = store("node-a");
    for t in 1..=10u64 {
        s.put(new_entry(&format!("t{t:02}"), "t", "b", &[]), t)
            .expect("put");
    }
    let mut query = ListQuery {
        limit: 3,
        ..ListQuery::default()
    };
    let first = s.list_page(&query);
    let ids = |entries: &[osmoda_docs::Entry]| -> Vec<String> {
        entries.iter().map(|e| e.id.clone()).collect()
    };
    assert_eq!(ids(&first.entries), ["t10", "t09", "t08"]);
    // One already returned, one not yet reached: both move to the front.
    s.update_body("t09", "again", 100).expect("update");
    s.update_body("t02", "later", 101).expect("update");
    // A writer whose clock lags does not move an entry back.
    s.update_body("t05", "lagging", 0).expect("update");
    assert_eq!(s.get("t05").expect("get").expect("live").updated_ms, 5);
    let mut rest = Vec::new();
    query.after = first.next;
    loop {
        let page = s.list_page(&query);
        rest.extend(ids(&page.entries));
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    assert_eq!(rest, ["t07", "t06", "t05", "t04", "t03", "t01"]);
}

#[test]
fn limit_zero_is_an_empty_page_without_a_cursor() {
    let mut s = store("node-a");
    s.put(new_entry("e1", "t", "b", &[]), 1).expect("put");
    let page = s.list_page(&ListQuery {
        limit: 0,
        ..ListQuery::default()
    });
    assert!(page.entries.is_empty() && page.next.is_none());
}

#[test]
fn search_says_when_the_limit_cut_it() {
    let mut s = store("node-a");
    for i in 0..5u64 {
        s.put(new_entry(&format!("e{i}"), "disk full", "b", &[]), i)
            .expect("put");
    }
    let hits = s.search_hits("disk", 3).expect("search");
    assert_eq!((hits.entries.len(), hits.matched), (3, 5));
    assert!(hits.truncated());
    assert_eq!(hits.entries[0].id, "e4");
    let all = s.search_hits("disk", 5).expect("search");
    assert!(!all.truncated());
    assert!(!s.search_hits("nothing", 5).expect("search").truncated());
}

#[test]
fn twenty_five_thousand_entries_page_by_a_thousand() {
    const ENTRIES: u64 = 25_000;
    let mut s = store("node-a");
    let built = Instant::now();
    for i in 0..ENTRIES {
        // Three entries per millisecond: many ties on updated_ms.
        s.put(new_entry(&format!("e{i:05}"), "t", "b", &[]), i / 3)
            .expect("put");
    }
    println!("built {ENTRIES} entries in {:?}", built.elapsed());
    let mut query = ListQuery {
        limit: 1_000,
        ..ListQuery::default()
    };
    let mut seen = HashSet::new();
    let mut pages: u32 = 0;
    let started = Instant::now();
    loop {
        let page = s.list_page(&query);
        pages += 1;
        for e in page.entries {
            assert!(seen.insert(e.id), "an entry came twice");
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
        assert!(pages <= 26, "paging does not end");
    }
    let elapsed = started.elapsed();
    println!(
        "{pages} pages of 1,000 over {ENTRIES} entries: {:?} in all, {:?} per page",
        elapsed,
        elapsed / pages
    );
    assert_eq!(seen.len(), ENTRIES as usize);
    assert_eq!(pages, 25);
}
