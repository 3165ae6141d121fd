//! `osmoda mcp --agent NAME`: the node's tools over MCP on stdio, for an
//! agent's MCP client to start as a child process.
//!
//! This process holds no authority of its own: it forwards each call to
//! the node's agents' socket, where the node identifies the calling agent
//! by its uid (or its session, for an unconfined agent) and makes every
//! check. It must run inside the agent (a child of the agent's process). Stdout carries MCP only; logs go to stderr (`init_logging`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use osmoda_mcpd::{serve_stdio, UnixSocketForwarder};

use crate::datadir::{DataDir, AGENT_SOCKET};

/// Set by the node in every agent's environment.
const SOCKET_ENV: &str = "OSMODA_AGENT_SOCKET";

pub async fn run(data: &DataDir, agent: &str) -> Result<()> {
    let socket = match std::env::var_os(SOCKET_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => data.path(AGENT_SOCKET),
    };
    let forwarder = UnixSocketForwarder::new(&socket);
    tracing::info!(agent, socket = %socket.display(), "serving MCP on stdio");
    serve_stdio(Arc::new(forwarder), agent.to_string())
        .await
        .context("the MCP session failed")?;
    Ok(())
}
