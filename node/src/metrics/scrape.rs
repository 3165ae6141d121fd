//! What a scrape reads now: gauges that are cheap to read, and the
//! counters the fabric keeps for `osmoda status`, exported from there.

use std::collections::BTreeMap;

use osmoda_fabric::stats::Refusal;
use osmoda_fabric::{FabricStatus, PeerInfo, Security, TopicCounts};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::error::NodeResult;
use crate::service::Node;

const TRANSPORTS: [Security; 2] = [Security::NoiseHybrid, Security::TlsHybrid];

/// One scrape's readings. Label values are `&'static str` from fixed sets,
/// except topic names, which the fabric reports for registered topics only.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub peers: Vec<(Security, u64)>,
    pub handshakes_accepted: Vec<(Security, u64)>,
    pub handshakes_refused: Vec<(Security, Refusal, u64)>,
    pub fabric: Option<FabricStatus>,
    pub agents_by_state: Vec<(&'static str, u64)>,
    pub agent_restarts: u64,
    pub approvals_pending: u64,
    pub store_bytes: Option<u64>,
    pub lockdown: bool,
    pub frozen: bool,
    pub emergency_refused: u64,
}

/// Every state an agent can be in, so that a state with no agent reads 0.
const AGENT_STATES: [&str; 7] = [
    "running",
    "frozen",
    "stopping",
    "backing_off",
    "stopped",
    "exited",
    "failed",
];

fn state_name(state: &osmoda_agentd::AgentState) -> &'static str {
    use osmoda_agentd::AgentState as S;
    match state {
        S::Running { .. } => "running",
        S::Frozen { .. } => "frozen",
        S::Stopping { .. } => "stopping",
        S::BackingOff { .. } => "backing_off",
        S::Stopped => "stopped",
        S::Exited { .. } => "exited",
        S::Failed { .. } => "failed",
    }
}

fn peers_by_security(peers: &[PeerInfo]) -> Vec<(Security, u64)> {
    TRANSPORTS
        .iter()
        .map(|s| {
            let n = peers
                .iter()
                .filter(|p| p.transport == s.transport())
                .count();
            (*s, n as u64)
        })
        .collect()
}

impl Snapshot {
    /// Reads what a scrape shows from `node`'s parts.
    pub async fn take(node: &Node) -> NodeResult<Self> {
        let fabric = node.fabric.status().await?;
        let peers = node.fabric.peers().await?;
        let handshakes = node.membership.handshakes();
        let mut states: BTreeMap<&'static str, u64> =
            AGENT_STATES.iter().map(|s| (*s, 0)).collect();
        let mut restarts = 0;
        for agent in node.agents.list().await? {
            *states.entry(state_name(&agent.state)).or_default() += 1;
            restarts += agent.restarts;
        }
        let emergency = node.emergency.state();
        Ok(Snapshot {
            peers: peers_by_security(&peers),
            handshakes_accepted: TRANSPORTS
                .iter()
                .map(|s| (*s, handshakes.accepted_count(*s)))
                .collect(),
            handshakes_refused: TRANSPORTS
                .iter()
                .flat_map(|s| {
                    Refusal::ALL
                        .iter()
                        .map(move |r| (*s, *r, handshakes.refused_count(*s, *r)))
                })
                .collect(),
            fabric: Some(fabric),
            agents_by_state: states.into_iter().collect(),
            agent_restarts: restarts,
            approvals_pending: node.approvals.pending().len() as u64,
            store_bytes: std::fs::metadata(node.audit.store_path())
                .ok()
                .map(|m| m.len()),
            lockdown: emergency.lockdown,
            frozen: emergency.frozen,
            emergency_refused: node.refusals.total(),
        })
    }
}

/// Writes one metric: `rows` of label set and value, all of `kind`.
fn write<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    rows: impl IntoIterator<Item = (L, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, unit, kind)?;
    for (labels, value) in rows {
        let at = metric.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(value).encode(at)?,
            _ => ConstGauge::new(value).encode(at)?,
        }
    }
    Ok(())
}

/// Writes one metric without labels.
fn write_one(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, unit, kind)?;
    match kind {
        MetricType::Counter => ConstCounter::new(value).encode(metric),
        _ => ConstGauge::new(value).encode(metric),
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let transport = |s: &Security| [("transport", s.transport()), ("key_exchange", kx(*s))];
        write(
            &mut e,
            "osmoda_peers",
            "Connected peers, by transport and key exchange",
            None,
            Gauge,
            self.peers.iter().map(|(s, n)| (transport(s), *n)),
        )?;
        write(
            &mut e,
            "osmoda_handshakes_accepted",
            "Handshakes that verified a member, by transport",
            None,
            Counter,
            self.handshakes_accepted
                .iter()
                .map(|(s, n)| ([("transport", s.transport())], *n)),
        )?;
        write(
            &mut e,
            "osmoda_handshakes_refused",
            "Handshakes refused, by transport and reason",
            None,
            Counter,
            self.handshakes_refused
                .iter()
                .map(|(s, r, n)| ([("transport", s.transport()), ("reason", r.as_str())], *n)),
        )?;
        if let Some(f) = &self.fabric {
            self.encode_fabric(&mut e, f)?;
        }
        write(
            &mut e,
            "osmoda_agents",
            "Agents of this node, by state",
            None,
            Gauge,
            self.agents_by_state
                .iter()
                .map(|(s, n)| ([("state", *s)], *n)),
        )?;
        write_one(
            &mut e,
            "osmoda_agent_restarts",
            "Automatic restarts of this node's agents since each was last started",
            None,
            Gauge,
            self.agent_restarts,
        )?;
        write_one(
            &mut e,
            "osmoda_approvals_pending",
            "Ring-1 tool calls waiting for an operator's decision",
            None,
            Gauge,
            self.approvals_pending,
        )?;
        if let Some(bytes) = self.store_bytes {
            write_one(
                &mut e,
                "osmoda_store",
                "Size of the node's store file",
                Some(&Unit::Bytes),
                Gauge,
                bytes,
            )?;
        }
        write(
            &mut e,
            "osmoda_emergency",
            "Emergency flags in force here (1 set, 0 clear)",
            None,
            Gauge,
            [
                ([("flag", "lockdown")], u64::from(self.lockdown)),
                ([("flag", "frozen")], u64::from(self.frozen)),
            ],
        )?;
        write_one(
            &mut e,
            "osmoda_emergency_refused",
            "Peers' emergency commands not taken (junk, forgeries, replays, stale news)",
            None,
            Counter,
            self.emergency_refused,
        )
    }
}

impl Snapshot {
    fn encode_fabric(
        &self,
        e: &mut DescriptorEncoder,
        f: &FabricStatus,
    ) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        write_one(
            e,
            "osmoda_revocations",
            "Revocations this node holds",
            None,
            Gauge,
            f.revocations as u64,
        )?;
        write_one(
            e,
            "osmoda_fabric_events_dropped",
            "Fabric events the node did not take in time",
            None,
            Counter,
            f.events_dropped,
        )?;
        write_one(
            e,
            "osmoda_gossip_awaiting",
            "Gossip messages waiting for the node's verdict",
            None,
            Gauge,
            f.gossip_awaiting as u64,
        )?;
        write_one(
            e,
            "osmoda_gossip_dropped",
            "Gossip messages ignored because a verdict queue was full",
            None,
            Counter,
            f.gossip_dropped,
        )?;
        write_one(
            e,
            "osmoda_gossip_expired",
            "Gossip messages ignored because their verdict came too late",
            None,
            Counter,
            f.gossip_expired,
        )?;
        let by_topic =
            |e: &mut DescriptorEncoder, name: &str, help: &str, pick: fn(&TopicCounts) -> u64| {
                write(
                    e,
                    name,
                    help,
                    None,
                    Counter,
                    f.topics
                        .iter()
                        .map(|t| ([("topic", t.topic.as_str())], pick(t))),
                )
            };
        by_topic(
            e,
            "osmoda_gossip_published",
            "Gossip messages this node published, by topic",
            |t| t.published,
        )?;
        by_topic(
            e,
            "osmoda_gossip_received",
            "Gossip messages that arrived, by topic",
            |t| t.received,
        )?;
        by_topic(
            e,
            "osmoda_gossip_refused",
            "Arrived gossip the fabric did not take, by topic",
            |t| t.dropped,
        )?;
        Ok(())
    }
}

/// Short key-exchange names for labels (`osmoda peers` shows the long ones).
fn kx(security: Security) -> &'static str {
    match security {
        Security::NoiseHybrid => "x25519_mlkem768_noise",
        Security::TlsHybrid => "x25519_mlkem768_tls",
    }
}
