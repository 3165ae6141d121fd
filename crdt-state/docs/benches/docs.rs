//! Benchmarks of the replicated documents: knowledge puts, save and load of
//! a 100,000-entry store, sync traffic against the size of the changes,
//! search, paged listings and body edits.
//!
//! Run with `cargo bench -p osmoda-docs`. Sizes and byte ratios are printed
//! as `figure:` lines (criterion measures only time).

use std::hint::black_box;
use std::time::Instant;

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ROOT};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use osmoda_docs::{
    EntryUpdate, KnowledgeStore, ListQuery, NewEntry, NodeActor, PreparedUpdate, ShardId,
    StoreSync, SyncLimits,
};

fn node(id: &str) -> NodeActor {
    NodeActor::new(id).expect("node id")
}

/// Pseudo-random lowercase words, so bodies compress like text rather
/// than like one repeated sentence.
fn words(mut seed: u64, bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 12);
    while out.len() < bytes {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let len = 2 + (seed >> 60) as usize % 8;
        for k in 0..len {
            out.push((b'a' + ((seed >> (8 + 5 * k)) % 26) as u8) as char);
        }
        out.push(' ');
    }
    out
}

/// An entry with a ~200-byte body.
fn entry(i: u64) -> NewEntry {
    NewEntry {
        id: format!("e{i:08}"),
        title: format!("runbook {i}"),
        body: words(i, 200),
        tags: vec!["ops".into(), format!("t{}", i % 16)],
        actor: "agent:bench".into(),
    }
}

fn filled(node_id: &str, n: u64) -> KnowledgeStore {
    let mut s = KnowledgeStore::new(node(node_id));
    for i in 0..n {
        s.put(entry(i), i).expect("put");
    }
    s
}

fn load_all(node_id: &str, saved: &[(ShardId, Vec<u8>)]) -> KnowledgeStore {
    let mut s = KnowledgeStore::new(node(node_id));
    for (sh, bytes) in saved {
        s.load_shard(*sh, bytes).expect("load");
    }
    s
}

fn puts(c: &mut Criterion) {
    let mut g = c.benchmark_group("knowledge");
    g.throughput(Throughput::Elements(1));
    let mut s = filled("node-a", 10_000);
    let mut i = 10_000u64;
    g.bench_function("put_into_10k", |b| {
        b.iter(|| {
            s.put(entry(i), i).expect("put");
            i += 1;
        })
    });
    g.finish();
}

fn store_100k(c: &mut Criterion) {
    let start = Instant::now();
    let mut s = filled("node-a", 100_000);
    let build = start.elapsed();
    println!(
        "figure: built 100,000 entries in {:.2} s ({:.0} puts/s)",
        build.as_secs_f64(),
        100_000.0 / build.as_secs_f64()
    );
    let saved = s.save_all();
    let total: usize = saved.iter().map(|(_, b)| b.len()).sum();
    let largest = saved.iter().map(|(_, b)| b.len()).max().unwrap_or(0);
    println!(
        "figure: 100,000 entries saved to {} shards, {} bytes in all ({:.0} B/entry), largest shard {} bytes",
        saved.len(),
        total,
        total as f64 / 100_000.0,
        largest
    );
    let mut g = c.benchmark_group("store_100k");
    g.sample_size(10);
    g.bench_function("save_all_shards", |b| b.iter(|| black_box(s.save_all())));
    g.bench_function("load_all_shards", |b| {
        b.iter(|| black_box(load_all("node-a", &saved)))
    });
    g.bench_function("load_all_shards_parallel", |b| {
        b.iter(|| {
            let mut s = KnowledgeStore::new(node("node-a"));
            assert!(s.load_shards(saved.clone()).is_empty(), "load");
            black_box(s)
        })
    });
    let one = ShardId::of("e00000001");
    g.bench_function("save_one_shard", |b| {
        b.iter(|| black_box(s.shard_mut(one).save()))
    });
    g.finish();
}

/// Two stores with 10,000 common entries; `a` then adds 100.
fn sync_setup(common: &[(ShardId, Vec<u8>)]) -> (KnowledgeStore, KnowledgeStore) {
    let mut a = load_all("node-a", common);
    let b = load_all("node-b", common);
    for i in 1_000_000..1_000_100 {
        a.put(entry(i), i).expect("put");
    }
    (a, b)
}

/// Runs StoreSync both ways until quiet; returns (messages, bytes).
fn sync_pair(a: &mut KnowledgeStore, b: &mut KnowledgeStore) -> (usize, u64) {
    let (sa, sb) = (a.heads_summary(), b.heads_summary());
    let mut pa = StoreSync::new(&sa, &sb, SyncLimits::default());
    let mut pb = StoreSync::new(&sb, &sa, SyncLimits::default());
    let (mut messages, mut bytes) = (0, 0u64);
    loop {
        let to_b = pa.generate(a);
        for (sh, m) in &to_b {
            pb.receive(b, *sh, m).expect("b receives");
            bytes += m.len() as u64;
        }
        let to_a = pb.generate(b);
        for (sh, m) in &to_a {
            pa.receive(a, *sh, m).expect("a receives");
            bytes += m.len() as u64;
        }
        messages += to_a.len() + to_b.len();
        if to_a.is_empty() && to_b.is_empty() {
            return (messages, bytes);
        }
    }
}

fn sync_traffic(c: &mut Criterion) {
    let mut base = filled("node-a", 10_000);
    let common = base.save_all();
    let (mut a, mut b) = sync_setup(&common);
    let new_bytes: usize = ShardId::all()
        .filter_map(|sh| Some(a.shard(sh)?.changes_since(&b.shard_heads(sh)).len()))
        .sum();
    let summary_bytes = a.heads_summary().encode().len() + b.heads_summary().encode().len();
    let differing = a.heads_summary().differing_shards(&b.heads_summary()).len();
    let (messages, wire) = sync_pair(&mut a, &mut b);
    assert_eq!(a.heads_summary(), b.heads_summary());
    println!(
        "figure: sync of 100 new entries over 10,000 common: {differing} shards differ, \
         {messages} messages, {wire} bytes of sync messages (+{summary_bytes} bytes of two \
         summaries) for {new_bytes} bytes of new changes: ratio {:.2} ({:.2} with summaries)",
        wire as f64 / new_bytes as f64,
        (wire as f64 + summary_bytes as f64) / new_bytes as f64
    );
    let mut g = c.benchmark_group("sync");
    g.sample_size(10);
    g.bench_function("100_new_over_10k_common", |bch| {
        bch.iter_batched(
            || sync_setup(&common),
            |(mut a, mut b)| black_box(sync_pair(&mut a, &mut b)),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn search_10k(c: &mut Criterion) {
    let s = filled("node-a", 10_000);
    let mut g = c.benchmark_group("knowledge");
    g.sample_size(10);
    g.bench_function("search_10k", |b| {
        b.iter(|| black_box(s.search("abc XY", 10).expect("search")))
    });
    let by_tag = ListQuery {
        tag: Some("t3".into()),
        limit: 20,
        ..ListQuery::default()
    };
    g.bench_function("list_by_tag_10k", |b| b.iter(|| black_box(s.list(&by_tag))));
    g.finish();
}

/// One page of 1,000 from the middle of a 25,000-entry listing: the cost
/// is the scan, not a sort of all 25,000.
fn page_25k(c: &mut Criterion) {
    let s = filled("node-a", 25_000);
    let mut query = ListQuery {
        limit: 1_000,
        ..ListQuery::default()
    };
    for _ in 0..12 {
        query.after = s.list_page(&query).next;
    }
    let mut g = c.benchmark_group("knowledge");
    g.sample_size(10);
    g.bench_function("page_1000_of_25k", |b| {
        b.iter(|| black_box(s.list_page(&query)))
    });
    g.finish();
}

/// A 40,000-character body fully replaced, and with one word changed:
/// Automerge's own `update_text` (what `update` ran under the node's lock
/// before; only the small edit, the full replacement takes minutes), the
/// prepared diff (without the lock) and its apply (under the lock).
fn body_edit(c: &mut Criterion) {
    const CHARS: usize = 40_000;
    let mut old = words(1, CHARS);
    old.truncate(CHARS);
    let mut replaced = words(2, CHARS);
    replaced.truncate(CHARS);
    let mut small = old.clone();
    small.replace_range(CHARS / 2..CHARS / 2 + 5, "EDIT!");
    let update = |body: &str| EntryUpdate {
        body: Some(body.to_owned()),
        ..EntryUpdate::default()
    };
    let with_old = || {
        let mut s = KnowledgeStore::new(node("node-a"));
        let mut e = entry(0);
        e.body = old.clone();
        s.put(e, 1).expect("put");
        s
    };
    let id = entry(0).id;
    let mut g = c.benchmark_group("body_edit");
    g.sample_size(10);
    for (case, new) in [("replaced", &replaced), ("small", &small)] {
        g.bench_function(format!("prepare_40k_{case}"), |b| {
            b.iter(|| black_box(PreparedUpdate::new(update(new), &old).expect("prepare")))
        });
        let prepared = PreparedUpdate::new(update(new), &old).expect("prepare");
        g.bench_function(format!("apply_40k_{case}"), |b| {
            b.iter_batched(
                with_old,
                |mut s| s.apply_update(&id, &prepared, 2).expect("apply"),
                BatchSize::PerIteration,
            )
        });
    }
    g.bench_function("automerge_update_text_40k_small", |b| {
        b.iter_batched(
            || {
                let mut doc = Automerge::new();
                let mut tx = doc.transaction();
                let text = tx.put_object(ROOT, "body", ObjType::Text).expect("text");
                tx.splice_text(&text, 0, 0, &old).expect("fill");
                tx.commit();
                (doc, text)
            },
            |(mut doc, text)| {
                let mut tx = doc.transaction();
                tx.update_text(&text, &small).expect("update");
                tx.commit();
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// A small write into a shard of 1, 2 and 4 MiB (saved size) and the
/// whole-shard save that follows it on a node: the CPU side of one
/// acknowledged write (the node then stores the bytes, in parts of 512
/// KiB, with one fsync).
fn large_shard(c: &mut Criterion) {
    let mut g = c.benchmark_group("large_shard");
    g.sample_size(10);
    for mib in [1usize, 2, 4] {
        let mut s = KnowledgeStore::new(node("node-a"));
        let id = entry(0).id;
        s.put(entry(0), 1).expect("put");
        let mut size = 0;
        let mut seed = 1;
        while size < mib << 20 {
            let body = words(seed, 200_000);
            seed += 1;
            s.update_body(&id, &body, seed).expect("rewrite");
            size = s
                .save_dirty()
                .iter()
                .map(|(_, b)| b.len())
                .sum::<usize>()
                .max(size);
        }
        println!("figure: large_shard {mib} MiB: {size} bytes saved after {seed} rewrites");
        let mut t = 0u64;
        g.bench_function(format!("small_write_and_save_{mib}mib"), |b| {
            b.iter(|| {
                t += 1;
                let update = EntryUpdate {
                    title: Some(format!("title {t}")),
                    ..EntryUpdate::default()
                };
                s.update(&id, &update, 1_000 + t).expect("update");
                black_box(s.save_dirty_within(usize::MAX).expect("save"))
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    large_shard,
    puts,
    store_100k,
    sync_traffic,
    search_10k,
    page_25k,
    body_edit
);
criterion_main!(benches);
