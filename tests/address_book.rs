//! A node that restarts on new random ports finds the fleet again by
//! itself: it remembered where its peers listen. Three nodes without mDNS
//! on loopback; c knows only b as bootstrap; b comes back on new ports with
//! no bootstrap address at all, so nobody can dial it and it can only dial
//! what its address book holds.

mod common;

use std::time::Duration;

use common::{fleet, wait_until, Node};

fn sees(node: &Node, ids: &[&String]) -> bool {
    let peers = node.peer_ids();
    ids.iter().all(|id| peers.contains(id))
}

/// Log lines of a node that say a peer was written into its address book.
fn remembered(node: &Node) -> usize {
    node.log()
        .matches("a new peer is in the address book")
        .count()
}

#[test]
fn a_node_back_on_new_ports_finds_the_peers_it_remembered() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = fleet(tmp.path(), 3);
    let (a, b, c) = (0, 1, 2);
    nodes[a].start_local(&[]);
    let a_addr = nodes[a].addr("tcp");
    nodes[b].start_local(std::slice::from_ref(&a_addr));
    let b_addr = nodes[b].addr("tcp");
    nodes[c].start_local(std::slice::from_ref(&b_addr));
    let ids: Vec<String> = nodes.iter().map(Node::node_id).collect();
    for (i, node) in nodes.iter().enumerate() {
        let others: Vec<&String> = ids.iter().filter(|id| **id != ids[i]).collect();
        assert!(
            wait_until(Duration::from_secs(30), || sees(node, &others)),
            "n{i} did not meet the others:\n{}",
            node.log()
        );
    }
    assert!(
        wait_until(Duration::from_secs(10), || remembered(&nodes[b]) >= 2),
        "b did not remember its peers:\n{}",
        nodes[b].log()
    );

    nodes[b].stop();
    nodes[b].start_local(&[]);
    let moved = nodes[b].addr("tcp");
    assert_ne!(moved, b_addr, "b came back on the same port");
    assert!(
        wait_until(Duration::from_secs(30), || sees(
            &nodes[b],
            &[&ids[a], &ids[c]]
        )),
        "b did not find the fleet again:\n{}",
        nodes[b].log()
    );
    // And the fleet has b again, at its new address.
    for i in [a, c] {
        assert!(
            wait_until(Duration::from_secs(30), || sees(&nodes[i], &[&ids[b]])),
            "n{i} does not see b again"
        );
    }
}
