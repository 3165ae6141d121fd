//! Command-line definitions (clap). Every argument has a description;
//! `docs/api.md` and the README say the same things.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use osmoda_fabric::proto::Role;

use super::agent::{AgentCommand, EmergencyArgs};
use super::secret::SecretCommand;

#[derive(Parser)]
#[command(
    name = "osmoda",
    version,
    about = "A mesh-first fabric for autonomous agents on fleets of edge hosts",
    long_about = "A mesh-first fabric for autonomous agents on fleets of edge hosts.\n\n\
                  Start a node with `osmoda run` (an empty data folder becomes a new fleet).\n\
                  Exit codes: 0 ok, 1 error, 2 usage, 3 no node running, 4 refused (bad input,\n\
                  a rule, a name taken, the operator said no), 5 not found, 6 unavailable for now\n\
                  (no peer, a peer did not answer; try again)."
)]
pub struct Cli {
    /// The node's state folder; several nodes on one host need one each
    /// [env: OSMODA_DATA] [default: ~/.local/share/osmoda].
    // OSMODA_DATA is read by `DataDir::chosen`, not by clap: clap would
    // print an env-set `--data <DIR>` in every usage line, as if required.
    #[arg(long, global = true, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Start the node (an empty data folder becomes a new fleet).
    Run(RunArgs),
    /// Make this data folder a member of a fleet, with a token from `osmoda fleet invite`.
    Join(JoinArgs),
    /// Show this node's identity, fleet, connections and agents.
    Status {
        /// Wait up to 30 s for the node to answer (for scripts that just started it).
        #[arg(long)]
        wait: bool,
    },
    /// List connected peers: name, role, transport, RTT, key exchange, node id, address.
    Peers {
        /// Wait up to 60 s until at least N peers are connected (exit 6 if not).
        #[arg(long, value_name = "N")]
        wait: Option<usize>,
    },
    /// Create a fleet, invite nodes, revoke them.
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Send messages across the mesh and read what arrived.
    #[command(subcommand)]
    Mesh(MeshCommand),
    /// Read and verify audit logs: this node's or another member's.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Knowledge entries: put, update, get, list, search, remove.
    #[command(subcommand)]
    Knowledge(KnowledgeCommand),
    /// Routine definitions, replicated to every member (running them comes
    /// with the scheduler).
    #[command(subcommand)]
    Routine(RoutineCommand),
    /// Agents this node runs: add, list, show, logs, start, stop, rm.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Secrets for agents, sealed at rest: set, grant, revoke, rotate, list, rm.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Tasks between agents: submit, list, show, watch, cancel, reply.
    #[command(subcommand)]
    Task(super::task::TaskCommand),
    /// Ring-1 tool calls waiting for an operator, and standing grants.
    Approvals,
    /// Let a waiting tool call through (with --grant 1h: the tool too, for a while).
    Approve {
        /// The request's number, as `osmoda approvals` shows it.
        id: u64,
        /// Also let this agent use this tool without asking, for this long (e.g. 30m, 1h).
        #[arg(long, value_name = "DURATION")]
        grant: Option<String>,
    },
    /// Refuse a waiting tool call.
    Deny {
        /// The request's number, as `osmoda approvals` shows it.
        id: u64,
    },
    /// Emergency: agents get SIGTERM, a grace period, then SIGKILL, and stay
    /// stopped until started; services go on.
    Stop(EmergencyArgs),
    /// Emergency: suspend every agent where it stands.
    Freeze(EmergencyArgs),
    /// Let frozen agents continue.
    Resume(EmergencyArgs),
    /// Emergency: kill every agent and refuse every tool call until `unlock`
    /// (survives restarts).
    Lockdown(EmergencyArgs),
    /// Lift a lockdown (needs an admin member or the fleet root key); agents
    /// with `--restart always` start again, the others stay stopped.
    Unlock(EmergencyArgs),
    /// Run a fleet of real nodes on a simulated network: a scenario file, or
    /// a shipped one (lan-10, wan-100, partition-heal-50, churn-100,
    /// lossy-edge, idle-100, ci-20, ci-10, rogue-20, rogue-8).
    Sim(SimArgs),
    /// Send an already signed fleet command (hex, as `--json` printed it) to the
    /// fleet again; members apply it only if it is newer than what they applied.
    Relay {
        /// The signed command, in hex.
        command: String,
    },
    /// Serve this node's tools to one agent over MCP on stdio (what an
    /// agent's MCP configuration runs, inside the agent). The node knows
    /// the calling agent by the process's uid; OSMODA_AGENT_SOCKET, set in
    /// every agent's environment, says where the socket is (docs/api.md,
    /// "MCP").
    Mcp {
        /// The agent's name (for messages; the caller's uid decides who
        /// calls).
        #[arg(long)]
        agent: String,
    },
    /// Print a completion script for a shell, e.g.
    /// `osmoda completions bash > /etc/bash_completion.d/osmoda`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// How `run` writes its log lines to standard error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line per event for people.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields) for log
    /// shippers.
    Json,
}

#[derive(Args)]
pub struct SimArgs {
    /// A scenario file (TOML), or the name of a shipped scenario.
    pub scenario: String,
    /// Where the report and plots go [default: sim-out/NAME].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Run with this many nodes instead of the scenario's (topology,
    /// workload and faults as written; node ranges must still fit).
    #[arg(long, value_name = "N")]
    pub nodes: Option<usize>,
}

#[derive(Subcommand)]
pub enum KnowledgeCommand {
    /// Store a new entry; prints its id.
    Put {
        /// A short title (not empty).
        #[arg(long)]
        title: String,
        /// Tag (repeatable).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// The body text.
        #[arg(long, conflicts_with = "file", required_unless_present = "file")]
        body: Option<String>,
        /// Read the body from a file (`-` for standard input).
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// Change an entry's title, body or tags; what is not given stays.
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["title", "body", "file", "tags", "no_tags"])))]
    Update {
        /// The entry's id, as `knowledge list` shows it.
        id: String,
        /// A new title (not empty).
        #[arg(long)]
        title: Option<String>,
        /// A new body; only the parts that differ travel to other nodes.
        #[arg(long, conflicts_with = "file")]
        body: Option<String>,
        /// Read the new body from a file (`-` for standard input).
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// The entry's tags, replacing the ones it has (repeatable).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Remove every tag.
        #[arg(long, conflicts_with = "tags")]
        no_tags: bool,
    },
    /// Show one entry.
    Get {
        /// The entry's id, as `knowledge list` shows it.
        id: String,
    },
    /// List entries, newest first, following pages up to --limit.
    List {
        /// Only entries with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only ids starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Most entries to show; when more remain, the text says how to go on.
        #[arg(long, default_value_t = 100, value_name = "N")]
        limit: usize,
        /// Continue a listing where an earlier one stopped (its next_cursor).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Entries whose title or body contains every word of QUERY.
    Search {
        /// Words to find, in any order, ignoring case.
        query: String,
        /// Most entries to show (at most 10,000).
        #[arg(long, default_value_t = 100, value_name = "N")]
        limit: usize,
    },
    /// Delete an entry (the deletion replicates).
    Rm {
        /// The entry's id.
        id: String,
    },
}

#[derive(Subcommand)]
pub enum RoutineCommand {
    /// Define a routine; prints its id. Names are unique; a bad schedule is refused.
    Add {
        /// A unique name, usable wherever the id is.
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
        #[arg(long = "arg", allow_hyphen_values = true, value_name = "ARG")]
        args: Vec<String>,
        /// Seconds the command may run.
        #[arg(long, default_value_t = 60, value_name = "SECS")]
        timeout: u32,
        /// Define it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// List every routine.
    List,
    /// Show one routine.
    Show {
        /// Its id or name.
        #[arg(value_name = "ID|NAME")]
        id: String,
    },
    /// Remove a routine (the removal replicates).
    Rm {
        /// Its id or name.
        #[arg(value_name = "ID|NAME")]
        id: String,
    },
    /// Enable a routine.
    Enable {
        /// Its id or name.
        #[arg(value_name = "ID|NAME")]
        id: String,
    },
    /// Disable a routine.
    Disable {
        /// Its id or name.
        #[arg(value_name = "ID|NAME")]
        id: String,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Show entries of an audit log, oldest first.
    Log {
        /// Another node (id or name): fetch its log from it, or from a member
        /// holding a copy (at most 48 entries per call).
        #[arg(long, value_name = "NODE")]
        node: Option<String>,
        /// First sequence number to show.
        #[arg(long, default_value_t = 0, value_name = "SEQ")]
        start: u64,
        /// Most entries to show (at most 4096).
        #[arg(long, default_value_t = 100, value_name = "N")]
        limit: u64,
    },
    /// Check every stored entry, the hash chain and the signed checkpoint;
    /// names the first entry that fails. Exit code 1 when one does.
    Verify {
        /// Another node (id or name): fetch its whole log and verify it
        /// against the checkpoint it signed.
        #[arg(long, value_name = "NODE")]
        node: Option<String>,
    },
    /// The latest signed checkpoint of every node's log, as gossiped.
    Heads,
    /// Nodes with evidence that they forked their audit log.
    Forks,
}

#[derive(Args)]
pub struct RunArgs {
    /// Address to listen on (repeatable), e.g. /ip4/0.0.0.0/tcp/4001 or
    /// /ip4/0.0.0.0/udp/4001/quic-v1. Replaces the configured list.
    /// Default: TCP and QUIC on port 7410, or random ports when 7410 is taken.
    #[arg(
        long,
        value_name = "MULTIADDR",
        env = "OSMODA_LISTEN",
        value_delimiter = ','
    )]
    pub listen: Vec<String>,
    /// Member to dial at start (repeatable), e.g. /ip4/192.0.2.7/tcp/4001;
    /// added to the configured list.
    #[arg(
        long,
        value_name = "MULTIADDR",
        env = "OSMODA_BOOTSTRAP",
        value_delimiter = ','
    )]
    pub bootstrap: Vec<String>,
    /// Do not discover peers on the local network (env: 1, true, yes or on).
    #[arg(long, env = "OSMODA_NO_MDNS", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_mdns: bool,
    /// Fleet name, when this run creates a new fleet.
    #[arg(long, default_value = "osmoda", value_name = "NAME")]
    pub fleet_name: String,
    /// This node's name, when this run creates a new fleet.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// When this run creates a new fleet: write its root key to FILE (a new
    /// file, e.g. on removable media) instead of DATA/root.key.
    #[arg(long, value_name = "FILE", env = "OSMODA_ROOT_KEY")]
    pub root_key: Option<PathBuf>,
    /// Log lines as text, or as one JSON object per line.
    #[arg(long, value_enum, default_value_t, env = "OSMODA_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Args)]
pub struct JoinArgs {
    /// The join token; `-` reads it from standard input (keeps it out of shell history).
    #[arg(env = "OSMODA_TOKEN", hide_env_values = true)]
    pub token: String,
}

#[derive(Subcommand)]
pub enum FleetCommand {
    /// Create a new fleet; this node becomes its first admin. Its root key
    /// goes to --root-key FILE, or to DATA/root.key.
    Create {
        /// The fleet's name.
        #[arg(long, default_value = "osmoda")]
        name: String,
        /// This node's name.
        #[arg(long, value_name = "NAME")]
        node_name: Option<String>,
        /// Write the fleet root key to FILE (a new file, e.g. on removable
        /// media) instead of DATA/root.key, so the running node never holds it.
        #[arg(long, value_name = "FILE", env = "OSMODA_ROOT_KEY")]
        root_key: Option<PathBuf>,
    },
    /// Print a join token for a new node. On a running admin node: a one-time enrollment token this node redeems (the new node makes its own key; for --role admin, only on the node that keeps the root key in its folder). With the root key (--root-key FILE, or DATA/root.key while the node is not running): the root's direct token, which carries the new node's key and certificate.
    Invite {
        /// The new node's role: member, or admin (may sign fleet commands and enroll; needs the root key, in this node's folder or --root-key FILE).
        #[arg(long, default_value = "member")]
        role: Role,
        /// How long the token can be used to join.
        #[arg(long, default_value = "1h", value_parser = parse_duration, value_name = "DURATION")]
        ttl: Duration,
        /// How long the new node's membership lasts, for the root's direct token (an enrolled node's lasts the admin's `certificate_lifetime_days`).
        #[arg(long, default_value = "365d", value_parser = parse_duration, value_name = "DURATION")]
        valid_for: Duration,
        /// The new node's name, unique in the fleet [default: node-HEX].
        #[arg(long)]
        name: Option<String>,
        /// Extra addresses for the new node to dial first (repeatable).
        #[arg(long, value_name = "MULTIADDR")]
        bootstrap: Vec<String>,
        /// The fleet root key's file, when it is not in the data folder
        /// (kept offline); default DATA/root.key.
        #[arg(long, value_name = "FILE", env = "OSMODA_ROOT_KEY")]
        root_key: Option<PathBuf>,
    },
    /// Revoke a node's membership; every member cuts it off (needs the root key: --root-key FILE or DATA/root.key).
    Revoke {
        /// The node's id, or its name when the node is connected.
        #[arg(value_name = "NODE")]
        node_id: String,
        /// The fleet root key's file, when it is not in the data folder
        /// (kept offline); default DATA/root.key.
        #[arg(long, value_name = "FILE", env = "OSMODA_ROOT_KEY")]
        root_key: Option<PathBuf>,
    },
    /// Show the fleet, this node's certificate and the revocations known here.
    Show,
    /// Renew this node's certificate now, on the running node: a member
    /// from a connected admin node, the root key's holder with its key. A
    /// running node also renews on its own once two thirds of its
    /// certificate's life have passed.
    Renew,
}

#[derive(Subcommand)]
pub enum MeshCommand {
    /// Send a text to every member.
    Broadcast {
        /// The text (at most 16 KiB).
        text: String,
    },
    /// Send a text to one connected member.
    Send {
        /// The member's node id or name.
        node: String,
        /// The text (at most 16 KiB).
        text: String,
    },
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every argument of every command says what it is for in `--help`.
    #[test]
    fn every_argument_has_a_description() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(format!("{path} {} (the command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "osmoda", &mut missing);
        assert!(missing.is_empty(), "no description: {missing:#?}");
    }

    /// `osmoda sim --help` names every shipped scenario.
    #[test]
    fn sim_help_names_every_shipped_scenario() {
        let cmd = Cli::command();
        let sim = cmd.find_subcommand("sim").expect("a sim command");
        let about = sim.get_about().map(|s| s.to_string()).unwrap_or_default();
        for name in crate::sim::shipped_names() {
            assert!(about.contains(name), "{name} missing from: {about}");
        }
    }

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }
}
