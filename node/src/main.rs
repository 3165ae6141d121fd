//! The `osmoda` binary.

mod agent_api;
mod agent_cli;
mod agents;
mod agents_api;
mod anti_entropy;
mod api;
mod approvals;
mod audit;
mod audit_remote;
mod cli;
mod client;
mod conduct;
mod config;
mod core;
mod datadir;
mod docs;
mod docs_api;
mod emergency;
mod fleet;
mod heads;
mod mcp;
mod output;
mod push;
mod run;
mod sim;
mod sim_fleet;
mod sync;
mod tools;

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use hyper::Method;
use serde_json::{json, Value};

use cli::{
    AuditCommand, Cli, Command, FleetCommand, KnowledgeCommand, MeshCommand, RoutineCommand,
};
use datadir::{DataDir, SOCKET};

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<client::NotRunning>().is_some() {
                ExitCode::from(3)
            } else if e.downcast_ref::<client::Refused>().is_some() {
                ExitCode::from(4)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

async fn emergency_command(
    data: &DataDir,
    json: bool,
    kind: &str,
    args: agent_cli::EmergencyArgs,
) -> Result<()> {
    init_logging("warn");
    agent_cli::emergency(data, json, kind, args).await
}

async fn api(data: &DataDir, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
    client::call(&data.path(SOCKET), method, path, body).await
}

async fn dispatch(cli: Cli) -> Result<()> {
    let data = DataDir::new(cli.data.clone().unwrap_or_else(DataDir::default_path));
    let json = cli.json;
    match cli.command {
        Command::Run(args) => {
            init_logging("info");
            let overrides = config::Overrides {
                listen: args.listen,
                bootstrap: args.bootstrap,
                no_mdns: args.no_mdns,
            };
            run::run(&data, overrides, &args.fleet_name, args.name.as_deref()).await
        }
        Command::Join(args) => {
            init_logging("warn");
            let token = if args.token == "-" {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("cannot read the token")?;
                text
            } else {
                args.token
            };
            let joined = fleet::join(&data, &token)?;
            fleet::audit(&data, "fleet.join", &joined.fleet_name).await?;
            output::joined(json, &data, &joined);
            Ok(())
        }
        Command::Status => {
            init_logging("warn");
            let status = api(&data, Method::GET, "/v1/status", None).await?;
            output::status(json, &status);
            Ok(())
        }
        Command::Peers => {
            init_logging("warn");
            let peers = api(&data, Method::GET, "/v1/peers", None).await?;
            output::peers(json, &peers);
            Ok(())
        }
        Command::Agent(command) => {
            init_logging("warn");
            agent_cli::agent(&data, json, command).await
        }
        Command::Approvals => {
            init_logging("warn");
            agent_cli::approvals(&data, json).await
        }
        Command::Approve { id, grant } => {
            init_logging("warn");
            agent_cli::decide(&data, json, id, true, grant).await
        }
        Command::Deny { id } => {
            init_logging("warn");
            agent_cli::decide(&data, json, id, false, None).await
        }
        Command::Stop(args) => emergency_command(&data, json, "stop", args).await,
        Command::Freeze(args) => emergency_command(&data, json, "freeze", args).await,
        Command::Resume(args) => emergency_command(&data, json, "resume", args).await,
        Command::Lockdown(args) => emergency_command(&data, json, "lockdown", args).await,
        Command::Unlock(args) => emergency_command(&data, json, "unlock", args).await,
        Command::Sim {
            scenario,
            out,
            no_progress,
            nodes,
        } => {
            init_logging("warn");
            sim::run(&scenario, out, nodes, !no_progress && !json).await
        }
        Command::Relay { command } => {
            init_logging("warn");
            let v = api(
                &data,
                Method::POST,
                "/v1/emergency/relay",
                Some(json!({ "command": command })),
            )
            .await?;
            output::print_json(&v);
            Ok(())
        }
        Command::Mcp { agent } => {
            init_logging("warn");
            mcp::run(&data, &agent).await
        }
        Command::Knowledge(command) => {
            init_logging("warn");
            knowledge_command(&data, json, command).await
        }
        Command::Routine(command) => {
            init_logging("warn");
            routine_command(&data, json, command).await
        }
        Command::Audit(command) => {
            init_logging("warn");
            audit_command(&data, json, command).await
        }
        Command::Fleet(command) => {
            init_logging("warn");
            fleet_command(&data, json, command).await
        }
        Command::Mesh(command) => {
            init_logging("warn");
            match command {
                MeshCommand::Broadcast { text } => {
                    let v = api(
                        &data,
                        Method::POST,
                        "/v1/mesh/broadcast",
                        Some(json!({ "text": text })),
                    )
                    .await?;
                    output::done(json, &v, "sent to the fleet");
                }
                MeshCommand::Send { node, text } => {
                    let v = api(
                        &data,
                        Method::POST,
                        "/v1/mesh/send",
                        Some(json!({ "node": node, "text": text })),
                    )
                    .await?;
                    output::done(json, &v, "delivered");
                }
                MeshCommand::Inbox => {
                    let v = api(&data, Method::GET, "/v1/mesh/inbox", None).await?;
                    output::inbox(json, &v);
                }
            }
            Ok(())
        }
    }
}

async fn fleet_command(data: &DataDir, json: bool, command: FleetCommand) -> Result<()> {
    match command {
        FleetCommand::Create { name, node_name } => {
            let cert = fleet::create(data, &name, node_name.as_deref())?;
            fleet::audit(data, "fleet.create", &name).await?;
            output::created(json, data, &name, &cert);
        }
        FleetCommand::Invite {
            role,
            ttl,
            valid_for,
            name,
            bootstrap,
        } => {
            let invite =
                fleet::invite(data, role, ttl, valid_for, name.as_deref(), bootstrap).await?;
            let node_id = osmoda_fabric::peer_id_of(&invite.cert.node)
                .map(|p| p.to_string())
                .unwrap_or_default();
            let target = format!("{} {node_id}", invite.cert.name);
            fleet::audit(data, "fleet.invite", &target).await?;
            output::invite(json, &invite);
        }
        FleetCommand::Revoke { node_id } => {
            let (rev, live) = fleet::revoke(data, &node_id).await?;
            if !live {
                // A running node audits the revocation itself.
                fleet::audit(data, "fleet.revoke", &node_id).await?;
            }
            output::revoked(json, &node_id, &rev, live);
        }
        FleetCommand::Show => {
            output::fleet(json, data)?;
        }
    }
    Ok(())
}

/// Asks the running node; when none runs, reads the store directly.
async fn audit_command(data: &DataDir, json: bool, command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Log { node, start, limit } => {
            let mut path = format!("/v1/audit/log?start={start}&limit={limit}");
            if let Some(node) = &node {
                path.push_str(&format!("&node={node}"));
            }
            let entries = match api(data, Method::GET, &path, None).await {
                Err(e) if node.is_none() && e.downcast_ref::<client::NotRunning>().is_some() => {
                    serde_json::to_value(audit::read_entries(&data.store()?, start, limit)?)?
                }
                other => other?,
            };
            output::audit_log(json, &entries);
            Ok(())
        }
        AuditCommand::Heads => {
            let v = api(data, Method::GET, "/v1/audit/heads", None).await?;
            output::audit_heads(json, &v);
            Ok(())
        }
        AuditCommand::Forks => {
            let v = api(data, Method::GET, "/v1/audit/forks", None).await?;
            output::audit_forks(json, &v);
            Ok(())
        }
        AuditCommand::Verify { node } => {
            let body = json!({ "node": node });
            let report = match api(data, Method::POST, "/v1/audit/verify", Some(body)).await {
                Err(e) if node.is_none() && e.downcast_ref::<client::NotRunning>().is_some() => {
                    let owner = data.cert()?.node;
                    serde_json::to_value(audit::verify_stored(&data.store()?, &owner)?)?
                }
                other => other?,
            };
            output::audit_verify(json, &report);
            if report["ok"].as_bool() == Some(true) {
                Ok(())
            } else {
                anyhow::bail!("the audit log does not verify")
            }
        }
    }
}

/// Percent-encodes a query value (the CLI's only URL building).
fn query_value(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn knowledge_command(data: &DataDir, json: bool, command: KnowledgeCommand) -> Result<()> {
    match command {
        KnowledgeCommand::Put {
            title,
            tags,
            body,
            file,
        } => {
            let body = match (body, file) {
                (Some(body), _) => body,
                (None, Some(path)) if path.as_os_str() == "-" => {
                    let mut text = String::new();
                    std::io::stdin()
                        .read_to_string(&mut text)
                        .context("cannot read the body")?;
                    text
                }
                (None, Some(path)) => std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                (None, None) => String::new(),
            };
            let v = api(
                data,
                Method::POST,
                "/v1/knowledge",
                Some(json!({ "title": title, "body": body, "tags": tags })),
            )
            .await?;
            output::id(json, &v);
        }
        KnowledgeCommand::Get { id } => {
            let v = api(
                data,
                Method::GET,
                &format!("/v1/knowledge/{}", query_value(&id)),
                None,
            )
            .await?;
            output::entry(json, &v);
        }
        KnowledgeCommand::List { tag, prefix, limit } => {
            let mut path = format!("/v1/knowledge?limit={limit}");
            if let Some(tag) = tag {
                path.push_str(&format!("&tag={}", query_value(&tag)));
            }
            if let Some(prefix) = prefix {
                path.push_str(&format!("&prefix={}", query_value(&prefix)));
            }
            output::entries(json, &api(data, Method::GET, &path, None).await?);
        }
        KnowledgeCommand::Search { query, limit } => {
            let path = format!(
                "/v1/knowledge/search?q={}&limit={limit}",
                query_value(&query)
            );
            output::entries(json, &api(data, Method::GET, &path, None).await?);
        }
        KnowledgeCommand::Rm { id } => {
            let v = api(
                data,
                Method::DELETE,
                &format!("/v1/knowledge/{}", query_value(&id)),
                None,
            )
            .await?;
            output::done(json, &v, "deleted");
        }
    }
    Ok(())
}

async fn routine_command(data: &DataDir, json: bool, command: RoutineCommand) -> Result<()> {
    let path = |id: &str, tail: &str| format!("/v1/routines/{}{tail}", query_value(id));
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
            let body = json!({ "name": name, "schedule": schedule, "target": target, "command": command, "args": args, "timeout_secs": timeout, "enabled": !disabled });
            let v = api(data, Method::POST, "/v1/routines", Some(body)).await?;
            output::id(json, &v);
        }
        RoutineCommand::List => {
            output::routines(json, &api(data, Method::GET, "/v1/routines", None).await?)
        }
        RoutineCommand::Show { id } => {
            output::routine(json, &api(data, Method::GET, &path(&id, ""), None).await?)
        }
        RoutineCommand::Rm { id } => output::done(
            json,
            &api(data, Method::DELETE, &path(&id, ""), None).await?,
            "removed",
        ),
        RoutineCommand::Enable { id } => output::done(
            json,
            &api(data, Method::POST, &path(&id, "/enable"), Some(json!({}))).await?,
            "enabled",
        ),
        RoutineCommand::Disable { id } => output::done(
            json,
            &api(data, Method::POST, &path(&id, "/disable"), Some(json!({}))).await?,
            "disabled",
        ),
    }
    Ok(())
}
