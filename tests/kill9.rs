//! A node killed with SIGKILL in the middle of writes, again and again,
//! restarts with every write it acknowledged, a verifying audit chain and
//! documents that load.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Node;

const ROUNDS: usize = 8;
const WRITERS: usize = 3;

#[test]
fn acknowledged_writes_survive_kill_9_in_a_loop() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Node::new(tmp.path(), "n0");
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    for round in 0..ROUNDS {
        node.start(&["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"]);
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (stop, acked) = (stop.clone(), acked.clone());
                let dir = node.dir.clone();
                std::thread::spawn(move || {
                    let me = Node::new(dir.parent().unwrap(), "n0");
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let title = format!("r{round} w{w} #{i}");
                        let out = me.cli(&["knowledge", "put", "--title", &title, "--body", "x"]);
                        if out.status.success() {
                            let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
                            acked.lock().unwrap().push(id);
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        // Somewhere between 0.2 and 1.2 s into the writes.
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(200 + (seed >> 33) % 1000));
        node.kill();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
    }
    node.start(&["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= ROUNDS,
        "too few writes to mean anything: {}",
        acked.len()
    );
    let stored: HashSet<String> = node.json(&["knowledge", "list", "--limit", "10000"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {lost:?}",
        lost.len()
    );
    eprintln!(
        "{} acknowledged writes over {ROUNDS} kills, none lost",
        acked.len()
    );
    let report = node.json(&["audit", "verify"]);
    assert_eq!(report["ok"], true, "{report}");
    let puts = node.json(&["audit", "log", "--limit", "100000"])["entries"]
        .clone()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "knowledge.put")
        .count();
    assert!(
        puts >= acked.len(),
        "{puts} audited puts for {} acknowledged",
        acked.len()
    );
    node.stop();
}
