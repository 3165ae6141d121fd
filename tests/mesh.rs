//! Several real nodes over loopback: discovery through a bootstrap address
//! and Kademlia, broadcast and direct messages, hybrid key exchange on every
//! link, and revocation cutting a live node off.

mod common;

use std::time::Duration;

use common::{fleet, wait_until, Node};

fn connect_all(nodes: &mut [Node]) {
    nodes[0].start_local(&[]);
    let boot = nodes[0].addr("tcp");
    for node in nodes.iter_mut().skip(1) {
        node.start_local(std::slice::from_ref(&boot));
    }
    let want = nodes.len() - 1;
    for node in nodes.iter() {
        let meshed = wait_until(Duration::from_secs(30), || node.peer_ids().len() == want);
        assert!(
            meshed,
            "{} sees {:?}\n{}",
            node.dir.display(),
            node.peer_ids(),
            node.log()
        );
    }
}

#[test]
fn four_nodes_mesh_broadcast_and_show_hybrid_links() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = fleet(tmp.path(), 4);
    connect_all(&mut nodes);

    // Every link uses the hybrid exchange, and every peer is a verified member.
    for node in &nodes {
        for peer in node.json(&["peers"]).as_array().unwrap() {
            let kx = peer["key_exchange"].as_str().unwrap();
            assert!(
                kx.contains("ML-KEM-768") || kx.contains("MLKEM768"),
                "{peer}"
            );
            assert!(peer["name"].as_str().unwrap().starts_with('n'), "{peer}");
            assert!(
                ["tcp", "quic"].contains(&peer["transport"].as_str().unwrap()),
                "{peer}"
            );
        }
    }

    // A broadcast from a node that only knew the bootstrap reaches all others.
    let out = nodes[3].cli(&["mesh", "broadcast", "hello from n3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for node in &nodes[..3] {
        let got = wait_until(Duration::from_secs(10), || {
            node.inbox_texts().contains(&"hello from n3".to_string())
        });
        assert!(got, "{} did not get the broadcast", node.dir.display());
    }
    assert!(
        !nodes[3]
            .inbox_texts()
            .contains(&"hello from n3".to_string()),
        "own broadcast echoed"
    );

    // A direct message by name reaches only its target.
    let out = nodes[1].cli(&["mesh", "send", "n2", "just for n2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(nodes[2].inbox_texts().contains(&"just for n2".to_string()));
    assert!(!nodes[0].inbox_texts().contains(&"just for n2".to_string()));

    for node in nodes.iter_mut() {
        node.stop();
    }
}

#[test]
fn revocation_cuts_a_live_node_off_and_keeps_it_out() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = fleet(tmp.path(), 3);
    connect_all(&mut nodes);
    let victim = nodes[2].node_id();

    let out = nodes[0].cli(&["fleet", "revoke", &victim]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for node in &nodes[..2] {
        let cut = wait_until(Duration::from_secs(10), || {
            !node.peer_ids().contains(&victim)
        });
        assert!(
            cut,
            "{} still connected to the revoked node",
            node.dir.display()
        );
    }
    // The revocation was gossiped to n1 and stored there.
    let stored = wait_until(Duration::from_secs(5), || {
        nodes[1].dir.join("revocations").exists()
    });
    assert!(stored, "n1 did not store the revocation");
    // n0's operator revoked; n1 heard it from a peer. Both audited it.
    let audited = |node: &Node, action: &str| {
        node.json(&["audit", "log", "--limit", "1000"])["entries"]
            .clone()
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == action && e["target"] == victim.as_str())
    };
    assert!(audited(&nodes[0], "fleet.revoke"));
    assert!(audited(&nodes[1], "fleet.revocation"));

    // The revoked node keeps trying (bootstrap retries) and stays out.
    std::thread::sleep(Duration::from_secs(6));
    assert!(nodes[2].peer_ids().is_empty(), "revoked node got back in");
    assert!(!nodes[0].peer_ids().contains(&victim));
    assert!(!nodes[1].peer_ids().contains(&victim));

    // Its messages reach no one.
    let _ = nodes[2].cli(&["mesh", "broadcast", "from the revoked"]);
    std::thread::sleep(Duration::from_secs(1));
    assert!(!nodes[0]
        .inbox_texts()
        .contains(&"from the revoked".to_string()));

    // A member that restarts remembers the revocation.
    nodes[1].stop();
    let boot = nodes[0].addr("tcp");
    nodes[1].start_local(&[boot]);
    let back = wait_until(Duration::from_secs(20), || nodes[1].peer_ids().len() == 1);
    assert!(back, "n1 did not reconnect to n0");
    assert!(!nodes[1].peer_ids().contains(&victim));
}
