//! Crash safety: a writer process is killed with SIGKILL at random moments,
//! over and over, on the same store file. Every write it acknowledged
//! (printed) before dying must be in the file, intact, with dense indices.
//!
//! SIGKILL ends the process but not the kernel: data the store wrote but did
//! not yet fsync still reaches the disk from the page cache. So this checks
//! that redb's recovery after an interrupted commit is sound and that no
//! acknowledgement ran ahead of its commit; it does not simulate power loss.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use osmoda_store::Store;

const ROUNDS: usize = 30;
/// Appending threads per run: 1 to this many, chosen per round.
const MAX_THREADS: u64 = 8;
/// Kill delay after the writer reports the store open, in milliseconds.
const DELAY_MS: std::ops::Range<u64> = 5..150;
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// xorshift64*, seeded from the clock; the seed is printed for replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Everything one run of the writer acknowledged.
#[derive(Default)]
struct Acks {
    records: Vec<(u64, String)>,
    kv: Option<u64>,
}

/// Reads the writer's stdout, keeping only complete lines: the kill can cut
/// the last line short, and a cut line was never a complete promise.
fn read_acks(stdout: impl Read, opened: mpsc::Sender<()>) -> Acks {
    let mut reader = BufReader::new(stdout);
    let mut acks = Acks::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return acks,
            Ok(_) if line.last() != Some(&b'\n') => return acks,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
        let mut words = text.split(' ');
        match (words.next(), words.next()) {
            (Some("open"), None) => {
                let _ = opened.send(());
            }
            (Some("kv"), Some(n)) => acks.kv = Some(n.parse().expect("kv line")),
            (Some(index), Some(hash)) => acks
                .records
                .push((index.parse().expect("index"), hash.to_string())),
            _ => panic!("unexpected line from writer: {text:?}"),
        }
    }
}

#[test]
fn acknowledged_writes_survive_repeated_kill_9() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 | 1)
        .unwrap_or(1);
    eprintln!("crash test seed {seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let started = Instant::now();

    let mut acked: HashMap<u64, String> = HashMap::new();
    let mut kv_acked: Option<u64> = None;
    for round in 0..ROUNDS {
        let threads = 1 + rng.next() % MAX_THREADS;
        let mut child = Command::new(env!("CARGO_BIN_EXE_osmoda-store-crashwriter"))
            .arg(&path)
            .arg(threads.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start writer");
        let stdout = child.stdout.take().expect("stdout");
        let (opened_tx, opened_rx) = mpsc::channel();
        let reader = thread::spawn(move || read_acks(stdout, opened_tx));

        if opened_rx.recv_timeout(OPEN_TIMEOUT).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            panic!("round {round}: writer did not open the store: {stderr}");
        }
        let delay = DELAY_MS.start + rng.next() % (DELAY_MS.end - DELAY_MS.start);
        thread::sleep(Duration::from_millis(delay));
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("wait");
        let acks = reader.join().expect("reader");
        if status.success() || status.code().is_some() {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            panic!("round {round}: writer exited by itself ({status}): {stderr}");
        }

        for (index, hash) in acks.records {
            // An index acknowledged twice with different records means an
            // acknowledged record was lost and its index handed out again.
            if let Some(before) = acked.insert(index, hash.clone()) {
                assert_eq!(before, hash, "round {round}: index {index} was reused");
            }
        }
        if let Some(n) = acks.kv {
            assert!(
                kv_acked.is_none_or(|k| n > k),
                "round {round}: kv counter went back"
            );
            kv_acked = Some(n);
        }
    }

    let store = Store::open(&path).expect("store opens after the last kill");
    let report = store
        .verify()
        .expect("every checksum verifies, indices dense");
    let log = store.log("crash").unwrap();
    let len = log.len().unwrap();
    assert_eq!(report.logs.get("crash"), Some(&len));
    let max = acked
        .keys()
        .max()
        .copied()
        .expect("some appends were acknowledged");
    assert!(
        len > max,
        "log length {len} misses acknowledged index {max}"
    );
    for (index, hash) in &acked {
        let record = log
            .read(*index)
            .unwrap()
            .unwrap_or_else(|| panic!("record {index} lost"));
        assert_eq!(
            &blake3::hash(&record).to_hex().to_string(),
            hash,
            "record {index} changed"
        );
    }
    // The two halves of every batch committed together.
    let left = store.get("left", b"counter").unwrap();
    let right = store.get("right", b"counter").unwrap();
    assert_eq!(left, right, "a batch was torn");
    if let Some(n) = kv_acked {
        let stored = u64::from_be_bytes(left.expect("counter").try_into().expect("8 bytes"));
        assert!(stored >= n, "acknowledged counter {n}, stored {stored}");
    }
    eprintln!(
        "{ROUNDS} kills, {} acknowledged appends (log length {len}), kv counter {kv_acked:?}, {:?}",
        acked.len(),
        started.elapsed()
    );
}
