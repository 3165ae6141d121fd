//! cgroup v1: the agent's folder `MOUNT/osmoda/SCOPE/AGENT` in each of the
//! memory and pids hierarchies, and in the cpu and freezer ones when they
//! are mounted. Without cpu the CPU limit is not enforced; without freezer
//! agents are frozen by SIGSTOP, as under rlimits.
//!
//! Unlike v2 there is no `cgroup.kill`, no `populated` flag and no
//! `memory.oom.group`: killing reads `cgroup.procs` and signals each pid
//! until none is left, and an OOM kill takes one process (the supervisor
//! then kills the rest of the agent when its leader exits).

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::v2::{cpu_period_us, cpu_quota_us};
use super::{flat_keyed, read_words, remove_dir_patiently, write_control, write_if_present};
use crate::spec::Limits;

/// Rounds of "list, SIGKILL each" before `kill` gives up, about 1 ms apart:
/// enough for a fork bomb bounded by `pids.max` to run out of children.
const KILL_ROUNDS: usize = 200;

/// The same folder in each hierarchy: the mount points, a scope or an
/// agent. Two controllers may share a hierarchy (`cpu,cpuacct` and the
/// like), hence [`Hierarchies::distinct`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hierarchies {
    pub memory: PathBuf,
    pub pids: PathBuf,
    pub cpu: Option<PathBuf>,
    pub freezer: Option<PathBuf>,
}

impl Hierarchies {
    /// The v1 mounts of the four controllers; `Err` names a missing
    /// required one.
    pub(crate) fn from_mountinfo(mountinfo: &str) -> Result<Self, String> {
        let mounts = super::mounts(mountinfo);
        let find = |controller: &str| {
            mounts
                .iter()
                .find(|m| m.fstype == "cgroup" && m.super_options.iter().any(|o| o == controller))
                .map(|m| m.point.clone())
        };
        let required = |controller: &str| {
            find(controller)
                .ok_or_else(|| format!("no {controller} cgroup v1 hierarchy is mounted"))
        };
        Ok(Self {
            memory: required("memory")?,
            pids: required("pids")?,
            cpu: find("cpu"),
            freezer: find("freezer"),
        })
    }

    pub(crate) fn join(&self, relative: &Path) -> Self {
        Self {
            memory: self.memory.join(relative),
            pids: self.pids.join(relative),
            cpu: self.cpu.as_ref().map(|p| p.join(relative)),
            freezer: self.freezer.as_ref().map(|p| p.join(relative)),
        }
    }

    /// Every folder once, memory first.
    pub(crate) fn distinct(&self) -> Vec<&Path> {
        let mut out: Vec<&Path> = Vec::with_capacity(4);
        let all = [
            Some(&self.memory),
            Some(&self.pids),
            self.cpu.as_ref(),
            self.freezer.as_ref(),
        ];
        for path in all.into_iter().flatten() {
            if !out.contains(&path.as_path()) {
                out.push(path);
            }
        }
        out
    }
}

/// The scope's folders in each hierarchy.
#[derive(Debug)]
pub(crate) struct V1Root {
    scope: Hierarchies,
}

/// Makes `MOUNT/osmoda/SCOPE` in every hierarchy; `Err` is the reason
/// cgroup v1 cannot be used, for people to read.
pub(crate) fn probe(scope: &str) -> Result<V1Root, String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    let mounts = Hierarchies::from_mountinfo(&mountinfo)?;
    // Checked before anything is created: an `access` on the mount point
    // sees a read-only mount (EROFS) and missing permission alike.
    for mount in mounts.distinct() {
        if let Err(e) = check_writable(mount) {
            return Err(format!("{} is not writable: {e}", mount.display()));
        }
    }
    let root = V1Root {
        scope: mounts.join(&Path::new("osmoda").join(scope)),
    };
    for mount in mounts.distinct() {
        for dir in [mount.join("osmoda"), mount.join("osmoda").join(scope)] {
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    root.remove();
                    return Err(format!("cannot create cgroup {}: {e}", dir.display()));
                }
            }
        }
    }
    root.kill_leftovers();
    Ok(root)
}

fn check_writable(path: &Path) -> io::Result<()> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: access reads the valid C string we pass and nothing else.
    if unsafe { libc::access(c_path.as_ptr(), libc::W_OK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl V1Root {
    #[cfg(test)]
    pub(crate) fn scope(&self) -> &Hierarchies {
        &self.scope
    }

    pub(crate) fn agent(&self, name: &str) -> V1Cgroup {
        V1Cgroup {
            dirs: self.scope.join(Path::new(name)),
        }
    }

    /// Where the agents' cgroups go, and what is not enforced here.
    pub(crate) fn describe(&self) -> String {
        let dirs: Vec<String> = self
            .scope
            .distinct()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let mut text = format!("agent cgroups (v1) under {}", dirs.join(", "));
        if self.scope.cpu.is_none() {
            text.push_str("; cpu limits not enforced: no cpu cgroup v1 hierarchy is mounted");
        }
        if self.scope.freezer.is_none() {
            text.push_str("; freezing by SIGSTOP: no freezer cgroup v1 hierarchy is mounted");
        }
        text
    }

    /// Agent folders a supervisor that died without cleaning up left in
    /// this scope (in any hierarchy): killed and removed, so a restarted
    /// node starts from nothing.
    fn kill_leftovers(&self) {
        let mut names = BTreeSet::new();
        for dir in self.scope.distinct() {
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    names.insert(entry.file_name());
                }
            }
        }
        for name in names {
            let stale = V1Cgroup {
                dirs: self.scope.join(Path::new(&name)),
            };
            if let Err(e) = stale.remove() {
                tracing::warn!(cgroup = %stale.path().display(), error = %e, "cannot remove a leftover agent cgroup");
            }
        }
    }

    /// Removes the scope folders, and `osmoda` above them, where empty:
    /// folders still in use (an agent cgroup, another scope) stay.
    pub(crate) fn remove(&self) {
        for dir in self.scope.distinct() {
            let _ = fs::remove_dir(dir);
            if let Some(parent) = dir.parent() {
                let _ = fs::remove_dir(parent);
            }
        }
    }
}

/// One agent's folders (they may not exist yet).
#[derive(Debug, Clone)]
pub(crate) struct V1Cgroup {
    dirs: Hierarchies,
}

impl V1Cgroup {
    #[cfg(test)]
    pub(crate) fn new(dirs: Hierarchies) -> Self {
        Self { dirs }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.dirs.memory
    }

    /// Makes the folders; ones left populated by an earlier run are emptied.
    pub(crate) fn create(&self) -> io::Result<()> {
        for dir in self.dirs.distinct() {
            match fs::create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
            }
        }
        if self.is_populated() {
            self.kill()?;
        }
        Ok(())
    }

    /// Writes every limit, "-1"/"max" for unset ones so a changed spec
    /// loosens as well as tightens. The CPU limit is skipped without a cpu
    /// hierarchy (the limit mode's reason says so).
    pub(crate) fn apply_limits(&self, limits: &Limits) -> io::Result<()> {
        let memory = |file: &str| self.dirs.memory.join(file);
        // memsw (memory + swap) may never be below the memory limit, so it
        // is opened fully first, then both are set in an order that keeps
        // memsw >= memory. Without memsw (no swap accounting) swap is
        // discouraged through swappiness instead.
        let memsw = memory("memory.memsw.limit_in_bytes");
        write_if_present(&memsw, "-1")?;
        match limits.memory_bytes {
            Some(bytes) => {
                write_control(&memory("memory.limit_in_bytes"), &bytes.to_string())?;
                if memsw.exists() {
                    write_control(&memsw, &bytes.to_string())?;
                } else {
                    write_if_present(&memory("memory.swappiness"), "0")?;
                }
            }
            None => write_control(&memory("memory.limit_in_bytes"), "-1")?,
        }
        // Restarted at 0 for each life, for kernels without an OOM kill
        // counter (see `hit_memory_limit_uncounted`).
        write_if_present(&memory("memory.failcnt"), "0")?;
        let pids_max = self.dirs.pids.join("pids.max");
        match limits.max_processes {
            Some(count) => write_control(&pids_max, &count.to_string())?,
            None => write_control(&pids_max, "max")?,
        }
        if let Some(cpu) = &self.dirs.cpu {
            write_control(&cpu.join("cpu.cfs_period_us"), &cpu_period_us().to_string())?;
            let quota = limits
                .cpu_percent
                .map_or_else(|| "-1".to_string(), |p| cpu_quota_us(p).to_string());
            write_control(&cpu.join("cpu.cfs_quota_us"), &quota)?;
        }
        Ok(())
    }

    /// Each hierarchy's `cgroup.procs`, opened for writing, for the child
    /// to write `0` into (moving itself) between fork and exec.
    pub(crate) fn open_procs(&self) -> io::Result<Vec<OwnedFd>> {
        self.dirs
            .distinct()
            .into_iter()
            .map(|dir| {
                let path = dir.join("cgroup.procs");
                fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(&path)
                    .map(OwnedFd::from)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
            })
            .collect()
    }

    pub(crate) fn freeze(&self, frozen: bool) -> io::Result<()> {
        match (&self.dirs.freezer, frozen) {
            (Some(freezer), _) => write_control(
                &freezer.join("freezer.state"),
                if frozen { "FROZEN" } else { "THAWED" },
            ),
            (None, true) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "no freezer cgroup v1 hierarchy is mounted",
            )),
            (None, false) => Ok(()),
        }
    }

    /// SIGKILL to every process listed in any of the agent's hierarchies,
    /// again until none is left (forks race the listing), for at most
    /// [`KILL_ROUNDS`] rounds. Zombies are not listed, so an agent leader
    /// not yet reaped does not hold this up.
    pub(crate) fn kill(&self) -> io::Result<()> {
        for round in 0..KILL_ROUNDS {
            let pids = self.pids();
            if pids.is_empty() {
                return Ok(());
            }
            for &pid in &pids {
                // SAFETY: kill has no memory effects; a pid gone meanwhile
                // is ESRCH. Pids listed by the cgroup are never 0 or -1.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            if round == 0 {
                // A v1-frozen task acts on SIGKILL only once thawed; the
                // agent is being killed whole, so thawing frees nothing
                // that should stay stopped.
                let _ = self.freeze(false);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Err(io::Error::other(format!(
            "{}: processes left after {KILL_ROUNDS} rounds of SIGKILL",
            self.path().display()
        )))
    }

    /// Pids in any of the agent's folders (missing folders list none).
    fn pids(&self) -> BTreeSet<i32> {
        self.dirs
            .distinct()
            .iter()
            .filter_map(|dir| read_words(&dir.join("cgroup.procs")).ok())
            .flatten()
            .filter_map(|pid| pid.parse::<i32>().ok())
            .filter(|&pid| pid > 0)
            .collect()
    }

    /// `oom_kill` from `memory.oom_control` (Linux 4.13+).
    pub(crate) fn oom_kills(&self) -> Option<u64> {
        let text = fs::read_to_string(self.dirs.memory.join("memory.oom_control")).ok()?;
        flat_keyed(&text, "oom_kill")
    }

    /// The memory limit was hit (`memory.failcnt` above the 0 written by
    /// `apply_limits`) on a kernel that does not count OOM kills.
    pub(crate) fn hit_memory_limit_uncounted(&self) -> bool {
        self.oom_kills().is_none()
            && fs::read_to_string(self.dirs.memory.join("memory.failcnt"))
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .is_some_and(|n| n > 0)
    }

    pub(crate) fn is_populated(&self) -> bool {
        !self.pids().is_empty()
    }

    /// Kills what is inside, removes every folder (waiting up to about a
    /// second each for the kernel to let go). Folders already gone are fine.
    pub(crate) fn remove(&self) -> io::Result<()> {
        if self.is_populated() {
            self.kill()?;
        }
        for dir in self.dirs.distinct() {
            remove_dir_patiently(dir)?;
        }
        Ok(())
    }
}
