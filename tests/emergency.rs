//! Fleet emergency commands over five real nodes: a lockdown signed by an
//! admin reaches every member and is in every audit log; the same command
//! signed by a plain member is ignored by all; a replayed command is ignored.

mod common;

use std::time::{Duration, Instant};

use common::{fleet, wait_until, Node};

fn locked(node: &Node) -> bool {
    node.status()["agents"]["lockdown"] == true
}

/// Entries of `action` in a node's audit log, with their outcome.
fn outcomes(node: &Node, action: &str) -> Vec<String> {
    node.json(&["audit", "log", "--limit", "4000"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .map(|e| {
            format!(
                "{} {}",
                e["outcome"].as_str().unwrap_or(""),
                e["details"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn fleet_lockdown_from_an_admin_reaches_all_and_forgeries_and_replays_do_not() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = fleet(tmp.path(), 5);
    nodes[0].start_local(&[]);
    let boot = nodes[0].addr("tcp");
    for node in &mut nodes[1..] {
        node.start_local(std::slice::from_ref(&boot));
    }
    assert!(
        wait_until(Duration::from_secs(30), || nodes
            .iter()
            .all(|n| n.peer_ids().len() == 4)),
        "the fleet did not connect"
    );
    for node in &nodes {
        let out = node.cli(&["agent", "add", "worker", "--", "/bin/sh", "-c", "sleep 600"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Gossip meshes form on heartbeats; give them one.
    std::thread::sleep(Duration::from_secs(2));

    // A plain member signs a lockdown: everyone ignores it and says so.
    let forged = nodes[1].json(&["lockdown", "--fleet"]);
    assert!(
        forged["here"].as_str().unwrap().contains("not an admin"),
        "{forged}"
    );
    for (i, node) in nodes.iter().enumerate() {
        let seen = wait_until(Duration::from_secs(20), || {
            outcomes(node, "emergency.lockdown")
                .iter()
                .any(|o| o.starts_with("denied") && o.contains("not an admin"))
        });
        assert!(seen, "n{i} did not record the forged lockdown as ignored");
        assert!(!locked(node), "n{i} obeyed a member's lockdown");
    }

    // The admin's lockdown reaches every node within seconds.
    let sent = Instant::now();
    let real = nodes[0].json(&["lockdown", "--fleet"]);
    assert_eq!(real["here"], "applied", "{real}");
    for (i, node) in nodes.iter().enumerate() {
        assert!(
            wait_until(Duration::from_secs(20), || locked(node)),
            "n{i} is not locked down:\n{}",
            node.log()
        );
    }
    eprintln!(
        "lockdown --fleet to the last of 5 nodes locked: {:?} (polled)",
        sent.elapsed()
    );
    for (i, node) in nodes.iter().enumerate() {
        assert!(
            outcomes(node, "emergency.lockdown")
                .iter()
                .any(|o| o.starts_with("ok")),
            "n{i} has no audit entry for the lockdown"
        );
        let agents = node.json(&["agent", "list"]);
        assert_eq!(agents[0]["state"]["state"], "stopped", "n{i}: {agents}");
        assert_eq!(
            node.cli(&["agent", "start", "worker"]).status.code(),
            Some(4)
        );
    }

    // Unlock, then replay the old lockdown: ignored everywhere.
    let unlock = nodes[0].json(&["unlock", "--fleet"]);
    assert_eq!(unlock["here"], "applied", "{unlock}");
    for (i, node) in nodes.iter().enumerate() {
        assert!(
            wait_until(Duration::from_secs(20), || !locked(node)),
            "n{i} is still locked down"
        );
    }
    let old = real["command"].as_str().unwrap();
    let replay = nodes[3].json(&["relay", old]);
    assert!(
        replay["here"].as_str().unwrap().contains("replay"),
        "{replay}"
    );
    for (i, node) in nodes.iter().enumerate() {
        let seen = wait_until(Duration::from_secs(20), || {
            outcomes(node, "emergency.lockdown")
                .iter()
                .any(|o| o.starts_with("denied") && o.contains("replay"))
        });
        assert!(seen, "n{i} did not record the replay as ignored");
        assert!(!locked(node), "n{i} obeyed a replayed lockdown");
    }

    // A lockdown survives a restart.
    nodes[2].json(&["lockdown"]);
    nodes[2].stop();
    nodes[2].start_local(std::slice::from_ref(&boot));
    assert!(locked(&nodes[2]), "the lockdown did not survive a restart");
    let agents = nodes[2].json(&["agent", "list"]);
    assert_eq!(agents[0]["state"]["state"], "stopped", "{agents}");
}
