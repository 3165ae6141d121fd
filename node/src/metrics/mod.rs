//! The node's metrics, as OpenMetrics text (`GET /metrics`).
//!
//! Two kinds of source. Counters that only grow where something happens
//! (audit appends, sync rounds, tool calls) live here and are incremented
//! at their one place in the service layer. Everything else is read when
//! scraped (`scrape.rs`): gauges that are cheap to read (peers, agents,
//! approvals, store size, emergency flags) and the counters the fabric
//! already keeps for `osmoda status`, which are exported from there rather
//! than counted twice.
//!
//! A label set is bounded: every label value is a `&'static str` from a
//! registered set (topics, tools) or an enum (reasons, outcomes,
//! directions), so nothing a peer or an agent sends can add a time series.

mod scrape;
pub mod serve;

use prometheus_client::encoding::text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

pub use scrape::Snapshot;

/// The answer's media type: OpenMetrics 1.0 text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels from fixed sets only (see the module's note).
type Labels<const N: usize> = [(&'static str, &'static str); N];

/// The audit log's appends, kept by `AuditLog`.
#[derive(Debug, Clone)]
pub struct AuditMetrics {
    pub appends: Counter,
    /// Submission to durable acknowledgement: the group commit's fsync,
    /// with the wait for it.
    pub fsync_seconds: Histogram,
}

impl Default for AuditMetrics {
    fn default() -> Self {
        Self {
            appends: Counter::default(),
            // 0.25 ms to about 4 s: an fsync on a fast disk to a stalled one.
            fsync_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 15)),
        }
    }
}

/// Document sync between nodes, kept by the `Replicator`.
#[derive(Debug, Clone, Default)]
pub struct SyncMetrics {
    rounds: Family<Labels<1>, Counter>,
    bytes: Family<Labels<1>, Counter>,
    /// Peers' state summaries found to differ from ours.
    pub disagreements: Counter,
    refused: Family<Labels<1>, Counter>,
}

impl SyncMetrics {
    pub fn round(&self, direction: Direction, bytes: usize) {
        let labels = [("direction", direction.as_str())];
        self.rounds.get_or_create(&labels).inc();
        self.bytes.get_or_create(&labels).inc_by(bytes as u64);
    }

    /// Changes from peers not taken: a bad seal, against the document's
    /// rules, or bytes that do not decode.
    pub fn refused(&self, via: Via, count: u64) {
        self.refused
            .get_or_create(&[("via", via.as_str())])
            .inc_by(count);
    }

    /// Every series shows from the start, at 0, rather than appear with
    /// the first sync.
    fn show_all(&self) {
        for direction in [Direction::Sent, Direction::Received] {
            let labels = [("direction", direction.as_str())];
            let _ = self.rounds.get_or_create(&labels);
            let _ = self.bytes.get_or_create(&labels);
        }
        for via in [Via::Push, Via::Sync] {
            let _ = self.refused.get_or_create(&[("via", via.as_str())]);
        }
    }
}

/// How a peer's change came.
#[derive(Debug, Clone, Copy)]
pub enum Via {
    Push,
    Sync,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Via::Push => "push",
            Via::Sync => "sync",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Direction {
    Sent,
    Received,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Sent => "sent",
            Direction::Received => "received",
        }
    }
}

/// How an agent's tool call ended.
#[derive(Debug, Clone, Copy)]
pub enum ToolOutcome {
    Ok,
    /// Refused by a gate: ring, lockdown, an operator's denial.
    Denied,
    Failed,
    /// The caller hung up before the call ended.
    Abandoned,
}

impl ToolOutcome {
    fn as_str(self) -> &'static str {
        match self {
            ToolOutcome::Ok => "ok",
            ToolOutcome::Denied => "denied",
            ToolOutcome::Failed => "failed",
            ToolOutcome::Abandoned => "abandoned",
        }
    }
}

/// One node's metrics: its counters in a registry, and where the scrape
/// reads the rest.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    tool_calls: Family<Labels<2>, Counter>,
}

impl Metrics {
    pub fn new(audit: &AuditMetrics, sync: &SyncMetrics) -> Self {
        sync.show_all();
        let mut registry = Registry::default();
        let tool_calls = Family::<Labels<2>, Counter>::default();
        registry.register(
            "osmoda_audit_appends",
            "Entries appended to this node's audit log",
            audit.appends.clone(),
        );
        registry.register_with_unit(
            "osmoda_audit_fsync",
            "Time from an audit entry's submission to its durable acknowledgement",
            Unit::Seconds,
            audit.fsync_seconds.clone(),
        );
        registry.register(
            "osmoda_sync_rounds",
            "Document sync rounds, by direction",
            sync.rounds.clone(),
        );
        registry.register_with_unit(
            "osmoda_sync",
            "Bytes of document sync messages, by direction",
            Unit::Bytes,
            sync.bytes.clone(),
        );
        registry.register(
            "osmoda_replication_disagreements",
            "Peers' state summaries that differed from this node's (convergence lag)",
            sync.disagreements.clone(),
        );
        registry.register(
            "osmoda_changes_refused",
            "Document changes from peers not taken (seal, rules, undecodable), by how they came",
            sync.refused.clone(),
        );
        registry.register(
            "osmoda_tool_calls",
            "Agents' tool calls, by tool and outcome",
            tool_calls.clone(),
        );
        Self {
            registry,
            tool_calls,
        }
    }

    /// `tool` is a catalogue name, or `unknown`.
    pub fn tool_call(&self, tool: &'static str, outcome: ToolOutcome) {
        self.tool_calls
            .get_or_create(&[("tool", tool), ("outcome", outcome.as_str())])
            .inc();
    }

    /// The whole text: the counters, then what `snapshot` read.
    pub fn encode(&self, snapshot: Snapshot) -> Result<String, std::fmt::Error> {
        let mut scraped = Registry::default();
        scraped.register_collector(Box::new(snapshot));
        let mut out = String::with_capacity(16 * 1024);
        text::encode_registry(&mut out, &self.registry)?;
        text::encode_registry(&mut out, &scraped)?;
        text::encode_eof(&mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One counter, one histogram and one scraped gauge, as the text
    /// format writes them.
    #[test]
    fn each_kind_in_the_text_format() {
        let audit = AuditMetrics::default();
        let sync = SyncMetrics::default();
        let metrics = Metrics::new(&audit, &sync);
        audit.appends.inc_by(3);
        audit.fsync_seconds.observe(0.0003);
        sync.round(Direction::Sent, 100);
        metrics.tool_call("knowledge_put", ToolOutcome::Ok);
        let snapshot = Snapshot {
            agents_by_state: vec![("running", 2)],
            ..Snapshot::default()
        };
        let text = metrics.encode(snapshot).unwrap();
        for line in [
            "# TYPE osmoda_audit_appends counter",
            "osmoda_audit_appends_total 3",
            "# TYPE osmoda_audit_fsync_seconds histogram",
            "# UNIT osmoda_audit_fsync_seconds seconds",
            "osmoda_audit_fsync_seconds_bucket{le=\"0.0005\"} 1",
            "osmoda_audit_fsync_seconds_count 1",
            "osmoda_sync_rounds_total{direction=\"sent\"} 1",
            "osmoda_sync_bytes_total{direction=\"sent\"} 100",
            "osmoda_tool_calls_total{tool=\"knowledge_put\",outcome=\"ok\"} 1",
            "# TYPE osmoda_agents gauge",
            "osmoda_agents{state=\"running\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
