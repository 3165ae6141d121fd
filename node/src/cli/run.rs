//! `osmoda run`: the node's lifetime, from the folder lock to a clean stop.

use anyhow::{Context, Result};
use osmoda_crdt_state::{Actor, Outcome};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};
use zeroize::Zeroizing;

use super::folder as fleet;
use crate::config::{self, Overrides};
use crate::datadir::{DataDir, AGENT_SOCKET, SOCKET};
use crate::runtime::builder::NodeBuilder;
use crate::service::unix_now;
use crate::state::agents::AgentsConfig;

pub async fn run(
    data: &DataDir,
    overrides: Overrides,
    fleet_name: &str,
    node_name: Option<&str>,
    root_key: Option<&std::path::Path>,
) -> Result<()> {
    data.ensure()?;
    let _lock = data.lock()?;
    let created = !data.is_member();
    if created {
        let cert = fleet::create(data, fleet_name, node_name, root_key)?;
        eprintln!(
            "NOTE: {} was empty, so this node created a NEW fleet {fleet_name:?} and is its first admin ({}).\n\
             \x20     To join an existing fleet instead: stop this node, use an empty folder and run\n\
             \x20     `osmoda --data DIR join TOKEN` with a token from `osmoda fleet invite` on that fleet's founding node.",
            data.root().display(),
            cert.name
        );
        info!(name = %cert.name, "created a new fleet; this node is its first admin");
    }
    let file_config = config::load(data)?;
    let default_listen = config::listens_by_default(&file_config, &overrides);
    let agent_uids = file_config.agent_uid_range;
    let cert_lifetime = file_config.certificate_lifetime()?;
    let metrics_addr = file_config.metrics_address()?;
    let labels = file_config.labels.clone();
    let config_agents = config::agents::specs(&file_config.agents)?;
    let a2a = match file_config.a2a.address()? {
        Some(addr) => Some((
            addr,
            crate::a2a::Clients::load(&file_config.a2a, data.root())?,
        )),
        None => None,
    };
    let fabric = config::resolve(file_config, &overrides)?;
    let cert = data.cert()?;
    cert.verify(&cert.fleet, unix_now()).context(
        "this node's membership certificate is not valid; ask an admin for a new invite",
    )?;
    let fleet_info = data.fleet()?;
    let store = data.store()?;
    let agent_socket = data.path(AGENT_SOCKET);
    let builder = NodeBuilder {
        store,
        identity: Zeroizing::new(data.identity()?),
        cert,
        fleet: fleet_info.clone(),
        holds_root_key: data.has_root(),
        fabric,
        fallback_listen: if default_listen {
            Some(config::parse_addrs("listen", &config::default_listen(0))?)
        } else {
            None
        },
        revocations: data.revocations()?,
        agents: AgentsConfig {
            dir: data.path("agents"),
            socket: agent_socket.clone(),
            cgroups: true,
            uids: agent_uids,
        },
        data: Some(data.clone()),
        vault_key: data.path(crate::state::vault::KEY_FILE),
        cert_lifetime,
        labels,
    };
    let running = builder.start().await?;
    let node = running.node.clone();
    if created {
        node.audit
            .record(Actor::Operator, "fleet.create", fleet_name, Outcome::Ok, "")
            .await?;
    }

    let socket = data.path(SOCKET);
    let listener = crate::control::bind(&socket)?;
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let app = crate::control::router(node.clone());
    let api_task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = api_stopped.await;
            })
            .await;
    });
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics = match metrics_addr {
        Some(addr) => {
            let stopped = async {
                let _ = metrics_stopped.await;
            };
            Some(crate::metrics::serve::listen(addr, node.clone(), stopped).await?)
        }
        None => None,
    };
    let a2a = match a2a {
        Some((addr, clients)) => Some(crate::a2a::listen(addr, node.clone(), clients).await?),
        None => None,
    };
    let agent_listener = crate::agent_socket::bind(&agent_socket)
        .with_context(|| format!("cannot bind {}", agent_socket.display()))?;
    let agent_api_task = tokio::spawn(crate::agent_socket::serve(agent_listener, node.clone()));
    // Before `start_agents`, so that agents the file changed start with
    // their new spec.
    for (name, e) in node.reconcile_agents(config_agents).await {
        warn!(agent = %name, error = %e, "cannot apply an agent from config.toml");
    }
    node.start_agents().await;
    let info = node.info();
    eprintln!(
        "osmoda node {} ({}) of fleet {} [{}]\n  data: {}\n  control: {}",
        info.name,
        info.node_id,
        fleet_info.name,
        fleet_info.id.get(..16).unwrap_or(&fleet_info.id),
        data.root().display(),
        socket.display()
    );
    if let Some((addr, _)) = &metrics {
        eprintln!("  metrics: http://{addr}/metrics");
    }
    if let Some((addr, _)) = &a2a {
        eprintln!("  a2a: http://{addr}/a2a/agents");
    }
    if data.has_root() {
        let key = data.root_key_path(None);
        eprintln!(
            "WARNING: the fleet root key is online in {}: whoever reads this folder can admit and revoke nodes.\n\
             \x20        Move it offline (`mv {} /media/keys/fleet.key`) and pass `--root-key FILE` to\n\
             \x20        `fleet invite` and `fleet revoke` (README: \"Keeping the root key offline\").",
            key.display(),
            key.display()
        );
        warn!(path = %key.display(), "the fleet root key is online in the data folder");
    }

    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut running = running;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("interrupted; stopping"),
        _ = sigterm.recv() => info!("SIGTERM; stopping"),
        _ = running.wait_loop() => {}
    }
    agent_api_task.abort();
    // Its streams wait on tasks for minutes; nothing it holds needs a
    // graceful end.
    if let Some((_, task)) = &a2a {
        task.abort();
    }
    let _ = std::fs::remove_file(&agent_socket);
    drop(node);
    running.shutdown().await;
    let _ = stop_api.send(());
    let _ = api_task.await;
    let _ = stop_metrics.send(());
    if let Some((_, task)) = metrics {
        let _ = task.await;
    }
    let _ = std::fs::remove_file(&socket);
    info!("stopped");
    Ok(())
}
