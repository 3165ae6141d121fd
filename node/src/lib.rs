//! The osmoda node as a library: the service layer every front uses, the
//! parts it is made of, and the fronts themselves.
//!
//! - `service`: [`service::Node`], every operation once, with its audit
//!   entry and a typed [`error::NodeError`].
//! - `api`: the control API's request and answer types, shared by the
//!   server and the CLI.
//! - Fronts: `control` (HTTP on the control socket), `agent_socket` (agents'
//!   tool calls), `a2a` (A2A clients over HTTP), `cli` (the `osmoda`
//!   command line), `sim` (nodes on the simulated network).
//! - Parts: `state` (audit log, documents, heads, agents, approvals,
//!   emergency register), `replication` (push, sync, anti-entropy),
//!   `runtime` (the builder, the event loop), the data folder and the
//!   configuration.
//!
//! Errors: every library module returns [`error::NodeError`]; only `cli`,
//! which reports to people, uses `anyhow`.
//!
//! ARCHITECTURE.md maps it and says where to add a command, a tool, a
//! document type or a gossip topic.

// Outside bytes, files and answers are errors, never panics; tests may
// unwrap what they made themselves.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod a2a;
pub mod agent_socket;
pub mod api;
pub mod cli;
pub mod config;
pub mod control;
pub mod datadir;
pub mod egress;
pub mod error;
pub mod metrics;
pub mod replication;
pub mod runtime;
pub mod service;
pub mod sim;
pub mod state;
