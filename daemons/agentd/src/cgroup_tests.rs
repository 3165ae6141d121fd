//! Tests of the cgroup module: file formats everywhere, and the real
//! kernel interface (create, join between fork and exec, freeze, kill,
//! remove) where a writable cgroup2 hierarchy exists and we are root.

use super::*;
use crate::process::{self, Confinement};
use crate::spec::AgentSpec;
use crate::status::{ExitStatus, LimitMode};

#[test]
fn flat_keyed_values() {
    let events = "low 0\nhigh 3\nmax 7\noom 2\noom_kill 1\noom_group_kill 0\n";
    assert_eq!(flat_keyed(events, "oom_kill"), Some(1));
    assert_eq!(flat_keyed(events, "oom"), Some(2));
    assert_eq!(flat_keyed(events, "missing"), None);
    assert_eq!(flat_keyed("populated 1\nfrozen 0\n", "populated"), Some(1));
    assert_eq!(flat_keyed("oom_kill x\n", "oom_kill"), None);
}

#[test]
fn cpu_max_values() {
    assert_eq!(cpu_max(None), "max 100000");
    assert_eq!(cpu_max(Some(100)), "100000 100000");
    assert_eq!(cpu_max(Some(50)), "50000 100000");
    assert_eq!(cpu_max(Some(250)), "250000 100000");
    assert_eq!(cpu_max(Some(1)), "1000 100000");
}

#[test]
fn mountinfo_parsing() {
    // A hybrid host (this shape is what the development machine has) and a
    // unified one, plus an escaped space.
    let hybrid = "\
25 30 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw
27 25 0:24 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
";
    assert_eq!(
        cgroup2_mounts(hybrid),
        [PathBuf::from("/sys/fs/cgroup/unified")]
    );
    let unified = "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev - cgroup2 cgroup2 rw,nsdelegate\n";
    assert_eq!(cgroup2_mounts(unified), [PathBuf::from("/sys/fs/cgroup")]);
    let escaped = "40 24 0:31 / /mnt/my\\040cgroups rw - cgroup2 none rw\n";
    assert_eq!(cgroup2_mounts(escaped), [PathBuf::from("/mnt/my cgroups")]);
    assert!(cgroup2_mounts("garbage\n\n1 2 3\n").is_empty());
    assert_eq!(unescape_mount("a\\134b\\"), "a\\b\\");
}

#[test]
fn limits_written_to_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    for file in [
        "memory.max",
        "memory.swap.max",
        "memory.oom.group",
        "cpu.max",
        "pids.max",
    ] {
        fs::write(dir.path().join(file), "").expect("fake file");
    }
    let cgroup = AgentCgroup::at(dir.path().to_owned());
    let read = |file: &str| fs::read_to_string(dir.path().join(file)).expect("read");
    let limits = Limits {
        memory_bytes: Some(64 << 20),
        cpu_percent: Some(50),
        max_processes: Some(32),
    };
    cgroup.apply_limits(&limits).expect("apply");
    assert_eq!(read("memory.max"), (64u64 << 20).to_string());
    assert_eq!(read("memory.swap.max"), "0");
    assert_eq!(read("memory.oom.group"), "1");
    assert_eq!(read("cpu.max"), "50000 100000");
    assert_eq!(read("pids.max"), "32");
    // Unset limits are written as "max", loosening a previous spec.
    cgroup.apply_limits(&Limits::default()).expect("apply");
    assert_eq!(read("memory.max"), "max");
    assert_eq!(read("memory.swap.max"), "max");
    assert_eq!(read("cpu.max"), "max 100000");
    assert_eq!(read("pids.max"), "max");
    // Files the kernel may lack (no swap accounting) are skipped; required
    // ones are errors.
    fs::remove_file(dir.path().join("memory.swap.max")).expect("remove");
    cgroup
        .apply_limits(&limits)
        .expect("apply without swap file");
    fs::remove_file(dir.path().join("pids.max")).expect("remove");
    assert!(cgroup.apply_limits(&limits).is_err());
}

#[test]
fn v1_hierarchies_from_mountinfo() {
    // This development host: every controller in its own hierarchy.
    let separate = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    let h = Hierarchies::from_mountinfo(separate).expect("hierarchies");
    assert_eq!(h.memory, Path::new("/sys/fs/cgroup/memory"));
    assert_eq!(h.pids, Path::new("/sys/fs/cgroup/pids"));
    assert_eq!(h.cpu.as_deref(), Some(Path::new("/sys/fs/cgroup/cpu")));
    assert_eq!(
        h.freezer.as_deref(),
        Some(Path::new("/sys/fs/cgroup/freezer"))
    );
    // systemd's shape: cpu shares a hierarchy with cpuacct; no freezer.
    let shared = "\
30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
";
    let h = Hierarchies::from_mountinfo(shared).expect("hierarchies");
    assert_eq!(
        h.cpu.as_deref(),
        Some(Path::new("/sys/fs/cgroup/cpu,cpuacct"))
    );
    assert_eq!(h.freezer, None);
    assert_eq!(h.distinct().len(), 3);
    // memory and pids are required; a cgroup2 mount does not count.
    let reason = Hierarchies::from_mountinfo(
        "31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
         41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
    )
    .expect_err("no pids");
    assert!(reason.contains("pids"), "{reason}");
}

/// Fake v1 folders: memory (with or without memsw), pids, cpu, no freezer.
fn fake_v1(root: &Path, memsw: bool) -> V1Cgroup {
    let dirs = Hierarchies {
        memory: root.join("memory"),
        pids: root.join("pids"),
        cpu: Some(root.join("cpu")),
        freezer: None,
    };
    let mut files = vec![
        "memory/memory.limit_in_bytes",
        "memory/memory.failcnt",
        "memory/memory.swappiness",
        "pids/pids.max",
        "cpu/cpu.cfs_period_us",
        "cpu/cpu.cfs_quota_us",
    ];
    if memsw {
        files.push("memory/memory.memsw.limit_in_bytes");
    }
    for file in files {
        let path = root.join(file);
        fs::create_dir_all(path.parent().expect("parent")).expect("fake folder");
        fs::write(path, "").expect("fake file");
    }
    V1Cgroup::new(dirs)
}

#[test]
fn v1_limits_written_to_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let read = |file: &str| fs::read_to_string(dir.path().join(file)).expect("read");
    let cgroup = fake_v1(dir.path(), true);
    let limits = Limits {
        memory_bytes: Some(64 << 20),
        cpu_percent: Some(50),
        max_processes: Some(20),
    };
    cgroup.apply_limits(&limits).expect("apply");
    assert_eq!(
        read("memory/memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(
        read("memory/memory.memsw.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(read("memory/memory.failcnt"), "0");
    assert_eq!(read("memory/memory.swappiness"), "");
    assert_eq!(read("pids/pids.max"), "20");
    assert_eq!(read("cpu/cpu.cfs_period_us"), "100000");
    assert_eq!(read("cpu/cpu.cfs_quota_us"), "50000");
    // Unset limits loosen a previous spec.
    cgroup.apply_limits(&Limits::default()).expect("apply");
    assert_eq!(read("memory/memory.limit_in_bytes"), "-1");
    assert_eq!(read("memory/memory.memsw.limit_in_bytes"), "-1");
    assert_eq!(read("pids/pids.max"), "max");
    assert_eq!(read("cpu/cpu.cfs_quota_us"), "-1");
    // No freezer: freezing is refused (the supervisor uses SIGSTOP),
    // thawing is a no-op.
    let error = cgroup.freeze(true).expect_err("no freezer");
    assert_eq!(error.kind(), io::ErrorKind::Unsupported);
    cgroup.freeze(false).expect("thaw");

    // Without swap accounting, swap is kept away through swappiness.
    let dir = tempfile::tempdir().expect("tempdir");
    let cgroup = fake_v1(dir.path(), false);
    cgroup.apply_limits(&limits).expect("apply");
    assert_eq!(
        fs::read_to_string(dir.path().join("memory/memory.swappiness")).expect("read"),
        "0"
    );
    // pids.max is required.
    fs::remove_file(dir.path().join("pids/pids.max")).expect("remove");
    assert!(cgroup.apply_limits(&limits).is_err());
}

#[test]
fn probe_refusals() {
    assert!(probe(&CgroupPlacement::Disabled).is_err());
    let dir = tempfile::tempdir().expect("tempdir");
    let reason = probe(&CgroupPlacement::At(dir.path().join("x"))).expect_err("tmp is not cgroup2");
    assert!(reason.contains("not on a cgroup2"), "{reason}");
    assert!(!dir.path().join("x").exists());
    let reason = probe(&CgroupPlacement::Auto {
        scope: "../escape".into(),
    })
    .expect_err("bad scope");
    assert!(reason.contains("scope"), "{reason}");
}

/// Whatever this host offers, probing either works (and cleans up after
/// itself) or explains why and leaves nothing behind.
#[test]
fn probe_leaves_nothing_behind() {
    let scope = format!("unit-probe-{}", std::process::id());
    let v2_path = find_cgroup2_mount().map(|m| m.join("osmoda").join(&scope));
    let v1_paths: Vec<PathBuf> = fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|text| Hierarchies::from_mountinfo(&text).ok())
        .map(|h| {
            let scope_dirs = h.join(&Path::new("osmoda").join(&scope));
            scope_dirs
                .distinct()
                .iter()
                .map(|p| p.to_path_buf())
                .collect()
        })
        .unwrap_or_default();
    match probe(&CgroupPlacement::Auto { scope }) {
        Ok((mut root, reason)) => {
            eprintln!("limits: {} ({reason})", root.mode());
            let made: Vec<PathBuf> = match &root {
                CgroupRoot::V2(root) => vec![root.path().to_owned()],
                CgroupRoot::V1(root) => root
                    .scope()
                    .distinct()
                    .iter()
                    .map(|p| p.to_path_buf())
                    .collect(),
            };
            match root.mode() {
                LimitMode::CgroupV2 => assert_eq!(made, v2_path.into_iter().collect::<Vec<_>>()),
                _ => assert_eq!(made, v1_paths),
            }
            assert!(made.iter().all(|p| p.is_dir()), "{made:?}");
            root.remove();
            assert!(made.iter().all(|p| !p.exists()), "{made:?}");
        }
        Err(reason) => {
            eprintln!("limits: rlimits ({reason})");
            assert!(v2_path.is_none_or(|p| !p.exists()));
            assert!(v1_paths.iter().all(|p| !p.exists()));
        }
    }
}

/// Removes a test cgroup folder even when an assertion fails.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = AgentCgroup::at(self.0.join("agent")).remove();
        let _ = fs::remove_dir(&self.0);
    }
}

/// The kernel side, without controllers (so it runs on hybrid hosts too):
/// the child joins its cgroup before exec, the cgroup freezes and thaws,
/// `kill` ends it, `remove` deletes the folder.
#[tokio::test]
async fn live_cgroup_join_freeze_kill_remove() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return;
    }
    let Some(mount) = find_cgroup2_mount() else {
        eprintln!("skipped: no cgroup2 mount");
        return;
    };
    let test_root = mount.join(format!("osmoda-unit-{}", std::process::id()));
    if let Err(e) = fs::create_dir(&test_root) {
        eprintln!("skipped: cannot create {}: {e}", test_root.display());
        return;
    }
    let _cleanup = RemoveOnDrop(test_root.clone());
    let cgroup = AgentCgroup::at(test_root.join("agent"));
    cgroup.create().expect("create agent cgroup");
    let workspace = tempfile::tempdir().expect("tempdir");
    let spec = AgentSpec::new("unit", "/bin/sleep");
    let spec = AgentSpec {
        args: vec!["30".into()],
        ..spec
    };
    let confinement = Confinement {
        cgroup_procs: cgroup.open_procs().expect("open cgroup.procs"),
        rlimits: None,
        sandbox: None,
    };
    let launched =
        process::launch(&spec, &Default::default(), workspace.path(), confinement).expect("launch");
    let pid = launched.pid;
    let procs = fs::read_to_string(cgroup.path().join("cgroup.procs")).expect("procs");
    assert!(procs.lines().any(|line| line == pid.to_string()), "{procs}");
    assert!(cgroup.is_populated());

    cgroup.freeze(true).expect("freeze");
    let events = cgroup.path().join("cgroup.events");
    let mut frozen = false;
    for _ in 0..200 {
        let text = fs::read_to_string(&events).expect("events");
        if flat_keyed(&text, "frozen") == Some(1) {
            frozen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(frozen, "cgroup never reported frozen");
    cgroup.freeze(false).expect("thaw");

    cgroup.kill().expect("kill");
    tokio::time::timeout(Duration::from_secs(10), process::wait_exit(pid))
        .await
        .expect("process ended");
    assert_eq!(
        process::reap(pid),
        ExitStatus::Signal {
            signal: libc::SIGKILL
        }
    );
    cgroup.remove().expect("remove");
    assert!(!cgroup.path().exists());
}
