//! The node's audit log: operator actions are recorded, the log verifies,
//! a byte changed on disk is named by `osmoda audit verify`, and another
//! node's log is read verified, from its owner or a relay whose copy is
//! reported as behind the fleet's heads when it is.

mod common;

use common::{fleet, Node};

fn actions(node: &Node) -> Vec<String> {
    node.json(&["audit", "log", "--limit", "1000"])["entries"]
        .clone()
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
    // The root's direct invite: an enrollment token would also put the
    // name in the node's invites table, and the byte flipped below must
    // be the audit entry's.
    let root_key = node.dir.join("root.key");
    let out = node.cli(&[
        "fleet",
        "invite",
        "--name",
        marker,
        "--root-key",
        root_key.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let _ = node.cli(&["mesh", "broadcast", "nobody listens"]);
    let log = node.json(&["audit", "log"])["entries"].clone();
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

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "control.sock" || name == "lock" {
            continue;
        }
        std::fs::copy(entry.path(), to.join(&name)).unwrap();
    }
}

fn forked_nodes(node: &Node) -> Vec<String> {
    node.json(&["audit", "forks"])
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["node_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_node_that_forks_its_log_is_reported_by_the_others() {
    use std::time::Duration;
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = fleet(tmp.path(), 3);
    nodes[0].start_local(&[]);
    let boot = nodes[0].addr("tcp");
    nodes[1].start_local(std::slice::from_ref(&boot));
    // A backup of n2 taken before it ever ran: restoring it later rewrites
    // history that the fleet has already seen signed.
    let backup = tmp.path().join("n2-backup");
    copy_dir(&nodes[2].dir, &backup);

    let run = |node: &mut Node, label: &str| {
        node.start_local(std::slice::from_ref(&boot));
        assert!(common::wait_until(Duration::from_secs(20), || node
            .peer_ids()
            .len()
            == 2));
        for i in 0..3 {
            let _ = node.cli(&["mesh", "broadcast", &format!("{label} {i}")]);
            std::thread::sleep(Duration::from_millis(600));
        }
    };
    run(&mut nodes[2], "first life");
    let victim = nodes[2].node_id();
    let seen = common::wait_until(Duration::from_secs(10), || {
        nodes[0]
            .json(&["audit", "heads"])
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["node_id"] == victim.as_str() && h["size"].as_u64() >= Some(4))
    });
    assert!(seen, "n0 never saw n2's checkpoints");
    assert!(forked_nodes(&nodes[0]).is_empty());
    nodes[2].stop();

    std::fs::remove_dir_all(&nodes[2].dir).unwrap();
    copy_dir(&backup, &nodes[2].dir);
    run(&mut nodes[2], "second life");

    for i in [0, 1] {
        // Generous: under a loaded CI machine the heads exchange that
        // carries the second life can take a while.
        let reported = common::wait_until(Duration::from_secs(60), || {
            forked_nodes(&nodes[i]).contains(&victim)
        });
        assert!(reported, "n{i} did not report the fork");
        assert!(
            forked_nodes(&nodes[i]).iter().all(|n| n == &victim),
            "an honest node was accused"
        );
    }
    let audited = nodes[0].json(&["audit", "log", "--limit", "1000"])["entries"]
        .clone()
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "audit.fork" && e["target"] == victim.as_str());
    assert!(audited, "n0 did not audit the fork");
}

#[test]
fn a_member_fetches_and_verifies_another_nodes_log() {
    use std::time::Duration;
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = fleet(tmp.path(), 3);
    nodes[0].start_local(&[]);
    let boot = nodes[0].addr("tcp");
    nodes[1].start_local(std::slice::from_ref(&boot));
    nodes[2].start_local(&[boot]);
    assert!(common::wait_until(Duration::from_secs(20), || nodes
        .iter()
        .all(|n| n.peer_ids().len() == 2)));
    // Enough entries for several requests (48 records each).
    for i in 0..60 {
        let _ = nodes[0].cli(&["mesh", "broadcast", &format!("entry {i}")]);
    }
    let id = nodes[0].node_id();
    let report = nodes[1].json(&["audit", "verify", "--node", &id]);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["served_by"], id.as_str(), "{report}");
    let verified = report["entries"].as_u64().unwrap();
    assert!(verified >= 63, "{report}");

    // Entries from the owner, each verified, said to come from it.
    let theirs = nodes[1].json(&["audit", "log", "--node", &id, "--limit", "10"]);
    let own = nodes[0].json(&["audit", "log", "--limit", "10"])["entries"].clone();
    assert_eq!(theirs["entries"], own);
    assert_eq!(theirs["source"]["served_by"], id.as_str(), "{theirs}");
    assert!(theirs["source"].get("fleet_size").is_none(), "{theirs}");
    assert!(theirs["source"].get("fork").is_none(), "{theirs}");

    // Neither an id nor the name of a connected node: nothing found.
    let out = nodes[1].cli(&["audit", "verify", "--node", "not-a-node"]);
    assert_eq!(out.status.code(), Some(5));
    // A name works where an id does.
    let by_name = nodes[1].json(&["audit", "verify", "--node", "n0"]);
    assert_eq!(by_name["ok"], true, "{by_name}");

    // The owner goes on writing; the fleet's heads learn its newer
    // checkpoint, but n1's copy stays as it was verified.
    let relay = nodes[1].node_id();
    for i in 0..5 {
        let _ = nodes[0].cli(&["mesh", "broadcast", &format!("later {i}")]);
    }
    let known_to = |node: &Node| -> u64 {
        node.json(&["audit", "heads"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["node_id"] == id.as_str())
            .filter_map(|h| h["size"].as_u64())
            .max()
            .unwrap_or(0)
    };
    assert!(
        common::wait_until(Duration::from_secs(60), || known_to(&nodes[2])
            >= verified + 5),
        "n2 never heard of the owner's newer checkpoint"
    );
    let fleet = known_to(&nodes[2]);

    // With the owner gone, the copy n1 verified is served to n2 by n1,
    // still checked against the owner's signature, and reported as behind
    // what the fleet knows rather than passed off as current.
    nodes[0].stop();
    let report = nodes[2].json(&["audit", "verify", "--node", &id]);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["served_by"], relay.as_str(), "{report}");
    assert_eq!(report["entries"].as_u64().unwrap(), verified, "{report}");
    assert!(report["fleet_size"].as_u64().unwrap() >= fleet, "{report}");
    let relayed = nodes[2].json(&["audit", "log", "--node", &id, "--limit", "10"]);
    assert_eq!(relayed["entries"], own);
    let source = &relayed["source"];
    assert_eq!(source["served_by"], relay.as_str(), "{relayed}");
    assert_eq!(source["checkpoint_size"].as_u64().unwrap(), verified);
    assert!(source["fleet_size"].as_u64().unwrap() >= fleet, "{relayed}");
    let text = nodes[2].cli(&["audit", "log", "--node", &id, "--limit", "10"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("BEHIND: served up to seq {}", verified - 1)),
        "{text}"
    );
}
