//! cgroup v2: finding a usable hierarchy, one cgroup per agent, its limits,
//! freezing, killing, OOM counters, cleanup.
//!
//! Layout: `ROOT/AGENT`, where ROOT is `MOUNT/osmoda/SCOPE` by default
//! ([`CgroupPlacement::Auto`]) or any path the caller gives. ROOT and the
//! folders above it up to the first existing one hold no processes; only
//! agent cgroups do. That is what cgroup v2's "no internal processes" rule
//! needs for `memory`, `cpu` and `pids` to be enabled in each
//! `cgroup.subtree_control` on the way down.
//!
//! [`probe`] either returns a root where all three controllers work, or the
//! reason it could not (no cgroup2 mount, read-only, controllers bound to
//! cgroup v1, the existing parent holds processes…), in which case the
//! supervisor falls back to rlimits. Nothing is created before the checks
//! that can be made without writing pass.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::spec::Limits;

/// The controllers an agent cgroup needs.
pub(crate) const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];
/// `statfs` magic of cgroup2.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// `cpu.max` period: 100 ms, the kernel's default.
const CPU_PERIOD_US: u64 = 100_000;

/// Where the supervisor puts its cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupPlacement {
    /// `MOUNT/osmoda/SCOPE` on the host's cgroup2 mount. The scope must be
    /// unique per supervisor on the host (a node id, say): a supervisor
    /// kills whatever it finds left in its scope from an earlier run.
    Auto { scope: String },
    /// Exactly this folder (a delegated subtree, for instance); created if
    /// missing, its parent must exist.
    At(PathBuf),
    /// Do not use cgroups; rlimits only.
    Disabled,
}

/// A cgroup folder the supervisor owns, with the folders it created to
/// reach it (removed again, deepest first, when empty).
#[derive(Debug)]
pub(crate) struct CgroupRoot {
    path: PathBuf,
    created: Vec<PathBuf>,
}

/// Finds or makes a root where the controllers work; `Err` is the reason
/// for falling back to rlimits, for people to read.
pub(crate) fn probe(placement: &CgroupPlacement) -> Result<CgroupRoot, String> {
    let root = match placement {
        CgroupPlacement::Disabled => return Err("cgroups disabled by configuration".into()),
        CgroupPlacement::At(path) => path.clone(),
        CgroupPlacement::Auto { scope } => {
            crate::spec::validate_name(scope)
                .map_err(|e| format!("cgroup scope {scope:?} is not usable: {e}"))?;
            let mount = find_cgroup2_mount()
                .ok_or_else(|| "no cgroup2 file system is mounted".to_string())?;
            mount.join("osmoda").join(scope)
        }
    };
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
    let mut cgroup_root = CgroupRoot {
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

impl CgroupRoot {
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

    pub(crate) fn agent(&self, name: &str) -> AgentCgroup {
        AgentCgroup {
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
                let stale = AgentCgroup { path: entry.path() };
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
pub(crate) struct AgentCgroup {
    path: PathBuf,
}

impl AgentCgroup {
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
        match limits.memory_bytes {
            Some(bytes) => {
                self.write("memory.max", &bytes.to_string())?;
                // Without this the kernel would swap the agent out instead
                // of stopping it, and the limit would bound nothing on a
                // host with swap.
                self.write_if_present("memory.swap.max", "0")?;
            }
            None => {
                self.write_if_present("memory.max", "max")?;
                self.write_if_present("memory.swap.max", "max")?;
            }
        }
        // An OOM kill (ours or the host's) takes the whole agent, not one
        // arbitrary process of it.
        self.write_if_present("memory.oom.group", "1")?;
        match limits.cpu_percent {
            Some(_) => self.write("cpu.max", &cpu_max(limits.cpu_percent))?,
            None => self.write_if_present("cpu.max", &cpu_max(None))?,
        }
        match limits.max_processes {
            Some(count) => self.write("pids.max", &count.to_string()),
            None => self.write_if_present("pids.max", "max"),
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
        self.write("cgroup.freeze", if frozen { "1" } else { "0" })
    }

    /// SIGKILL to every process in the cgroup: `cgroup.kill` (Linux 5.14+),
    /// else each pid listed, a few rounds to catch processes forked meanwhile.
    pub(crate) fn kill(&self) -> io::Result<()> {
        match self.write("cgroup.kill", "1") {
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
        let mut last = None;
        for _ in 0..100 {
            match fs::remove_dir(&self.path) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                // EBUSY while dying processes are still being torn down.
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(last.unwrap_or_else(|| io::Error::other("cgroup did not empty")))
    }

    /// Writes an existing control file. Never with O_CREAT: cgroupfs
    /// answers that with EACCES even for a file that merely does not exist,
    /// and a missing file must read as NotFound.
    fn write(&self, file: &str, value: &str) -> io::Result<()> {
        let path = self.path.join(file);
        fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .and_then(|mut f| io::Write::write_all(&mut f, value.as_bytes()))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }

    fn write_if_present(&self, file: &str, value: &str) -> io::Result<()> {
        match self.write(file, value) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

/// `cpu.max` for a percentage of one core: quota and period in µs.
pub(crate) fn cpu_max(percent: Option<u32>) -> String {
    match percent {
        // 1% of 100 ms is 1 ms, the kernel's smallest quota.
        Some(percent) => format!(
            "{} {CPU_PERIOD_US}",
            u64::from(percent) * CPU_PERIOD_US / 100
        ),
        None => format!("max {CPU_PERIOD_US}"),
    }
}

/// A value from a "flat keyed" cgroup file (`key value` per line).
pub(crate) fn flat_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn read_words(path: &Path) -> io::Result<Vec<String>> {
    Ok(fs::read_to_string(path)?
        .split_whitespace()
        .map(str::to_owned)
        .collect())
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

/// Mount points of type cgroup2 in a mountinfo text. Fields: `id parent
/// dev root mountpoint options [optional…] - fstype source superoptions`.
fn cgroup2_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fstype = after.split(' ').next()?;
            let mount_point = before.split(' ').nth(4)?;
            (fstype == "cgroup2").then(|| PathBuf::from(unescape_mount(mount_point)))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let text = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[path = "cgroup_tests.rs"]
mod tests;
