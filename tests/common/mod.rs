//! Helpers for tests that run real `osmoda` processes.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_osmoda");

/// A command's standard error, for assertion messages.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Polls `f` every 100 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One node: a data folder, and the `osmoda run` process while it runs.
pub struct Node {
    pub dir: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    pub fn new(parent: &Path, name: &str) -> Self {
        let dir = parent.join(name);
        Self {
            log: parent.join(format!("{name}.log")),
            dir,
            child: None,
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--data").arg(&self.dir).args(args);
        cmd.env_remove("OSMODA_DATA").env("RUST_LOG", "info");
        cmd
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run osmoda")
    }

    /// Runs a command with `--json` that must succeed, and parses its output.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        assert!(
            out.status.success(),
            "osmoda {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    /// Starts `osmoda run` and waits until its control API answers.
    pub fn start(&mut self, args: &[&str]) {
        let mut full = vec!["run"];
        full.extend_from_slice(args);
        let cmd = self.command(&full);
        self.start_with(cmd);
    }

    /// Starts a prepared `osmoda run` command (for example inside a network
    /// namespace) and waits until its control API answers.
    pub fn start_with(&mut self, mut cmd: Command) {
        let log = File::create(&self.log).expect("log file");
        cmd.env_remove("OSMODA_DATA").env("RUST_LOG", "info");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn osmoda run");
        self.child = Some(child);
        let up = wait_until(Duration::from_secs(30), || {
            self.cli(&["status", "--json"]).status.success()
        });
        assert!(
            up,
            "node {} did not start:\n{}",
            self.dir.display(),
            self.log()
        );
    }

    /// Starts on loopback only, without mDNS, so that parallel tests never meet.
    pub fn start_local(&mut self, bootstrap: &[String]) {
        let mut args = vec![
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
        ];
        for b in bootstrap {
            args.push("--bootstrap");
            args.push(b);
        }
        self.start(&args);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn status(&self) -> Value {
        self.json(&["status"])
    }

    pub fn node_id(&self) -> String {
        self.status()["node_id"]
            .as_str()
            .expect("node id")
            .to_string()
    }

    /// The first listen address of `proto` ("tcp" or "quic-v1"), with /p2p/.
    pub fn addr(&self, proto: &str) -> String {
        let status = self.status();
        let id = status["node_id"].as_str().expect("node id").to_string();
        let addr = status["listen"]
            .as_array()
            .expect("listen")
            .iter()
            .filter_map(Value::as_str)
            .find(|a| a.contains(&format!("/{proto}/")) || a.ends_with(proto))
            .unwrap_or_else(|| panic!("no {proto} listen address in {status}"))
            .to_string();
        format!("{addr}/p2p/{id}")
    }

    pub fn peer_ids(&self) -> Vec<String> {
        self.json(&["peers"])
            .as_array()
            .expect("peer list")
            .iter()
            .filter_map(|p| p["node_id"].as_str().map(str::to_string))
            .collect()
    }

    pub fn inbox_texts(&self) -> Vec<String> {
        self.json(&["mesh", "inbox"])
            .as_array()
            .expect("inbox")
            .iter()
            .filter_map(|m| m["text"].as_str().map(str::to_string))
            .collect()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let exited = wait_until(Duration::from_secs(15), || {
                matches!(child.try_wait(), Ok(Some(_)))
            });
            if !exited {
                let _ = child.kill();
            }
            let status = child.wait().expect("wait");
            assert!(
                exited && status.success(),
                "node did not stop cleanly: {status:?}\n{}",
                self.log()
            );
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A fleet of `n` members: the first created the fleet, the others joined
/// with tokens from it. None is running yet.
pub fn fleet(parent: &Path, n: usize) -> Vec<Node> {
    let first = Node::new(parent, "n0");
    let out = first.cli(&["fleet", "create", "--name", "test", "--node-name", "n0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut nodes = vec![first];
    for i in 1..n {
        let name = format!("n{i}");
        let token = nodes[0].cli(&["fleet", "invite", "--name", &name]);
        assert!(
            token.status.success(),
            "{}",
            String::from_utf8_lossy(&token.stderr)
        );
        let token = String::from_utf8(token.stdout)
            .expect("utf8")
            .trim()
            .to_string();
        let node = Node::new(parent, &name);
        let out = node.cli(&["join", &token]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        nodes.push(node);
    }
    nodes
}
