//! cgroup v2: `ROOT/AGENT`, where ROOT is `MOUNT/osmoda/SCOPE` by default
//! ([`CgroupPlacement::Auto`]) or any path the caller gives. ROOT and the
//! folders above it up to the first existing one hold no processes; only
//! agent cgroups do. That is what cgroup v2's "no internal processes" rule
//! needs for `memory`, `cpu` and `pids` to be enabled in each
//! `cgroup.subtree_control` on the way down.
//!
//! [`probe`] either returns a root where all three controllers work, or the
//! reason it could not (no cgroup2 mount, read-only, controllers bound to
//! cgroup v1, the existing parent holds processes…). Nothing is created
//! before the checks that can be made without writing pass.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{flat_keyed, read_words, remove_dir_patiently, write_control, write_if_present};
use crate::spec::Limits;

/// The controllers an agent cgroup needs.
pub(crate) const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];
/// `statfs` magic of cgroup2.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// `cpu.max` period: 100 ms, the kernel's default.
const CPU_PERIOD_US: u64 = 100_000;

/// A cgroup folder the supervisor owns, with the folders it created to
/// reach it (removed again, deepest first, when empty).
#[derive(Debug)]
pub(crate) struct V2Root {
    path: PathBuf,
    created: Vec<PathBuf>,
}

/// `MOUNT/osmoda/SCOPE` on the host's cgroup2 mount; the scope is valid.
pub(crate) fn probe_auto(scope: &str) -> Result<V2Root, String> {
    let mount =
        find_cgroup2_mount().ok_or_else(|| "no cgroup2 file system is mounted".to_string())?;
    probe(mount.join("osmoda").join(scope))
}

/// Finds or makes `root` with the controllers working; `Err` is the reason
/// it cannot, for people to read.
pub(crate) fn probe(root: PathBuf) -> Result<V2Root, String> {
    let existing = root
        .ancestors()
        .find(|p| p.exists())
        .ok_or_else(|| format!("{}: no existing parent", root.display()))?
        .to_path_buf();
    if !is_cgroup2(&existing) {
        return Err(format!(
            "{} is not on a cgroup2 file system",
            existing.display()
        ));
    }
    let available = read_words(&existing.join("cgroup.controllers"))
        .map_err(|e| format!("{}/cgroup.controllers: {e}", existing.display()))?;
    let missing: Vec<&str> = CONTROLLERS
        .iter()
        .copied()
        .filter(|c| !available.iter().any(|a| a == c))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "cgroup v2 at {} does not offer the {} controller(s) (bound to a cgroup v1 \
             hierarchy, or not delegated to us)",
            existing.display(),
            missing.join(", ")
        ));
    }
    let mut cgroup_root = V2Root {
        path: root.clone(),
        created: Vec::new(),
    };
    // Create each missing folder from the existing one down, enabling the
    // controllers in every subtree_control on the way.
    let below: Vec<PathBuf> = root
        .ancestors()
        .take_while(|p| *p != existing)
        .map(Path::to_path_buf)
        .collect();
    let result = (|| {
        enable_controllers(&existing)?;
        for dir in below.iter().rev() {
            match fs::create_dir(dir) {
                Ok(()) => cgroup_root.created.push(dir.clone()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("cannot create cgroup {}: {e}", dir.display())),
            }
            enable_controllers(dir)?;
        }
        Ok(())
    })();
    if let Err(reason) = result {
        cgroup_root.remove();
        return Err(reason);
    }
    cgroup_root.kill_leftovers();
    Ok(cgroup_root)
}

/// Adds the controllers to `dir/cgroup.subtree_control` unless already there.
fn enable_controllers(dir: &Path) -> Result<(), String> {
    let file = dir.join("cgroup.subtree_control");
    let enabled = read_words(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let wanted: Vec<String> = CONTROLLERS
        .iter()
        .filter(|c| !enabled.iter().any(|e| e == *c))
        .map(|c| format!("+{c}"))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    fs::write(&file, wanted.join(" ")).map_err(|e| {
        let hint = if e.raw_os_error() == Some(libc::EBUSY) {
            " (the cgroup holds processes; move them to a leaf cgroup or point the \
             supervisor at a delegated subtree)"
        } else {
            ""
        };
        format!(
            "cannot enable {} in {}: {e}{hint}",
            wanted.join(" "),
            file.display()
        )
    })
}

impl V2Root {
    /// A root at `path` that the caller made; removed with the supervisor.
    #[cfg(test)]
    pub(crate) fn adopt(path: PathBuf) -> Self {
        Self {
            created: vec![path.clone()],
            path,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn agent(&self, name: &str) -> V2Cgroup {
        V2Cgroup {
            path: self.path.join(name),
        }
    }

    /// A supervisor that died without cleaning up (SIGKILL, power loss)
    /// may have left agent cgroups, possibly with processes: kill and
    /// remove them, so a restarted node starts from nothing.
    fn kill_leftovers(&self) {
        let Ok(entries) = fs::read_dir(&self.path) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let stale = V2Cgroup { path: entry.path() };
                if let Err(e) = stale.remove() {
                    tracing::warn!(cgroup = %stale.path.display(), error = %e, "cannot remove a leftover agent cgroup");
                }
            }
        }
    }

    /// Removes the folders this root created, deepest first; folders still
    /// in use (another scope, an agent cgroup) stay.
    pub(crate) fn remove(&mut self) {
        for dir in self.created.drain(..).rev() {
            let _ = fs::remove_dir(&dir);
        }
    }
}

/// One agent's cgroup (the folder may not exist yet).
#[derive(Debug, Clone)]
pub(crate) struct V2Cgroup {
    path: PathBuf,
}

impl V2Cgroup {
    #[cfg(test)]
    pub(crate) fn at(path: PathBuf) -> Self {
        Self { path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the folder; one left populated by an earlier run is emptied.
    pub(crate) fn create(&self) -> io::Result<()> {
        match fs::create_dir(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if self.is_populated() {
                    self.kill()?;
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Writes every limit, `max` for the unset ones so a changed spec
    /// loosens as well as tightens.
    ///
    /// A limit that is set needs its file; "no limit" on a missing file
    /// (controller not enabled) is already true and skipped.
    pub(crate) fn apply_limits(&self, limits: &Limits) -> io::Result<()> {
        let file = |name: &str| self.path.join(name);
        match limits.memory_bytes {
            Some(bytes) => {
                write_control(&file("memory.max"), &bytes.to_string())?;
                // Without this the kernel would swap the agent out instead
                // of stopping it, and the limit would bound nothing on a
                // host with swap.
                write_if_present(&file("memory.swap.max"), "0")?;
            }
            None => {
                write_if_present(&file("memory.max"), "max")?;
                write_if_present(&file("memory.swap.max"), "max")?;
            }
        }
        // An OOM kill (ours or the host's) takes the whole agent, not one
        // arbitrary process of it.
        write_if_present(&file("memory.oom.group"), "1")?;
        match limits.cpu_percent {
            Some(_) => write_control(&file("cpu.max"), &cpu_max(limits.cpu_percent))?,
            None => write_if_present(&file("cpu.max"), &cpu_max(None))?,
        }
        match limits.max_processes {
            Some(count) => write_control(&file("pids.max"), &count.to_string()),
            None => write_if_present(&file("pids.max"), "max"),
        }
    }

    /// `cgroup.procs` opened for writing, for the child to write `0` into
    /// (moving itself) between fork and exec, before it can fork anything.
    pub(crate) fn open_procs(&self) -> io::Result<Vec<OwnedFd>> {
        let file = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(self.path.join("cgroup.procs"))?;
        Ok(vec![file.into()])
    }

    pub(crate) fn freeze(&self, frozen: bool) -> io::Result<()> {
        write_control(
            &self.path.join("cgroup.freeze"),
            if frozen { "1" } else { "0" },
        )
    }

    /// SIGKILL to every process in the cgroup: `cgroup.kill` (Linux 5.14+),
    /// else each pid listed, a few rounds to catch processes forked meanwhile.
    pub(crate) fn kill(&self) -> io::Result<()> {
        match write_control(&self.path.join("cgroup.kill"), "1") {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        for _ in 0..10 {
            let pids = read_words(&self.path.join("cgroup.procs"))?;
            if pids.is_empty() {
                break;
            }
            for pid in pids.iter().filter_map(|p| p.parse::<i32>().ok()) {
                // SAFETY: kill has no memory effects; a pid gone meanwhile is ESRCH.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        Ok(())
    }

    /// The `oom_kill` count from `memory.events`, if readable.
    pub(crate) fn oom_kills(&self) -> Option<u64> {
        let text = fs::read_to_string(self.path.join("memory.events")).ok()?;
        flat_keyed(&text, "oom_kill")
    }

    pub(crate) fn is_populated(&self) -> bool {
        fs::read_to_string(self.path.join("cgroup.events"))
            .ok()
            .and_then(|text| flat_keyed(&text, "populated"))
            .is_some_and(|n| n != 0)
    }

    /// Kills what is inside, waits (up to about a second) for it to empty,
    /// removes the folder. A folder already gone is fine.
    pub(crate) fn remove(&self) -> io::Result<()> {
        if !self.path.exists() {
            return Ok(());
        }
        if self.is_populated() {
            // Thawed first: with an older kernel's pid-by-pid kill, frozen
            // tasks die only once thawed.
            let _ = self.freeze(false);
            self.kill()?;
        }
        remove_dir_patiently(&self.path)
    }
}

/// `cpu.max` for a percentage of one core: quota and period in µs.
pub(crate) fn cpu_max(percent: Option<u32>) -> String {
    match percent {
        // 1% of 100 ms is 1 ms, the kernel's smallest quota.
        Some(percent) => format!("{} {CPU_PERIOD_US}", cpu_quota_us(percent)),
        None => format!("max {CPU_PERIOD_US}"),
    }
}

/// The CPU time per [`CPU_PERIOD_US`] that `percent` of one core is; the
/// same period is used under cgroup v1.
pub(crate) fn cpu_quota_us(percent: u32) -> u64 {
    u64::from(percent) * CPU_PERIOD_US / 100
}

pub(crate) fn cpu_period_us() -> u64 {
    CPU_PERIOD_US
}

fn is_cgroup2(path: &Path) -> bool {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes only into the zeroed struct we pass; the path is
    // a valid C string that outlives the call.
    unsafe {
        let mut stat: libc::statfs = std::mem::zeroed();
        libc::statfs(c_path.as_ptr(), &mut stat) == 0 && stat.f_type as i64 == CGROUP2_SUPER_MAGIC
    }
}

/// The cgroup2 mount point: `/sys/fs/cgroup` on a unified host, otherwise
/// the first cgroup2 mount listed (`/sys/fs/cgroup/unified` on a hybrid one).
pub(crate) fn find_cgroup2_mount() -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mounts = cgroup2_mounts(&text);
    mounts
        .iter()
        .find(|m| m.as_path() == Path::new("/sys/fs/cgroup"))
        .or_else(|| mounts.first())
        .cloned()
}

/// Mount points of type cgroup2 in a mountinfo text.
pub(crate) fn cgroup2_mounts(mountinfo: &str) -> Vec<PathBuf> {
    super::mounts(mountinfo)
        .into_iter()
        .filter(|m| m.fstype == "cgroup2")
        .map(|m| m.point)
        .collect()
}
