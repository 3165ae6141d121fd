//! Workspace-confined file access, for the node to execute the `file_*`
//! tools.
//!
//! An agent names files by a path relative to its workspace. Nothing it
//! names may resolve outside: absolute paths and `..` are refused before
//! any system call, and symbolic links are refused everywhere on the path,
//! including links that point back inside (simpler to reason about than a
//! policy on targets, and agents have no need for them).
//!
//! Every open is relative to a descriptor of the workspace root, never a
//! path string, so a directory swapped for a link between a check and a use
//! cannot redirect it. On Linux 5.6 and later one `openat2` call resolves
//! the path with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`; elsewhere (or when
//! a seccomp filter refuses `openat2`) the path is walked one component at
//! a time with `openat(O_NOFOLLOW)`, which gives the same guarantee.
//!
//! Writes are atomic: a temporary file in the target's directory, fsynced,
//! renamed over the target, then the directory fsynced.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, CWD};
use rustix::io::Errno;
use serde::Serialize;

use crate::args::{MAX_FILE_BYTES, MAX_PATH_BYTES};

/// Most entries [`Workspace::list`] returns.
pub const MAX_LIST_ENTRIES: usize = 10_000;
/// Longest path component, in bytes (the usual `NAME_MAX`).
const MAX_NAME_BYTES: usize = 255;
/// Permissions of created files and directories (before the umask).
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

/// Why a file operation was refused or failed. `path` is the path as the
/// agent gave it.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("{path:?} is absolute; paths are relative to the workspace")]
    Absolute { path: String },
    #[error("{path:?} leaves the workspace")]
    Escape { path: String },
    #[error("{path:?} is not a valid path: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("{path:?} goes through a symbolic link; links are not followed in a workspace")]
    Symlink { path: String },
    #[error("{path:?} does not exist")]
    NotFound { path: String },
    #[error("{path:?} is not a directory")]
    NotADirectory { path: String },
    #[error("{path:?} is a directory")]
    IsADirectory { path: String },
    #[error("{path:?} is not a regular file")]
    NotAFile { path: String },
    #[error("{path:?} is {size} bytes, over the limit of {max}")]
    TooLarge { path: String, size: u64, max: u64 },
    #[error("directory {path:?} is not empty")]
    NotEmpty { path: String },
    #[error("{op} {path:?}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What a directory entry is. Links are listed (so the agent can see why
/// a path is refused) but never followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirEntry {
    /// The name (not valid UTF-8 bytes replaced by U+FFFD).
    pub name: String,
    pub kind: EntryKind,
    /// Size in bytes for files, 0 otherwise.
    pub size: u64,
}

/// A directory's entries sorted by name; `truncated` when there were more
/// than [`MAX_LIST_ENTRIES`] (which ones are left out is unspecified).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listing {
    pub entries: Vec<DirEntry>,
    pub truncated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolver {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    Openat2,
    Walk,
}

/// One agent's workspace, held open by descriptor.
#[derive(Debug)]
pub struct Workspace {
    root: PathBuf,
    dir: OwnedFd,
    resolver: Resolver,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Workspace {
    /// Opens the workspace at `root`. The root itself is the node's choice
    /// and trusted, so it may be reached through links; nothing below it is.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, WorkspaceError> {
        let root = root.into();
        let dir = rustix::fs::openat(
            CWD,
            &root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| WorkspaceError::Io {
            op: "open workspace",
            path: root.display().to_string(),
            source: e.into(),
        })?;
        let resolver = probe_openat2(dir.as_fd());
        Ok(Self {
            root,
            dir,
            resolver,
        })
    }

    /// The same workspace, always walking component by component (to test
    /// the fallback on kernels that have `openat2`).
    #[cfg(test)]
    fn walking(mut self) -> Self {
        self.resolver = Resolver::Walk;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reads a whole regular file of at most [`MAX_FILE_BYTES`].
    pub fn read(&self, path: &str) -> Result<Vec<u8>, WorkspaceError> {
        let parts = components(path)?;
        if parts.is_empty() {
            return Err(WorkspaceError::IsADirectory { path: path.into() });
        }
        // NONBLOCK so a FIFO planted in the workspace cannot hang the open;
        // it is refused below as not a regular file.
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY;
        let fd = self
            .open_beneath(&parts, flags)
            .map_err(|e| self.error("open", path, &parts, e))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| self.error("stat", path, &parts, e))?;
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => {}
            FileType::Directory => return Err(WorkspaceError::IsADirectory { path: path.into() }),
            _ => return Err(WorkspaceError::NotAFile { path: path.into() }),
        }
        let max = MAX_FILE_BYTES as u64;
        let too_large = |size| WorkspaceError::TooLarge {
            path: path.into(),
            size,
            max,
        };
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        if size > max {
            return Err(too_large(size));
        }
        // The file may grow after the stat: read one byte past the limit to
        // notice, never more.
        let mut contents = Vec::with_capacity(size as usize);
        std::fs::File::from(fd)
            .take(max + 1)
            .read_to_end(&mut contents)
            .map_err(|e| io("read", path, e))?;
        if contents.len() as u64 > max {
            return Err(too_large(contents.len() as u64));
        }
        Ok(contents)
    }

    /// Creates or replaces a regular file atomically, creating missing
    /// parent directories. An existing link or directory at `path` is
    /// refused, not replaced.
    pub fn write(&self, path: &str, contents: &[u8]) -> Result<(), WorkspaceError> {
        if contents.len() > MAX_FILE_BYTES {
            return Err(WorkspaceError::TooLarge {
                path: path.into(),
                size: contents.len() as u64,
                max: MAX_FILE_BYTES as u64,
            });
        }
        let parts = components(path)?;
        let Some((name, parents)) = parts.split_last() else {
            return Err(WorkspaceError::IsADirectory { path: path.into() });
        };
        let dir = self.make_dirs(path, parents)?;
        self.check_replaceable(&dir, path, &parts)?;
        let temp = format!(
            ".osmoda-tmp.{}.{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let fd = rustix::fs::openat(
            &dir,
            temp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(FILE_MODE),
        )
        .map_err(|e| self.error("create", path, &parts, e))?;
        let written = (|| {
            let mut file = std::fs::File::from(fd);
            file.write_all(contents)?;
            file.sync_all()?;
            rustix::fs::renameat(&dir, temp.as_str(), &dir, *name)?;
            rustix::fs::fsync(&dir)?;
            Ok::<(), std::io::Error>(())
        })();
        if let Err(e) = written {
            // Best effort: the temporary name is ours and nothing else uses it.
            let _ = rustix::fs::unlinkat(&dir, temp.as_str(), AtFlags::empty());
            return Err(io("write", path, e));
        }
        Ok(())
    }

    /// Lists a directory (`""` or `"."` is the workspace itself).
    pub fn list(&self, path: &str) -> Result<Listing, WorkspaceError> {
        let parts = components(path)?;
        let dir = self
            .open_beneath(&parts, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| self.error("open", path, &parts, e))?;
        let reader = rustix::fs::Dir::read_from(&dir).map_err(|e| io("list", path, e.into()))?;
        let mut entries = Vec::new();
        let mut truncated = false;
        for entry in reader {
            let entry = entry.map_err(|e| io("list", path, e.into()))?;
            let raw = entry.file_name();
            if matches!(raw.to_bytes(), b"." | b"..") {
                continue;
            }
            if entries.len() == MAX_LIST_ENTRIES {
                truncated = true;
                break;
            }
            let stat = match rustix::fs::statat(&dir, raw, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => stat,
                // Removed since it was read: not there any more.
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(io("stat", path, e.into())),
            };
            let (kind, size) = match FileType::from_raw_mode(stat.st_mode) {
                FileType::RegularFile => {
                    (EntryKind::File, u64::try_from(stat.st_size).unwrap_or(0))
                }
                FileType::Directory => (EntryKind::Dir, 0),
                FileType::Symlink => (EntryKind::Symlink, 0),
                _ => (EntryKind::Other, 0),
            };
            entries.push(DirEntry {
                name: String::from_utf8_lossy(raw.to_bytes()).into_owned(),
                kind,
                size,
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Listing { entries, truncated })
    }

    /// Deletes a file or an empty directory. A link is refused, not removed.
    pub fn delete(&self, path: &str) -> Result<(), WorkspaceError> {
        let parts = components(path)?;
        let Some((name, parents)) = parts.split_last() else {
            return Err(WorkspaceError::InvalidPath {
                path: path.into(),
                reason: "the workspace itself cannot be deleted",
            });
        };
        let dir = self
            .open_beneath(parents, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| self.error("open", path, &parts, e))?;
        let stat = rustix::fs::statat(&dir, *name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.error("stat", path, &parts, e))?;
        let flags = match FileType::from_raw_mode(stat.st_mode) {
            FileType::Symlink => return Err(WorkspaceError::Symlink { path: path.into() }),
            FileType::Directory => AtFlags::REMOVEDIR,
            _ => AtFlags::empty(),
        };
        // unlinkat never follows the last component, so an entry swapped
        // for a link after the stat only removes that link.
        rustix::fs::unlinkat(&dir, *name, flags).map_err(|e| self.error("delete", path, &parts, e))
    }

    /// Opens `parts` below the root, refusing links on every component.
    fn open_beneath(&self, parts: &[&str], flags: OFlags) -> Result<OwnedFd, Errno> {
        let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let Some((last, parents)) = parts.split_last() else {
            return rustix::fs::openat(&self.dir, ".", flags, Mode::empty());
        };
        match self.resolver {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Resolver::Openat2 => openat2_beneath(self.dir.as_fd(), &parts.join("/"), flags),
            Resolver::Walk => {
                let mut current: Option<OwnedFd> = None;
                for part in parents {
                    let at = current.as_ref().map_or(self.dir.as_fd(), AsFd::as_fd);
                    current = Some(open_dir_step(at, part)?);
                }
                let at = current.as_ref().map_or(self.dir.as_fd(), AsFd::as_fd);
                rustix::fs::openat(at, *last, flags, Mode::empty())
            }
        }
    }

    /// Opens the directory `parents`, creating what is missing. Each step
    /// opens the component it just made, so a link swapped in between the
    /// `mkdirat` and the open is refused like any other.
    fn make_dirs(&self, path: &str, parents: &[&str]) -> Result<OwnedFd, WorkspaceError> {
        let mut current = rustix::fs::openat(
            &self.dir,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io("open", path, e.into()))?;
        for (i, part) in parents.iter().enumerate() {
            let step = |at: BorrowedFd<'_>| match self.resolver {
                #[cfg(any(target_os = "linux", target_os = "android"))]
                Resolver::Openat2 => openat2_beneath(
                    at,
                    part,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                ),
                Resolver::Walk => open_dir_step(at, part),
            };
            let next = match step(current.as_fd()) {
                Err(Errno::NOENT) => {
                    match rustix::fs::mkdirat(&current, *part, Mode::from_raw_mode(DIR_MODE)) {
                        Ok(()) | Err(Errno::EXIST) => step(current.as_fd()),
                        Err(e) => Err(e),
                    }
                }
                other => other,
            };
            current = next.map_err(|e| self.error("create directory", path, &parents[..=i], e))?;
        }
        Ok(current)
    }

    /// Refuses to replace a link, a directory or a special file.
    fn check_replaceable(
        &self,
        dir: &OwnedFd,
        path: &str,
        parts: &[&str],
    ) -> Result<(), WorkspaceError> {
        let Some(name) = parts.last() else {
            return Ok(());
        };
        match rustix::fs::statat(dir, *name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(self.error("stat", path, parts, e)),
            Ok(stat) => match FileType::from_raw_mode(stat.st_mode) {
                FileType::RegularFile => Ok(()),
                FileType::Symlink => Err(WorkspaceError::Symlink { path: path.into() }),
                FileType::Directory => Err(WorkspaceError::IsADirectory { path: path.into() }),
                _ => Err(WorkspaceError::NotAFile { path: path.into() }),
            },
        }
    }

    /// Turns an errno into a typed error. `ENOTDIR` and `ELOOP` can both
    /// mean a link on the path, depending on the kernel and the resolver;
    /// a look at the components (for the message only: the refusal already
    /// happened) tells which.
    fn error(&self, op: &'static str, path: &str, parts: &[&str], e: Errno) -> WorkspaceError {
        let path = path.to_owned();
        match e {
            Errno::NOENT => WorkspaceError::NotFound { path },
            Errno::LOOP => WorkspaceError::Symlink { path },
            Errno::NOTDIR if self.has_link(parts) => WorkspaceError::Symlink { path },
            Errno::NOTDIR => WorkspaceError::NotADirectory { path },
            Errno::XDEV => WorkspaceError::Escape { path },
            Errno::ISDIR => WorkspaceError::IsADirectory { path },
            Errno::NOTEMPTY | Errno::EXIST if op == "delete" => WorkspaceError::NotEmpty { path },
            Errno::NAMETOOLONG => WorkspaceError::InvalidPath {
                path,
                reason: "a component is too long",
            },
            e => io(op, &path, e.into()),
        }
    }

    fn has_link(&self, parts: &[&str]) -> bool {
        (1..=parts.len()).any(|n| {
            rustix::fs::statat(&self.dir, parts[..n].join("/"), AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Symlink)
        })
    }
}

fn io(op: &'static str, path: &str, source: std::io::Error) -> WorkspaceError {
    WorkspaceError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Splits an agent's path into plain components, refusing absolute paths,
/// `..`, NUL bytes and oversized names before anything touches the disk.
/// `.` and empty components (`a//b`, a trailing `/`) are dropped.
fn components(path: &str) -> Result<Vec<&str>, WorkspaceError> {
    let invalid = |reason| WorkspaceError::InvalidPath {
        path: path.into(),
        reason,
    };
    if path.len() > MAX_PATH_BYTES {
        return Err(invalid("longer than 4096 bytes"));
    }
    if path.contains('\0') {
        return Err(invalid("contains a NUL byte"));
    }
    if path.starts_with('/') {
        return Err(WorkspaceError::Absolute { path: path.into() });
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(WorkspaceError::Escape { path: path.into() }),
            p if p.len() > MAX_NAME_BYTES => {
                return Err(invalid("a component is longer than 255 bytes"))
            }
            p => parts.push(p),
        }
    }
    Ok(parts)
}

/// One directory step that refuses a link (`O_NOFOLLOW` on the one
/// component; `O_DIRECTORY` refuses anything else that is not a directory).
fn open_dir_step(at: BorrowedFd<'_>, name: &str) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        at,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn openat2_beneath(at: BorrowedFd<'_>, path: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
    use rustix::fs::ResolveFlags;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    // A concurrent rename anywhere on the system can make the kernel ask
    // for a retry; a few are plenty.
    for _ in 0..16 {
        match rustix::fs::openat2(at, path, flags, Mode::empty(), resolve) {
            Err(Errno::AGAIN) => continue,
            other => return other,
        }
    }
    Err(Errno::AGAIN)
}

/// Whether `openat2` works here: missing before Linux 5.6 (`ENOSYS`), and
/// some container seccomp profiles answer `EPERM` or `ENOSYS` for it.
fn probe_openat2(dir: BorrowedFd<'_>) -> Resolver {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        if openat2_beneath(dir, ".", flags).is_ok() {
            return Resolver::Openat2;
        }
    }
    let _ = dir;
    Resolver::Walk
}

// The tests use Linux-only calls (RENAME_EXCHANGE, mknodat).
#[cfg(all(test, target_os = "linux"))]
mod tests;
