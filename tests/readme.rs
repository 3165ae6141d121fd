//! The README's "Three nodes on one machine" block, pasted into bash as a
//! newcomer would, works: three nodes of one fleet, a broadcast that reaches
//! the third, a direct message by name. The block is read from README.md,
//! so the test and the README cannot drift apart.

mod common;

use common::{Node, BIN};
use std::path::Path;
use std::process::Command;

/// The first `sh` code block after the heading `## Three nodes on one machine`.
fn three_nodes_block() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let section = readme
        .split("## Three nodes on one machine")
        .nth(1)
        .expect("the README has a three-nodes section");
    let start = section.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let len = section[start..].find("```").expect("the block ends");
    section[start..start + len].to_string()
}

#[test]
fn the_readmes_three_node_block_runs_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_str().unwrap();
    let bin_dir = Path::new(BIN).parent().unwrap();
    // The build and PATH lines are the test's own; everything else runs as
    // written, with the data folders moved into a private directory.
    let body: String = three_nodes_block()
        .lines()
        .filter(|l| !l.starts_with("cargo build") && !l.starts_with("export PATH"))
        .map(|l| l.replace("/tmp/", &format!("{root}/")))
        .collect::<Vec<_>>()
        .join("\n");
    let script = format!("set -eu\n{body}\nwait\n");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("PATH", path)
        .env_remove("OSMODA_DATA")
        // Loopback only, and no multicast off the machine.
        .env("OSMODA_LISTEN", "/ip4/127.0.0.1/tcp/0")
        .env("OSMODA_NO_MDNS", "1")
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the block failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("delivered"), "{stdout}");
    assert!(stdout.contains("hello fleet"), "c's inbox:\n{stdout}");
    // One fleet, not three: b and c joined a's.
    let peers_line = stdout
        .lines()
        .filter(|l| l.starts_with("b ") || l.starts_with("c "))
        .count();
    assert_eq!(peers_line, 2, "a's peers:\n{stdout}");
    assert!(
        stderr.contains("NEW fleet") || stdout.contains("created fleet"),
        "{stdout}\n{stderr}"
    );
    // The nodes were stopped by the block; their folders say what happened.
    let c = Node::new(tmp.path(), "c");
    let log = c.json(&["audit", "log", "--limit", "1000"])["entries"].clone();
    assert!(log.to_string().contains("node.start"), "{log}");
}
