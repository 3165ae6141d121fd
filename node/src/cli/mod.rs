//! The `osmoda` command line: a thin client of the control API (typed with
//! the server's `api` structs), plus the commands that work on the data
//! folder alone (`fleet`, `join`) or run something (`run`, `sim`, `mcp`).
//!
//! Adding a command: a variant in `args.rs`, a match arm in `dispatch`
//! calling one route through `Client`, and a renderer in `render.rs`.

pub mod agent;
pub mod args;
pub mod client;
mod fleet;
pub mod folder;
mod mcp;
pub mod out;
pub mod render;
mod run;
pub mod secret;
mod sim;
pub mod task;
pub mod time;

use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use self::args::{AuditCommand, Cli, Command, KnowledgeCommand, MeshCommand, RoutineCommand};
use self::client::{segment, Client, ClientError};
use self::out::say;
use crate::api::{
    AuditLogView, Created, Done, EntryPatch, EntryView, ForkView, HeadView, InboxEntry, ListParams,
    LogQuery, NewEntry, NewRoutine, Page, PeerInfo, RelayBody, RoutineView, SearchParams, SendBody,
    Sent, StatusView, TextBody, VerifyBody, VerifyReport,
};
use crate::datadir::{DataDir, SOCKET};
use crate::service::knowledge::MAX_PAGE;

/// The exit code for an error the CLI ends with: the node's answer, or a
/// local operation's `NodeError`, by its kind; anything else is 1.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(client) = e.downcast_ref::<ClientError>() {
        return client.exit_code();
    }
    e.downcast_ref::<crate::error::NodeError>()
        .map(|n| crate::error::exit_code(n.kind()))
        .unwrap_or(1)
}

fn init_logging(default: &str, format: args::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        args::LogFormat::Json => builder.with_ansi(false).json().try_init(),
        args::LogFormat::Text => {
            // Colours only for a terminal: log files and pipes get plain text.
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            builder.with_ansi(ansi).try_init()
        }
    };
}

/// A body given inline, or read from a file (`-`: standard input).
fn read_body(body: Option<String>, file: Option<std::path::PathBuf>) -> Result<Option<String>> {
    Ok(match (body, file) {
        (Some(body), _) => Some(body),
        (None, Some(path)) if path.as_os_str() == "-" => Some(read_stdin("body")?),
        (None, Some(path)) => Some(
            std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        (None, None) => None,
    })
}

fn read_stdin(what: &str) -> Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read the {what} from standard input"))?;
    Ok(text)
}

pub async fn dispatch(cli: Cli) -> Result<()> {
    let data = DataDir::chosen(cli.data.clone());
    let json = cli.json;
    let client = Client::new(&data.path(SOCKET));
    let (logging, format) = match &cli.command {
        Command::Run(args) => ("info", args.log_format),
        _ => ("warn", args::LogFormat::Text),
    };
    init_logging(logging, format);
    match cli.command {
        Command::Run(args) => {
            let overrides = crate::config::Overrides {
                listen: args.listen,
                bootstrap: args.bootstrap,
                no_mdns: args.no_mdns,
            };
            run::run(
                &data,
                overrides,
                &args.fleet_name,
                args.name.as_deref(),
                args.root_key.as_deref(),
            )
            .await
        }
        Command::Join(args) => {
            let token = if args.token == "-" {
                read_stdin("token")?
            } else {
                args.token
            };
            let joined = folder::join(&data, &token).await?;
            folder::audit(&data, "fleet.join", &joined.fleet_name).await?;
            fleet::joined(json, &data, &joined);
            Ok(())
        }
        Command::Status { wait } => {
            let deadline = Instant::now() + Duration::from_secs(if wait { 30 } else { 0 });
            let status: StatusView = loop {
                match client.get("/v1/status").await {
                    Err(ClientError::NotRunning(_)) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                    other => break other?,
                }
            };
            render::either(json, &status, render::status);
            Ok(())
        }
        Command::Peers { wait } => {
            let want = wait.unwrap_or(0);
            let deadline = Instant::now() + Duration::from_secs(60);
            let peers: Vec<PeerInfo> = loop {
                let peers: Vec<PeerInfo> = client.get("/v1/peers").await?;
                if peers.len() >= want {
                    break peers;
                }
                if Instant::now() >= deadline {
                    return Err(ClientError::Refused {
                        kind: crate::error::ErrorKind::Unavailable,
                        message: format!(
                            "{} peer(s) connected after 60 s, not {want}",
                            peers.len()
                        ),
                    }
                    .into());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            render::either(json, &peers, |p| render::peers(p));
            Ok(())
        }
        Command::Agent(command) => agent::agent(&client, json, command).await,
        Command::Secret(command) => secret::secret(&client, json, command).await,
        Command::Task(command) => task::task(&client, json, command).await,
        Command::Approvals => agent::approvals(&client, json).await,
        Command::Approve { id, grant } => agent::decide(&client, json, id, true, grant).await,
        Command::Deny { id } => agent::decide(&client, json, id, false, None).await,
        Command::Stop(args) => agent::emergency(&client, json, "stop", args).await,
        Command::Freeze(args) => agent::emergency(&client, json, "freeze", args).await,
        Command::Resume(args) => agent::emergency(&client, json, "resume", args).await,
        Command::Lockdown(args) => agent::emergency(&client, json, "lockdown", args).await,
        Command::Unlock(args) => agent::emergency(&client, json, "unlock", args).await,
        Command::Sim(args) => {
            sim::run(
                &args.scenario,
                args.out,
                args.nodes,
                !args.no_progress && !json,
            )
            .await
        }
        Command::Relay { command } => {
            let outcome: crate::api::EmergencyOutcome = client
                .post("/v1/emergency/relay", &RelayBody { command })
                .await?;
            render::either(json, &outcome, render::emergency);
            Ok(())
        }
        Command::Mcp { agent } => mcp::run(&data, &agent).await,
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "osmoda", &mut std::io::stdout());
            Ok(())
        }
        Command::Knowledge(command) => knowledge(&client, json, command).await,
        Command::Routine(command) => routine(&client, json, command).await,
        Command::Audit(command) => audit(&data, &client, json, command).await,
        Command::Fleet(command) => fleet::command(&data, &client, json, command).await,
        Command::Mesh(command) => mesh(&client, json, command).await,
    }
}

fn done<T: Serialize>(json: bool, value: &T, text: &str) {
    render::either(json, value, |_| out::line(text));
}

async fn mesh(client: &Client, json: bool, command: MeshCommand) -> Result<()> {
    match command {
        MeshCommand::Broadcast { text } => {
            let d: Done = client
                .post("/v1/mesh/broadcast", &TextBody { text })
                .await?;
            done(json, &d, "sent to the fleet");
        }
        MeshCommand::Send { node, text } => {
            let sent: Sent = client
                .post("/v1/mesh/send", &SendBody { node, text })
                .await?;
            render::either(json, &sent, |s| say!("delivered to {}", s.node_id));
        }
        MeshCommand::Inbox => {
            let inbox: Vec<InboxEntry> = client.get("/v1/mesh/inbox").await?;
            render::either(json, &inbox, |i| render::inbox(i));
        }
    }
    Ok(())
}

/// Asks the running node; when none runs, reads the store directly.
async fn audit(data: &DataDir, client: &Client, json: bool, command: AuditCommand) -> Result<()> {
    let offline = |e: &ClientError| matches!(e, ClientError::NotRunning(_));
    match command {
        AuditCommand::Log { node, start, limit } => {
            let local = node.is_none();
            let query = LogQuery { node, start, limit };
            let view: AuditLogView = match client.get_with("/v1/audit/log", &query).await {
                Err(e) if local && offline(&e) => AuditLogView {
                    entries: crate::state::audit_log::read_entries(&data.store()?, start, limit)?,
                    source: None,
                },
                other => other?,
            };
            render::either(json, &view, render::audit_log);
        }
        AuditCommand::Heads => {
            let heads: Vec<HeadView> = client.get("/v1/audit/heads").await?;
            render::either(json, &heads, |h| render::audit_heads(h));
        }
        AuditCommand::Forks => {
            let forks: Vec<ForkView> = client.get("/v1/audit/forks").await?;
            render::either(json, &forks, |f| render::audit_forks(f));
        }
        AuditCommand::Verify { node } => {
            let local = node.is_none();
            let body = VerifyBody { node };
            let report: VerifyReport = match client.post("/v1/audit/verify", &body).await {
                Err(e) if local && offline(&e) => {
                    let owner = data.cert()?.node;
                    crate::state::audit_log::verify_stored(&data.store()?, &owner)?
                }
                other => other?,
            };
            render::either(json, &report, render::audit_verify);
            if !report.ok {
                anyhow::bail!("the audit log does not verify")
            }
        }
    }
    Ok(())
}

async fn knowledge(client: &Client, json: bool, command: KnowledgeCommand) -> Result<()> {
    match command {
        KnowledgeCommand::Put {
            title,
            tags,
            body,
            file,
        } => {
            let body = read_body(body, file)?.unwrap_or_default();
            let created: Created = client
                .post("/v1/knowledge", &NewEntry { title, body, tags })
                .await?;
            render::either(json, &created, |c| out::line(&c.id));
        }
        KnowledgeCommand::Update {
            id,
            title,
            body,
            file,
            tags,
            no_tags,
        } => {
            let patch = EntryPatch {
                title,
                body: read_body(body, file)?,
                tags: (no_tags || !tags.is_empty()).then_some(tags),
            };
            let d: Done = client
                .patch(&format!("/v1/knowledge/{}", segment(&id)), &patch)
                .await?;
            done(json, &d, "updated");
        }
        KnowledgeCommand::Get { id } => {
            let entry: EntryView = client
                .get(&format!("/v1/knowledge/{}", segment(&id)))
                .await?;
            render::either(json, &entry, render::entry);
        }
        KnowledgeCommand::List {
            tag,
            prefix,
            limit,
            cursor,
        } => {
            let page = list_pages(client, tag, prefix, limit, cursor).await?;
            render::either(json, &page, |p| {
                render::entries(&p.items);
                if let Some(next) = &p.next_cursor {
                    say!(
                        "(more entries follow: `osmoda knowledge list --cursor {next}`, or a larger --limit)"
                    );
                }
            });
        }
        KnowledgeCommand::Search { query, limit } => {
            let params = SearchParams {
                q: query,
                limit: Some(limit),
            };
            let found: Vec<EntryView> = client.get_with("/v1/knowledge/search", &params).await?;
            render::either(json, &found, |f| render::entries(f));
        }
        KnowledgeCommand::Rm { id } => {
            let d: Done = client
                .delete(&format!("/v1/knowledge/{}", segment(&id)))
                .await?;
            done(json, &d, "deleted");
        }
    }
    Ok(())
}

/// Entries of a listing, page after page, until `limit` of them or the end.
async fn list_pages(
    client: &Client,
    tag: Option<String>,
    prefix: Option<String>,
    limit: usize,
    mut cursor: Option<String>,
) -> Result<Page<EntryView>> {
    let mut items = Vec::new();
    loop {
        let want = limit.saturating_sub(items.len()).min(MAX_PAGE / 10);
        if want == 0 {
            break;
        }
        let params = ListParams {
            tag: tag.clone(),
            prefix: prefix.clone(),
            limit: Some(want),
            cursor: cursor.take(),
        };
        let page: Page<EntryView> = client.get_with("/v1/knowledge", &params).await?;
        items.extend(page.items);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    Ok(Page {
        items,
        next_cursor: cursor,
    })
}

async fn routine(client: &Client, json: bool, command: RoutineCommand) -> Result<()> {
    let path = |id: &str, tail: &str| format!("/v1/routines/{}{tail}", segment(id));
    match command {
        RoutineCommand::Add {
            name,
            schedule,
            target,
            command,
            args,
            timeout,
            disabled,
        } => {
            let new = NewRoutine {
                name,
                schedule,
                target,
                command,
                args,
                timeout_secs: timeout,
                enabled: !disabled,
            };
            let created: Created = client.post("/v1/routines", &new).await?;
            render::either(json, &created, |c| out::line(&c.id));
        }
        RoutineCommand::List => {
            let list: Vec<RoutineView> = client.get("/v1/routines").await?;
            render::either(json, &list, |l| render::routines(l));
        }
        RoutineCommand::Show { id } => {
            let r: RoutineView = client.get(&path(&id, "")).await?;
            render::either(json, &r, render::routine);
        }
        RoutineCommand::Rm { id } => {
            let d: Done = client.delete(&path(&id, "")).await?;
            done(json, &d, "removed");
        }
        RoutineCommand::Enable { id } => {
            let d: Done = client.post(&path(&id, "/enable"), &()).await?;
            done(json, &d, "enabled");
        }
        RoutineCommand::Disable { id } => {
            let d: Done = client.post(&path(&id, "/disable"), &()).await?;
            done(json, &d, "disabled");
        }
    }
    Ok(())
}
