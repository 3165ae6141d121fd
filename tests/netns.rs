//! Real processes in their own network namespaces, joined by a bridge:
//! they find each other with mDNS alone, talk, lose a link and find each
//! other again; both sides write while apart and agree once the link is
//! back. Needs root and iproute2; skips with a reason otherwise.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{fleet, wait_until, Node};

/// Namespaces and links made for one test; removed on drop.
struct Lab {
    prefix: String,
    nodes: usize,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Lab {
    fn hub(&self) -> String {
        format!("{}hub", self.prefix)
    }

    fn ns(&self, i: usize) -> String {
        format!("{}n{i}", self.prefix)
    }

    /// One hub namespace holding a bridge; each node namespace has a veth
    /// into it, with an address from a range that exists only in the lab.
    fn build(nodes: usize) -> Result<Self, String> {
        let lab = Lab {
            prefix: format!("osm{}", std::process::id() % 100_000),
            nodes,
        };
        let hub = lab.hub();
        ip(&["netns", "add", &hub])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for i in 0..nodes {
            let ns = lab.ns(i);
            let (inner, outer) = (format!("{}v{i}", lab.prefix), format!("{}b{i}", lab.prefix));
            ip(&["netns", "add", &ns])?;
            ip(&[
                "link", "add", &inner, "netns", &ns, "type", "veth", "peer", "name", &outer,
                "netns", &hub,
            ])?;
            ip(&["-n", &hub, "link", "set", &outer, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.213.0.{}/24", i + 1),
                "dev",
                &inner,
            ])?;
            ip(&["-n", &ns, "link", "set", &inner, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", &inner])?;
        }
        Ok(lab)
    }

    fn set_link(&self, i: usize, up: bool) {
        let outer = format!("{}b{i}", self.prefix);
        ip(&[
            "-n",
            &self.hub(),
            "link",
            "set",
            &outer,
            if up { "up" } else { "down" },
        ])
        .expect("link state");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for i in 0..self.nodes {
            let _ = ip(&["netns", "del", &self.ns(i)]);
        }
        let _ = ip(&["netns", "del", &self.hub()]);
    }
}

fn skip_reason() -> Option<String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .map(|o| o.stdout.starts_with(b"0"));
    if root != Some(true) {
        return Some("not running as root".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("iproute2 (`ip`) is not installed".into());
    }
    None
}

fn start_in(node: &mut Node, ns: &str) {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, common::BIN, "--data"])
        .arg(&node.dir)
        .args([
            "run",
            "--listen",
            "/ip4/0.0.0.0/tcp/4001",
            "--listen",
            "/ip4/0.0.0.0/udp/4001/quic-v1",
        ]);
    node.start_with(cmd);
}

#[test]
fn nodes_in_namespaces_find_each_other_with_mdns_and_converge_after_a_cut_link() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipping the network namespace test: {reason}");
        return;
    }
    let lab = match Lab::build(3) {
        Ok(lab) => lab,
        Err(e) => {
            eprintln!("skipping the network namespace test: cannot build namespaces: {e}");
            return;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = fleet(tmp.path(), 3);
    for (i, node) in nodes.iter_mut().enumerate() {
        start_in(node, &lab.ns(i));
    }
    // No bootstrap address anywhere: mDNS alone must mesh them.
    for node in &nodes {
        let meshed = wait_until(Duration::from_secs(40), || node.peer_ids().len() == 2);
        assert!(
            meshed,
            "{} sees {:?}\n{}",
            node.dir.display(),
            node.peer_ids(),
            node.log()
        );
    }
    for peer in nodes[0].json(&["peers"]).as_array().unwrap() {
        assert!(
            peer["address"].as_str().unwrap().contains("10.213.0."),
            "{peer}"
        );
    }
    assert!(nodes[1]
        .cli(&["mesh", "broadcast", "over the bridge"])
        .status
        .success());
    for i in [0, 2] {
        let got = wait_until(Duration::from_secs(10), || {
            nodes[i]
                .inbox_texts()
                .contains(&"over the bridge".to_string())
        });
        assert!(got, "n{i} did not get the broadcast");
    }

    // Cut n2 off; the others notice, then find it again once the link is back.
    lab.set_link(2, false);
    let gone = wait_until(Duration::from_secs(120), || nodes[0].peer_ids().len() == 1);
    assert!(
        gone,
        "n0 still sees n2 after the cut: {:?}",
        nodes[0].peer_ids()
    );
    // Both sides write while apart.
    for (i, title) in [
        (0, "written on n0 while cut"),
        (2, "written on n2 while cut"),
    ] {
        let out = nodes[i].cli(&["knowledge", "put", "--title", title, "--body", "b"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    lab.set_link(2, true);
    let back = wait_until(Duration::from_secs(120), || {
        nodes[0].peer_ids().len() == 2 && nodes[2].peer_ids().len() == 2
    });
    assert!(
        back,
        "n2 did not rejoin: n0 {:?}, n2 {:?}\n{}",
        nodes[0].peer_ids(),
        nodes[2].peer_ids(),
        nodes[2].log()
    );
    assert!(nodes[2]
        .cli(&["mesh", "broadcast", "back again"])
        .status
        .success());
    let got = wait_until(Duration::from_secs(10), || {
        nodes[0].inbox_texts().contains(&"back again".to_string())
    });
    assert!(
        got,
        "n0 did not get n2's broadcast after the link came back"
    );
    // After the link is back, every node holds both sides' writes.
    for (i, node) in nodes.iter().enumerate() {
        let converged = wait_until(Duration::from_secs(60), || {
            let titles: Vec<String> = node.json(&["knowledge", "list"])["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["title"].as_str().map(str::to_string))
                .collect();
            titles.contains(&"written on n0 while cut".to_string())
                && titles.contains(&"written on n2 while cut".to_string())
        });
        assert!(converged, "n{i} did not converge after the link came back");
    }
    for node in nodes.iter_mut() {
        node.stop();
    }
}
