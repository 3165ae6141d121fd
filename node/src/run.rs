//! `osmoda run`: the node's lifetime, from the folder lock to a clean stop.

use anyhow::{Context, Result};
use osmoda_fabric::proto::hex;
use osmoda_fabric::{
    Credentials, FabricConfig, FabricEvent, GossipValidator, Membership, StartError,
};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{debug, error, info, warn};

use std::sync::Arc;
use std::time::Duration;

use osmoda_crdt_state::{Actor, Outcome};

use crate::api::{self, ApiState, NodeInfo};
use crate::audit::AuditLog;
use crate::audit_remote::Mirrors;
use crate::docs::Docs;
use crate::heads::FleetHeads;
use crate::sync::Replicator;
use osmoda_fabric::behaviour::{DirectRequest, DirectResponse, MAX_AUDIT_RECORDS_PER_REQUEST};
use osmoda_fabric::topics;

/// How often the node stores a signed checkpoint of its audit log, when it grew.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);
/// How often the node gossips a fresh checkpoint, when its log grew.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(250);
/// How often the node gossips its knowledge summary even when unchanged.
const SUMMARY_EVERY: Duration = Duration::from_secs(5);
/// How often the node gossips everything it knows of the fleet's heads.
const STATE_EVERY: Duration = Duration::from_secs(30);

/// Answers a peer's request that the fabric handed to the node.
fn answer(
    audit: &AuditLog,
    mirrors: &Mirrors,
    own: &[u8; 32],
    request: DirectRequest,
) -> DirectResponse {
    let refuse = |reason: String| DirectResponse::Refused { reason };
    let DirectRequest::AuditRange { node, start, count } = request else {
        return refuse("not answered by the node".into());
    };
    let count = count.min(MAX_AUDIT_RECORDS_PER_REQUEST);
    let served = if node == hex(own) {
        audit.serve_range(start, count).map(Some)
    } else {
        match osmoda_fabric::proto::parse_hex::<32>(&node) {
            Some(key) => mirrors.serve_range(&key, start, count),
            None => return refuse("not a node key".into()),
        }
    };
    match served {
        Ok(Some((cp, records))) => DirectResponse::AuditRange {
            checkpoint: hex(&cp.encode()),
            records: records.iter().map(|r| hex(r)).collect(),
        },
        Ok(None) => refuse("this node holds no copy of that log".into()),
        Err(e) => refuse(format!("cannot read the audit log: {e:#}")),
    }
}

/// Logs and audits fork evidence that is new here.
async fn report_forks(audit: &AuditLog, nodes: Vec<osmoda_crdt_state::NodeKey>) {
    for node in nodes {
        let id = osmoda_fabric::peer_id_of(&node)
            .map(|p| p.to_string())
            .unwrap_or_default();
        error!(node = %id, "fork evidence: this node signed two audit logs that cannot both be true");
        if let Err(e) = audit
            .record(
                Actor::Node,
                "audit.fork",
                &id,
                Outcome::Ok,
                "fork evidence received or found",
            )
            .await
        {
            warn!(error = %e, "cannot audit fork evidence");
        }
    }
}
use crate::config::{self, Overrides};
use crate::datadir::{DataDir, SOCKET};
use crate::fleet::{self, unix_now};

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
    // State and audit gossip that does not even decode is dropped, not
    // forwarded, and counts against its sender's gossip score.
    fabric_config.validators = vec![
        (
            topics::STATE,
            GossipValidator::new(|d| crate::sync::StateSummary::decode(d).is_some()),
        ),
        (
            topics::AUDIT,
            GossipValidator::new(|d| osmoda_crdt_state::AuditHeads::decode(d).is_ok()),
        ),
    ];
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
    let heads = Arc::new(FleetHeads::default());
    let docs = Arc::new(Docs::open(audit.store(), &node.node_id)?);
    let mirrors = Mirrors::new(audit.store().clone());
    let node_key = cert.node;
    let app = api::router(ApiState {
        fabric: fabric.clone(),
        node: node.clone(),
        audit: audit.clone(),
        heads: heads.clone(),
        docs: docs.clone(),
        mirrors: mirrors.clone(),
    });
    let api_task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = api_stopped.await;
            })
            .await;
    });
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
    let mut checkpoint_timer = tokio::time::interval(CHECKPOINT_EVERY);
    let mut checkpointed = 0;
    let mut announce_timer = tokio::time::interval(ANNOUNCE_EVERY);
    let mut announced = None;
    let mut state_timer = tokio::time::interval(STATE_EVERY);
    let replicator = Replicator::new(docs.clone(), audit.clone(), fabric.clone());
    let mut summary_timer = tokio::time::interval(ANNOUNCE_EVERY);
    // The documents' change counter when the summary was last sent, and when.
    let mut summary_sent: Option<(u64, std::time::Instant)> = None;
    loop {
        tokio::select! {
            _ = announce_timer.tick() => {
                let size = audit.len();
                if announced != Some(size) {
                    announced = Some(size);
                    match heads.insert(audit.signed_checkpoint()) {
                        Ok((message, forks)) => {
                            report_forks(&audit, forks).await;
                            let _ = fabric.publish(topics::AUDIT, message).await;
                        }
                        Err(e) => warn!(error = %e, "own audit checkpoint refused"),
                    }
                }
            }
            _ = summary_timer.tick() => {
                // On change, and every few seconds so that peers that were
                // away (or missed a message) catch up.
                // The summary is computed only when it may have changed.
                let version = docs.version();
                let stale = summary_sent.as_ref().is_none_or(|(last, at)| *last != version || at.elapsed() >= SUMMARY_EVERY);
                if stale && fabric.publish(topics::STATE, replicator.summary()).await.is_ok() {
                    summary_sent = Some((version, std::time::Instant::now()));
                }
            }
            _ = state_timer.tick() => {
                for chunk in heads.chunks() {
                    let _ = fabric.publish(topics::AUDIT, chunk).await;
                }
            }
            _ = checkpoint_timer.tick() => {
                if audit.len() != checkpointed {
                    match audit.checkpoint() {
                        Ok(cp) => checkpointed = cp.size,
                        Err(e) => warn!(error = %e, "cannot sign an audit checkpoint"),
                    }
                }
            }
            _ = tokio::signal::ctrl_c() => { info!("interrupted; stopping"); break; }
            _ = sigterm.recv() => { info!("SIGTERM; stopping"); break; }
            event = events.recv() => match event {
                Some(FabricEvent::Revoked { revocation, from }) => {
                    info!(node = %hex(&revocation.node), "revocation recorded");
                    if let Err(e) = data.write_revocations(&membership.revocations()) {
                        warn!(error = %e, "cannot store revocations");
                    }
                    // Revocations made here are audited by the API handler.
                    if let Some(peer) = from {
                        let actor = osmoda_fabric::node_key_of(&peer).map(Actor::Peer).unwrap_or(Actor::Node);
                        let target = osmoda_fabric::peer_id_of(&revocation.node).map(|p| p.to_string()).unwrap_or_default();
                        if let Err(e) = audit.record(actor, "fleet.revocation", &target, Outcome::Ok, "received from a peer").await {
                            warn!(error = %e, "cannot audit a revocation");
                        }
                    }
                }
                Some(FabricEvent::Request { id, peer, request: DirectRequest::DocSync { messages } }) => {
                    // Answered off the loop: a round may take a while.
                    let (replicator, fabric) = (replicator.clone(), fabric.clone());
                    tokio::spawn(async move {
                        let response = replicator.answer(peer, messages).await;
                        fabric.respond(id, response).await;
                    });
                }
                Some(FabricEvent::Request { id, request, .. }) => {
                    fabric.respond(id, answer(&audit, &mirrors, &node_key, request)).await;
                }
                Some(FabricEvent::Gossip { topic, data, source: Some(peer) }) if topic == topics::STATE => {
                    replicator.on_summary(peer, &data);
                }
                Some(FabricEvent::Gossip { topic, data, source }) if topic == topics::AUDIT => {
                    match heads.merge_gossip(&data) {
                        Ok(forks) => report_forks(&audit, forks).await,
                        Err(e) => debug!(?source, error = %e, "ignoring an invalid audit-heads message"),
                    }
                }
                Some(FabricEvent::PeerConnected(_)) => {
                    // Anti-entropy: a new neighbour hears our state summary
                    // on the next tick instead of within five seconds.
                    summary_sent = None;
                }
                Some(_) => {}
                None => { warn!("the fabric stopped on its own"); break; }
            }
        }
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
