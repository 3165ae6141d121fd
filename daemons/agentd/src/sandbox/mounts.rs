//! The agent's view of the file system: a private mount namespace where
//! the host is read-only, private folders are empty tmpfs, the workspace
//! and the kept paths are bind mounts at their own places, and /proc shows
//! only the agent's own processes.
//!
//! [`MountPlan::new`] computes everything before fork (paths, mount
//! options, which folders to create); [`MountPlan::apply`] runs in the
//! child and only makes syscalls on those values.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::sys;
use super::trace::{Step, Trace};
use super::{SandboxError, SandboxPlan, CREDENTIALS_DIR};

/// Folders every agent gets empty: shared scratch space and other users'
/// and services' private files. The first three stay writable.
const DEFAULT_HIDDEN: [(&str, bool); 6] = [
    ("/tmp", true),
    ("/var/tmp", true),
    ("/dev/shm", true),
    ("/run", false),
    ("/home", false),
    ("/root", false),
];
/// Scratch tmpfs: sticky and world-writable like the host's, small (it is
/// memory, charged to the agent's cgroup); the workspace is for bulk.
const SCRATCH_OPTIONS: &str = "mode=1777,size=64m";
/// A hiding tmpfs only ever holds mount points.
const HIDING_OPTIONS: &str = "mode=0755,size=1m,nr_inodes=4096";

#[derive(Debug)]
enum Kind {
    /// A fresh tmpfs with these options, and files to write into it.
    Tmpfs {
        options: CString,
        files: Vec<(CString, Zeroizing<Vec<u8>>)>,
    },
    /// A host path cloned (before anything is hidden) and attached here.
    Attach { fd: RawFd },
}

#[derive(Debug)]
struct Op {
    target: CString,
    kind: Kind,
    /// Folders to create first, outermost first: the target's ancestors
    /// below the tmpfs it lies in.
    create: Vec<CString>,
    /// Create the target itself (inside a tmpfs): a folder, or an empty
    /// file for a kept file.
    create_target: Option<bool>,
    writable: bool,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct MountPlan {
    ops: Vec<Op>,
    uid: libc::uid_t,
    gid: libc::gid_t,
}

fn cstring(path: &Path) -> Result<CString, SandboxError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| SandboxError::Nul {
        path: path.to_owned(),
    })
}

fn canonical(path: &Path) -> Result<PathBuf, SandboxError> {
    if !path.is_absolute() {
        return Err(SandboxError::NotAbsolute {
            path: path.to_owned(),
        });
    }
    path.canonicalize().map_err(|source| SandboxError::Path {
        path: path.to_owned(),
        source,
    })
}

/// Adds a tmpfs over `path`, once (a path named twice is writable if
/// either says so).
fn hide(path: PathBuf, writable: bool, wanted: &mut Vec<Wanted>) {
    if let Some(existing) = wanted.iter_mut().find(|w| w.path == path) {
        if writable && !existing.writable {
            existing.writable = true;
            existing.options = SCRATCH_OPTIONS.to_owned();
        }
        return;
    }
    let options = if writable {
        SCRATCH_OPTIONS
    } else {
        HIDING_OPTIONS
    };
    wanted.push(Wanted {
        path,
        keep: None,
        writable,
        options: options.to_owned(),
        files: Vec::new(),
    });
}

/// What to mount, before it is ordered.
struct Wanted {
    path: PathBuf,
    /// Some(is_dir) for a kept path; None for a tmpfs.
    keep: Option<bool>,
    writable: bool,
    options: String,
    files: Vec<(CString, Zeroizing<Vec<u8>>)>,
}

impl MountPlan {
    /// The mounts for `plan` with `workspace` (which must exist). Also
    /// returns the host paths that stay writable and keep their inodes,
    /// for Landlock.
    pub(crate) fn new(
        plan: &SandboxPlan,
        workspace: &Path,
    ) -> Result<(Self, Vec<PathBuf>), SandboxError> {
        let mut wanted: Vec<Wanted> = Vec::new();
        for (path, writable) in DEFAULT_HIDDEN {
            // A default missing here has nothing to hide.
            if let Ok(path) = Path::new(path).canonicalize() {
                hide(path, writable, &mut wanted);
            }
        }
        for path in &plan.hide {
            if !path.is_absolute() {
                return Err(SandboxError::NotAbsolute { path: path.clone() });
            }
            // A folder that does not exist has nothing to hide.
            if let Ok(path) = path.canonicalize() {
                hide(path, false, &mut wanted);
            }
        }
        if !plan.credentials.is_empty() {
            let dir = Path::new(CREDENTIALS_DIR);
            let mut files = Vec::with_capacity(plan.credentials.len());
            for (name, content) in &plan.credentials {
                let valid = !name.is_empty()
                    && name != "."
                    && name != ".."
                    && !name.contains('/')
                    && !name.contains('\0');
                if !valid {
                    return Err(SandboxError::CredentialName { name: name.clone() });
                }
                files.push((cstring(&dir.join(name))?, content.clone()));
            }
            wanted.push(Wanted {
                path: dir.to_owned(),
                keep: None,
                writable: false,
                options: format!(
                    "mode=0500,uid={},gid={},size=1m,nr_inodes=1024",
                    plan.uid, plan.gid
                ),
                files,
            });
        }
        let workspace = canonical(workspace)?;
        let keeps = plan
            .keep
            .iter()
            .map(|keep| Ok((canonical(&keep.path)?, keep.writable)))
            .chain(std::iter::once(Ok((workspace.clone(), true))));
        for keep in keeps {
            let (path, writable) = keep?;
            let is_dir = path.is_dir();
            wanted.push(Wanted {
                path,
                keep: Some(is_dir),
                writable,
                options: String::new(),
                files: Vec::new(),
            });
        }
        // Outer paths first, so an inner mount lands on top of an outer
        // one (a workspace inside the hidden data folder shows again); on
        // the same path a kept tree goes over a tmpfs.
        wanted.sort_by_key(|w| (w.path.as_os_str().len(), w.keep.is_some()));

        let mut ops: Vec<Op> = Vec::with_capacity(wanted.len());
        let mut placed: Vec<(PathBuf, bool)> = Vec::new(); // (path, is tmpfs)
        let mut writable_paths = vec![PathBuf::from("/dev")];
        for w in wanted {
            // The innermost mount already placed above this path decides
            // where it lives: inside one of our tmpfs it must be created
            // (never on the host's disk); anywhere else it is the host's.
            let parent = placed
                .iter()
                .filter(|(p, _)| w.path.starts_with(p) && *p != w.path)
                .max_by_key(|(p, _)| p.as_os_str().len());
            let (create, create_target) = match parent {
                Some((tmpfs, true)) => {
                    let mut create = Vec::new();
                    let mut at = tmpfs.clone();
                    let inner = w.path.strip_prefix(tmpfs).unwrap_or(Path::new(""));
                    let count = inner.components().count();
                    for component in inner.components().take(count.saturating_sub(1)) {
                        at.push(component);
                        create.push(cstring(&at)?);
                    }
                    (create, Some(w.keep.unwrap_or(true)))
                }
                _ => {
                    if w.path.symlink_metadata().is_err() {
                        // Only credentials can get here (no /run to hold them).
                        return Err(SandboxError::NoMountPoint { path: w.path });
                    }
                    (Vec::new(), None)
                }
            };
            let kind = match w.keep {
                Some(_) => Kind::Attach { fd: -1 },
                None => Kind::Tmpfs {
                    options: CString::new(w.options).map_err(|_| SandboxError::Nul {
                        path: w.path.clone(),
                    })?,
                    files: w.files,
                },
            };
            // Kept trees are the host's inodes: their Landlock rules can be
            // made now. A tmpfs's are added in the child (landlock.rs).
            if w.writable && w.keep.is_some() {
                writable_paths.push(w.path.clone());
            }
            placed.push((w.path.clone(), w.keep.is_none()));
            ops.push(Op {
                target: cstring(&w.path)?,
                kind,
                create,
                create_target,
                writable: w.writable,
            });
        }
        Ok((
            Self {
                ops,
                uid: plan.uid,
                gid: plan.gid,
            },
            writable_paths,
        ))
    }

    /// Every mount target, in the order `apply` mounts them (for messages).
    pub(crate) fn targets(&self) -> Vec<String> {
        self.ops
            .iter()
            .map(|op| op.target.to_string_lossy().into_owned())
            .collect()
    }

    /// The writable folders that are fresh tmpfs (inodes that exist only
    /// once `apply` has run).
    pub(crate) fn writable_tmpfs(&self) -> impl Iterator<Item = &CStr> {
        self.ops
            .iter()
            .filter(|op| op.writable && matches!(op.kind, Kind::Tmpfs { .. }))
            .map(|op| op.target.as_c_str())
    }

    /// In the child, after the network namespace is joined. Async-signal-
    /// safe: syscalls on the values computed in `new`.
    pub(crate) fn apply(&mut self, trace: &Trace) -> io::Result<()> {
        trace.at(Step::MountNamespace, 0);
        // A mount namespace of our own, with no propagation back to the
        // host: nothing below is ever seen outside this process tree.
        // SAFETY: a flag-only syscall.
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } < 0 {
            return Err(io::Error::last_os_error());
        }
        sys::mount(c"none", c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)?;
        // Clone every kept tree before anything hides it: a workspace
        // inside the node's data folder must be taken while still visible.
        for (index, op) in self.ops.iter_mut().enumerate() {
            if let Kind::Attach { fd } = &mut op.kind {
                trace.at(Step::CloneTree, index);
                *fd = sys::open_tree(
                    &op.target,
                    sys::OPEN_TREE_CLONE | sys::OPEN_TREE_CLOEXEC | sys::AT_RECURSIVE,
                )?;
            }
        }
        for (index, op) in self.ops.iter().enumerate() {
            trace.at(Step::MountPoint, index);
            for dir in &op.create {
                sys::mkdir_exists_ok(dir, 0o755)?;
            }
            match op.create_target {
                Some(true) => sys::mkdir_exists_ok(&op.target, 0o755)?,
                Some(false) => sys::touch(&op.target)?,
                None => {}
            }
            match &op.kind {
                Kind::Tmpfs { options, files } => {
                    trace.at(Step::Tmpfs, index);
                    // nosuid, nodev: nothing placed here may raise
                    // privileges or open a device.
                    sys::mount(
                        c"tmpfs",
                        &op.target,
                        Some(c"tmpfs"),
                        libc::MS_NOSUID | libc::MS_NODEV,
                        Some(options),
                    )?;
                    trace.at(Step::Credential, index);
                    // Credentials live in memory only (this tmpfs), are
                    // written while still root, and become the agent's
                    // to read but not to change (0400 in a 0500 folder
                    // that the read-only pass below freezes).
                    for (path, content) in files {
                        sys::write_new_file(path, content, 0o400, self.uid, self.gid)?;
                    }
                }
                Kind::Attach { fd } => {
                    trace.at(Step::Attach, index);
                    sys::move_mount_fd(*fd, &op.target)?;
                    sys::close(*fd);
                }
            }
        }
        // A proc of our own where other users' processes do not exist:
        // no other agent's or the node's environ, memory maps or fds.
        trace.at(Step::Proc, 0);
        let proc_flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        if let Err(error) = sys::mount(
            c"proc",
            c"/proc",
            Some(c"proc"),
            proc_flags,
            Some(c"hidepid=invisible"),
        ) {
            // Kernels before 5.8 know only the number.
            if error.raw_os_error() != Some(libc::EINVAL) {
                return Err(error);
            }
            sys::mount(
                c"proc",
                c"/proc",
                Some(c"proc"),
                proc_flags,
                Some(c"hidepid=2"),
            )?;
        }
        // Everything read-only and without setuid, then writable again
        // exactly where the agent may write. Per mount, so the host's
        // mounts are untouched.
        trace.at(Step::ReadOnly, 0);
        sys::mount_setattr(
            c"/",
            sys::AT_RECURSIVE,
            sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID,
            0,
        )?;
        for (index, op) in self.ops.iter().enumerate().filter(|(_, op)| op.writable) {
            trace.at(Step::Writable, index);
            sys::mount_setattr(&op.target, 0, 0, sys::MOUNT_ATTR_RDONLY)?;
        }
        Ok(())
    }
}
