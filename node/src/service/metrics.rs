//! The node's metrics as a scrape reads them (`metrics/`).

use super::Node;
use crate::error::{NodeError, NodeResult};
use crate::metrics::Snapshot;

impl Node {
    /// OpenMetrics text: the node's counters and what is read now.
    pub async fn metrics_text(&self) -> NodeResult<String> {
        let snapshot = Snapshot::take(self).await?;
        self.metrics
            .encode(snapshot)
            .map_err(|_| NodeError::internal("cannot write the metrics text"))
    }
}
