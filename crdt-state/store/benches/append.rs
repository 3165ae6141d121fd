//! Acknowledged appends per second through the group commit.
//!
//! Two groups in one run, side by side:
//!
//! - `append_durable/W`: W writer threads each call `LogHandle::append`
//!   (256-byte records) in a loop; every call returns only after the commit
//!   containing its record has been fsynced.
//! - `append_non_durable/W`: the same with
//!   `CommitMode::NonDurableForBenchmarksOnly` (redb `Durability::None`):
//!   what the same path costs without the fsync. Not a mode a node runs.
//!
//! W is 1, 8, 64 and 256. One criterion iteration is one acknowledged
//! append, so criterion's time per iteration is wall time / appends, across
//! all writers. After the groups run, a summary prints the median of each
//! (from criterion's own estimates) as appends per second, with the
//! average number of records per commit.
//!
//! Run: `cargo bench -p osmoda-store --bench append`

use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use osmoda_store::{CommitMode, Store, StoreOptions};

const WRITERS: [usize; 4] = [1, 8, 64, 256];
const RECORD_LEN: usize = 256;
const GROUPS: [(&str, CommitMode); 2] = [
    ("append_durable", CommitMode::Durable),
    (
        "append_non_durable",
        CommitMode::NonDurableForBenchmarksOnly,
    ),
];

/// Runs `iters` appends spread over `writers` threads; returns wall time
/// from the moment all writers are ready until the last ack.
fn run(store: &Store, writers: usize, iters: u64) -> Duration {
    let log = store.log("bench").expect("log name");
    let ready = Barrier::new(writers + 1);
    thread::scope(|s| {
        for w in 0..writers as u64 {
            let (log, ready) = (&log, &ready);
            let n = iters / writers as u64 + u64::from(w < iters % writers as u64);
            s.spawn(move || {
                let mut record = [0u8; RECORD_LEN];
                record[..8].copy_from_slice(&w.to_le_bytes());
                ready.wait();
                for i in 0..n {
                    record[8..16].copy_from_slice(&i.to_le_bytes());
                    log.append(&record).expect("append");
                }
            });
        }
        ready.wait();
        let start = Instant::now();
        // Leaving the scope joins every writer.
        start
    })
    .elapsed()
}

fn bench(c: &mut Criterion, dir: &Path) -> Vec<(String, f64)> {
    let mut records_per_commit = Vec::new();
    for (group_name, mode) in GROUPS {
        let mut group = c.benchmark_group(group_name);
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(8))
            .throughput(Throughput::Elements(1));
        for writers in WRITERS {
            let path = dir.join(format!("{group_name}-{writers}.redb"));
            let options = StoreOptions {
                commit_mode: mode,
                ..StoreOptions::default()
            };
            let store = Store::open_with(&path, options).expect("open store");
            group.bench_with_input(BenchmarkId::from_parameter(writers), &writers, |b, &w| {
                b.iter_custom(|iters| run(&store, w, iters))
            });
            let stats = store.stats();
            let per_commit = stats.writes as f64 / stats.commits.max(1) as f64;
            records_per_commit.push((format!("{group_name}/{writers}"), per_commit));
            drop(store);
            let _ = std::fs::remove_file(&path);
        }
        group.finish();
    }
    records_per_commit
}

/// Where criterion keeps its results: `$CRITERION_HOME`, else
/// `$CARGO_TARGET_DIR/criterion`, else `target/criterion` above this binary
/// (`target/release/deps/append-*`).
fn criterion_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(home.into());
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(target).join("criterion"));
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.ancestors().nth(3)?.join("criterion"))
}

/// Criterion's median time per iteration (nanoseconds) for one benchmark.
fn median_ns(dir: &Path, group: &str, writers: usize) -> Option<f64> {
    let file = dir
        .join(group)
        .join(writers.to_string())
        .join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let dir = tempfile::tempdir_in(std::env::temp_dir()).expect("temp dir");
    let per_commit = bench(&mut c, dir.path());
    c.final_summary();

    let Some(results) = criterion_dir() else {
        return;
    };
    println!("\nmedian acknowledged appends/s ({RECORD_LEN}-byte records)");
    println!(
        "{:>8} {:>14} {:>10} {:>14} {:>10}",
        "writers", "durable", "rec/commit", "non-durable", "rec/commit"
    );
    for writers in WRITERS {
        let mut row = format!("{writers:>8}");
        for (group, _) in GROUPS {
            let rate = median_ns(&results, group, writers).map_or(f64::NAN, |ns| 1e9 / ns);
            let name = format!("{group}/{writers}");
            let batch = per_commit
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(f64::NAN, |(_, b)| *b);
            row.push_str(&format!(" {rate:>14.0} {batch:>10.1}"));
        }
        println!("{row}");
    }
}
