//! Five real nodes replicate knowledge: writes on every node reach every
//! node, and after a split (one group stopped while the other writes, then
//! the reverse) they agree again on their own.

mod common;

use std::time::Duration;

use common::{fleet, free_port, start_meshed as start, wait_until, Node};

fn titles(node: &Node) -> Vec<String> {
    let mut t: Vec<String> = node.json(&["knowledge", "list", "--limit", "1000"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["title"].as_str().unwrap().to_string())
        .collect();
    t.sort();
    t
}

fn put(node: &Node, title: &str) {
    let out = node.cli(&["knowledge", "put", "--title", title, "--body", "replicated"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn converge(nodes: &[&Node], want: &[String]) {
    for node in nodes {
        let ok = wait_until(Duration::from_secs(45), || titles(node) == want);
        assert!(
            ok,
            "{} has {:?}, want {:?}\n{}",
            node.dir.display(),
            titles(node),
            want,
            node.log()
        );
    }
}

#[test]
fn five_nodes_converge_and_heal_after_a_split() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = fleet(tmp.path(), 5);
    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
    for (i, node) in nodes.iter_mut().enumerate() {
        start(node, &ports, i);
    }
    for (i, node) in nodes.iter().enumerate() {
        put(node, &format!("written on n{i}"));
    }
    let mut want: Vec<String> = (0..5).map(|i| format!("written on n{i}")).collect();
    want.sort();
    converge(&nodes.iter().collect::<Vec<_>>(), &want);

    // Routine definitions replicate too. They run as code on members, so
    // only an admin writes them: a member's node refuses, naming why.
    let add = [
        "routine",
        "add",
        "--name",
        "fleet-backup",
        "--schedule",
        "0 3 * * *",
        "--command",
        "true",
    ];
    let refused = nodes[1].cli(&add);
    assert_eq!(refused.status.code(), Some(4), "a member writes no routine");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("only admin nodes"));
    let out = nodes[0].cli(&add);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for node in &nodes {
        let has = wait_until(Duration::from_secs(45), || {
            node.json(&["routine", "list"])
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "fleet-backup")
        });
        assert!(has, "{} did not get the routine", node.dir.display());
    }
    // By now the gossip mesh has formed: the routine went out as a push,
    // and members applied it on arrival rather than by a sync. Their audit
    // entry names the routine that changed, not only that the book did.
    let routine_id = nodes[1].json(&["routine", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pushed = nodes
        .iter()
        .filter(|node| {
            audited(node)
                .iter()
                .any(|e| e["action"] == "routine.push" && names(e, &routine_id))
        })
        .count();
    assert!(pushed > 0, "no member applied the routine as a push");

    // Split: {n3, n4} stop while {n0, n1, n2} write; then {n0, n1, n2} stop
    // while {n3, n4} write; then everyone is back.
    nodes[3].stop();
    nodes[4].stop();
    put(&nodes[0], "side A one");
    put(&nodes[2], "side A two");
    converge(&[&nodes[0], &nodes[1], &nodes[2]], &{
        let mut w = want.clone();
        w.extend(["side A one".to_string(), "side A two".to_string()]);
        w.sort();
        w
    });
    for node in &mut nodes[..3] {
        node.stop();
    }
    for i in [3, 4] {
        start(&mut nodes[i], &ports, i);
    }
    put(&nodes[3], "side B one");
    put(&nodes[4], "side B two");
    for (i, node) in nodes.iter_mut().enumerate().take(3) {
        start(node, &ports, i);
    }
    want.extend(["side A one", "side A two", "side B one", "side B two"].map(String::from));
    want.sort();
    converge(&nodes.iter().collect::<Vec<_>>(), &want);
    for node in &nodes {
        assert_eq!(node.json(&["audit", "verify"])["ok"], true);
    }
    // n0 was stopped while side B wrote: it got those entries by sync, and
    // its audit entry for the sync names them.
    let side_b = nodes[3].json(&["knowledge", "list", "--limit", "1000"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["title"] == "side B one")
        .map(|e| e["id"].as_str().unwrap().to_string())
        .unwrap();
    // Audited in the background, just after the sync stored the entries.
    let synced = wait_until(Duration::from_secs(10), || {
        audited(&nodes[0])
            .into_iter()
            .any(|e| e["action"] == "knowledge.sync" && names(&e, &side_b))
    });
    assert!(synced, "no sync audit on n0 names {side_b}");
}

fn audited(node: &Node) -> Vec<serde_json::Value> {
    node.json(&["audit", "log", "--limit", "1000"])["entries"]
        .clone()
        .as_array()
        .unwrap()
        .clone()
}

fn names(entry: &serde_json::Value, id: &str) -> bool {
    entry["details"].as_str().is_some_and(|d| d.contains(id))
}
