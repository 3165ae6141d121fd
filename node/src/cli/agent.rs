//! The command line for agents, approvals and emergency commands.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use osmoda_agentd::{AgentSpec, Limits, RestartPolicy};

use super::client::{segment, Client};
use super::out::{self, say};
use super::render;
use crate::api::{
    AddAgent, AgentView, AllowBody, ApprovalsView, ApproveBody, CardEdit, CardQuery, EmergencyBody,
    EmergencyOutcome, FleetCardView, LogsQuery, PendingView, Removed,
};

#[derive(Subcommand)]
pub enum AgentCommand {
    /// Define an agent and start it: `osmoda agent add NAME -- CMD ARGS...`.
    Add(AddArgs),
    /// List agents with their state; with --fleet, every agent the
    /// fleet's nodes advertise (name, skills, rings it takes tasks from).
    List {
        /// Every agent of the fleet, as the nodes advertise them.
        #[arg(long)]
        fleet: bool,
        /// With --fleet: only agents listing this skill.
        #[arg(long, value_name = "SKILL", requires = "fleet")]
        skill: Option<String>,
    },
    /// Change an agent's card: what the fleet sees of it.
    Edit {
        /// The agent's name.
        name: String,
        #[command(flatten)]
        card: CardArgs,
    },
    /// Show one agent: spec, state, restarts, last exit, limits.
    Show {
        /// The agent's name.
        name: String,
    },
    /// The last lines of an agent's output.
    Logs {
        /// The agent's name.
        name: String,
        /// How many lines, from the end (at most 10,000).
        #[arg(long, default_value_t = 100, value_name = "N")]
        lines: usize,
    },
    /// Start a stopped agent (with a fresh credential).
    Start {
        /// The agent's name.
        name: String,
    },
    /// Stop an agent: SIGTERM, a grace period, SIGKILL. It stays stopped,
    /// across node restarts too, until `agent start`.
    Stop {
        /// The agent's name.
        name: String,
    },
    /// Let an agent reach more destinations through the egress proxy:
    /// `agent allow NAME HOST:PORT...` (takes effect at once).
    Allow {
        /// The agent's name.
        name: String,
        /// HOST:PORT entries: HOST a name, *.suffix or an IP ([v6] for
        /// IPv6), PORT a number or *.
        #[arg(required = true, value_name = "HOST:PORT")]
        entries: Vec<osmoda_agentd::AllowEntry>,
    },
    /// Take destinations off an agent's allowlist (takes effect for new
    /// connections at once).
    Disallow {
        /// The agent's name.
        name: String,
        /// The entries to remove, as they were added.
        #[arg(required = true, value_name = "HOST:PORT")]
        entries: Vec<osmoda_agentd::AllowEntry>,
    },
    /// Stop an agent and delete it with its workspace.
    Rm {
        /// The agent's name.
        name: String,
    },
}

#[derive(Args)]
pub struct AddArgs {
    /// The agent's name: a-z, 0-9, '-' and '_'.
    pub name: String,
    /// Trust ring: 2 (own workspace, own key-value space, knowledge reads,
    /// messages to agents) or 1 (may ask for more, with approval).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub ring: u8,
    /// Restart policy: always, on-failure or never.
    #[arg(long, default_value = "on-failure", value_parser = parse_restart)]
    pub restart: RestartPolicy,
    /// Memory limit, e.g. 256M or 1G.
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// CPU limit in percent of one core (cgroup v2 only).
    #[arg(long, value_name = "PERCENT")]
    pub cpu: Option<u32>,
    /// Most processes the agent may run.
    #[arg(long, value_name = "N")]
    pub processes: Option<u32>,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Where the agent may connect through the node's egress proxy
    /// (repeatable): HOST:PORT, HOST a name, *.suffix or an IP ([v6] for
    /// IPv6), PORT a number or *. Nothing else is reachable.
    #[arg(long = "allow", value_name = "HOST:PORT")]
    pub allow: Vec<osmoda_agentd::AllowEntry>,
    /// A host path the agent sees read-only at the same place (repeatable);
    /// a confined agent sees the system read-only but not /tmp, /home,
    /// /root, /run or the node's data folder.
    #[arg(long = "ro", value_name = "PATH")]
    pub ro: Vec<std::path::PathBuf>,
    /// A host path the agent may write, at the same place (repeatable).
    #[arg(long = "rw", value_name = "PATH")]
    pub rw: Vec<std::path::PathBuf>,
    /// Run the agent without confinement (its own user, namespaces,
    /// seccomp, Landlock) on a host that cannot provide it. Audited.
    #[arg(long)]
    pub unconfined: bool,
    /// Store the agent without starting it (it starts with `agent start`).
    #[arg(long)]
    pub no_start: bool,
    #[command(flatten)]
    pub card: CardArgs,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<String>,
}

/// The agent's card, advertised to the fleet.
#[derive(Args)]
pub struct CardArgs {
    /// What the agent does, for other agents and operators (at most 512 bytes).
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// A skill other agents find it by and give tasks for (repeatable;
    /// given on `agent edit`, the list replaces the card's).
    #[arg(long = "skill", value_name = "NAME")]
    pub skills: Vec<String>,
    /// The rings it takes tasks from, e.g. 0,1,2: 0 the operator, 1 and 2
    /// agents of that ring (default 0,1).
    #[arg(long, value_name = "RINGS", value_delimiter = ',', value_parser = clap::value_parser!(u8).range(0..=2))]
    pub accept_rings: Option<Vec<u8>>,
}

impl CardArgs {
    fn edit(self) -> CardEdit {
        CardEdit {
            description: self.description,
            skills: (!self.skills.is_empty()).then_some(self.skills),
            accept_rings: self.accept_rings,
        }
    }
}

#[derive(Args)]
pub struct EmergencyArgs {
    /// Sign the command as an admin and send it to every member.
    #[arg(long)]
    pub fleet: bool,
}

fn parse_restart(text: &str) -> Result<RestartPolicy, String> {
    text.parse()
        .map_err(|e: osmoda_agentd::spec::RestartPolicyError| e.to_string())
}

fn spec(args: AddArgs) -> Result<AddAgent> {
    let mut env = std::collections::BTreeMap::new();
    for pair in &args.env {
        let (k, v) = pair
            .split_once('=')
            .with_context(|| format!("--env {pair:?} is not KEY=VALUE"))?;
        env.insert(k.to_owned(), v.to_owned());
    }
    let memory_bytes = match &args.memory {
        Some(m) => Some(osmoda_agentd::parse_size(m).with_context(|| format!("--memory {m:?}"))?),
        None => None,
    };
    let (command, rest) = args
        .command
        .split_first()
        .context("give the command after `--`")?;
    let spec: AgentSpec = serde_json::from_value(serde_json::json!({
        "name": args.name,
        "command": command,
        "args": rest,
        "env": env,
        "ring": args.ring,
        "restart": args.restart,
        "limits": Limits {
            memory_bytes,
            cpu_percent: args.cpu,
            max_processes: args.processes,
        },
        "allow": args.allow,
        "ro": host_paths(&args.ro, "--ro")?,
        "rw": host_paths(&args.rw, "--rw")?,
        "unconfined": args.unconfined,
    }))
    .context("cannot make the agent's spec")?;
    Ok(AddAgent {
        spec,
        start: !args.no_start,
        card: args.card.edit(),
    })
}

/// `--ro`/`--rw` paths as the node stores them: absolute and resolved
/// (relative ones are from here; symlinks followed), and existing.
fn host_paths(paths: &[std::path::PathBuf], flag: &str) -> Result<Vec<std::path::PathBuf>> {
    paths
        .iter()
        .map(|path| {
            std::fs::canonicalize(path)
                .with_context(|| format!("{flag} {}: cannot resolve the path", path.display()))
        })
        .collect()
}

pub async fn agent(client: &Client, json: bool, command: AgentCommand) -> Result<()> {
    let path = |name: &str, tail: &str| format!("/v1/agents/{}{tail}", segment(name));
    let view: AgentView = match command {
        AgentCommand::Add(args) => client.post("/v1/agents", &spec(args)?).await?,
        AgentCommand::List { fleet: true, skill } => {
            let query = CardQuery { skill, name: None };
            let list: Vec<FleetCardView> = client.get_with("/v1/cards", &query).await?;
            render::either(json, &list, |l| super::task::fleet_cards(l));
            return Ok(());
        }
        AgentCommand::List { .. } => {
            let list: Vec<AgentView> = client.get("/v1/agents").await?;
            render::either(json, &list, |l| render::agents(l));
            return Ok(());
        }
        AgentCommand::Edit { name, card } => {
            client.post(&path(&name, "/card"), &card.edit()).await?
        }
        AgentCommand::Show { name } => client.get(&path(&name, "")).await?,
        AgentCommand::Logs { name, lines } => {
            let lines: Vec<String> = client
                .get_with(&path(&name, "/logs"), &LogsQuery { lines })
                .await?;
            render::either(json, &lines, |l| {
                for line in l {
                    out::line(line);
                }
            });
            return Ok(());
        }
        AgentCommand::Start { name } => client.post(&path(&name, "/start"), &()).await?,
        AgentCommand::Stop { name } => client.post(&path(&name, "/stop"), &()).await?,
        AgentCommand::Allow { name, entries } => {
            client
                .post(&path(&name, "/allow"), &AllowBody { entries })
                .await?
        }
        AgentCommand::Disallow { name, entries } => {
            client
                .post(&path(&name, "/disallow"), &AllowBody { entries })
                .await?
        }
        AgentCommand::Rm { name } => {
            let removed: Removed = client.delete(&path(&name, "")).await?;
            render::either(json, &removed, |r| say!("removed agent {}", r.removed));
            return Ok(());
        }
    };
    render::either(json, &view, render::agent);
    Ok(())
}

pub async fn approvals(client: &Client, json: bool) -> Result<()> {
    let v: ApprovalsView = client.get("/v1/approvals").await?;
    render::either(json, &v, render::approvals);
    Ok(())
}

pub async fn decide(
    client: &Client,
    json: bool,
    id: u64,
    approve: bool,
    grant: Option<String>,
) -> Result<()> {
    let decided: PendingView = if approve {
        client
            .post(
                &format!("/v1/approvals/{id}/approve"),
                &ApproveBody { grant },
            )
            .await?
    } else {
        client
            .post(&format!("/v1/approvals/{id}/deny"), &())
            .await?
    };
    render::either(json, &decided, |p| {
        say!(
            "{} #{id}: {} {}",
            if approve { "approved" } else { "denied" },
            p.agent,
            p.tool
        )
    });
    Ok(())
}

pub async fn emergency(client: &Client, json: bool, kind: &str, args: EmergencyArgs) -> Result<()> {
    let body = EmergencyBody {
        kind: kind.into(),
        fleet: args.fleet,
    };
    let outcome: EmergencyOutcome = client.post("/v1/emergency", &body).await?;
    render::either(json, &outcome, render::emergency);
    Ok(())
}
