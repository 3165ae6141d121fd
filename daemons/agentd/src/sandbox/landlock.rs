//! The Landlock ruleset: built before fork, completed in the child.
//!
//! A rule holds an inode. Paths opened before fork still describe the
//! sandbox where the mounts keep the host's inodes: `/`, `/dev`, the
//! workspace and kept paths (bind mounts of the same inodes). A fresh
//! tmpfs is a new inode, and Landlock's path walk skips the directory it
//! covers, so a rule on the host's `/tmp` would not reach the agent's
//! `/tmp`: those rules are added in the child, after the mounts, on the
//! tmpfs roots themselves (two raw syscalls per path; the ruleset's access
//! mask is computed here).
//!
//! Best effort: a kernel without Landlock (or an older ABI) gets what it
//! supports, down to nothing; `probe` says which.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use landlock::{
    Access, AccessFs, PathBeneath, PathFd, Ruleset as LandlockRuleset, RulesetAttr,
    RulesetCreatedAttr, Scope, ABI,
};

use super::{sys, SandboxError};

/// The newest ABI whose rights we ask for; newer kernels keep their extra
/// rights unhandled, which Landlock's compatibility contract makes safe.
const ABI_USED: ABI = ABI::V6;

fn error(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Landlock(e.to_string())
}

/// A created ruleset and the rights a writable folder gets.
#[derive(Debug)]
pub(crate) struct Ruleset {
    fd: OwnedFd,
    /// Every file-system right this kernel and [`ABI_USED`] both know.
    writable_access: u64,
}

impl Ruleset {
    /// In the child, after the mounts: everything beneath `dir` (a
    /// directory) is allowed.
    pub(crate) fn allow_beneath(&self, dir: &CStr) -> io::Result<()> {
        sys::landlock_add_path_rule(self.fd.as_raw_fd(), dir, self.writable_access)
    }

    /// In the child, last of the file-system steps.
    pub(crate) fn restrict_self(&self) -> io::Result<()> {
        sys::landlock_restrict_self(self.fd.as_raw_fd())
    }
}

/// A ruleset: read and execute beneath `/`, everything beneath
/// `writable` (paths that do not exist on the host are left out). Returns
/// None when the kernel has no Landlock.
pub(crate) fn ruleset(writable: &[&Path]) -> Result<Option<Ruleset>, SandboxError> {
    let kernel_abi = match sys::landlock_abi() {
        Ok(version) => ABI::from(i32::try_from(version).unwrap_or(i32::MAX)),
        Err(_) => return Ok(None),
    };
    let all = AccessFs::from_all(ABI_USED);
    let read = AccessFs::from_read(ABI_USED);
    let mut created = LandlockRuleset::default()
        .handle_access(all)
        .map_err(error)?
        // Signals and abstract unix sockets stop at the sandbox's edge
        // (ABI 6); on the host network, the latter would otherwise reach
        // the node's and other services' sockets.
        .scope(Scope::from_all(ABI_USED))
        .map_err(error)?
        .create()
        .map_err(error)?
        .add_rule(PathBeneath::new(PathFd::new("/").map_err(error)?, read))
        .map_err(error)?;
    for path in writable {
        let fd = match PathFd::new(path) {
            Ok(fd) => fd,
            // A default such as /dev may be missing in odd containers.
            Err(_) if !path.exists() => continue,
            Err(e) => return Err(error(e)),
        };
        // A rule on a file may only carry file rights.
        let access = if path.is_dir() {
            all
        } else {
            all & AccessFs::from_file(ABI_USED)
        };
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(error)?;
    }
    let fd: Option<OwnedFd> = created.into();
    Ok(fd.map(|fd| Ruleset {
        fd,
        writable_access: (all & AccessFs::from_all(kernel_abi)).bits(),
    }))
}
