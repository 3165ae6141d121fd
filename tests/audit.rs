//! The node's audit log: operator actions are recorded, the log verifies,
//! and a byte changed on disk is named by `osmoda audit verify`.

mod common;

use common::{fleet, Node};

fn actions(node: &Node) -> Vec<String> {
    node.json(&["audit", "log", "--limit", "1000"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn actions_are_audited_and_a_changed_byte_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = fleet(tmp.path(), 2);
    let node = &mut nodes[0];
    // Offline actions went straight into the store.
    assert_eq!(actions(node), ["fleet.create", "fleet.invite"]);

    node.start_local(&[]);
    let marker = "audit-marker-node";
    let out = node.cli(&["fleet", "invite", "--name", marker]);
    assert!(out.status.success());
    let _ = node.cli(&["mesh", "broadcast", "nobody listens"]);
    let log = node.json(&["audit", "log"]);
    let got: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        [
            "fleet.create",
            "fleet.invite",
            "node.start",
            "fleet.invite",
            "mesh.broadcast"
        ]
    );
    assert!(
        log[4]["outcome"].as_str().unwrap().starts_with("failed"),
        "{}",
        log[4]
    );
    assert_eq!(node.json(&["audit", "verify"])["ok"], true);
    node.stop();
    assert_eq!(actions(node).last().map(String::as_str), Some("node.stop"));
    assert_eq!(node.json(&["audit", "verify"])["ok"], true);

    // Change one byte of entry 3 (the invite of the marker node) on disk.
    let path = node.dir.join("state.redb");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())
        .expect("the entry's bytes are in the file");
    bytes[at] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    let out = node.cli(&["--json", "audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["bad_entry"], 3, "{report}");
    let human = node.cli(&["audit", "verify"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("entry 3"));
}
