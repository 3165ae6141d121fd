//! Confinement: what makes an agent a contained process rather than one
//! more program of the node's user.
//!
//! The node (root) hands a [`SandboxPlan`] per agent. Between fork and
//! exec the child then, in this order (each step says why in
//! `Prepared::apply`):
//!
//! 1. joins the agent's network namespace, if the plan has one
//!    ([`isolated_network`]);
//! 2. enters a private mount namespace where the host is read-only, the
//!    private folders (`/tmp`, `/var/tmp`, `/dev/shm`, `/run`, `/home`,
//!    `/root` and the plan's `hide`) are empty tmpfs, the workspace and the
//!    plan's `keep` paths are bind mounts at their own places, credentials
//!    are files in [`CREDENTIALS_DIR`], and /proc shows only the agent's
//!    own processes (`mounts.rs`);
//! 3. moves into the workspace and becomes the plan's uid and gid, with no
//!    supplementary groups and no way back;
//! 4. sets no_new_privs and restricts itself with Landlock: read and
//!    execute everywhere, write only where the mounts allow it
//!    (`landlock.rs`; skipped when the kernel has no Landlock);
//! 5. installs the seccomp filter (`seccomp.rs`), last, since the steps
//!    before need the very syscalls it refuses.
//!
//! Everything the child needs is computed before the fork (`prepare`):
//! strings, the BPF programs, the Landlock ruleset. Any failure fails the
//! spawn; the program never runs half-confined.
//!
//! [`probe`] says which layers this host has.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use trace::Step;
pub(crate) use trace::StepLog;

mod landlock;
mod mounts;
mod network;
mod probe;
mod seccomp;
mod sys;
mod trace;

pub use network::isolated_network;
pub use probe::{probe, SandboxReport};

/// Where an agent finds its credentials: a tmpfs (0500) of its own with
/// one file (0400) per credential.
pub const CREDENTIALS_DIR: &str = "/run/credentials/osmoda";

/// How to confine one agent. Cloning is cheap apart from the credentials,
/// which are wiped from memory when the last copy goes.
#[derive(Debug, Clone, Default)]
pub struct SandboxPlan {
    /// The agent's own uid and gid (neither 0; no passwd entry needed).
    pub uid: u32,
    pub gid: u32,
    /// Folders made invisible (an empty tmpfs over each), on top of the
    /// defaults: the node's data folder, say. Missing ones are skipped.
    pub hide: Vec<PathBuf>,
    /// Host paths visible at the same place inside (they must exist).
    pub keep: Vec<Keep>,
    /// Files in [`CREDENTIALS_DIR`]: (file name, content).
    pub credentials: Vec<(String, zeroize::Zeroizing<Vec<u8>>)>,
    /// A network namespace to join (from [`isolated_network`]); None keeps
    /// the host's network.
    pub network: Option<Arc<OwnedFd>>,
}

/// A host path the agent keeps seeing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keep {
    pub path: PathBuf,
    /// Read-write (else read-only, like the rest of the host).
    pub writable: bool,
}

/// Why a plan cannot be prepared (before anything is forked).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox uid and gid must not be 0 or -1 (got {uid}:{gid})")]
    BadIds { uid: u32, gid: u32 },
    #[error("sandbox path {} is not absolute", path.display())]
    NotAbsolute { path: PathBuf },
    #[error("sandbox path {} contains a NUL byte", path.display())]
    Nul { path: PathBuf },
    #[error("sandbox path {}: {source}", path.display())]
    Path { path: PathBuf, source: io::Error },
    #[error("cannot place {}: it lies in no hidden folder and does not exist", path.display())]
    NoMountPoint { path: PathBuf },
    #[error("credential name {name:?} is not a plain file name")]
    CredentialName { name: String },
    #[error("seccomp filter: {0}")]
    Seccomp(String),
    #[error("landlock ruleset: {0}")]
    Landlock(String),
}

impl From<SandboxError> for io::Error {
    fn from(error: SandboxError) -> Self {
        match error {
            SandboxError::Path { source, .. } => source,
            other => io::Error::other(other),
        }
    }
}

/// A plan made ready for the child: every value computed, every file
/// descriptor open. Consumed by one spawn.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The namespace to join; held open until the child has joined it.
    network: Option<Arc<OwnedFd>>,
    mounts: mounts::MountPlan,
    workspace: CString,
    uid: libc::uid_t,
    gid: libc::gid_t,
    landlock: Option<landlock::Ruleset>,
    seccomp: seccomp::Programs,
    trace: trace::Trace,
}

/// Computes everything the child will need for `plan` with `workspace`
/// (which must exist).
pub(crate) fn prepare(plan: &SandboxPlan, workspace: &Path) -> Result<Prepared, SandboxError> {
    if plan.uid == 0 || plan.gid == 0 || plan.uid == u32::MAX || plan.gid == u32::MAX {
        return Err(SandboxError::BadIds {
            uid: plan.uid,
            gid: plan.gid,
        });
    }
    let (mounts, writable) = mounts::MountPlan::new(plan, workspace)?;
    let writable: Vec<&Path> = writable.iter().map(PathBuf::as_path).collect();
    let canonical = workspace
        .canonicalize()
        .map_err(|source| SandboxError::Path {
            path: workspace.to_owned(),
            source,
        })?;
    Ok(Prepared {
        network: plan.network.clone(),
        mounts,
        workspace: CString::new(canonical.as_os_str().as_bytes()).map_err(|_| {
            SandboxError::Nul {
                path: canonical.clone(),
            }
        })?,
        uid: plan.uid,
        gid: plan.gid,
        landlock: landlock::ruleset(&writable)?,
        seccomp: seccomp::programs()?,
        trace: trace::Trace::default(),
    })
}

impl Prepared {
    /// Has the child report the step it is at, so a failure can name it
    /// (see trace.rs); call [`StepLog::explain`] on the spawn's error.
    pub(crate) fn trace_steps(&mut self) -> io::Result<StepLog> {
        let (trace, log) = trace::pipe(self.mounts.targets())?;
        self.trace = trace;
        Ok(log)
    }

    /// In the child between fork and exec. Async-signal-safe: raw syscalls
    /// on values computed in [`prepare`], no allocation.
    pub(crate) fn apply(&mut self) -> io::Result<()> {
        // 1. The network first, while we may still call setns: the
        // agent's sockets then only ever see its own loopback.
        let trace = &self.trace;
        if let Some(fd) = &self.network {
            trace.at(Step::Network, 0);
            // SAFETY: a descriptor held open by `self.network`.
            if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // 2. The file-system view (see mounts.rs), while still root.
        self.mounts.apply(trace)?;
        // SAFETY (steps 3 to 5): plain syscalls on owned values.
        unsafe {
            // 3. std changed into the workspace before the mounts: that
            // handle is the host's folder, from which `..` would lead
            // back into hidden ones. Enter the mounted one.
            trace.at(Step::Workspace, 0);
            if libc::chdir(self.workspace.as_ptr()) < 0 {
                return Err(io::Error::last_os_error());
            }
            // The agent's own ids, all three of each (real, effective,
            // saved) so none can be switched back, and no supplementary
            // group of root's.
            trace.at(Step::Ids, 0);
            // Raw syscalls: libc's wrappers would try to reach every
            // thread of the parent (setxid broadcast); the child has one.
            let (uid, gid) = (self.uid, self.gid);
            if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) < 0
                || libc::syscall(libc::SYS_setresgid, gid, gid, gid) < 0
                || libc::syscall(libc::SYS_setresuid, uid, uid, uid) < 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::getuid() != self.uid
                || libc::geteuid() != self.uid
                || libc::getgid() != self.gid
                || libc::getegid() != self.gid
            {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            // 4. No exec may grant privileges again (setuid binaries,
            // file capabilities); Landlock and seccomp need it too.
            trace.at(Step::NoNewPrivs, 0);
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // Writes only where the mounts allow them, even should a mount
        // be writable by mistake; also keeps signals and abstract
        // sockets inside. Absent on kernels without Landlock.
        if let Some(ruleset) = &self.landlock {
            trace.at(Step::Landlock, 0);
            for dir in self.mounts.writable_tmpfs() {
                ruleset.allow_beneath(dir)?;
            }
            ruleset.restrict_self()?;
        }
        // 5. Last: the filter refuses mount, setns and the like, which
        // the steps above needed.
        trace.at(Step::Seccomp, 0);
        for program in self.seccomp.iter() {
            sys::seccomp_install(program)?;
        }
        Ok(())
    }
}

/// Confines a one-shot command (the node's `host_exec`) like an agent:
/// same plan, same workspace, same uid. Sets a `pre_exec` on `cmd`; the
/// caller still chooses its program, arguments, environment and stdio
/// (pass a clean environment: the node's own may hold secrets). The
/// workspace must exist and belong to the plan's uid already (the
/// supervisor does that when it starts the agent), and `plan.hide` should
/// hold the supervisor's base folder as the supervisor adds it for its
/// agents: that hides the other agents and the logs, and makes the path to
/// the workspace traversable for the agent's uid.
pub fn confine_command(cmd: &mut Command, plan: &SandboxPlan, workspace: &Path) -> io::Result<()> {
    let mut prepared = prepare(plan, workspace)?;
    cmd.current_dir(workspace);
    // SAFETY: `apply` is async-signal-safe (see there).
    unsafe {
        cmd.pre_exec(move || prepared.apply());
    }
    Ok(())
}

/// Kills every process running under `uid`, whichever group or session it
/// moved to: a tiny forked child takes the uid and sends SIGKILL to all it
/// may signal (kill(-1)), then is reaped. Refuses uid 0 and -1. Blocks
/// for about a millisecond.
pub fn kill_uid(uid: u32) -> io::Result<()> {
    if uid == 0 || uid == u32::MAX {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: the child makes only async-signal-safe syscalls and leaves
    // with _exit, never returning into Rust code of the parent's threads.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            // Capabilities go with the last root id, so kill(-1) reaches
            // exactly the processes of this uid.
            // A raw setresuid, as in `apply`: this child has one thread.
            let code = if libc::syscall(libc::SYS_setresuid, uid, uid, uid) == 0
                && libc::kill(-1, libc::SIGKILL) == 0
            {
                0
            } else {
                1
            };
            libc::_exit(code);
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes into `status` only.
        let result = unsafe { libc::waitpid(pid, &mut status, 0) };
        if result == pid {
            break;
        }
        if result < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err(io::Error::last_os_error());
        }
    }
    // Exit 1 mostly means ESRCH: no process of that uid was left.
    Ok(())
}
