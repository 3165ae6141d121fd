//! The node's tools for agents over MCP.
//!
//! An agent reaches its node's tools through `osmoda mcp --agent NAME`: a
//! process speaking MCP on stdio ([`serve_stdio`]) that checks each call
//! against the [catalogue](catalog) and forwards it to the node over the
//! node's Unix socket ([`UnixSocketForwarder`]), where the kernel tells the
//! node which agent's process connected. The node decides: trust rings, approvals, lockdown and
//! audit are enforced there, never here, so a modified copy of this process
//! gains an agent nothing.
//!
//! Modules:
//! - [`catalog`]: the tools, their rings and schemas, argument checks, and
//!   [`ToolCall`], one parsed call, which the node executes;
//! - [`args`]: one typed argument struct per tool, with its bounds and its
//!   audit target;
//! - [`workspace`]: workspace-confined file access, for the node to run the
//!   `file_*` tools;
//! - [`server`]: the rmcp server;
//! - [`forward`]: the forwarder trait and the Unix-socket forwarder.

// Outside bytes, files and answers are errors, never panics; tests may
// unwrap what they made themselves.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod args;
pub mod catalog;
pub mod forward;
pub mod server;
#[cfg(unix)]
pub mod workspace;

/// Re-exported so implementors of [`ToolForwarder`] need no direct
/// dependency on `async-trait`.
pub use async_trait::async_trait;
pub use catalog::{
    parse_arguments, tool, tools, validate_arguments, ArgumentError, Ring, ToolCall, ToolInfo,
    MAX_AUDIT_TARGET_CHARS,
};
pub use forward::{ErrorKind, ForwardError, ToolForwarder, UnixSocketForwarder};
pub use server::{serve, serve_stdio, McpError, McpServer};
#[cfg(unix)]
pub use workspace::{Workspace, WorkspaceError};
