//! The command line for agents, approvals and emergency commands.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};

use crate::datadir::{DataDir, SOCKET};

#[derive(Subcommand)]
pub enum AgentCommand {
    /// Define an agent and start it: `osmoda agent add NAME -- CMD ARGS...`.
    Add(AddArgs),
    /// List agents with their state.
    List,
    /// Show one agent: spec, state, restarts, last exit, limits.
    Show { name: String },
    /// The last lines of an agent's output.
    Logs {
        name: String,
        #[arg(long, default_value_t = 100)]
        lines: usize,
    },
    /// Start a stopped agent (with a fresh credential).
    Start { name: String },
    /// Stop an agent: SIGTERM, a grace period, SIGKILL.
    Stop { name: String },
    /// Stop an agent and delete it with its workspace.
    Rm { name: String },
}

#[derive(Args)]
pub struct AddArgs {
    pub name: String,
    /// Trust ring: 2 (default: own workspace, own key-value space, knowledge
    /// reads, messages to agents) or 1 (may ask for more, with approval).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub ring: u8,
    /// Restart policy: always, on-failure (default) or never.
    #[arg(long, default_value = "on-failure")]
    pub restart: String,
    /// Memory limit, e.g. 256M or 1G.
    #[arg(long)]
    pub memory: Option<String>,
    /// CPU limit in percent of one core (cgroup v2 only).
    #[arg(long)]
    pub cpu: Option<u32>,
    /// Most processes the agent may run.
    #[arg(long)]
    pub processes: Option<u32>,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Store the agent without starting it.
    #[arg(long)]
    pub no_start: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<String>,
}

#[derive(Args)]
pub struct EmergencyArgs {
    /// Sign the command as an admin and send it to every member.
    #[arg(long)]
    pub fleet: bool,
}

async fn api(data: &DataDir, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
    crate::client::call(&data.path(SOCKET), method, path, body).await
}

fn spec(args: AddArgs) -> Result<Value> {
    let mut env = serde_json::Map::new();
    for pair in &args.env {
        let (k, v) = pair
            .split_once('=')
            .with_context(|| format!("--env {pair:?} is not KEY=VALUE"))?;
        env.insert(k.into(), v.into());
    }
    let memory = match &args.memory {
        Some(m) => Some(osmoda_agentd::parse_size(m).with_context(|| format!("--memory {m:?}"))?),
        None => None,
    };
    let (command, rest) = args
        .command
        .split_first()
        .context("give the command after `--`")?;
    Ok(json!({
        "spec": {
            "name": args.name,
            "command": command,
            "args": rest,
            "env": env,
            "ring": args.ring,
            "restart": args.restart,
            "limits": {
                "memory_bytes": memory,
                "cpu_percent": args.cpu,
                "max_processes": args.processes,
            },
        },
        "start": !args.no_start,
    }))
}

pub async fn agent(data: &DataDir, json_out: bool, command: AgentCommand) -> Result<()> {
    let v = match command {
        AgentCommand::Add(args) => api(data, Method::POST, "/v1/agents", Some(spec(args)?)).await?,
        AgentCommand::List => {
            let v = api(data, Method::GET, "/v1/agents", None).await?;
            crate::output::agents(json_out, &v);
            return Ok(());
        }
        AgentCommand::Show { name } => {
            api(data, Method::GET, &format!("/v1/agents/{name}"), None).await?
        }
        AgentCommand::Logs { name, lines } => {
            let v = api(
                data,
                Method::GET,
                &format!("/v1/agents/{name}/logs?lines={lines}"),
                None,
            )
            .await?;
            if json_out {
                crate::output::print_json(&v);
            } else {
                for line in v.as_array().into_iter().flatten() {
                    println!("{}", line.as_str().unwrap_or_default());
                }
            }
            return Ok(());
        }
        AgentCommand::Start { name } => {
            api(
                data,
                Method::POST,
                &format!("/v1/agents/{name}/start"),
                None,
            )
            .await?
        }
        AgentCommand::Stop { name } => {
            api(data, Method::POST, &format!("/v1/agents/{name}/stop"), None).await?
        }
        AgentCommand::Rm { name } => {
            api(data, Method::DELETE, &format!("/v1/agents/{name}"), None).await?
        }
    };
    crate::output::agent(json_out, &v);
    Ok(())
}

pub async fn approvals(data: &DataDir, json_out: bool) -> Result<()> {
    let v = api(data, Method::GET, "/v1/approvals", None).await?;
    crate::output::approvals(json_out, &v);
    Ok(())
}

pub async fn decide(
    data: &DataDir,
    json_out: bool,
    id: u64,
    approve: bool,
    grant: Option<String>,
) -> Result<()> {
    let path = if approve {
        format!("/v1/approvals/{id}/approve")
    } else {
        format!("/v1/approvals/{id}/deny")
    };
    let body = approve.then(|| json!({ "grant": grant }));
    let v = api(data, Method::POST, &path, body).await?;
    if json_out {
        crate::output::print_json(&v);
    } else {
        println!(
            "{} #{id}: {} {}",
            if approve { "approved" } else { "denied" },
            v["agent"].as_str().unwrap_or("?"),
            v["tool"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

pub async fn emergency(
    data: &DataDir,
    json_out: bool,
    kind: &str,
    args: EmergencyArgs,
) -> Result<()> {
    let v = api(
        data,
        Method::POST,
        "/v1/emergency",
        Some(json!({ "kind": kind, "fleet": args.fleet })),
    )
    .await?;
    if json_out {
        crate::output::print_json(&v);
    } else if args.fleet {
        println!(
            "{kind} signed and sent to the fleet (published: {}); here: {}",
            v["published"],
            v["here"].as_str().unwrap_or("?")
        );
        if let Some(e) = v["publish_error"].as_str() {
            println!("  warning: {e}");
        }
    } else {
        println!("{kind}: {}", v["result"].as_str().unwrap_or("done"));
    }
    Ok(())
}
