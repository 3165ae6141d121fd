//! `osmoda mcp --agent NAME`: the node's tools over MCP on stdio, for an
//! agent's MCP client to start as a child process.
//!
//! This process holds no authority of its own: it forwards each call, with
//! the agent's token, to the node's agents' socket, where every check is
//! made. Stdout carries MCP only; logs go to stderr (`init_logging`).

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
    // The token error says which variable is missing and where it comes
    // from; the token itself never reaches a message.
    let forwarder = UnixSocketForwarder::from_env(&socket)
        .context("`osmoda mcp` runs inside an agent started by the node")?;
    tracing::info!(agent, socket = %socket.display(), "serving MCP on stdio");
    serve_stdio(Arc::new(forwarder), agent.to_string())
        .await
        .context("the MCP session failed")?;
    Ok(())
}
