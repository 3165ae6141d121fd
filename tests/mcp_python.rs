//! The MCP client configuration docs/api.md gives, run as written by a real
//! off-the-shelf client: the official Python SDK (`pip install mcp`, done
//! by `.ci/run`) inside an agent the node started. The SDK passes only a
//! few variables to the servers it starts, so this fails unless the
//! documented `env` carries the agent's socket; the node knows the agent
//! by its uid.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{fleet, wait_until, BIN};

/// The `python` block of the "MCP" section of docs/api.md.
fn documented_client() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md"))
        .expect("docs/api.md");
    let section = doc.split("## MCP").nth(1).expect("an MCP section");
    let start = section.find("```python\n").expect("a python block") + "```python\n".len();
    let len = section[start..].find("```").expect("the block ends");
    section[start..start + len].to_string()
}

/// The python3 on PATH that has the `mcp` package: its executable and its
/// prefix, which a confined agent sees only when given with `--ro` (pyenv
/// and virtual environments live under /root, /home or /tmp, which agents
/// do not see).
fn python_with_mcp() -> Option<(String, String)> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import mcp.client.stdio, sys; print(sys.executable); print(sys.prefix)",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mut lines = text.lines();
    Some((lines.next()?.to_string(), lines.next()?.to_string()))
}

#[test]
fn the_documented_python_client_calls_a_tool_from_inside_an_agent() {
    let Some((python, prefix)) = python_with_mcp() else {
        eprintln!("skipped: python3 with the `mcp` package is not installed (.ci/run installs it)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut node = fleet(tmp.path(), 1).remove(0);
    // The agent finds `osmoda` on the PATH it inherits from the node.
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = node.command(&["run", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    cmd.env("PATH", &path);
    node.start_with(cmd);
    let out = node.cli(&[
        "knowledge",
        "put",
        "--title",
        "documented client",
        "--body",
        "b",
    ]);
    assert!(out.status.success());

    let script = tmp.path().join("client.py");
    std::fs::write(&script, documented_client()).unwrap();
    let run = format!("exec {python} {} > out.txt 2>&1", script.display());
    let out = node.cli(&[
        "agent",
        "add",
        "indexer",
        "--restart",
        "never",
        // The script lies in the test's temporary folder, which a confined
        // agent does not see.
        "--ro",
        script.to_str().unwrap(),
        "--ro",
        &prefix,
        "--",
        "/bin/sh",
        "-c",
        &run,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out_file = node.dir.join("agents/indexer/workspace/out.txt");
    let finished = wait_until(Duration::from_secs(60), || {
        node.json(&["agent", "show", "indexer"])["state"]["state"] == "exited"
    });
    let output = std::fs::read_to_string(&out_file).unwrap_or_default();
    assert!(finished, "the client did not finish:\n{output}");
    assert!(output.contains("documented client"), "{output}");
    assert!(!output.contains("isError=True"), "{output}");
    // The call went through the agent socket and is in the audit log.
    let log = node.json(&["audit", "log", "--limit", "1000"])["entries"]
        .clone()
        .to_string();
    assert!(log.contains("tool.knowledge_list"), "{log}");
    assert!(log.contains("agent:indexer"), "{log}");
    node.stop();
}
