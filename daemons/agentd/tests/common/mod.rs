//! Helpers shared by the supervisor tests: a supervisor in a temporary
//! folder with its own cgroup scope, shell agents, and waiting with
//! generous timeouts (the machine may be busy compiling).

#![allow(dead_code)] // each test file uses a different subset

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use osmoda_agentd::{
    AgentEvent, AgentEventKind, AgentSpec, CgroupPlacement, RestartPolicy, Supervisor,
    SupervisorConfig,
};
use tokio::sync::mpsc;

/// Long enough for a loaded 2-core machine; tests finish far sooner.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A config in `base` with a cgroup scope no other test (or run) shares.
pub fn config(base: &Path) -> SupervisorConfig {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let mut config = SupervisorConfig::new(base);
    config.cgroup = CgroupPlacement::Auto {
        scope: format!(
            "test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ),
    };
    config
}

pub fn supervisor(config: SupervisorConfig) -> (Supervisor, mpsc::Receiver<AgentEvent>) {
    let (supervisor, events) = Supervisor::new(config).expect("supervisor starts");
    eprintln!(
        "limit mode: {} ({})",
        supervisor.limit_mode(),
        supervisor.limit_mode_reason()
    );
    (supervisor, events)
}

/// An agent running `script` under /bin/sh.
pub fn sh(name: &str, script: &str) -> AgentSpec {
    let mut spec = AgentSpec::new(name, "/bin/sh");
    spec.args = vec!["-c".into(), script.into()];
    spec
}

pub fn sh_with(name: &str, script: &str, restart: RestartPolicy) -> AgentSpec {
    let mut spec = sh(name, script);
    spec.restart = restart;
    spec
}

/// The next event for which `matches` is true; the ones before it are
/// dropped.
pub async fn next_event(
    events: &mut mpsc::Receiver<AgentEvent>,
    matches: impl Fn(&AgentEvent) -> bool,
) -> AgentEvent {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let event = events.recv().await.expect("event channel open");
            if matches(&event) {
                return event;
            }
        }
    })
    .await
    .expect("expected event did not come")
}

pub fn is(name: &'static str, kind: fn(&AgentEventKind) -> bool) -> impl Fn(&AgentEvent) -> bool {
    move |event| event.name == name && kind(&event.kind)
}

/// Polls `check` every 20 ms until it returns Some, or panics after
/// [`PATIENCE`] with `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A file's text, if it exists.
pub fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Whether a process with this pid exists (a zombie counts).
pub fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}
