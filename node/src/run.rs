//! `osmoda run`: the node's lifetime, from the folder lock to a clean stop.

use std::sync::Arc;

use anyhow::{Context, Result};
use osmoda_crdt_state::{Actor, Outcome};
use osmoda_fabric::{Credentials, FabricConfig, Membership, StartError};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use crate::api::{self, ApiState, NodeInfo};
use crate::audit::AuditLog;
use crate::audit_remote::Mirrors;
use crate::config::{self, Overrides};
use crate::core::Core;
use crate::datadir::{DataDir, AGENT_SOCKET, SOCKET};
use crate::docs::Docs;
use crate::fleet::{self, unix_now};
use crate::heads::FleetHeads;
use crate::sync::Replicator;

pub async fn run(
    data: &DataDir,
    overrides: Overrides,
    fleet_name: &str,
    node_name: Option<&str>,
) -> Result<()> {
    data.ensure()?;
    let _lock = data.lock()?;
    let created = !data.is_member();
    if created {
        let cert = fleet::create(data, fleet_name, node_name)?;
        info!(name = %cert.name, "created a new fleet; this node is its first admin");
    }
    let file_config = config::load(data)?;
    let default_listen = config::listens_by_default(&file_config, &overrides);
    let mut fabric_config = config::resolve(file_config, &overrides)?;
    let heads = Arc::new(FleetHeads::default());
    fabric_config.validators = crate::core::validators(heads.clone());
    let cert = data.cert()?;
    cert.verify(&cert.fleet, unix_now()).context(
        "this node's membership certificate is not valid; ask an admin for a new invite",
    )?;
    let fleet_info = data.fleet()?;
    let credentials = Credentials::new(&data.identity()?, cert.clone())
        .context("identity key and certificate disagree")?;
    let audit = Arc::new(AuditLog::open(
        &data.store()?,
        ed25519_dalek::SigningKey::from_bytes(&data.identity()?),
    )?);
    if created {
        audit
            .record(Actor::Operator, "fleet.create", fleet_name, Outcome::Ok, "")
            .await?;
    }
    audit
        .record(Actor::Node, "node.start", &cert.name, Outcome::Ok, "")
        .await?;
    let membership = Membership::new(cert.fleet);
    for rev in data.revocations()? {
        if let Err(e) = membership.apply_revocation(&rev) {
            warn!(error = %e, "ignoring a stored revocation");
        }
    }
    let node = NodeInfo {
        node_id: credentials.peer_id().to_string(),
        name: cert.name.clone(),
        role: cert.role.to_string(),
        fleet: fleet_info.clone(),
        certificate_expires_at: cert.expires_at,
        holds_root_key: data.has_root(),
        version: env!("CARGO_PKG_VERSION"),
    };
    let started = match osmoda_fabric::start(
        credentials.clone(),
        membership.clone(),
        fabric_config.clone(),
    ) {
        Err(StartError::Listen { addr, reason }) if default_listen => {
            warn!(%addr, %reason, "the default port is taken (another node on this host?); using random ports");
            let fallback = FabricConfig {
                listen: config::parse_addrs("listen", &config::default_listen(0))?,
                ..fabric_config
            };
            osmoda_fabric::start(credentials, membership.clone(), fallback)
        }
        other => other,
    };
    let (fabric, mut events, fabric_task) = started.context("cannot start the fabric")?;

    let socket = data.path(SOCKET);
    let listener = api::bind(&socket)?;
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let docs = Arc::new(Docs::open(audit.store(), &node.node_id)?);
    let mirrors = Mirrors::new(audit.store().clone());
    let agent_socket = data.path(AGENT_SOCKET);
    let (agents, agent_events) = crate::agents::Agents::open(
        &data.path("agents"),
        audit.store().clone(),
        &node.node_id,
        agent_socket.clone(),
    )?;
    let agents = Arc::new(agents);
    let emergency = Arc::new(crate::emergency::Emergency::open(audit.store().clone())?);
    let approvals = Arc::new(crate::approvals::Approvals::default());
    tokio::spawn(crate::agents_api::audit_agent_events(
        agent_events,
        audit.clone(),
    ));
    let node_key = cert.node;
    let api_state = ApiState {
        fabric: fabric.clone(),
        node: node.clone(),
        audit: audit.clone(),
        heads: heads.clone(),
        docs: docs.clone(),
        mirrors: mirrors.clone(),
        agents: agents.clone(),
        approvals: approvals.clone(),
        emergency: emergency.clone(),
        membership: membership.clone(),
        cert: cert.clone(),
        identity: Arc::new(zeroize::Zeroizing::new(data.identity()?)),
    };
    let app = api::router(api_state.clone());
    let api_task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = api_stopped.await;
            })
            .await;
    });
    let agent_listener = crate::agent_api::bind(&agent_socket)?;
    let agent_app = crate::agent_api::router(api_state.clone());
    let agent_api_task = tokio::spawn(async move {
        let _ = axum::serve(agent_listener, agent_app).await;
    });
    if emergency.is_locked() {
        warn!("this node is locked down: agents stay stopped and tool calls are refused until `osmoda unlock`");
    } else {
        for (name, e) in agents.start_all().await {
            warn!(agent = %name, error = %format!("{e:#}"), "cannot start an agent");
        }
    }
    eprintln!(
        "osmoda node {} ({}) of fleet {} [{}]\n  data: {}\n  control: {}",
        node.name,
        node.node_id,
        fleet_info.name,
        &fleet_info.id[..16],
        data.root().display(),
        socket.display()
    );

    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let core = Core {
        fabric: fabric.clone(),
        membership: membership.clone(),
        audit: audit.clone(),
        docs: docs.clone(),
        heads: heads.clone(),
        mirrors,
        replicator: Replicator::new(docs.clone(), audit.clone(), fabric.clone()),
        node_key,
        data: Some(data.clone()),
        emergency: Some((emergency.clone(), agents.clone())),
    };
    core.run(&mut events, async {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => info!("interrupted; stopping"),
            _ = sigterm.recv() => info!("SIGTERM; stopping"),
        }
    })
    .await;
    approvals.expire_all();
    agent_api_task.abort();
    let _ = std::fs::remove_file(&agent_socket);
    if let Err(e) = agents.stop_all().await {
        warn!(error = %format!("{e:#}"), "cannot stop the agents");
    }
    fabric.shutdown().await;
    let _ = fabric_task.await;
    if let Err(e) = audit
        .record(Actor::Node, "node.stop", &node.name, Outcome::Ok, "")
        .await
    {
        warn!(error = %e, "cannot audit the stop");
    }
    if let Err(e) = audit.checkpoint() {
        warn!(error = %e, "cannot sign the final audit checkpoint");
    }
    let _ = stop_api.send(());
    let _ = api_task.await;
    let _ = std::fs::remove_file(&socket);
    info!("stopped");
    Ok(())
}
