//! Operator control and confinement: stop (SIGTERM first, SIGKILL after the
//! grace), freeze and resume, the memory limit, output capture, the agent's
//! environment, failures and removal.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use osmoda_agentd::{
    AgentData, AgentEventKind, AgentState, AgentdError, ExitStatus, LimitMode, LogConfig,
    OomEvidence, RestartPolicy,
};

/// Writes an increasing counter to `counter` and answers SIGTERM by
/// writing `terminated`.
const COUNTER: &str = "trap 'echo bye > terminated; exit 0' TERM; i=0; \
    while :; do i=$((i+1)); echo $i > counter.tmp; mv counter.tmp counter; sleep 0.05; done";

fn counter(workspace: &std::path::Path) -> Option<u64> {
    read(&workspace.join("counter"))?.trim().parse().ok()
}

#[tokio::test]
async fn stop_sends_sigterm_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (supervisor, mut events) = supervisor(config(dir.path()));
    supervisor
        .start(sh("polite", COUNTER), BTreeMap::new(), None)
        .await
        .expect("start");
    let workspace = supervisor.workspace_dir("polite").expect("workspace");
    eventually("the agent to count", || async {
        counter(&workspace).filter(|&n| n > 2)
    })
    .await;

    let status = supervisor.stop("polite").await.expect("stop");
    assert_eq!(status.state, AgentState::Stopped);
    assert_eq!(status.last_exit, Some(ExitStatus::Code { code: 0 }));
    assert_eq!(
        read(&workspace.join("terminated")).as_deref(),
        Some("bye\n")
    );
    let event = next_event(&mut events, |e| {
        matches!(e.kind, AgentEventKind::Stopped { .. })
    })
    .await;
    assert_eq!(
        event.kind,
        AgentEventKind::Stopped {
            status: Some(ExitStatus::Code { code: 0 }),
            forced: false
        }
    );
    // Stopping again is harmless; the agent stays down.
    assert_eq!(
        supervisor.stop("polite").await.expect("stop").state,
        AgentState::Stopped
    );
}

#[tokio::test]
async fn stop_kills_after_the_grace_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.stop_grace = Duration::from_millis(500);
    let (supervisor, mut events) = supervisor(config);
    let stubborn = "trap '' TERM; echo up > up; while :; do sleep 0.1; done";
    supervisor
        .start(sh("stubborn", stubborn), BTreeMap::new(), None)
        .await
        .expect("start");
    let workspace = supervisor.workspace_dir("stubborn").expect("workspace");
    eventually("the agent to be up", || async {
        read(&workspace.join("up"))
    })
    .await;

    let asked = Instant::now();
    let status = supervisor.stop("stubborn").await.expect("stop");
    assert!(asked.elapsed() >= Duration::from_millis(500));
    assert_eq!(
        status.last_exit,
        Some(ExitStatus::Signal {
            signal: libc::SIGKILL
        })
    );
    let event = next_event(&mut events, |e| {
        matches!(e.kind, AgentEventKind::Stopped { .. })
    })
    .await;
    assert!(
        matches!(event.kind, AgentEventKind::Stopped { forced: true, .. }),
        "{event:?}"
    );
}

#[tokio::test]
async fn freeze_then_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (supervisor, mut events) = supervisor(config(dir.path()));
    supervisor
        .start(sh("ticker", COUNTER), BTreeMap::new(), None)
        .await
        .expect("start");
    let workspace = supervisor.workspace_dir("ticker").expect("workspace");
    eventually("the agent to count", || async {
        counter(&workspace).filter(|&n| n > 2)
    })
    .await;

    assert_eq!(supervisor.freeze_all().await.expect("freeze"), 1);
    assert!(matches!(
        supervisor.status("ticker").await.expect("status").state,
        AgentState::Frozen { .. }
    ));
    // Nothing new starts while frozen.
    let refused = supervisor
        .start(sh("late", "sleep 1"), BTreeMap::new(), None)
        .await;
    assert!(matches!(refused, Err(AgentdError::Frozen)), "{refused:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let frozen_at = counter(&workspace).expect("counter");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        counter(&workspace),
        Some(frozen_at),
        "a frozen agent kept counting"
    );

    assert_eq!(supervisor.resume_all().await.expect("resume"), 1);
    eventually("the counter to move again", || async {
        counter(&workspace).filter(|&n| n > frozen_at)
    })
    .await;
    next_event(&mut events, is("ticker", |k| *k == AgentEventKind::Resumed)).await;

    // Frozen again, a stop still gets through, and gracefully.
    supervisor.freeze_all().await.expect("freeze");
    let status = supervisor.stop("ticker").await.expect("stop");
    assert_eq!(status.state, AgentState::Stopped);
    assert_eq!(
        read(&workspace.join("terminated")).as_deref(),
        Some("bye\n")
    );
    supervisor.resume_all().await.expect("resume");
}

#[tokio::test]
async fn agent_over_its_memory_limit_is_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (supervisor, mut events) = supervisor(config(dir.path()));
    // Allocate and touch 256 MiB under a 64 MiB limit; write a marker only
    // if that worked.
    let script = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3 -c 'b = b\"x\" * (256 << 20); open(\"allocated\", \"w\").write(\"yes\")'"
    } else {
        "head -c 300M /dev/zero | tail > /dev/null && echo yes > allocated"
    };
    let mut spec = sh_with("hog", script, RestartPolicy::Never);
    spec.limits.memory_bytes = Some(64 << 20);
    supervisor
        .start(spec, BTreeMap::new(), None)
        .await
        .expect("start");

    let mut saw_oom = None;
    loop {
        let event = next_event(&mut events, |e| e.name == "hog").await;
        match event.kind {
            AgentEventKind::KilledOverMemory { evidence } => saw_oom = Some(evidence),
            AgentEventKind::GaveUp { .. } => break,
            _ => {}
        }
    }
    let status = supervisor.status("hog").await.expect("status");
    eprintln!(
        "memory hog ended with {:?}, oom evidence {saw_oom:?}",
        status.last_exit
    );
    let workspace = supervisor.workspace_dir("hog").expect("workspace");
    assert!(
        !workspace.join("allocated").exists(),
        "the allocation succeeded"
    );
    assert!(status.last_exit.is_some_and(|s| !s.success()), "{status:?}");
    if supervisor.limit_mode() == LimitMode::CgroupV2 {
        // Under cgroup v2 the kernel's OOM kill is certain and reported.
        assert_eq!(saw_oom, Some(OomEvidence::CgroupCounter));
        assert_eq!(status.oom_kills, 1);
    }
}

#[tokio::test]
async fn output_is_captured_and_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.log = LogConfig {
        max_file_bytes: 4096,
        files: 3,
    };
    let (supervisor, mut events) = supervisor(config);
    let chatter =
        "i=0; while [ $i -lt 2000 ]; do echo \"out $i\"; echo \"err $i\" >&2; i=$((i+1)); done";
    let spec = sh_with("chatter", chatter, RestartPolicy::Never);
    supervisor
        .start(spec, BTreeMap::new(), None)
        .await
        .expect("start");
    next_event(
        &mut events,
        is("chatter", |k| matches!(k, AgentEventKind::GaveUp { .. })),
    )
    .await;

    // stdout and stderr, in order, in one log.
    let tail = eventually("the last lines in the log", || async {
        let tail = supervisor.output_tail("chatter", 4).await.expect("tail");
        (tail.last().map(String::as_str) == Some("err 1999")).then_some(tail)
    })
    .await;
    assert_eq!(tail, ["out 1998", "err 1998", "out 1999", "err 1999"]);

    let logs = supervisor.logs_dir("chatter").expect("logs");
    let mut files: Vec<(String, u64)> = std::fs::read_dir(&logs)
        .expect("logs dir")
        .map(|entry| {
            let entry = entry.expect("entry");
            let len = entry.metadata().expect("metadata").len();
            (entry.file_name().to_string_lossy().into_owned(), len)
        })
        .collect();
    files.sort();
    let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["output.log", "output.log.1", "output.log.2"]);
    assert!(files.iter().all(|(_, len)| *len <= 4096), "{files:?}");
}

#[tokio::test]
async fn environment_folders_and_process_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (supervisor, mut events) = supervisor(config(dir.path()));
    let script = "env > env.txt; pwd > pwd.txt; readlink /proc/self/fd/0 > stdin.txt; sleep 1000";
    let mut spec = sh("envy", script);
    spec.env.insert("FROM_SPEC".into(), "spec".into());
    spec.env.insert("OVERRIDDEN".into(), "spec".into());
    let extra = BTreeMap::from([
        ("OVERRIDDEN".to_string(), "extra".to_string()),
        ("OSMODA_AGENT_TOKEN".to_string(), "token-value".to_string()),
    ]);
    let status = supervisor.start(spec, extra, None).await.expect("start");
    let AgentState::Running { pid, .. } = status.state else {
        panic!("not running: {status:?}");
    };
    let workspace = supervisor.workspace_dir("envy").expect("workspace");
    let env = eventually("env.txt", || async {
        read(&workspace.join("env.txt")).filter(|_| workspace.join("stdin.txt").exists())
    })
    .await;
    let workspace_text = workspace.to_string_lossy();
    for line in [
        "FROM_SPEC=spec".to_string(),
        "OVERRIDDEN=extra".to_string(),
        "OSMODA_AGENT_TOKEN=token-value".to_string(),
        "OSMODA_AGENT_NAME=envy".to_string(),
        format!("HOME={workspace_text}"),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing from {env}");
    }
    // Only PATH comes from the node's environment.
    assert!(!env.lines().any(|l| l.starts_with("CARGO")), "{env}");
    let pwd = eventually("pwd.txt", || async { read(&workspace.join("pwd.txt")) }).await;
    assert_eq!(pwd.trim(), workspace_text);
    let stdin = eventually("stdin.txt", || async {
        read(&workspace.join("stdin.txt")).filter(|s| !s.is_empty())
    })
    .await;
    assert_eq!(stdin.trim(), "/dev/null");
    // Its own session and process group.
    let stat = read(std::path::Path::new(&format!("/proc/{pid}/stat"))).expect("stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat format")
        .1
        .split_whitespace()
        .collect();
    assert_eq!(fields[2], pid.to_string(), "process group");
    assert_eq!(fields[3], pid.to_string(), "session");
    supervisor.stop("envy").await.expect("stop");
    next_event(
        &mut events,
        is("envy", |k| matches!(k, AgentEventKind::Stopped { .. })),
    )
    .await;
}

#[tokio::test]
async fn failures_and_refusals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (supervisor, mut events) = supervisor(config(dir.path()));
    let missing = osmoda_agentd::AgentSpec::new("ghost", "/nonexistent/program");
    let error = supervisor
        .start(missing, BTreeMap::new(), None)
        .await
        .expect_err("no such program");
    assert!(matches!(error, AgentdError::Spawn { .. }), "{error}");
    assert!(matches!(
        supervisor.status("ghost").await.expect("status").state,
        AgentState::Failed { .. }
    ));
    next_event(
        &mut events,
        is("ghost", |k| matches!(k, AgentEventKind::SpawnFailed { .. })),
    )
    .await;

    let bad = sh("Bad Name", "true");
    assert!(matches!(
        supervisor.start(bad, BTreeMap::new(), None).await,
        Err(AgentdError::Spec(_))
    ));
    let bad_env = BTreeMap::from([("A=B".to_string(), "x".to_string())]);
    assert!(matches!(
        supervisor.start(sh("fine", "true"), bad_env, None).await,
        Err(AgentdError::Spec(_))
    ));
    assert!(matches!(
        supervisor.stop("nobody").await,
        Err(AgentdError::UnknownAgent { .. })
    ));
    assert!(supervisor.output_tail("../etc", 10).await.is_err());

    supervisor
        .start(sh("busy", "sleep 1000"), BTreeMap::new(), None)
        .await
        .expect("start");
    let again = supervisor
        .start(sh("busy", "sleep 1000"), BTreeMap::new(), None)
        .await;
    assert!(
        matches!(again, Err(AgentdError::Running { .. })),
        "{again:?}"
    );
}

#[tokio::test]
async fn remove_keeps_or_deletes_the_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (supervisor, _events) = supervisor(config(dir.path()));
    for name in ["keep", "drop"] {
        supervisor
            .start(
                sh(name, "echo data > file; sleep 1000"),
                BTreeMap::new(),
                None,
            )
            .await
            .expect("start");
        let workspace = supervisor.workspace_dir(name).expect("workspace");
        eventually("the file", || async { read(&workspace.join("file")) }).await;
    }
    supervisor
        .remove("keep", AgentData::Keep)
        .await
        .expect("remove");
    supervisor
        .remove("drop", AgentData::Delete)
        .await
        .expect("remove");
    assert!(supervisor.list().await.expect("list").is_empty());
    assert!(dir.path().join("keep/workspace/file").exists());
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .expect("base")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["keep"]);
    // Removing is idempotent, and deletes the folder of an agent this
    // supervisor never ran (one from before a node restart).
    supervisor
        .remove("keep", AgentData::Keep)
        .await
        .expect("again");
    assert!(dir.path().join("keep/workspace/file").exists());
    supervisor
        .remove("keep", AgentData::Delete)
        .await
        .expect("delete");
    assert!(!dir.path().join("keep").exists());
    assert!(matches!(
        supervisor.remove("../x", AgentData::Delete).await,
        Err(AgentdError::Spec(_))
    ));
}
