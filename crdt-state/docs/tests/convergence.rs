//! Property tests: 3 to 5 replicas apply random operations concurrently,
//! exchange changes in random order with duplicates (incremental change
//! bundles, or sync sessions), and must end in identical states.

mod common;

use common::{new_entry, store, sync_stores};
use osmoda_docs::{EntryUpdate, KnowledgeStore, ListQuery, ShardId};
use proptest::prelude::*;
use proptest::sample::Index;

const ENTRIES: usize = 6;

#[derive(Debug, Clone)]
enum Op {
    Put {
        r: Index,
        e: usize,
        title: u8,
    },
    Insert {
        r: Index,
        e: usize,
        at: Index,
        text: String,
    },
    Remove {
        r: Index,
        e: usize,
        at: Index,
        len: usize,
    },
    Retitle {
        r: Index,
        e: usize,
        title: u8,
    },
    Retag {
        r: Index,
        e: usize,
        tags: Vec<u8>,
    },
    Delete {
        r: Index,
        e: usize,
    },
    /// Hand a recorded change bundle to a replica (duplicates welcome).
    Deliver {
        msg: Index,
        to: Index,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let e = 0..ENTRIES;
    prop_oneof![
        3 => (any::<Index>(), e.clone(), any::<u8>()).prop_map(|(r, e, title)| Op::Put { r, e, title }),
        4 => (any::<Index>(), e.clone(), any::<Index>(), "[a-zé ]{1,6}")
            .prop_map(|(r, e, at, text)| Op::Insert { r, e, at, text }),
        2 => (any::<Index>(), e.clone(), any::<Index>(), 1usize..5)
            .prop_map(|(r, e, at, len)| Op::Remove { r, e, at, len }),
        1 => (any::<Index>(), e.clone(), any::<u8>()).prop_map(|(r, e, title)| Op::Retitle { r, e, title }),
        1 => (any::<Index>(), e.clone(), proptest::collection::vec(0u8..6, 0..4))
            .prop_map(|(r, e, tags)| Op::Retag { r, e, tags }),
        1 => (any::<Index>(), e.clone()).prop_map(|(r, e)| Op::Delete { r, e }),
        6 => (any::<Index>(), any::<Index>()).prop_map(|(msg, to)| Op::Deliver { msg, to }),
    ]
}

fn id(e: usize) -> String {
    format!("entry-{e}")
}

/// Applies one local operation; returns the change bundle it made, if any.
fn apply_local(s: &mut KnowledgeStore, op: &Op, now: u64) -> Option<(ShardId, Vec<u8>)> {
    let (e, shard) = match op {
        Op::Put { e, .. }
        | Op::Insert { e, .. }
        | Op::Remove { e, .. }
        | Op::Retitle { e, .. }
        | Op::Retag { e, .. }
        | Op::Delete { e, .. } => (*e, ShardId::of(&id(*e))),
        Op::Deliver { .. } => return None,
    };
    let before = s.shard_heads(shard);
    let body = || s.get(&id(e)).ok().flatten().map(|x| x.body);
    let result = match op {
        Op::Put { title, .. } => s.put(
            new_entry(&id(e), &format!("t{title}"), "seed text", &[]),
            now,
        ),
        Op::Insert { at, text, .. } => match body() {
            Some(b) => {
                let mut chars: Vec<char> = b.chars().collect();
                let at = at.index(chars.len() + 1);
                chars.splice(at..at, text.chars());
                s.update_body(&id(e), &chars.into_iter().collect::<String>(), now)
            }
            None => return None,
        },
        Op::Remove { at, len, .. } => match body() {
            Some(b) if !b.is_empty() => {
                let mut chars: Vec<char> = b.chars().collect();
                let at = at.index(chars.len());
                let end = (at + len).min(chars.len());
                chars.drain(at..end);
                s.update_body(&id(e), &chars.into_iter().collect::<String>(), now)
            }
            _ => return None,
        },
        Op::Retitle { title, .. } => {
            let u = EntryUpdate {
                title: Some(format!("title {title}")),
                ..EntryUpdate::default()
            };
            s.update(&id(e), &u, now)
        }
        Op::Retag { tags, .. } => {
            let tags = tags.iter().map(|t| format!("tag{t}")).collect();
            s.update(
                &id(e),
                &EntryUpdate {
                    tags: Some(tags),
                    ..EntryUpdate::default()
                },
                now,
            )
        }
        Op::Delete { .. } => s.delete(&id(e), now),
        Op::Deliver { .. } => return None,
    };
    // Refusals (unknown, deleted, already there) are part of the game.
    result.ok()?;
    Some((shard, s.shard(shard)?.changes_since(&before)))
}

fn all_entries(s: &KnowledgeStore) -> Vec<osmoda_docs::Entry> {
    s.list(&ListQuery {
        include_deleted: true,
        limit: usize::MAX,
        ..ListQuery::default()
    })
}

fn assert_identical(replicas: &[KnowledgeStore]) -> Result<(), TestCaseError> {
    let first = &replicas[0];
    for other in &replicas[1..] {
        for shard in ShardId::all() {
            prop_assert_eq!(first.shard_heads(shard), other.shard_heads(shard));
        }
        prop_assert_eq!(first.heads_summary(), other.heads_summary());
        prop_assert_eq!(all_entries(first), all_entries(other));
        for e in 0..ENTRIES {
            prop_assert_eq!(
                first.get_with_deleted(&id(e)).ok(),
                other.get_with_deleted(&id(e)).ok()
            );
        }
    }
    Ok(())
}

/// Runs the operations; returns the replicas and every change bundle made.
fn run(n: usize, ops: &[Op]) -> (Vec<KnowledgeStore>, Vec<(ShardId, Vec<u8>)>) {
    let mut replicas: Vec<KnowledgeStore> = (0..n).map(|i| store(&format!("node-{i}"))).collect();
    let mut pool: Vec<(ShardId, Vec<u8>)> = Vec::new();
    for (now, op) in ops.iter().enumerate() {
        match op {
            Op::Deliver { msg, to } => {
                if !pool.is_empty() {
                    let (shard, bytes) = &pool[msg.index(pool.len())];
                    replicas[to.index(n)]
                        .shard_mut(*shard)
                        .apply_changes(bytes)
                        .expect("our own changes apply");
                }
            }
            Op::Put { r, .. }
            | Op::Insert { r, .. }
            | Op::Remove { r, .. }
            | Op::Retitle { r, .. }
            | Op::Retag { r, .. }
            | Op::Delete { r, .. } => {
                if let Some(bundle) = apply_local(&mut replicas[r.index(n)], op, now as u64) {
                    pool.push(bundle);
                }
            }
        }
    }
    (replicas, pool)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Every replica receives every bundle, in its own random order, each
    /// bundle twice: dependencies arrive late, duplicates are no-ops.
    #[test]
    fn replicas_converge_by_change_bundles(
        n in 3usize..=5,
        ops in proptest::collection::vec(op(), 1..80),
        seed in any::<u64>(),
    ) {
        let (mut replicas, pool) = run(n, &ops);
        for (r, replica) in replicas.iter_mut().enumerate() {
            let mut order: Vec<usize> = (0..pool.len()).chain(0..pool.len()).collect();
            // A cheap deterministic shuffle per replica (Fisher-Yates, LCG).
            let mut x = seed ^ (r as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            for i in (1..order.len()).rev() {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                order.swap(i, (x >> 33) as usize % (i + 1));
            }
            for i in order {
                let (shard, bytes) = &pool[i];
                replica.shard_mut(*shard).apply_changes(bytes).expect("apply");
            }
        }
        assert_identical(&replicas)?;
    }

    /// Replicas converge through sync sessions between pairs, driven by
    /// their heads summaries, after partial random delivery.
    #[test]
    fn replicas_converge_by_sync_sessions(
        n in 3usize..=5,
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let (mut replicas, _) = run(n, &ops);
        // Two passes over all pairs: the first gathers everything into the
        // later replicas and the first one, the second spreads it.
        for _ in 0..2 {
            for i in 0..n {
                for j in i + 1..n {
                    let (left, right) = replicas.split_at_mut(j);
                    sync_stores(&mut left[i], &mut right[0]);
                }
            }
        }
        assert_identical(&replicas)?;
    }
}
