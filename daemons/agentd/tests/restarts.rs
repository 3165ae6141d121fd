//! Restarts: crash loops back off, workspaces outlive processes and
//! supervisors, `kill_all` keeps everything down, dropping the supervisor
//! takes its agents with it.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use osmoda_agentd::{AgentEventKind, AgentState, ExitStatus, GiveUpReason, RestartPolicy};

#[tokio::test]
async fn crashing_agent_restarts_with_growing_delays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (supervisor, mut events) = supervisor(config(dir.path()));
    supervisor
        .start(sh("crasher", "exit 1"), BTreeMap::new(), None)
        .await
        .expect("start");

    // Five starts: the first and four restarts (0.5 + 1 + 2 + 4 s apart).
    let mut starts = Vec::new();
    let mut announced = Vec::new();
    while starts.len() < 5 {
        let event = next_event(&mut events, |e| e.name == "crasher").await;
        match event.kind {
            AgentEventKind::Started { restarts, .. } => {
                assert_eq!(restarts as usize, starts.len());
                starts.push(Instant::now());
            }
            AgentEventKind::Exited { status } => {
                assert_eq!(status, ExitStatus::Code { code: 1 })
            }
            AgentEventKind::Restarting { after_ms, .. } => announced.push(after_ms),
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(announced[..4], [500, 1000, 2000, 4000]);
    let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!("gaps between starts: {gaps:?}");
    for pair in gaps.windows(2) {
        assert!(pair[1] > pair[0], "gaps do not grow: {gaps:?}");
    }
    assert!(gaps[3] > gaps[0] * 3, "gaps grow too little: {gaps:?}");

    let status = supervisor.status("crasher").await.expect("status");
    assert!(status.restarts >= 4, "{status:?}");
    assert_eq!(status.last_exit, Some(ExitStatus::Code { code: 1 }));
    supervisor.stop("crasher").await.expect("stop");
    assert_eq!(
        supervisor.status("crasher").await.expect("status").state,
        AgentState::Stopped
    );
}

#[tokio::test]
async fn workspace_survives_restarts_and_supervisors() {
    let dir = tempfile::tempdir().expect("tempdir");
    // First life writes a note and crashes; the second finds it and exits
    // cleanly, which ends it under on-failure.
    let script =
        "if [ -f note ]; then cat note > found; exit 0; else echo remembered > note; exit 1; fi";
    {
        let (supervisor, mut events) = supervisor(config(dir.path()));
        supervisor
            .start(sh("keeper", script), BTreeMap::new(), None)
            .await
            .expect("start");
        let event = next_event(
            &mut events,
            is("keeper", |k| matches!(k, AgentEventKind::GaveUp { .. })),
        )
        .await;
        assert_eq!(
            event.kind,
            AgentEventKind::GaveUp {
                reason: GiveUpReason::CleanExit
            }
        );
        let status = supervisor.status("keeper").await.expect("status");
        assert_eq!(status.restarts, 1);
        assert_eq!(
            status.state,
            AgentState::Exited {
                status: ExitStatus::Code { code: 0 }
            }
        );
        let workspace = supervisor.workspace_dir("keeper").expect("workspace");
        assert_eq!(
            read(&workspace.join("found")).as_deref(),
            Some("remembered\n")
        );
        let mode = std::fs::metadata(&workspace)
            .expect("workspace")
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o700
        );
        supervisor.shutdown().await.expect("shutdown");
    }
    // A new supervisor on the same folder (the node restarted): the
    // workspace is still there.
    let (supervisor, mut events) = supervisor(config(dir.path()));
    let spec = sh_with("keeper", "cat note > seen-again", RestartPolicy::Never);
    supervisor
        .start(spec, BTreeMap::new(), None)
        .await
        .expect("start");
    next_event(
        &mut events,
        is("keeper", |k| matches!(k, AgentEventKind::GaveUp { .. })),
    )
    .await;
    let workspace = supervisor.workspace_dir("keeper").expect("workspace");
    assert_eq!(
        read(&workspace.join("seen-again")).as_deref(),
        Some("remembered\n")
    );
}

#[tokio::test]
async fn kill_all_kills_everything_and_nothing_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (supervisor, mut events) = supervisor(config(dir.path()));
    let forever = "while :; do sleep 0.1; done";
    let mut pids = Vec::new();
    for name in ["one", "two", "three"] {
        let spec = sh_with(name, forever, RestartPolicy::Always);
        let status = supervisor
            .start(spec, BTreeMap::new(), None)
            .await
            .expect("start");
        let AgentState::Running { pid, .. } = status.state else {
            panic!("not running: {status:?}");
        };
        pids.push(pid);
    }
    // One of them frozen: it must die all the same.
    supervisor.freeze_all().await.expect("freeze");
    supervisor.resume_all().await.expect("resume");
    let _ = supervisor.freeze_all().await.expect("freeze");

    let statuses = supervisor.kill_all().await.expect("kill_all");
    assert_eq!(statuses.len(), 3);
    for status in &statuses {
        assert_eq!(status.state, AgentState::Stopped, "{status:?}");
        assert_eq!(status.last_exit, Some(ExitStatus::Signal { signal: 9 }));
    }
    for pid in &pids {
        assert!(!process_exists(*pid), "pid {pid} survived kill_all");
    }
    supervisor.resume_all().await.expect("resume");
    // Three Stopped events, all forced; then nothing starts for a while
    // (well past the 500 ms restart delay).
    for _ in 0..3 {
        let event = next_event(&mut events, |e| {
            matches!(e.kind, AgentEventKind::Stopped { .. })
        })
        .await;
        assert!(
            matches!(event.kind, AgentEventKind::Stopped { forced: true, .. }),
            "{event:?}"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(
                event.kind,
                AgentEventKind::Started { .. } | AgentEventKind::Restarting { .. }
            ),
            "something restarted: {event:?}"
        );
    }
    for status in supervisor.list().await.expect("list") {
        assert_eq!(status.state, AgentState::Stopped);
    }
    // An explicit start brings one back.
    let status = supervisor.start_existing("two").await.expect("start again");
    assert!(matches!(status.state, AgentState::Running { .. }));
}

#[tokio::test]
async fn dropping_the_supervisor_kills_its_agents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (supervisor, _events) = supervisor(config(dir.path()));
    let status = supervisor
        .start(sh("orphan", "sleep 1000"), BTreeMap::new(), None)
        .await
        .expect("start");
    let AgentState::Running { pid, .. } = status.state else {
        panic!("not running: {status:?}");
    };
    assert!(process_exists(pid));
    drop(supervisor);
    eventually("the agent to be gone", || async {
        (!process_exists(pid)).then_some(())
    })
    .await;
}
