//! Limits that bind, through whichever cgroup version [`Supervisor::new`]
//! picks on this host (cgroup v1 on a host that mounts memory, pids and cpu
//! as v1; v2 where it offers them): a memory hog is killed and reported as
//! OOM, a fork bomb stays within `pids.max` while the supervisor keeps
//! answering, a CPU limit is written as the kernel's quota, and freezing
//! stops an agent that thawing resumes. Each test prints the path it took;
//! without root, or with rlimits only, it skips and says why.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::cgroup::{find_cgroup2_mount, Hierarchies};
use crate::spec::{Limits, RestartPolicy};
use crate::status::{AgentEventKind, AgentState, ExitStatus, OomEvidence};

const PATIENCE: Duration = Duration::from_secs(60);

/// A supervisor with its own scope, or `None` (and why, printed) when
/// limits cannot be real here.
fn supervisor(
    test: &str,
) -> Option<(
    Supervisor,
    mpsc::Receiver<AgentEvent>,
    tempfile::TempDir,
    String,
)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return None;
    }
    let base = tempfile::tempdir().expect("tempdir");
    let scope = format!("unit-{test}-{}", std::process::id());
    let mut config = SupervisorConfig::new(base.path());
    config.cgroup = CgroupPlacement::Auto {
        scope: scope.clone(),
    };
    config.stop_grace = Duration::from_secs(5);
    let (supervisor, events) = Supervisor::new(config).expect("supervisor");
    eprintln!(
        "limits: {} ({})",
        supervisor.limit_mode(),
        supervisor.limit_mode_reason()
    );
    if supervisor.limit_mode() == LimitMode::Rlimits {
        eprintln!("skipped: no cgroup version is usable here");
        return None;
    }
    Some((supervisor, events, base, scope))
}

/// The agent's folder for `controller` (its only folder under v2).
fn control_dir(mode: LimitMode, scope: &str, agent: &str, controller: &str) -> Option<PathBuf> {
    let relative = Path::new("osmoda").join(scope).join(agent);
    match mode {
        LimitMode::CgroupV2 => find_cgroup2_mount().map(|m| m.join(relative)),
        _ => {
            let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
            let dirs = Hierarchies::from_mountinfo(&text).ok()?.join(&relative);
            match controller {
                "memory" => Some(dirs.memory),
                "pids" => Some(dirs.pids),
                "cpu" => dirs.cpu,
                "freezer" => dirs.freezer,
                _ => None,
            }
        }
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

async fn next_event(events: &mut mpsc::Receiver<AgentEvent>) -> AgentEventKind {
    tokio::time::timeout(PATIENCE, events.recv())
        .await
        .expect("an event in time")
        .expect("event channel open")
        .kind
}

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

#[tokio::test]
async fn memory_hog_is_killed_and_reported_as_oom() {
    let Some((supervisor, mut events, _base, _scope)) = supervisor("oom") else {
        return;
    };
    // tail keeps a line until its end; /dev/zero has none, so tail really
    // holds (and touches) the 200 MB it reads.
    let mut spec = AgentSpec::new("hog", "/bin/sh");
    spec.args = vec!["-c".into(), "head -c 200M /dev/zero | tail".into()];
    spec.restart = RestartPolicy::Never;
    spec.limits = Limits {
        memory_bytes: Some(64 << 20),
        ..Limits::default()
    };
    supervisor
        .start(spec, BTreeMap::new(), None)
        .await
        .expect("start");
    assert!(matches!(
        next_event(&mut events).await,
        AgentEventKind::Started { .. }
    ));
    let AgentEventKind::Exited { status } = next_event(&mut events).await else {
        panic!("expected an exit");
    };
    // The shell reports its pipeline's end: tail killed by SIGKILL.
    assert_eq!(status, ExitStatus::Code { code: 128 + 9 }, "{status}");
    assert_eq!(
        next_event(&mut events).await,
        AgentEventKind::KilledOverMemory {
            evidence: OomEvidence::CgroupCounter
        }
    );
    let status = supervisor.status("hog").await.expect("status");
    assert_eq!(status.oom_kills, 1);
    eprintln!("limits: {} killed the 200M hog at 64M", status.limit_mode);
}

#[tokio::test]
async fn fork_bomb_stays_within_pids_max() {
    let Some((supervisor, _events, _base, scope)) = supervisor("bomb") else {
        return;
    };
    let mode = supervisor.limit_mode();
    if !Path::new("/bin/bash").exists() {
        eprintln!("skipped: no /bin/bash");
        return;
    }
    // Every process forks in a loop; bash retries a failed fork instead of
    // exiting (as dash does), so the bomb keeps pressing on the limit. The
    // leader becomes a sleeper (exec needs no fork) and keeps the agent
    // alive. Half a core keeps the bomb from starving the machine.
    let mut spec = AgentSpec::new("bomb", "/bin/bash");
    spec.args = vec![
        "-c".into(),
        "b() { while :; do b & sleep 0.05; done; }; b & exec sleep 1000".into(),
    ];
    spec.limits = Limits {
        max_processes: Some(20),
        cpu_percent: Some(50),
        ..Limits::default()
    };
    supervisor
        .start(spec, BTreeMap::new(), None)
        .await
        .expect("start");
    let pids_dir = control_dir(mode, &scope, "bomb", "pids").expect("pids folder");
    assert_eq!(read(&pids_dir.join("pids.max")), "20");
    let tasks_file = pids_dir.join(if mode == LimitMode::CgroupV2 {
        "cgroup.threads"
    } else {
        "tasks"
    });
    let mut most = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline {
        let tasks = fs::read_to_string(&tasks_file)
            .expect("tasks")
            .lines()
            .count();
        most = most.max(tasks);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let refused = crate::cgroup::flat_keyed(&read(&pids_dir.join("pids.events")), "max");
    eprintln!(
        "limits: {mode} held the fork bomb at {most} tasks (pids.max 20, {refused:?} forks refused)"
    );
    // It did run into the limit, and never past it.
    assert!(
        refused.is_some_and(|n| n > 0),
        "the bomb never hit the limit"
    );
    assert!(most <= 20, "{most} tasks in a cgroup with pids.max 20");

    // The supervisor still answers and starts other agents meanwhile.
    let mut bystander = AgentSpec::new("bystander", "/bin/sleep");
    bystander.args = vec!["1000".into()];
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        supervisor.start(bystander, BTreeMap::new(), None),
    )
    .await
    .expect("the supervisor answered")
    .expect("start");
    assert!(matches!(answer.state, AgentState::Running { .. }));
    assert_eq!(supervisor.list().await.expect("list").len(), 2);

    supervisor.kill_all().await.expect("kill_all");
    eventually("the bomb's cgroup to empty", || {
        fs::read_to_string(&tasks_file).is_ok_and(|t| t.trim().is_empty())
    })
    .await;
}

#[tokio::test]
async fn cpu_percent_is_written_as_the_quota() {
    let Some((supervisor, _events, _base, scope)) = supervisor("cpu") else {
        return;
    };
    let mode = supervisor.limit_mode();
    let mut spec = AgentSpec::new("capped", "/bin/sleep");
    spec.args = vec!["1000".into()];
    spec.limits = Limits {
        cpu_percent: Some(50),
        ..Limits::default()
    };
    supervisor
        .start(spec, BTreeMap::new(), None)
        .await
        .expect("start");
    let Some(cpu) = control_dir(mode, &scope, "capped", "cpu") else {
        assert!(supervisor
            .limit_mode_reason()
            .contains("cpu limits not enforced"));
        eprintln!("skipped: no cpu hierarchy, and the reason says so");
        return;
    };
    if mode == LimitMode::CgroupV2 {
        assert_eq!(read(&cpu.join("cpu.max")), "50000 100000");
    } else {
        assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
        assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
    }
    eprintln!("limits: {mode} wrote a 50000 us quota per 100000 us for 50%");
    supervisor.kill_all().await.expect("kill_all");
}

fn counter(workspace: &Path) -> Option<u64> {
    fs::read_to_string(workspace.join("counter"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[tokio::test]
async fn freeze_stops_an_agent_and_thaw_resumes_it() {
    let Some((supervisor, _events, _base, scope)) = supervisor("freeze") else {
        return;
    };
    let mode = supervisor.limit_mode();
    let script = "i=0; while :; do i=$((i+1)); echo $i > counter.tmp; mv counter.tmp counter; \
        sleep 0.05; done";
    let mut spec = AgentSpec::new("ticker", "/bin/sh");
    spec.args = vec!["-c".into(), script.into()];
    supervisor
        .start(spec, BTreeMap::new(), None)
        .await
        .expect("start");
    let workspace = supervisor.workspace_dir("ticker").expect("workspace");
    eventually("counting", || counter(&workspace).is_some_and(|n| n > 2)).await;

    assert_eq!(supervisor.freeze_all().await.expect("freeze"), 1);
    let state = control_dir(mode, &scope, "ticker", "freezer").map(|dir| match mode {
        LimitMode::CgroupV2 => dir.join("cgroup.freeze"),
        _ => dir.join("freezer.state"),
    });
    let frozen_text = if mode == LimitMode::CgroupV2 {
        "1"
    } else {
        "FROZEN"
    };
    match &state {
        Some(state) => eventually("the cgroup to freeze", || read(state) == frozen_text).await,
        None => eprintln!("limits: {mode} without a freezer hierarchy: SIGSTOP"),
    }
    // A write in flight when the freeze hit may still land.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let at = counter(&workspace);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(counter(&workspace), at, "a frozen agent kept counting");

    assert_eq!(supervisor.resume_all().await.expect("resume"), 1);
    eventually("counting again", || counter(&workspace) > at).await;
    if let Some(state) = &state {
        assert_ne!(read(state), frozen_text);
    }
    eprintln!("limits: {mode} froze and thawed the counter");

    // Removing the agent removes its folders in every hierarchy.
    supervisor
        .remove("ticker", AgentData::Keep)
        .await
        .expect("remove");
    for controller in ["memory", "pids", "cpu", "freezer"] {
        if let Some(dir) = control_dir(mode, &scope, "ticker", controller) {
            assert!(!dir.exists(), "{} left behind", dir.display());
        }
    }
}

/// A supervisor that died without cleaning up left an agent cgroup with a
/// process in it: the next supervisor with the same scope kills it and
/// removes the folders.
#[tokio::test]
async fn leftovers_are_killed_at_start() {
    let Some((first, _events, base, scope)) = supervisor("leftover") else {
        return;
    };
    let mode = first.limit_mode();
    drop(first);
    let dirs: Vec<PathBuf> = {
        let mut dirs = Vec::new();
        for controller in ["memory", "pids", "cpu", "freezer"] {
            if let Some(dir) = control_dir(mode, &scope, "stale", controller) {
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
        }
        dirs
    };
    // The first supervisor's cleanup runs on its task; wait for it.
    let scope_dir = dirs[0].parent().expect("scope folder").to_owned();
    eventually("the first supervisor's cleanup", || !scope_dir.exists()).await;
    let mut child = KillOnDrop(
        std::process::Command::new("/bin/sleep")
            .arg("1000")
            .spawn()
            .expect("spawn"),
    );
    let child = &mut child.0;
    for dir in &dirs {
        fs::create_dir_all(dir).expect("stale cgroup");
        fs::write(dir.join("cgroup.procs"), child.id().to_string()).expect("join");
    }
    let mut config = SupervisorConfig::new(base.path());
    config.cgroup = CgroupPlacement::Auto {
        scope: scope.clone(),
    };
    let (second, _events) = Supervisor::new(config).expect("supervisor");
    assert_eq!(second.limit_mode(), mode);
    let status = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the leftover process was killed");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    for dir in &dirs {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    eprintln!("limits: {mode} killed and removed a leftover agent cgroup");
}

/// Kills the test's own leftover process should the test fail before the
/// supervisor does.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
