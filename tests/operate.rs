//! What an operator deploys with: `[[agents]]` and `labels` in config.toml
//! applied by a real node, `run --log-format json`, and the shell
//! completion scripts.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{fleet, wait_until, Node, BIN};
use serde_json::Value;

fn state(node: &Node, name: &str) -> String {
    node.json(&["agent", "show", name])["state"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn wait_running(node: &Node, name: &str) {
    let up = wait_until(Duration::from_secs(30), || state(node, name) == "running");
    assert!(
        up,
        "agent {name} is not running: {}\n{}",
        node.json(&["agent", "show", name]),
        node.log()
    );
}

/// Two agents declared in the file; each prints its version and sleeps.
/// Unconfined, so that the test is about the file and not about the host's
/// confinement (tests/confinement.rs covers that).
fn config(version_a: &str, with_b: bool) -> String {
    let mut text = format!(
        "[labels]\nsite = \"plant 3\"\nrack = \"r7\"\n\n\
         [[agents]]\nname = \"alpha\"\ncommand = \"/bin/sh\"\n\
         args = [\"-c\", \"echo alpha-{version_a}; exec sleep 600\"]\n\
         restart = \"always\"\nmemory = \"64M\"\nunconfined = true\n\
         skills = [\"index-{version_a}\"]\n"
    );
    if with_b {
        text.push_str(
            "\n[[agents]]\nname = \"beta\"\ncommand = \"/bin/sh\"\n\
             args = [\"-c\", \"echo beta; exec sleep 600\"]\nunconfined = true\n\
             description = \"the second\"\n",
        );
    }
    text
}

fn names(node: &Node) -> Vec<String> {
    node.json(&["agent", "list"])
        .as_array()
        .expect("agent list")
        .iter()
        .filter_map(|a| a["spec"]["name"].as_str().map(str::to_string))
        .collect()
}

fn audit_actions(node: &Node) -> String {
    node.json(&["audit", "log", "--limit", "1000"])["entries"].to_string()
}

#[test]
fn agents_and_labels_from_the_config_file_are_applied_at_every_start() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = fleet(tmp.path(), 1).remove(0);
    let file = node.dir.join("config.toml");
    std::fs::write(&file, config("v1", true)).unwrap();
    node.start_local(&[]);

    let status = node.status();
    assert_eq!(status["labels"]["site"], "plant 3", "{status}");
    let text = node.cli(&["status"]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("label     rack = r7"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
    wait_running(&node, "alpha");
    wait_running(&node, "beta");
    let shown = node.json(&["agent", "show", "alpha"]);
    assert_eq!(shown["spec"]["limits"]["memory_bytes"], 64 << 20, "{shown}");
    assert_eq!(shown["spec"]["created_by"], "operator", "{shown}");
    assert_eq!(shown["card"]["skills"][0], "index-v1", "{shown}");
    // An agent the file does not name is the CLI's, and stays.
    let out = node.cli(&[
        "agent",
        "add",
        "gamma",
        "--unconfined",
        "--",
        "/bin/sh",
        "-c",
        "exec sleep 600",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let added = audit_actions(&node);
    assert_eq!(added.matches("agent.add").count(), 3, "{added}");
    node.stop();

    // alpha changes, beta leaves the file.
    std::fs::write(&file, config("v2", false)).unwrap();
    node.start_local(&[]);
    wait_running(&node, "alpha");
    let shown = node.json(&["agent", "show", "alpha"]);
    assert!(
        shown["spec"]["args"].to_string().contains("alpha-v2"),
        "{shown}"
    );
    let logged = wait_until(Duration::from_secs(10), || {
        node.json(&["agent", "logs", "alpha"])
            .to_string()
            .contains("alpha-v2")
    });
    assert!(logged, "alpha did not run its new spec");
    let mut listed = names(&node);
    listed.sort();
    assert_eq!(listed, ["alpha", "beta", "gamma"]);
    wait_running(&node, "beta");
    let actions = audit_actions(&node);
    assert_eq!(actions.matches("agent.update").count(), 1, "{actions}");
    assert_eq!(actions.matches("agent.add").count(), 3, "{actions}");
    // Its card follows the file too.
    assert_eq!(actions.matches("agent.edit").count(), 1, "{actions}");
    let shown = node.json(&["agent", "show", "alpha"]);
    assert_eq!(shown["card"]["skills"][0], "index-v2", "{shown}");
    node.stop();

    // Unchanged: no update, no add.
    node.start_local(&[]);
    wait_running(&node, "alpha");
    let actions = audit_actions(&node);
    assert_eq!(actions.matches("agent.update").count(), 1, "{actions}");
    assert_eq!(actions.matches("agent.edit").count(), 1, "{actions}");
    node.stop();
}

#[test]
fn a_bad_config_agent_or_label_stops_the_start_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let node = fleet(tmp.path(), 1).remove(0);
    for (text, reason) in [
        ("[labels]\n\"Bad Key\" = \"x\"\n", "label key"),
        (
            "[[agents]]\nname = \"a\"\ncommand = \"x\"\nring = 3\n",
            "ring",
        ),
        (
            "[[agents]]\nname = \"a\"\ncommand = \"x\"\n[[agents]]\nname = \"a\"\ncommand = \"y\"\n",
            "twice",
        ),
    ] {
        std::fs::write(node.dir.join("config.toml"), text).unwrap();
        // A check that lets the entry through starts a node, which runs
        // until stopped: give it a bound, so that the test fails instead.
        let mut child = node
            .command(&["run", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let exited = wait_until(Duration::from_secs(30), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{text}: the node started");
        }
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success(), "{text}");
        let err = common::stderr(&out);
        assert!(err.contains(reason), "{text}: {err}");
    }
}

/// Starts `osmoda run --log-format json` until its control socket answers,
/// then stops it and returns what it logged.
fn json_log_of_a_run(dir: &Path) -> String {
    let mut node = Node::at(dir);
    node.start(&[
        "--log-format",
        "json",
        "--no-mdns",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
    ]);
    node.stop();
    node.log()
}

#[test]
fn json_logs_are_one_object_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let node = fleet(tmp.path(), 1).remove(0);
    let log = json_log_of_a_run(&node.dir);
    // The node's own banner and warnings for people go to stderr too, as
    // plain text; every line that looks like a log record must parse.
    let records: Vec<Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(records.len() >= 2, "{log}");
    for record in &records {
        assert!(record["level"].is_string(), "{record}");
        assert!(record["target"].is_string(), "{record}");
        assert!(record["fields"].is_object(), "{record}");
        assert!(record["timestamp"].is_string(), "{record}");
    }
    assert!(
        records
            .iter()
            .any(|r| r["fields"]["message"] == "stopped" && r["level"] == "INFO"),
        "{log}"
    );
}

#[test]
fn completion_scripts_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = std::process::Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {}", common::stderr(&out));
        let script = String::from_utf8(out.stdout).unwrap();
        for sub in ["run", "join", "knowledge", "agent", "completions"] {
            assert!(script.contains(sub), "{shell} script lacks {sub}");
        }
    }
    let out = std::process::Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("complete -F _osmoda"), "{script}");
    assert!(
        script.contains("--log-format"),
        "bash script lacks run's flags"
    );
    let bad = std::process::Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
