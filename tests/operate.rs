//! What an operator deploys with: `run --log-format json` and the shell
//! completion scripts.

mod common;

use std::path::Path;

use common::{fleet, Node, BIN};
use serde_json::Value;

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
