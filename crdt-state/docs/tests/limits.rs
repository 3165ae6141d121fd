//! The largest writes the field limits allow make changes that fit
//! [`MAX_CHANGE_BYTES`], whatever characters the body holds: if a field
//! limit grows, or Automerge's encoding does, this fails before a write
//! that cannot replicate is ever acknowledged.

mod common;

use common::store;
use osmoda_docs::{
    EntryUpdate, KnowledgeStore, NewEntry, ShardId, StoreSync, SyncLimits, MAX_BODY_BYTES,
    MAX_CHANGE_BYTES, MAX_TAGS, MAX_TAG_BYTES, MAX_TITLE_BYTES,
};

/// Characters repeated in the order given, up to `bytes` of UTF-8. Runs
/// of mixed widths defeat the run-length encoding of value lengths.
fn text(bytes: usize, pattern: &[char]) -> String {
    let mut out = String::with_capacity(bytes);
    for c in pattern.iter().cycle() {
        if out.len() + c.len_utf8() > bytes {
            break;
        }
        out.push(*c);
    }
    out
}

fn tags(fill: char) -> Vec<String> {
    (0..MAX_TAGS)
        .map(|i| format!("{i:02}{}", fill.to_string().repeat(MAX_TAG_BYTES - 2)))
        .collect()
}

const PATTERNS: &[&[char]] = &[
    &['a'],
    &['a', 'é'],
    &['a', 'a', 'é'],
    &['a', '😀'],
    &['a', 'é', '€', '😀'],
    &['\u{1}', 'é'],
];

/// A different character of the same UTF-8 width.
fn other(c: char) -> char {
    char::from_u32(c as u32 + 1).unwrap_or(c)
}

fn last_change(s: &KnowledgeStore, id: &str) -> usize {
    s.shard(ShardId::of(id))
        .and_then(|d| d.last_local_change())
        .map_or(0, |c| c.len())
}

#[test]
fn the_largest_entries_and_their_updates_make_changes_that_replicate() {
    let mut largest = 0;
    for pattern in PATTERNS {
        let mut s = store("node-a");
        let body = text(MAX_BODY_BYTES, pattern);
        s.put(
            NewEntry {
                id: "big".into(),
                title: "t".repeat(MAX_TITLE_BYTES),
                body: body.clone(),
                tags: tags('x'),
                actor: "agent:test".into(),
            },
            1,
        )
        .expect("the largest entry is accepted");
        let put = last_change(&s, "big");
        // A rewrite of everything: new title, tags and a body of other
        // characters of the same widths, so nothing lines up with the old
        // text.
        let other: Vec<char> = pattern.iter().map(|c| other(*c)).collect();
        let rewrite = EntryUpdate {
            title: Some("u".repeat(MAX_TITLE_BYTES)),
            body: Some(text(MAX_BODY_BYTES, &other)),
            tags: Some(tags('y')),
        };
        s.update("big", &rewrite, 2).expect("a rewrite is accepted");
        let rewritten = last_change(&s, "big");
        // Splices: delete just under the fresh-text threshold in 16 places
        // and insert as much as the body limit leaves.
        let chars: Vec<char> = s.get("big").unwrap().unwrap().body.chars().collect();
        let step = chars.len() / 16;
        let mut spliced = String::new();
        for k in 0..16 {
            let part = &chars[k * step..(k + 1) * step];
            spliced.extend(&part[..part.len() / 2]);
            spliced.push_str(&text(step * 4, pattern));
        }
        while spliced.len() > MAX_BODY_BYTES {
            spliced.pop();
        }
        let splice = EntryUpdate {
            body: Some(spliced),
            ..EntryUpdate::default()
        };
        s.update("big", &splice, 3).expect("splices are accepted");
        let splices = last_change(&s, "big");
        println!(
            "figure: pattern {pattern:?}: put {put} B, rewrite {rewritten} B, splices {splices} B"
        );
        largest = largest.max(put).max(rewritten).max(splices);
    }
    assert!(
        largest <= MAX_CHANGE_BYTES,
        "a {largest}-byte change from the largest entry is over MAX_CHANGE_BYTES ({MAX_CHANGE_BYTES})"
    );
    // The limit is not so far above the largest change that it would let
    // a field limit grow unnoticed.
    assert!(largest * 2 > MAX_CHANGE_BYTES, "largest change {largest} B");
}

#[test]
fn a_shard_over_its_limit_is_refused_and_the_write_undone() {
    let mut s = store("node-a");
    // Letters that do not compress away when the shard is saved.
    let body: String = (0u64..100_000)
        .map(|i| char::from(b'a' + (i.wrapping_mul(2_654_435_761) >> 7) as u8 % 26))
        .collect();
    let entry = |id: &str| NewEntry {
        id: id.into(),
        title: "t".into(),
        body: body.clone(),
        tags: vec![],
        actor: "agent:test".into(),
    };
    s.put(entry("one"), 1).unwrap();
    let saved = s.save_dirty_within(usize::MAX).unwrap();
    assert_eq!(saved.len(), 1);
    let heads = s.shard_heads(ShardId::of("one"));
    // The same shard again: over a limit just above what it holds now.
    let limit = saved[0].1.len() + 1000;
    let mut n = 0;
    let other = loop {
        n += 1;
        let id = format!("two{n}");
        if ShardId::of(&id) == ShardId::of("one") {
            break id;
        }
    };
    s.put(entry(&other), 2).unwrap();
    let (shard, err) = s.save_dirty_within(limit).unwrap_err();
    assert_eq!(shard, ShardId::of("one"));
    assert!(
        err.to_string().contains(&format!("{limit}-byte limit")),
        "{err}"
    );
    assert_eq!(s.shard_heads(shard), heads, "the refused write is undone");
    assert!(s.get(&other).unwrap().is_none());
    assert!(s.dirty_shards().is_empty());
    assert!(s.get("one").unwrap().is_some());
}

#[test]
fn a_round_budget_leaves_shards_for_later_rounds_and_loses_nothing() {
    let mut a = store("node-a");
    let mut b = store("node-b");
    for i in 0..40 {
        let body = text(30_000, &['a', 'b', 'c']);
        a.put(common::new_entry(&format!("e{i}"), "t", &body, &[]), 1)
            .unwrap();
    }
    let limits = SyncLimits {
        max_message_bytes: 64 * 1024,
        ..SyncLimits::default()
    };
    let mut sa = StoreSync::new(&a.heads_summary(), &b.heads_summary(), limits);
    let mut sb = StoreSync::new(&b.heads_summary(), &a.heads_summary(), limits);
    // Less than one message of the largest size: nothing is generated,
    // and the sessions are left as they were.
    assert!(sa
        .generate_within(&mut a, limits.max_message_bytes - 1)
        .is_empty());
    let budget = 3 * limits.max_message_bytes;
    let mut most = 0;
    for _ in 0..200 {
        let from_a = sa.generate_within(&mut a, budget);
        let from_b = sb.generate_within(&mut b, budget);
        if from_a.is_empty() && from_b.is_empty() {
            break;
        }
        most = most.max(from_a.iter().map(|(_, m)| m.len()).sum::<usize>());
        for (shard, m) in from_a {
            sb.receive(&mut b, shard, &m).unwrap();
        }
        for (shard, m) in from_b {
            sa.receive(&mut a, shard, &m).unwrap();
        }
    }
    assert!(most <= budget, "a round of {most} bytes");
    assert_eq!(a.heads_summary(), b.heads_summary());
    assert_eq!(b.len(), 40);
}
