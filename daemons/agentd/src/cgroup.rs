//! Agent cgroups: finding a usable hierarchy, one cgroup per agent, its
//! limits, freezing, killing, OOM counters, cleanup.
//!
//! Two backends behind one pair of types ([`CgroupRoot`], [`AgentCgroup`]):
//!
//! - [`v2`]: one cgroup per agent on the cgroup2 mount, for hosts where it
//!   offers memory, cpu and pids (systemd with `Delegate=yes`, say).
//! - [`v1`]: one folder per agent in each of the memory, pids, cpu and
//!   freezer cgroup v1 hierarchies, for hosts (many edge distributions)
//!   that still mount those controllers as cgroup v1.
//!
//! [`probe`] tries them in that order; when neither works the supervisor
//! falls back to rlimits, and the reason says why each was not taken.

mod v1;
mod v2;

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::spec::Limits;
use crate::status::LimitMode;

#[cfg(test)]
pub(crate) use v1::{Hierarchies, V1Cgroup};
#[cfg(test)]
pub(crate) use v2::{cgroup2_mounts, cpu_max, find_cgroup2_mount};

/// Where the supervisor puts its cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupPlacement {
    /// `MOUNT/osmoda/SCOPE` on the host's cgroup2 mount, else in each
    /// cgroup v1 hierarchy. The scope must be unique per supervisor on the
    /// host (a node id, say): a supervisor kills whatever it finds left in
    /// its scope from an earlier run.
    Auto { scope: String },
    /// Exactly this cgroup2 folder (a delegated subtree, for instance);
    /// created if missing, its parent must exist. cgroup v1 is not tried.
    At(PathBuf),
    /// Do not use cgroups; rlimits only.
    Disabled,
}

/// Finds or makes a root where the limits work: cgroup v2 first, then v1.
/// `Ok` carries the text for [`crate::Supervisor::limit_mode_reason`];
/// `Err` is the reason for falling back to rlimits. Both are for people.
pub(crate) fn probe(placement: &CgroupPlacement) -> Result<(CgroupRoot, String), String> {
    let scope = match placement {
        CgroupPlacement::Disabled => return Err("cgroups disabled by configuration".into()),
        CgroupPlacement::At(path) => {
            return match v2::probe(path.clone()) {
                Ok(root) => {
                    let reason = format!("agent cgroups under {}", root.path().display());
                    Ok((CgroupRoot::V2(root), reason))
                }
                Err(reason) => Err(format!(
                    "cgroup v2 not usable: {reason}; cgroup v1 not tried: an explicit cgroup \
                     folder is a cgroup2 path"
                )),
            };
        }
        CgroupPlacement::Auto { scope } => scope,
    };
    crate::spec::validate_name(scope)
        .map_err(|e| format!("cgroup scope {scope:?} is not usable: {e}"))?;
    let v2_reason = match v2::probe_auto(scope) {
        Ok(root) => {
            let reason = format!("agent cgroups under {}", root.path().display());
            return Ok((CgroupRoot::V2(root), reason));
        }
        Err(reason) => reason,
    };
    match v1::probe(scope) {
        Ok(root) => {
            let reason = format!("cgroup v2 not usable: {v2_reason}; {}", root.describe());
            Ok((CgroupRoot::V1(root), reason))
        }
        Err(v1_reason) => Err(format!(
            "cgroup v2 not usable: {v2_reason}; cgroup v1 not usable: {v1_reason}"
        )),
    }
}

/// The supervisor's cgroups, in whichever version [`probe`] settled on.
#[derive(Debug)]
pub(crate) enum CgroupRoot {
    V2(v2::V2Root),
    V1(v1::V1Root),
}

impl CgroupRoot {
    /// A cgroup v2 root at `path` that the caller made.
    #[cfg(test)]
    pub(crate) fn adopt(path: PathBuf) -> Self {
        Self::V2(v2::V2Root::adopt(path))
    }

    pub(crate) fn mode(&self) -> LimitMode {
        match self {
            Self::V2(_) => LimitMode::CgroupV2,
            Self::V1(_) => LimitMode::CgroupV1,
        }
    }

    pub(crate) fn agent(&self, name: &str) -> AgentCgroup {
        match self {
            Self::V2(root) => AgentCgroup::V2(root.agent(name)),
            Self::V1(root) => AgentCgroup::V1(root.agent(name)),
        }
    }

    /// Removes the folders this root created (or, under v1, found empty).
    pub(crate) fn remove(&mut self) {
        match self {
            Self::V2(root) => root.remove(),
            Self::V1(root) => root.remove(),
        }
    }
}

/// One agent's cgroup (its folders may not exist yet).
#[derive(Debug, Clone)]
pub(crate) enum AgentCgroup {
    V2(v2::V2Cgroup),
    V1(v1::V1Cgroup),
}

impl AgentCgroup {
    /// A cgroup v2 agent cgroup at `path`.
    #[cfg(test)]
    pub(crate) fn at(path: PathBuf) -> Self {
        Self::V2(v2::V2Cgroup::at(path))
    }

    /// The folder to name in messages: the cgroup v2 folder, or the one in
    /// the v1 memory hierarchy.
    pub(crate) fn path(&self) -> &Path {
        match self {
            Self::V2(cgroup) => cgroup.path(),
            Self::V1(cgroup) => cgroup.path(),
        }
    }

    /// Makes the folder(s); one left populated by an earlier run is emptied.
    pub(crate) fn create(&self) -> io::Result<()> {
        match self {
            Self::V2(cgroup) => cgroup.create(),
            Self::V1(cgroup) => cgroup.create(),
        }
    }

    /// Writes every limit; unset ones as "no limit", so a changed spec
    /// loosens as well as tightens.
    pub(crate) fn apply_limits(&self, limits: &Limits) -> io::Result<()> {
        match self {
            Self::V2(cgroup) => cgroup.apply_limits(limits),
            Self::V1(cgroup) => cgroup.apply_limits(limits),
        }
    }

    /// The `cgroup.procs` files the child writes itself into before exec.
    pub(crate) fn open_procs(&self) -> io::Result<Vec<OwnedFd>> {
        match self {
            Self::V2(cgroup) => cgroup.open_procs(),
            Self::V1(cgroup) => cgroup.open_procs(),
        }
    }

    /// Freezes or thaws every process of the agent. Under cgroup v1
    /// without a freezer hierarchy, freezing is `Unsupported` (the caller
    /// falls back to SIGSTOP) and thawing does nothing.
    pub(crate) fn freeze(&self, frozen: bool) -> io::Result<()> {
        match self {
            Self::V2(cgroup) => cgroup.freeze(frozen),
            Self::V1(cgroup) => cgroup.freeze(frozen),
        }
    }

    /// SIGKILL to every process in the cgroup.
    pub(crate) fn kill(&self) -> io::Result<()> {
        match self {
            Self::V2(cgroup) => cgroup.kill(),
            Self::V1(cgroup) => cgroup.kill(),
        }
    }

    /// The kernel's count of OOM kills in the cgroup, if it keeps one.
    pub(crate) fn oom_kills(&self) -> Option<u64> {
        match self {
            Self::V2(cgroup) => cgroup.oom_kills(),
            Self::V1(cgroup) => cgroup.oom_kills(),
        }
    }

    /// Whether the memory limit was reached since the limits were applied,
    /// on a kernel without an OOM kill counter (cgroup v1 before Linux
    /// 4.13); always false where [`Self::oom_kills`] answers.
    pub(crate) fn hit_memory_limit_uncounted(&self) -> bool {
        match self {
            Self::V2(_) => false,
            Self::V1(cgroup) => cgroup.hit_memory_limit_uncounted(),
        }
    }

    #[cfg(test)]
    pub(crate) fn is_populated(&self) -> bool {
        match self {
            Self::V2(cgroup) => cgroup.is_populated(),
            Self::V1(cgroup) => cgroup.is_populated(),
        }
    }

    /// Kills what is inside, waits (up to about a second) for it to empty,
    /// removes the folder(s). Folders already gone are fine.
    pub(crate) fn remove(&self) -> io::Result<()> {
        match self {
            Self::V2(cgroup) => cgroup.remove(),
            Self::V1(cgroup) => cgroup.remove(),
        }
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

/// Writes an existing control file. Never with O_CREAT: cgroupfs answers
/// that with EACCES even for a file that merely does not exist, and a
/// missing file must read as NotFound.
fn write_control(path: &Path, value: &str) -> io::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| io::Write::write_all(&mut f, value.as_bytes()))
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// [`write_control`], where a missing file (controller or feature absent)
/// is fine.
fn write_if_present(path: &Path, value: &str) -> io::Result<()> {
    match write_control(path, value) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Removes an emptied cgroup folder, retrying for about a second while
/// the kernel still tears dying processes down (EBUSY). Gone already is
/// fine.
fn remove_dir_patiently(path: &Path) -> io::Result<()> {
    let mut last = None;
    for _ in 0..100 {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(last.unwrap_or_else(|| io::Error::other("cgroup did not empty")))
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    pub point: PathBuf,
    pub fstype: String,
    /// Per-mount options (`rw`, `ro`, `nosuid`…).
    pub options: Vec<String>,
    /// File system options; for cgroup v1, the controllers it carries.
    pub super_options: Vec<String>,
}

/// The mounts in a mountinfo text. Fields: `id parent dev root mountpoint
/// options [optional…] - fstype source superoptions`.
pub(crate) fn mounts(mountinfo: &str) -> Vec<Mount> {
    let list = |text: &str| text.split(',').map(str::to_owned).collect();
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let mut after = after.split(' ');
            let fstype = after.next()?;
            let super_options = after.nth(1).unwrap_or("");
            let mut before = before.split(' ');
            let point = before.nth(4)?;
            let options = before.next().unwrap_or("");
            Some(Mount {
                point: PathBuf::from(unescape_mount(point)),
                fstype: fstype.to_owned(),
                options: list(options),
                super_options: list(super_options),
            })
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
