//! The user ids agents run under: one per agent, allocated from
//! `agent_uid_range` in config.toml and kept with the agent for its whole
//! life, as systemd's DynamicUser does. A uid of its own is what makes the
//! kernel's checks (files, signals, ptrace, /proc) separate an agent from
//! the node and from every other agent, and what tells the node which
//! agent calls on its socket (`SO_PEERCRED`).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The default range: 65,536 ids above systemd's container ranges
/// (524288–1879048191) and below the ids some tools read as negative
/// (2^31 and up), where no distribution allocates users.
pub const DEFAULT_FIRST: u32 = 1_879_048_192;
pub const DEFAULT_LAST: u32 = DEFAULT_FIRST + 65_535;
/// Ids a range may never include: root's, the system users' below 1000,
/// `nobody` (65534) and the values that mean "no id" (2^32-1) or read as
/// negative.
const LOWEST: u32 = 1000;
const HIGHEST: u32 = i32::MAX as u32 - 1;
const NOBODY: u32 = 65_534;

/// `FIRST-LAST`, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidRange {
    pub first: u32,
    pub last: u32,
}

impl Default for UidRange {
    fn default() -> Self {
        Self {
            first: DEFAULT_FIRST,
            last: DEFAULT_LAST,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("agent_uid_range {0:?} is not FIRST-LAST with {LOWEST} <= FIRST <= LAST <= {HIGHEST}, without 65534 (nobody)")]
pub struct UidRangeError(pub String);

impl FromStr for UidRange {
    type Err = UidRangeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || UidRangeError(text.to_owned());
        let (first, last) = text.split_once('-').ok_or_else(bad)?;
        let first: u32 = first.trim().parse().map_err(|_| bad())?;
        let last: u32 = last.trim().parse().map_err(|_| bad())?;
        if first < LOWEST || first > last || last > HIGHEST || (first..=last).contains(&NOBODY) {
            return Err(bad());
        }
        Ok(Self { first, last })
    }
}

impl fmt::Display for UidRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl Serialize for UidRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for UidRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl UidRange {
    fn len(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }

    /// A free id: not held by another agent of this node, not a user in
    /// /etc/passwd, not the owner of a running process. The search starts
    /// at a point drawn from `seed` (the node's id), so two nodes sharing a
    /// host (tests, a development fleet) rarely probe the same ids; the
    /// running-process check catches the rest while their agents run.
    pub fn allocate(&self, held: &BTreeSet<u32>, seed: &[u8]) -> Option<u32> {
        let taken = system_uids();
        let start = u64::from_le_bytes(
            blake3::hash(seed).as_bytes()[..8]
                .try_into()
                .unwrap_or_default(),
        ) % self.len();
        (0..self.len())
            .map(|i| self.first + ((start + i) % self.len()) as u32)
            .find(|uid| !held.contains(uid) && !taken.contains(uid))
    }
}

/// Ids of users in /etc/passwd and of running processes' owners: what an
/// agent id must not be.
fn system_uids() -> BTreeSet<u32> {
    let mut taken = BTreeSet::new();
    if let Ok(text) = std::fs::read_to_string("/etc/passwd") {
        taken.extend(
            text.lines()
                .filter_map(|line| line.split(':').nth(2))
                .filter_map(|uid| uid.parse::<u32>().ok()),
        );
    }
    if let Ok(entries) = std::fs::read_dir("/proc") {
        use std::os::unix::fs::MetadataExt;
        taken.extend(
            entries
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.uid()),
        );
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_refuse_what_would_clash() {
        assert_eq!(
            "2000-2009".parse::<UidRange>().unwrap().to_string(),
            "2000-2009"
        );
        for bad in [
            "0-100",
            "999-2000",
            "3000-2000",
            "60000-70000",
            "x-y",
            "5",
            "2000-3000000000",
        ] {
            assert!(bad.parse::<UidRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn allocation_skips_held_ids_and_runs_out_cleanly() {
        let range: UidRange = "1879048192-1879048194".parse().unwrap();
        let mut held = BTreeSet::new();
        for _ in 0..3 {
            let uid = range.allocate(&held, b"node").expect("a free id");
            assert!((range.first..=range.last).contains(&uid));
            assert!(held.insert(uid), "{uid} given twice");
        }
        assert_eq!(range.allocate(&held, b"node"), None);
    }

    #[test]
    fn allocation_never_gives_a_running_processs_owner() {
        // This process's own uid, as a one-id range, is taken.
        // SAFETY: getuid has no preconditions.
        let me = unsafe { libc::getuid() };
        if me < LOWEST {
            return; // root or a system user: not a valid range here
        }
        let range = UidRange {
            first: me,
            last: me,
        };
        assert_eq!(range.allocate(&BTreeSet::new(), b"x"), None);
    }
}
