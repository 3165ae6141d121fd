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

    /// Another handle on the node in `dir`, for CLI calls from a thread.
    pub fn at(dir: &Path) -> Self {
        Self {
            log: dir.with_extension("log"),
            dir: dir.to_path_buf(),
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

/// A free TCP port on loopback (free when asked; tests bind it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts node `i` on its fixed port, bootstrapping to every other node.
pub fn start_meshed(node: &mut Node, ports: &[u16], i: usize) {
    let listen = format!("/ip4/127.0.0.1/tcp/{}", ports[i]);
    let mut args = vec!["--no-mdns".to_string(), "--listen".into(), listen];
    for (j, port) in ports.iter().enumerate() {
        if j != i {
            args.push("--bootstrap".into());
            args.push(format!("/ip4/127.0.0.1/tcp/{port}"));
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    node.start(&args);
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

/// A running agent's pid and uid, from `agent show`.
pub fn agent_ids(node: &Node, name: &str) -> (u32, u32) {
    let mut found = None;
    let ok = wait_until(Duration::from_secs(30), || {
        let v = node.json(&["agent", "show", name]);
        let pid = v["state"]["pid"].as_u64();
        let uid = v["uid"].as_u64();
        found = pid.zip(uid).map(|(p, u)| (p as u32, u as u32));
        found.is_some()
    });
    assert!(ok, "agent {name} is not running under a uid of its own");
    found.unwrap()
}

/// The node's agent socket as the running agent `name` sees it: through
/// its own mount namespace (`/proc/PID/root`), where it is bound in; the
/// data folder itself is not reachable by the agent's uid.
pub fn agent_socket(node: &Node, name: &str) -> PathBuf {
    let (pid, _) = agent_ids(node, name);
    let inside = node.dir.join("agent.sock");
    PathBuf::from(format!("/proc/{pid}/root{}", inside.display()))
}

/// Connects to `path` as `uid`, the way an agent's own process does: the
/// node learns who calls from the kernel (`SO_PEERCRED`), so a test can
/// only speak as an agent by taking its uid. The switch is made on a
/// throwaway thread (raw syscalls change only the calling thread's
/// credentials), so the test process stays root.
pub fn connect_as(uid: u32, path: &Path) -> std::io::Result<std::os::unix::net::UnixStream> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        // SAFETY: plain syscalls on this thread's own credentials.
        unsafe {
            if libc::syscall(libc::SYS_setresgid, uid, uid, uid) != 0
                || libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        std::os::unix::net::UnixStream::connect(path)
    })
    .join()
    .expect("the connecting thread")
}

/// One HTTP/1.1 request on an open connection, kept alive: (status, JSON
/// body).
pub fn request(
    stream: &mut std::os::unix::net::UnixStream,
    method: &str,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    use std::io::{BufRead, BufReader, Read, Write};
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: osmoda\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {line:?}"));
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header");
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("body");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// One tool call as the running agent `name`, on a fresh connection.
pub fn call_as_agent(node: &Node, name: &str, tool: &str, arguments: Value) -> (u16, Value) {
    let (_, uid) = agent_ids(node, name);
    let mut stream = connect_as(uid, &agent_socket(node, name)).expect("connect as the agent");
    request(
        &mut stream,
        "POST",
        "/v1/agent/call",
        &serde_json::json!({ "tool": tool, "arguments": arguments }),
    )
}

/// Whether this test process may confine agents (root); tests that need
/// it print why they skip otherwise.
pub fn can_confine() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: confining agents needs root (CI runs as root)");
    }
    root
}

/// `osmoda mcp` as an agent's own MCP client runs it: under the agent's
/// uid, with the socket where the agent sees it. Call it off the async
/// runtime's worker (it polls the CLI).
pub fn mcp_as_agent(node: &Node, agent: &str) -> tokio::process::Command {
    let (_, uid) = agent_ids(node, agent);
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("--data")
        .arg(&node.dir)
        .args(["mcp", "--agent", agent])
        .env_remove("OSMODA_DATA")
        .env("OSMODA_AGENT_SOCKET", agent_socket(node, agent))
        .uid(uid)
        .gid(uid);
    cmd
}
