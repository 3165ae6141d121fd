//! Knowledge entries and routine definitions on one node: every command of
//! the contract, clear refusals, and nothing acknowledged lost to kill -9.

mod common;

use common::{fleet, stderr, Node};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn put(node: &Node, title: &str, body: &str, tags: &[&str]) -> String {
    let mut args = vec!["knowledge", "put", "--title", title, "--body", body];
    for t in tags {
        args.extend(["--tag", t]);
    }
    let out = node.cli(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

#[test]
fn knowledge_commands_work_and_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = fleet(tmp.path(), 1);
    let node = &mut nodes[0];
    node.start_local(&[]);

    let pump = put(
        node,
        "Pump 3 manual",
        "Replace the seal every 500 hours",
        &["pumps", "manuals"],
    );
    let fridge = put(node, "Fridge", "Defrost weekly", &["kitchen"]);
    let file = node.dir.join("..").join("body.txt");
    std::fs::write(&file, "from a file").unwrap();
    let out = node.cli(&[
        "knowledge",
        "put",
        "--title",
        "Filed",
        "--file",
        file.to_str().unwrap(),
    ]);
    let filed = stdout(&out);

    let entry = node.json(&["knowledge", "get", &pump]);
    assert_eq!(entry["body"], "Replace the seal every 500 hours");
    assert_eq!(entry["tags"], serde_json::json!(["manuals", "pumps"]));
    assert_eq!(
        node.json(&["knowledge", "get", &filed])["body"],
        "from a file"
    );

    // A listing is a page ({"items", "next_cursor"}); a search a list.
    let ids = |v: serde_json::Value| -> Vec<String> {
        let list = if v.is_object() { v["items"].clone() } else { v };
        list.as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(node.json(&["knowledge", "list"])),
        [filed.clone(), fridge.clone(), pump.clone()]
    );
    assert_eq!(
        ids(node.json(&["knowledge", "list", "--tag", "pumps"])),
        std::slice::from_ref(&pump)
    );
    assert_eq!(
        ids(node.json(&["knowledge", "search", "SEAL hours"])),
        std::slice::from_ref(&pump)
    );
    assert!(ids(node.json(&["knowledge", "search", "nothing like this"])).is_empty());

    // An update changes what it names and keeps the rest; tags are
    // replaced as a whole.
    let out = node.cli(&[
        "knowledge",
        "update",
        &pump,
        "--body",
        "Seal every 400 hours",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entry = node.json(&["knowledge", "get", &pump]);
    assert_eq!(entry["body"], "Seal every 400 hours");
    assert_eq!(entry["tags"], serde_json::json!(["manuals", "pumps"]));
    assert!(node
        .cli(&["knowledge", "update", &pump, "--tag", "a", "--tag", "b"])
        .status
        .success());
    assert_eq!(
        node.json(&["knowledge", "get", &pump])["tags"],
        serde_json::json!(["a", "b"])
    );
    assert!(node
        .cli(&["knowledge", "update", &pump, "--no-tags"])
        .status
        .success());
    assert_eq!(
        node.json(&["knowledge", "get", &pump])["tags"],
        serde_json::json!([])
    );
    let nothing = node.cli(&["knowledge", "update", &pump]);
    assert_eq!(
        nothing.status.code(),
        Some(2),
        "an update that changes nothing"
    );

    assert!(node.cli(&["knowledge", "rm", &fridge]).status.success());
    // Gone: not found (exit 5), for a read, an update and a second delete.
    assert_eq!(
        node.cli(&["knowledge", "update", &fridge, "--title", "t"])
            .status
            .code(),
        Some(5)
    );
    assert_eq!(
        node.cli(&["knowledge", "get", &fridge]).status.code(),
        Some(5)
    );
    assert_eq!(
        node.cli(&["knowledge", "rm", &fridge]).status.code(),
        Some(5)
    );
    let out = node.cli(&["knowledge", "put", "--title", "  ", "--body", "b"]);
    assert_eq!(out.status.code(), Some(4), "a blank title is refused");

    // Text from the store reaches a terminal shown, not obeyed; JSON keeps
    // the value exactly.
    let sly = "ls\u{1b}[2K\r\u{202e}txt.exe";
    let out = node.cli(&["knowledge", "put", "--title", sly, "--body", "b"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let text = node.cli(&["knowledge", "get", &id]);
    let shown = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{202e}'),
        "{shown:?}"
    );
    assert!(
        shown.contains("\\u{1b}[2K\\u{d}\\u{202e}txt.exe"),
        "{shown:?}"
    );
    assert_eq!(node.json(&["knowledge", "get", &id])["title"], sly);
    assert!(node.cli(&["knowledge", "rm", &id]).status.success());

    // Bad input is a refusal with a reason, not a crash.
    let long = "x".repeat(300);
    let out = node.cli(&["knowledge", "put", "--title", &long, "--body", "b"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("title"));

    // Acknowledged writes survive SIGKILL.
    let mut acked = Vec::new();
    for i in 0..15 {
        acked.push(put(node, &format!("note {i}"), "b", &[]));
    }
    node.kill();
    node.start_local(&[]);
    for id in &acked {
        assert_eq!(node.json(&["knowledge", "get", id])["id"], id.as_str());
    }
    assert_eq!(
        node.json(&["knowledge", "get", &pump])["title"],
        "Pump 3 manual"
    );
    assert!(node.json(&["audit", "verify"])["ok"].as_bool().unwrap());
    let actions: Vec<String> = node.json(&["audit", "log", "--limit", "1000"])["entries"]
        .clone()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| *a == "knowledge.put").count(),
        // 18 stored, the one with terminal controls in its title, and the
        // two refused (a title too long, a blank one).
        18 + 1 + 2,
        "{actions:?}"
    );
    assert!(actions.contains(&"knowledge.delete".to_string()));
}

#[test]
fn routines_are_validated_and_managed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = fleet(tmp.path(), 1);
    let node = &mut nodes[0];
    node.start_local(&[]);

    let out = node.cli(&[
        "routine",
        "add",
        "--name",
        "bad",
        "--schedule",
        "61 * * * *",
        "--command",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("schedule"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(node.json(&["routine", "list"]), serde_json::json!([]));

    let out = node.cli(&[
        "routine",
        "add",
        "--name",
        "backup",
        "--schedule",
        "*/5 * * * *",
        "--target",
        "label:role=edge",
        "--command",
        "tar",
        "--arg",
        "-czf",
        "--arg",
        "/tmp/x.tgz",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = stdout(&out);
    let every = node.cli(&[
        "routine",
        "add",
        "--name",
        "ping",
        "--schedule",
        "every 5m",
        "--command",
        "true",
    ]);
    assert!(every.status.success());

    let r = node.json(&["routine", "show", &id]);
    assert_eq!(r["args"], serde_json::json!(["-czf", "/tmp/x.tgz"]));
    assert_eq!(r["enabled"], true);
    assert!(node.cli(&["routine", "disable", &id]).status.success());
    assert_eq!(node.json(&["routine", "show", &id])["enabled"], false);
    assert!(node.cli(&["routine", "enable", &id]).status.success());
    assert_eq!(node.json(&["routine", "list"]).as_array().unwrap().len(), 2);
    node.stop();
    node.start_local(&[]);
    assert_eq!(node.json(&["routine", "list"]).as_array().unwrap().len(), 2);
    // Names are unique, and work wherever an id does.
    let again = node.cli(&[
        "routine",
        "add",
        "--name",
        "ping",
        "--schedule",
        "every 1m",
        "--command",
        "true",
    ]);
    assert_eq!(again.status.code(), Some(4), "a second routine named ping");
    assert!(String::from_utf8_lossy(&again.stderr).contains("ping"));
    assert_eq!(node.json(&["routine", "show", "backup"])["id"], id.as_str());
    assert!(node.cli(&["routine", "disable", "ping"]).status.success());
    assert_eq!(node.json(&["routine", "show", "ping"])["enabled"], false);
    assert!(node.cli(&["routine", "rm", "backup"]).status.success());
    assert_eq!(node.cli(&["routine", "show", &id]).status.code(), Some(5));
}
