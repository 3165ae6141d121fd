//! Starting, signalling, watching and reaping agent processes.
//!
//! - [`Spawner`]: one long-lived thread does every fork. The child asks for
//!   SIGKILL when its parent *thread* dies (`PR_SET_PDEATHSIG`), so the
//!   thread must outlive the agents; a tokio worker could be retired by
//!   `block_in_place` and take agents down with it. Forking off the runtime
//!   also keeps a large process's page-table copy off the async workers.
//! - [`launch`]: the command with a clean environment, the workspace as
//!   working folder, stdin from /dev/null, stdout and stderr into one pipe,
//!   and between fork and exec: a new session (so the agent is its own
//!   process group and signals reach all of it), the parent-death signal,
//!   joining the agent's cgroup, rlimits; then, for a confined agent, the
//!   sandbox (`sandbox/`): namespaces, mounts, uid, Landlock, seccomp.
//! - [`wait_exit`]: resolves when the process has ended, without reaping
//!   it. The zombie keeps its pid, and so the process group id, reserved
//!   until the supervisor has killed the rest of the group and calls
//!   [`reap`]; a signal to the group can never hit a recycled pid.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc as std_mpsc;

use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use crate::sandbox::{self, SandboxPlan};
use crate::spec::{AgentSpec, Limits};
use crate::status::ExitStatus;

type Job = Box<dyn FnOnce() + Send>;

/// The thread that forks; see the module docs. Dropping the last handle
/// ends the thread, which sends SIGKILL to every agent still running.
#[derive(Debug)]
pub(crate) struct Spawner {
    jobs: std_mpsc::SyncSender<Job>,
}

impl Spawner {
    pub(crate) fn new() -> io::Result<Self> {
        // One job at a time is ever in flight: the supervisor awaits each.
        let (jobs, queue) = std_mpsc::sync_channel::<Job>(4);
        std::thread::Builder::new()
            .name("agentd-spawner".into())
            .spawn(move || {
                for job in queue {
                    job();
                }
            })?;
        Ok(Self { jobs })
    }

    /// Runs `job` on the spawner thread and returns its result.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<T> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .try_send(Box::new(move || {
                let _ = reply.send(job());
            }))
            .map_err(|_| io::Error::other("agent spawner thread is busy or gone"))?;
        answer
            .await
            .map_err(|_| io::Error::other("agent spawner thread is gone"))
    }
}

/// What the child applies to itself before exec.
#[derive(Debug, Default)]
pub(crate) struct Confinement {
    /// The `cgroup.procs` of each of the agent's cgroups (one per cgroup v1
    /// hierarchy, one under cgroup v2), open for writing.
    pub cgroup_procs: Vec<OwnedFd>,
    /// Limits to apply as rlimits (None under cgroup v2).
    pub rlimits: Option<Limits>,
    /// Confinement of the agent's own (None: it runs as the node's user).
    pub sandbox: Option<SandboxPlan>,
}

/// A started process: its pid (= its process group id) and the read end of
/// its output pipe.
#[derive(Debug)]
pub(crate) struct Launched {
    pub pid: i32,
    pub output: OwnedFd,
}

/// Starts the agent's process; runs on the spawner thread.
pub(crate) fn launch(
    spec: &AgentSpec,
    env: &BTreeMap<String, String>,
    workspace: &Path,
    confinement: Confinement,
) -> io::Result<Launched> {
    let (output, write_end) = pipe()?;
    let stderr_end = write_end.try_clone()?;
    let mut command = Command::new(&spec.command);
    command
        .args(&spec.args)
        .env_clear()
        .envs(env)
        .current_dir(workspace)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::from(stderr_end));

    let parent = std::process::id() as libc::pid_t;
    let procs_fds: Vec<RawFd> = confinement
        .cgroup_procs
        .iter()
        .map(AsRawFd::as_raw_fd)
        .collect();
    let rlimits = rlimits_for(confinement.rlimits.as_ref());
    let mut sandbox = match &confinement.sandbox {
        Some(plan) => Some(sandbox::prepare(plan, workspace)?),
        None => None,
    };
    let steps = sandbox
        .as_mut()
        .map(sandbox::Prepared::trace_steps)
        .transpose()?;
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed: it uses raw syscalls on
    // values computed before the fork, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            confine_child(parent, &procs_fds, &rlimits)?;
            sandbox.as_mut().map_or(Ok(()), sandbox::Prepared::apply)
        });
    }
    let child = command.spawn().map_err(|error| match &steps {
        Some(steps) => steps.explain(error),
        None => error,
    })?;
    // `command` holds the pipe's write ends; dropping it here means the
    // read end sees end-of-file once the agent and its children are gone.
    drop(command);
    drop(confinement);
    let pid = i32::try_from(child.id()).map_err(|_| io::Error::other("pid out of range"))?;
    // Dropping a std Child neither waits nor kills: reaping is ours.
    drop(child);
    Ok(Launched { pid, output })
}

/// Rlimit values, computed before the fork so the child needs no heap.
#[derive(Debug, Clone, Copy, Default)]
struct Rlimits {
    address_space: Option<libc::rlim_t>,
    processes: Option<libc::rlim_t>,
}

fn rlimits_for(limits: Option<&Limits>) -> Rlimits {
    limits.map_or_else(Rlimits::default, |limits| Rlimits {
        address_space: limits.memory_bytes,
        processes: limits.max_processes.map(libc::rlim_t::from),
    })
}

/// Sets soft and hard limit alike, so the agent cannot raise it again. A
/// macro rather than a function: the resource's type differs between glibc
/// and musl.
macro_rules! set_rlimit {
    ($resource:expr, $value:expr) => {{
        let limit = libc::rlimit {
            rlim_cur: $value,
            rlim_max: $value,
        };
        if libc::setrlimit($resource, &limit) < 0 {
            return Err(io::Error::last_os_error());
        }
    }};
}

fn confine_child(parent: libc::pid_t, procs_fds: &[RawFd], rlimits: &Rlimits) -> io::Result<()> {
    // SAFETY (whole function): plain syscalls with valid arguments; see the
    // pre_exec comment above.
    unsafe {
        if libc::setsid() < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) < 0 {
            return Err(io::Error::last_os_error());
        }
        // The parent thread may have died between fork and prctl.
        if libc::getppid() != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        for &fd in procs_fds {
            // "0" moves the writing process.
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(io::Error::last_os_error());
            }
        }
        if let Some(value) = rlimits.address_space {
            set_rlimit!(libc::RLIMIT_AS, value);
        }
        if let Some(value) = rlimits.processes {
            set_rlimit!(libc::RLIMIT_NPROC, value);
        }
    }
    Ok(())
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends `signal` to the process group `pgid`. A group already gone is not
/// an error.
pub(crate) fn signal_group(pgid: i32, signal: i32) {
    if pgid <= 1 {
        return; // never "every process" (-1) or our own group (0)
    }
    // SAFETY: kill has no memory effects.
    if unsafe { libc::kill(-pgid, signal) } < 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ESRCH) {
            tracing::warn!(pgid, signal, %error, "cannot signal agent process group");
        }
    }
}

/// Resolves once process `pid` (a child of ours) has ended; it stays a
/// zombie until [`reap`]. Uses a pidfd (Linux 5.3+), else a blocking
/// `waitid(WNOWAIT)` on tokio's blocking pool.
pub(crate) async fn wait_exit(pid: i32) {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw >= 0 {
        // SAFETY: the kernel just gave us this descriptor.
        let pidfd = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
        // SAFETY: the AsyncFd owns the OwnedFd, which stays open and the
        // same descriptor until the AsyncFd is dropped.
        let registered =
            unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) };
        if let Ok(async_fd) = registered {
            // A pidfd turns readable when the process exits and stays so.
            let _ = async_fd.readable().await;
            return;
        }
    }
    let _ = tokio::task::spawn_blocking(move || loop {
        // SAFETY: waitid writes only into the zeroed siginfo we own.
        let result = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if result == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    })
    .await;
}

/// Collects the exit status of an ended child (after [`wait_exit`]).
pub(crate) fn reap(pid: i32) -> ExitStatus {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: waitpid writes only into `status`. The process has
        // exited (wait_exit), so this does not block for long.
        let result = unsafe { libc::waitpid(pid, &mut status, 0) };
        if result == pid {
            break;
        }
        if result < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return ExitStatus::Unknown;
    }
    if libc::WIFEXITED(status) {
        ExitStatus::Code {
            code: libc::WEXITSTATUS(status),
        }
    } else if libc::WIFSIGNALED(status) {
        ExitStatus::Signal {
            signal: libc::WTERMSIG(status),
        }
    } else {
        ExitStatus::Unknown
    }
}

/// Reaps `pid` if it has ended, without blocking; for cleanup on drop.
pub(crate) fn try_reap(pid: i32) -> bool {
    let mut status: libc::c_int = 0;
    // SAFETY: as in `reap`, with WNOHANG.
    let result = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    result == pid || result < 0
}
