//! Tools that touch the host: files in the agent's workspace (confined by
//! `osmoda_mcpd::Workspace`) and `host_exec`.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use osmoda_agentd::SandboxPlan;
use osmoda_mcpd::args::{FileList, FilePath, FileWrite, HostExec};
use osmoda_mcpd::{Workspace, WorkspaceError};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{AgentCall, Node};
use crate::error::{NodeError, NodeResult};
use crate::state::agents::AgentIdentity;

/// Output kept from each of `host_exec`'s stdout and stderr; the rest is
/// read and counted, so the program never blocks on a full pipe.
const MAX_OUTPUT_BYTES: usize = 64 * 1024;
/// How long output is still read after the program ended: a background
/// child it left behind may hold the pipes open for ever.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// Escapes are refusals (audited as denied); the rest are mistakes, except
/// the system failing.
fn workspace_error(e: WorkspaceError) -> NodeError {
    let text = e.to_string();
    match e {
        WorkspaceError::Absolute { .. }
        | WorkspaceError::Escape { .. }
        | WorkspaceError::Symlink { .. } => NodeError::Forbidden(text),
        WorkspaceError::NotFound { .. } => NodeError::NotFound {
            what: "file in the workspace",
            id: text,
        },
        WorkspaceError::Io { .. } => NodeError::Internal(text),
        _ => NodeError::Invalid(text),
    }
}

/// Runs a workspace operation off the runtime's threads (it does blocking
/// file IO and fsyncs), with the file permissions of the calling agent's
/// uid where it has one: the kernel then checks each access as it would
/// for the agent, and the files the tool makes are the agent's own.
async fn in_workspace<T: Send + 'static>(
    who: &AgentIdentity,
    op: impl FnOnce(&Workspace) -> Result<T, WorkspaceError> + Send + 'static,
) -> NodeResult<T> {
    let root = who.workspace.clone();
    let uid = who.uid;
    tokio::task::spawn_blocking(move || {
        // The workspace is opened as the node (the folders above it are
        // not the agent's to walk), everything beneath it as the agent.
        let workspace = Workspace::open(root)?;
        let _as_agent = uid.map(FsIds::become_);
        op(&workspace)
    })
    .await
    .map_err(NodeError::internal)?
    .map_err(workspace_error)
}

/// The filesystem uid and gid of this thread set to an agent's, restored
/// when dropped. `setfsuid` changes only the calling thread (a blocking
/// pool thread here), never the node's other threads, and only what file
/// access checks use.
struct FsIds;

impl FsIds {
    fn become_(uid: u32) -> Self {
        // SAFETY: setfsgid/setfsuid change only this thread's filesystem
        // ids; the gid first, while still privileged to change it.
        unsafe {
            libc::setfsgid(uid);
            libc::setfsuid(uid);
        }
        FsIds
    }
}

impl Drop for FsIds {
    fn drop(&mut self) {
        // SAFETY: as above; back to the node's own effective ids.
        unsafe {
            libc::setfsuid(libc::geteuid());
            libc::setfsgid(libc::getegid());
        }
    }
}

impl Node {
    pub async fn file_read(&self, call: &AgentCall, a: FilePath) -> NodeResult<Value> {
        let (value, note) = file_read(&call.who, a).await?;
        call.note(note);
        Ok(value)
    }

    pub async fn file_write(&self, call: &AgentCall, a: FileWrite) -> NodeResult<Value> {
        let (value, note) = file_write(&call.who, a).await?;
        call.note(note);
        Ok(value)
    }

    pub async fn file_list(&self, call: &AgentCall, a: FileList) -> NodeResult<Value> {
        let (value, note) = file_list(&call.who, a).await?;
        call.note(note);
        Ok(value)
    }

    pub async fn file_delete(&self, call: &AgentCall, a: FilePath) -> NodeResult<Value> {
        let (value, note) = file_delete(&call.who, a).await?;
        call.note(note);
        Ok(value)
    }

    /// Runs as the calling agent, inside the same confinement as the agent
    /// itself (its uid, mounts, network namespace, seccomp, Landlock), so
    /// an approved command can do no more than the agent's own code could;
    /// an unconfined agent's runs as the node's user.
    pub async fn host_exec(&self, call: &AgentCall, a: HostExec) -> NodeResult<Value> {
        let plan = match call.who.uid {
            Some(_) => {
                let spec = self
                    .agents
                    .spec(&call.who.name)?
                    .ok_or_else(|| NodeError::not_found("agent", &call.who.name))?;
                Some(self.plan_for(&spec, Vec::new()).await?)
            }
            None => None,
        };
        let (value, note) = host_exec(&call.who, plan, a).await?;
        call.note(note);
        Ok(value)
    }
}

/// A result, and a short note for the audit entry (never contents).
type ToolResult = NodeResult<(Value, String)>;

async fn file_read(who: &AgentIdentity, a: FilePath) -> ToolResult {
    let path = a.path.clone();
    let bytes = in_workspace(who, move |ws| ws.read(&path)).await?;
    let size = bytes.len();
    let content = String::from_utf8(bytes).map_err(|_| {
        NodeError::Invalid(format!(
            "{:?} is not UTF-8 text; file_read reads text files only",
            a.path
        ))
    })?;
    Ok((
        json!({ "path": a.path, "bytes": size, "content": content }),
        format!("{size} bytes"),
    ))
}

async fn file_write(who: &AgentIdentity, a: FileWrite) -> ToolResult {
    let size = a.content.len();
    let path = a.path.clone();
    in_workspace(who, move |ws| ws.write(&path, a.content.as_bytes())).await?;
    Ok((
        json!({ "path": a.path, "bytes": size, "written": true }),
        format!("{size} bytes"),
    ))
}

async fn file_list(who: &AgentIdentity, a: FileList) -> ToolResult {
    let path = a.path.unwrap_or_default();
    let listing = in_workspace(who, move |ws| ws.list(&path)).await?;
    let note = format!("{} entries", listing.entries.len());
    let value = serde_json::to_value(&listing).map_err(NodeError::internal)?;
    Ok((value, note))
}

async fn file_delete(who: &AgentIdentity, a: FilePath) -> ToolResult {
    let path = a.path.clone();
    in_workspace(who, move |ws| ws.delete(&path)).await?;
    Ok((json!({ "path": a.path, "deleted": true }), String::new()))
}

/// What was read from one pipe: the first bytes, and how many there were.
#[derive(Default)]
struct Captured {
    kept: Vec<u8>,
    total: u64,
}

/// Reads a pipe to its end into `into`, keeping the first
/// [`MAX_OUTPUT_BYTES`]. Shared, so what was read survives an abort.
async fn capture(mut pipe: impl AsyncRead + Unpin, into: Arc<Mutex<Captured>>) {
    let mut buf = [0u8; 8192];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut c = into.lock().unwrap_or_else(|e| e.into_inner());
        c.total += n as u64;
        let room = MAX_OUTPUT_BYTES.saturating_sub(c.kept.len());
        c.kept.extend_from_slice(&buf[..n.min(room)]);
    }
}

/// Waits for a capture a little while, then stops it, and takes its text.
async fn collect(task: tokio::task::JoinHandle<()>, from: &Arc<Mutex<Captured>>) -> (String, u64) {
    let abort = task.abort_handle();
    if tokio::time::timeout(OUTPUT_GRACE, task).await.is_err() {
        abort.abort();
    }
    let c = from.lock().unwrap_or_else(|e| e.into_inner());
    (String::from_utf8_lossy(&c.kept).into_owned(), c.total)
}

/// Runs a program (no shell) in the agent's workspace with a small, clean
/// environment: the node's own environment may hold configuration the
/// agent has no business reading. Killed at the timeout, or when the call
/// goes away (`kill_on_drop`). Descendants that leave the program's
/// process are not tracked.
async fn host_exec(who: &AgentIdentity, plan: Option<SandboxPlan>, a: HostExec) -> ToolResult {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut std_command = std::process::Command::new(&a.command);
    std_command
        .args(&a.args)
        .current_dir(&who.workspace)
        .env_clear()
        .env("PATH", path)
        .env("HOME", &who.workspace)
        .env("OSMODA_AGENT_NAME", &who.name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(lang) = std::env::var_os("LANG") {
        std_command.env("LANG", lang);
    }
    if let Some(plan) = &plan {
        osmoda_agentd::confine_command(&mut std_command, plan, &who.workspace)
            .map_err(|e| NodeError::Internal(format!("cannot confine {:?}: {e}", a.command)))?;
    }
    let mut command = tokio::process::Command::from(std_command);
    command.kill_on_drop(true);
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| NodeError::Invalid(format!("cannot run {:?}: {e}", a.command)))?;
    let out = Arc::new(Mutex::new(Captured::default()));
    let err = Arc::new(Mutex::new(Captured::default()));
    let out_task = child
        .stdout
        .take()
        .map(|pipe| tokio::spawn(capture(pipe, out.clone())));
    let err_task = child
        .stderr
        .take()
        .map(|pipe| tokio::spawn(capture(pipe, err.clone())));
    let limit = Duration::from_secs(u64::from(a.timeout_secs));
    let (status, timed_out) = match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => (status, false),
        Err(_) => {
            // SIGKILL: a program over its time gets no say.
            let _ = child.start_kill();
            (child.wait().await, true)
        }
    };
    let status =
        status.map_err(|e| NodeError::Internal(format!("waiting for {:?}: {e}", a.command)))?;
    let elapsed = started.elapsed();
    let (stdout, stdout_bytes) = match out_task {
        Some(task) => collect(task, &out).await,
        None => (String::new(), 0),
    };
    let (stderr, stderr_bytes) = match err_task {
        Some(task) => collect(task, &err).await,
        None => (String::new(), 0),
    };
    let note = match (timed_out, status.code(), status.signal()) {
        (true, _, _) => format!("killed after {} s", a.timeout_secs),
        (false, Some(code), _) => format!("exit code {code}"),
        (false, None, Some(signal)) => format!("signal {signal}"),
        (false, None, None) => "ended".into(),
    };
    Ok((
        json!({
            "exit_code": status.code(),
            "signal": status.signal(),
            "timed_out": timed_out,
            "duration_ms": elapsed.as_millis() as u64,
            "stdout": stdout,
            "stderr": stderr,
            "stdout_bytes": stdout_bytes,
            "stderr_bytes": stderr_bytes,
            "stdout_truncated": stdout_bytes > MAX_OUTPUT_BYTES as u64,
            "stderr_truncated": stderr_bytes > MAX_OUTPUT_BYTES as u64,
        }),
        note,
    ))
}
