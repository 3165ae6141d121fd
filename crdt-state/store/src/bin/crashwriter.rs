//! Test helper for `tests/crash.rs`: opens a store and writes until killed.
//!
//! Usage: `osmoda-store-crashwriter STORE_FILE THREADS`
//!
//! Prints `open` once the store is open, then, for every acknowledged
//! write, one line flushed before the next write starts:
//! - `INDEX HASH`: a record was appended to log `crash` at INDEX; HASH is
//!   the BLAKE3 of the record in hex;
//! - `kv N`: a batch set key `counter` to N in both tables `left` and
//!   `right` (N goes on from the stored counter, so it grows across runs).
//!
//! The test kills this process with SIGKILL at a random moment, so every
//! line printed is a promise the store made before dying.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Mutex;
use std::thread;

use osmoda_store::{Batch, Store};

const RECORD_LEN: usize = 256;

/// A record unique to (run, thread, sequence number), filled to 256 bytes
/// with bytes derived from those numbers.
fn record(run: u64, thread: usize, seq: u64) -> Vec<u8> {
    let mut out = format!("run {run} thread {thread} seq {seq} ").into_bytes();
    let mut x = run ^ (thread as u64).rotate_left(32) ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    while out.len() < RECORD_LEN {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(x as u8);
    }
    out
}

fn say(out: &Mutex<()>, line: &str) -> std::io::Result<()> {
    // One write and one flush per line, under a lock, so lines from
    // different threads never interleave and each is out before the next
    // write is started.
    let _guard = out.lock().unwrap_or_else(|p| p.into_inner());
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(line.as_bytes())?;
    stdout.flush()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(threads)) = (args.get(1), args.get(2).and_then(|t| t.parse().ok()))
    else {
        eprintln!("usage: osmoda-store-crashwriter STORE_FILE THREADS");
        return ExitCode::from(2);
    };
    let store = match Store::open(path) {
        Ok(store) => store,
        Err(err) => {
            eprintln!("open: {err}");
            return ExitCode::FAILURE;
        }
    };
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let out = Mutex::new(());
    if say(&out, "open\n").is_err() {
        return ExitCode::FAILURE;
    }
    let failed = thread::scope(|scope| {
        let mut workers = Vec::new();
        for t in 0..threads {
            let (store, out) = (&store, &out);
            workers.push(scope.spawn(move || -> Result<(), String> {
                let log = store.log("crash").map_err(|e| e.to_string())?;
                for seq in 0.. {
                    let rec = record(run, t, seq);
                    let index = log.append(&rec).map_err(|e| format!("append: {e}"))?;
                    let line = format!("{index} {}\n", blake3::hash(&rec).to_hex());
                    say(out, &line).map_err(|e| e.to_string())?;
                }
                Ok(())
            }));
        }
        workers.push(scope.spawn(|| -> Result<(), String> {
            // Go on from the last committed counter, so it only ever grows
            // across runs.
            let last = store
                .get("left", b"counter")
                .map_err(|e| format!("get: {e}"))?
                .and_then(|v| v.try_into().ok())
                .map_or(0, u64::from_be_bytes);
            for n in last + 1.. {
                let mut batch = Batch::new();
                batch.put("left", b"counter", &n.to_be_bytes()).put(
                    "right",
                    b"counter",
                    &n.to_be_bytes(),
                );
                store.batch(batch).map_err(|e| format!("batch: {e}"))?;
                say(&out, &format!("kv {n}\n")).map_err(|e| e.to_string())?;
            }
            Ok(())
        }));
        workers
            .into_iter()
            .filter_map(|w| match w.join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some("writer thread panicked".to_string()),
            })
            .next()
    });
    if let Some(err) = failed {
        eprintln!("{err}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
