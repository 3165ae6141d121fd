//! The supervisor on a real cgroup v2 tree. Controllers may be missing
//! (a hybrid host keeps memory, cpu and pids on cgroup v1), so no limits
//! are set here, but everything else of the cgroup path runs for real:
//! agents join their cgroup before exec, freeze and thaw through
//! `cgroup.freeze`, die through `cgroup.kill` even when they left their
//! process group, and their cgroups are removed with them. Needs root and
//! a writable cgroup2 mount; otherwise skips and says why.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::cgroup::{find_cgroup2_mount, flat_keyed};
use crate::status::{AgentEventKind, AgentState};

const PATIENCE: Duration = Duration::from_secs(60);

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn counter(workspace: &Path) -> Option<u64> {
    fs::read_to_string(workspace.join("counter"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Gone, or a zombie waiting for init.
fn is_dead(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

fn frozen(cgroup: &Path) -> bool {
    fs::read_to_string(cgroup.join("cgroup.events"))
        .ok()
        .and_then(|text| flat_keyed(&text, "frozen"))
        == Some(1)
}

#[tokio::test]
async fn supervisor_runs_agents_in_their_cgroups() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return;
    }
    let Some(mount) = find_cgroup2_mount() else {
        eprintln!("skipped: no cgroup2 mount");
        return;
    };
    let root_path = mount.join(format!("osmoda-unit-supervisor-{}", std::process::id()));
    if let Err(e) = fs::create_dir(&root_path) {
        eprintln!("skipped: cannot create {}: {e}", root_path.display());
        return;
    }
    let base = tempfile::tempdir().expect("tempdir");
    let mut config = SupervisorConfig::new(base.path());
    config.stop_grace = Duration::from_secs(5);
    let root = CgroupRoot::adopt(root_path.clone());
    let (supervisor, mut events) =
        Supervisor::with_cgroups(config, Some(root), LimitMode::CgroupV2, "test root".into())
            .expect("supervisor");

    // A counter that also starts a process leaving its process group.
    let script = "trap 'echo bye > terminated; exit 0' TERM; setsid sleep 1000 & echo $! > escaped; \
        i=0; while :; do i=$((i+1)); echo $i > counter.tmp; mv counter.tmp counter; sleep 0.05; done";
    let mut spec = AgentSpec::new("ticker", "/bin/sh");
    spec.args = vec!["-c".into(), script.into()];
    let status = supervisor
        .start(spec, BTreeMap::new(), None)
        .await
        .expect("start");
    let AgentState::Running { pid, .. } = status.state else {
        panic!("not running: {status:?}");
    };
    let cgroup = root_path.join("ticker");
    let procs = fs::read_to_string(cgroup.join("cgroup.procs")).expect("cgroup.procs");
    assert!(procs.lines().any(|l| l == pid.to_string()), "{procs}");
    let workspace = supervisor.workspace_dir("ticker").expect("workspace");
    eventually("counting", || counter(&workspace).is_some_and(|n| n > 2)).await;

    // Freeze through the cgroup.
    assert_eq!(supervisor.freeze_all().await.expect("freeze"), 1);
    eventually("the cgroup to freeze", || frozen(&cgroup)).await;
    let at = counter(&workspace);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(counter(&workspace), at, "a frozen agent kept counting");
    supervisor.resume_all().await.expect("resume");
    eventually("counting again", || counter(&workspace) > at).await;

    // A stop while frozen is still graceful.
    supervisor.freeze_all().await.expect("freeze");
    eventually("the cgroup to freeze", || frozen(&cgroup)).await;
    let status = supervisor.stop("ticker").await.expect("stop");
    assert_eq!(status.state, AgentState::Stopped);
    assert!(workspace.join("terminated").exists());
    supervisor.resume_all().await.expect("resume");
    // The process that left the group died with the agent (cgroup.kill on
    // exit), and the cgroup is thawed for the next life.
    let escaped: u32 = fs::read_to_string(workspace.join("escaped"))
        .expect("escaped pid")
        .trim()
        .parse()
        .expect("pid");
    eventually("the escaped process to die", || is_dead(escaped)).await;
    assert!(!frozen(&cgroup));

    // kill_all, and the next life is in the same cgroup.
    let status = supervisor
        .start_existing("ticker")
        .await
        .expect("start again");
    let AgentState::Running { pid, .. } = status.state else {
        panic!("not running: {status:?}");
    };
    eventually("the new escaped process", || {
        fs::read_to_string(workspace.join("escaped"))
            .is_ok_and(|t| t.trim().parse::<u32>().is_ok_and(|p| p != escaped))
    })
    .await;
    let escaped: u32 = fs::read_to_string(workspace.join("escaped"))
        .expect("pid")
        .trim()
        .parse()
        .expect("pid");
    supervisor.kill_all().await.expect("kill_all");
    assert!(is_dead(pid));
    eventually("the escaped process to die", || is_dead(escaped)).await;
    loop {
        let event = tokio::time::timeout(PATIENCE, events.recv())
            .await
            .expect("event")
            .expect("open");
        if let AgentEventKind::Stopped { forced, .. } = event.kind {
            if forced {
                break;
            }
        }
    }

    // Removing the agent removes its cgroup; dropping the supervisor, the root.
    supervisor
        .remove("ticker", AgentData::Keep)
        .await
        .expect("remove");
    assert!(!cgroup.exists());
    let mut sleeper = AgentSpec::new("sleeper", "/bin/sleep");
    sleeper.args = vec!["1000".into()];
    let status = supervisor
        .start(sleeper, BTreeMap::new(), None)
        .await
        .expect("start");
    let AgentState::Running { pid, .. } = status.state else {
        panic!("not running: {status:?}");
    };
    assert!(root_path.join("sleeper").exists());
    drop(supervisor);
    eventually("the supervisor to clean up", || !root_path.exists()).await;
    assert!(is_dead(pid));
}
