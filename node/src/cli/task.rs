//! The command line for tasks between agents, and the fleet's agent cards.

use anyhow::{Context, Result};
use clap::Subcommand;

use super::client::{segment, Client};
use super::out::say;
use super::render::{self, Table};
use crate::api::{
    FleetCardView, SubmitTask, TaskListQuery, TaskReplyBody, TaskView, TaskWatchQuery,
};

#[derive(Subcommand)]
pub enum TaskCommand {
    /// Give a task to an agent: `--to AGENT@NODE` or `--skill S` (any
    /// agent of the fleet advertising it), with inputs.
    Submit {
        /// The agent, as AGENT@NODE (node id or name).
        #[arg(
            long,
            value_name = "AGENT@NODE",
            conflicts_with = "skill",
            required_unless_present = "skill"
        )]
        to: Option<String>,
        /// Any agent advertising this skill, on a connected node.
        #[arg(long, value_name = "SKILL")]
        skill: Option<String>,
        /// An input message (repeatable).
        #[arg(long = "input", value_name = "TEXT")]
        input: Vec<String>,
        /// A file whose text is an input message (repeatable).
        #[arg(long = "file", value_name = "PATH")]
        file: Vec<std::path::PathBuf>,
    },
    /// Tasks submitted on this node or given to its agents, newest first.
    List {
        /// How many, at most.
        #[arg(long, default_value_t = 100, value_name = "N")]
        limit: usize,
    },
    /// One task: status, history, artifacts.
    Show {
        /// The task's id.
        id: String,
    },
    /// Print each change of a task's status until it ends.
    Watch {
        /// The task's id.
        id: String,
    },
    /// Cancel a task submitted here; the agent sees it canceled.
    Cancel {
        /// The task's id.
        id: String,
    },
    /// Answer a task that asks for input.
    Reply {
        /// The task's id.
        id: String,
        /// The answer.
        #[arg(long, value_name = "TEXT")]
        input: String,
    },
}

pub async fn task(client: &Client, json: bool, command: TaskCommand) -> Result<()> {
    let path = |id: &str, tail: &str| format!("/v1/tasks/{}{tail}", segment(id));
    let task: TaskView = match command {
        TaskCommand::Submit {
            to,
            skill,
            mut input,
            file,
        } => {
            for f in &file {
                input.push(
                    std::fs::read_to_string(f)
                        .with_context(|| format!("--file {}", f.display()))?,
                );
            }
            if input.is_empty() {
                anyhow::bail!("give the task's input with --input TEXT or --file PATH");
            }
            let body = SubmitTask {
                to,
                skill,
                input,
                context_id: None,
            };
            client.post("/v1/tasks", &body).await?
        }
        TaskCommand::List { limit } => {
            let list: Vec<TaskView> = client
                .get_with("/v1/tasks", &TaskListQuery { limit })
                .await?;
            render::either(json, &list, |l| tasks(l));
            return Ok(());
        }
        TaskCommand::Show { id } => client.get(&path(&id, "")).await?,
        TaskCommand::Watch { id } => return watch(client, json, &path(&id, "")).await,
        TaskCommand::Cancel { id } => client.post(&path(&id, "/cancel"), &()).await?,
        TaskCommand::Reply { id, input } => {
            client
                .post(&path(&id, "/reply"), &TaskReplyBody { input })
                .await?
        }
    };
    render::either(json, &task, show);
    Ok(())
}

/// Long-polls the task, printing each version, until a terminal state.
async fn watch(client: &Client, json: bool, path: &str) -> Result<()> {
    let mut task: TaskView = client.get(path).await?;
    let mut printed = None;
    loop {
        if printed != Some(task.version) {
            printed = Some(task.version);
            if json {
                super::out::json(&task);
            } else {
                say!(
                    "{} {}{}",
                    super::time::when_ms(task.status.timestamp),
                    task.status.state,
                    task.status
                        .message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                );
            }
        }
        if task.status.state.is_terminal() {
            return Ok(());
        }
        let query = TaskWatchQuery {
            after: Some(task.version),
            wait: Some(30),
        };
        task = client.get_with(path, &query).await?;
    }
}

fn tasks(list: &[TaskView]) {
    if list.is_empty() {
        say!("no tasks");
        return;
    }
    let mut table = Table::new(&["ID", "STATE", "FROM", "TO", "SKILL"]);
    for t in list {
        table.row(vec![
            t.id.clone(),
            t.status.state.to_string(),
            t.from.clone(),
            t.to.clone(),
            t.skill.clone().unwrap_or_default(),
        ]);
    }
    table.print();
}

fn show(t: &TaskView) {
    say!("task      {}", t.id);
    say!("context   {}", t.context_id);
    say!("from      {}", t.from);
    say!("to        {}", t.to);
    if let Some(skill) = &t.skill {
        say!("skill     {skill}");
    }
    say!(
        "state     {}{}",
        t.status.state,
        t.status
            .message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default()
    );
    for m in &t.history {
        say!("  {:?}: {}", m.role, m.text);
    }
    for a in &t.artifacts {
        say!("artifact  {}: {}", a.name, a.text);
    }
}

/// `osmoda agent list --fleet`.
pub fn fleet_cards(list: &[FleetCardView]) {
    if list.is_empty() {
        say!("no agents advertised yet");
        return;
    }
    let mut table = Table::new(&["NODE", "AGENT", "SKILLS", "RINGS", "STATE", "DESCRIPTION"]);
    for c in list {
        let rings: Vec<String> = c.card.accept_rings.iter().map(u8::to_string).collect();
        let state = match (c.live, c.card.running) {
            (true, true) => "running",
            (true, false) => "stopped",
            (false, _) => "unreachable",
        };
        table.row(vec![
            c.node_name.clone(),
            c.card.name.clone(),
            c.card.skills.join(","),
            rings.join(","),
            state.into(),
            c.card.description.clone(),
        ]);
    }
    table.print();
}
