//! Which step a failing child was at. An error from between fork and exec
//! reaches the parent as a bare errno ("Not a directory"); the child also
//! writes each step it starts to a pipe, so the parent can say which mount
//! or switch failed ("tmpfs over /srv/x: Not a directory").

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A step of the child's work, with the mount it concerns where there is
/// one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Step {
    Network = 1,
    MountNamespace,
    CloneTree,
    MountPoint,
    Tmpfs,
    Credential,
    Attach,
    Proc,
    ReadOnly,
    Writable,
    Workspace,
    Ids,
    NoNewPrivs,
    Landlock,
    Seccomp,
}

const STEPS: [(Step, &str); 15] = [
    (Step::Network, "joining the network namespace"),
    (Step::MountNamespace, "entering a private mount namespace"),
    (Step::CloneTree, "cloning the kept tree"),
    (Step::MountPoint, "creating the mount point"),
    (Step::Tmpfs, "mounting a tmpfs over"),
    (Step::Credential, "writing a credential into"),
    (Step::Attach, "attaching the kept tree at"),
    (Step::Proc, "mounting /proc with hidepid"),
    (Step::ReadOnly, "making the mounts read-only"),
    (Step::Writable, "making writable"),
    (Step::Workspace, "entering the workspace"),
    (Step::Ids, "switching to the agent's uid and gid"),
    (Step::NoNewPrivs, "setting no_new_privs"),
    (Step::Landlock, "applying Landlock"),
    (Step::Seccomp, "installing the seccomp filter"),
];

/// The child's end: records steps, ignoring errors (a lost record only
/// makes the message vaguer).
#[derive(Debug, Default)]
pub(crate) struct Trace {
    fd: Option<OwnedFd>,
}

impl Trace {
    pub(crate) fn at(&self, step: Step, index: usize) {
        if let Some(fd) = &self.fd {
            let index = u16::try_from(index).unwrap_or(u16::MAX).to_le_bytes();
            let record = [step as u8, index[0], index[1]];
            // SAFETY: writes three bytes we own to our pipe.
            unsafe { libc::write(fd.as_raw_fd(), record.as_ptr().cast(), record.len()) };
        }
    }
}

/// The parent's end, with the mount targets the indexes refer to.
#[derive(Debug)]
pub(crate) struct StepLog {
    read: OwnedFd,
    targets: Vec<String>,
}

/// A nonblocking close-on-exec pipe: the parent reads after the child is
/// gone, and the child's end closes at exec.
pub(crate) fn pipe(targets: Vec<String>) -> io::Result<(Trace, StepLog)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((Trace { fd: Some(write) }, StepLog { read, targets }))
}

impl StepLog {
    /// `error` (from a failed spawn) with the step the child was at.
    pub(crate) fn explain(&self, error: io::Error) -> io::Error {
        let mut buffer = [0u8; 510];
        let mut last = None;
        loop {
            // SAFETY: reads into the buffer we own; the pipe is nonblocking.
            let read = unsafe {
                libc::read(
                    self.read.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                )
            };
            if read <= 0 {
                break;
            }
            // Records are 3 bytes and buffers a multiple of 3: whole ones.
            let read = read as usize - read as usize % 3;
            if let Some(record) = buffer[..read].chunks_exact(3).last() {
                last = Some([record[0], record[1], record[2]]);
            }
        }
        let Some([step, low, high]) = last else {
            return error;
        };
        let Some((step, what)) = STEPS.iter().find(|(s, _)| *s as u8 == step) else {
            return error;
        };
        let index = usize::from(u16::from_le_bytes([low, high]));
        let target = match step {
            Step::CloneTree
            | Step::MountPoint
            | Step::Tmpfs
            | Step::Credential
            | Step::Attach
            | Step::Writable => self.targets.get(index).map(String::as_str),
            _ => None,
        };
        let message = match target {
            Some(target) => format!("sandbox: {what} {target}: {error}"),
            None => format!("sandbox: {what}: {error}"),
        };
        io::Error::new(error.kind(), message)
    }
}
