//! Command-line definitions.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use osmoda_fabric::proto::Role;

#[derive(Parser)]
#[command(
    name = "osmoda",
    version,
    about = "A mesh-first fabric for autonomous agents on fleets of edge hosts",
    long_about = "A mesh-first fabric for autonomous agents on fleets of edge hosts.\n\n\
                  Start a node with `osmoda run` (an empty data folder becomes a new fleet).\n\
                  Exit codes: 0 ok, 1 error, 2 usage, 3 no node running, 4 refused by the node."
)]
pub struct Cli {
    /// The node's state folder; several nodes on one host need one each.
    #[arg(long, global = true, env = "OSMODA_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Start the node (creates a new fleet in an empty data folder).
    Run(RunArgs),
    /// Make this data folder a member of a fleet, with a token from `osmoda fleet invite`.
    Join(JoinArgs),
    /// Show this node's identity, fleet and connections.
    Status,
    /// List connected peers: node id, name, role, address, transport, key exchange, RTT.
    Peers,
    /// Create a fleet, invite nodes, revoke them.
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Send messages across the mesh and read what arrived.
    #[command(subcommand)]
    Mesh(MeshCommand),
    /// Read and verify this node's audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Knowledge entries: put, get, list, search, remove.
    #[command(subcommand)]
    Knowledge(KnowledgeCommand),
    /// Routine definitions (running them comes with the scheduler).
    #[command(subcommand)]
    Routine(RoutineCommand),
    /// Agents this node runs: add, list, show, logs, start, stop, rm.
    #[command(subcommand)]
    Agent(crate::agent_cli::AgentCommand),
    /// Ring-1 tool calls waiting for an operator, and standing grants.
    Approvals,
    /// Let a waiting tool call through (with --grant 1h: the tool too, for a while).
    Approve {
        id: u64,
        /// Also let this agent use this tool without asking, for this long (e.g. 30m, 1h).
        #[arg(long)]
        grant: Option<String>,
    },
    /// Refuse a waiting tool call.
    Deny { id: u64 },
    /// Emergency: agents get SIGTERM, a grace period, then SIGKILL; services go on.
    Stop(crate::agent_cli::EmergencyArgs),
    /// Emergency: suspend every agent where it stands.
    Freeze(crate::agent_cli::EmergencyArgs),
    /// Let frozen agents continue.
    Resume(crate::agent_cli::EmergencyArgs),
    /// Emergency: kill every agent and refuse every tool call until `unlock` (survives restarts).
    Lockdown(crate::agent_cli::EmergencyArgs),
    /// Lift a lockdown (needs an admin member or the fleet root key).
    Unlock(crate::agent_cli::EmergencyArgs),
    /// Run a fleet of real nodes on a simulated network: a scenario file, or a
    /// shipped one (lan-10, wan-100, partition-heal-50, churn-100, lossy-edge, ci-20, ci-10).
    Sim {
        scenario: String,
        /// Where the report and plots go (default: sim-out/NAME).
        #[arg(long)]
        out: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        no_progress: bool,
        /// Run with this many nodes instead of the scenario's (topology,
        /// workload and faults as written; node ranges must still fit).
        #[arg(long, value_name = "N")]
        nodes: Option<usize>,
    },
    /// Send an already signed fleet command (hex, as `--json` printed it) to the
    /// fleet again; members apply it only if it is newer than what they applied.
    Relay { command: String },
    /// Serve this node's tools to one agent over MCP on stdio (what an agent's
    /// MCP configuration runs; it reads OSMODA_AGENT_TOKEN and OSMODA_AGENT_SOCKET).
    Mcp {
        /// The agent's name (for messages; the token decides who calls).
        #[arg(long)]
        agent: String,
    },
}

#[derive(Subcommand)]
pub enum KnowledgeCommand {
    /// Store a new entry; prints its id.
    Put {
        #[arg(long)]
        title: String,
        /// Tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// The body text.
        #[arg(long, conflicts_with = "file", required_unless_present = "file")]
        body: Option<String>,
        /// Read the body from a file (`-` for standard input).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Show one entry.
    Get { id: String },
    /// List entries, newest first.
    List {
        #[arg(long)]
        tag: Option<String>,
        /// Only ids starting with this.
        #[arg(long)]
        prefix: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Entries whose title or body contains every word of QUERY.
    Search {
        query: String,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Delete an entry (the deletion replicates).
    Rm { id: String },
}

#[derive(Subcommand)]
pub enum RoutineCommand {
    /// Define a routine; prints its id. A bad schedule is refused.
    Add {
        #[arg(long)]
        name: String,
        /// A cron expression ("*/5 * * * *") or an interval ("every 5m").
        #[arg(long)]
        schedule: String,
        /// `all`, `nodes:a,b` or `label:key=value`.
        #[arg(long, default_value = "all")]
        target: String,
        /// The command to run (no shell).
        #[arg(long)]
        command: String,
        /// An argument (repeatable).
        #[arg(long = "arg", allow_hyphen_values = true)]
        args: Vec<String>,
        /// Seconds the command may run.
        #[arg(long, default_value_t = 60)]
        timeout: u32,
        /// Define it disabled.
        #[arg(long)]
        disabled: bool,
    },
    List,
    Show {
        id: String,
    },
    Rm {
        id: String,
    },
    Enable {
        id: String,
    },
    Disable {
        id: String,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Show entries of this node's audit log, oldest first.
    Log {
        /// Another node's id: fetch its log from it (48 entries at most).
        #[arg(long)]
        node: Option<String>,
        /// First sequence number to show.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// Most entries to show (at most 4096).
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// Check every stored entry, the hash chain and the signed checkpoint;
    /// names the first entry that fails. Exit code 1 when one does.
    Verify {
        /// Another node's id: fetch its whole log from it and verify it
        /// against the checkpoint it signed.
        #[arg(long)]
        node: Option<String>,
    },
    /// The latest signed checkpoint of every node's log, as gossiped.
    Heads,
    /// Nodes with evidence that they forked their audit log.
    Forks,
}

#[derive(Args)]
pub struct RunArgs {
    /// Address to listen on (repeatable), e.g. /ip4/0.0.0.0/tcp/4001 or /ip4/0.0.0.0/udp/4001/quic-v1.
    /// Replaces the configured list. Default: TCP and QUIC on random ports.
    #[arg(
        long,
        value_name = "MULTIADDR",
        env = "OSMODA_LISTEN",
        value_delimiter = ','
    )]
    pub listen: Vec<String>,
    /// Member to dial at start (repeatable), e.g. /ip4/192.0.2.7/tcp/4001.
    #[arg(
        long,
        value_name = "MULTIADDR",
        env = "OSMODA_BOOTSTRAP",
        value_delimiter = ','
    )]
    pub bootstrap: Vec<String>,
    /// Do not discover peers on the local network.
    #[arg(long, env = "OSMODA_NO_MDNS")]
    pub no_mdns: bool,
    /// Fleet name, when this run creates a new fleet.
    #[arg(long, default_value = "osmoda", value_name = "NAME")]
    pub fleet_name: String,
    /// This node's name, when this run creates a new fleet.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

#[derive(Args)]
pub struct JoinArgs {
    /// The join token; `-` reads it from standard input (keeps it out of shell history).
    #[arg(env = "OSMODA_TOKEN", hide_env_values = true)]
    pub token: String,
}

#[derive(Subcommand)]
pub enum FleetCommand {
    /// Create a new fleet; this node becomes its first admin and holds the root key.
    Create {
        /// The fleet's name.
        #[arg(long, default_value = "osmoda")]
        name: String,
        /// This node's name.
        #[arg(long)]
        node_name: Option<String>,
    },
    /// Print a join token for a new node (needs the root key).
    Invite {
        #[arg(long, default_value = "member")]
        role: Role,
        /// How long the token can be used to join.
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: Duration,
        /// How long the new node's membership lasts.
        #[arg(long, default_value = "365d", value_parser = parse_duration)]
        valid_for: Duration,
        /// The new node's name.
        #[arg(long)]
        name: Option<String>,
        /// Extra addresses for the new node to dial first (repeatable).
        #[arg(long, value_name = "MULTIADDR")]
        bootstrap: Vec<String>,
    },
    /// Revoke a node's membership; every member cuts it off (needs the root key).
    Revoke {
        /// The node id, as `osmoda peers` shows it.
        node_id: String,
    },
    /// Show the fleet, this node's certificate and the revocations known here.
    Show,
}

#[derive(Subcommand)]
pub enum MeshCommand {
    /// Send a text to every member.
    Broadcast { text: String },
    /// Send a text to one connected member, by node id or name.
    Send { node: String, text: String },
    /// Show the messages that arrived (newest last).
    Inbox,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30m, 1h, 7d)"))?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}
