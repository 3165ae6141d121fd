//! The egress proxy: a confined agent's only way out of its network
//! namespace. The node hands [`Egress::serve`] the listener it opened at
//! 127.0.0.1:3128 inside the agent's namespace; every connection on it is
//! one request (HTTP `CONNECT host:port`, or a plain HTTP request with an
//! absolute `http://` URI), checked against the agent's allowlist and the
//! address rules (`policy.rs`), relayed under the agent's bounds
//! (`proxy.rs`), and audited once, after it ends, as `egress.connect`.
//!
//! - `request.rs`: the bounded head read and its parse.
//! - `policy.rs`: allowlist match, resolution once, address checks,
//!   [`Refusal`] and its status.
//! - `proxy.rs`: one connection from head to audit entry.

mod policy;
mod proxy;
mod request;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use osmoda_agentd::AllowEntry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use crate::state::audit_log::AuditLog;

pub use policy::{canonical, forbidden, Refusal};
/// The request-head parser, public for its fuzz target (`egress_request`).
pub use request::{parse as parse_head, Kind as RequestKind, Request as ProxyRequest};

/// Most addresses the node may list as its own.
const MAX_OWN: usize = 1024;
/// Refused connections answered at once per agent beyond its limit; more
/// wait in the listener's backlog.
const OVERFLOW: usize = 8;

/// The bounds of one agent's egress.
#[derive(Debug, Clone)]
pub struct EgressLimits {
    /// Connections open at once (more are answered 429).
    pub max_connections: usize,
    /// Bytes per second, both directions of all its connections together.
    pub bytes_per_sec: u64,
    /// Largest request head.
    pub max_head: usize,
    /// Time for the client to send its head.
    pub head_timeout: Duration,
    /// Time to resolve and connect upstream.
    pub connect_timeout: Duration,
    /// A connection with no byte moved either way for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for EgressLimits {
    fn default() -> Self {
        Self {
            max_connections: 32,
            bytes_per_sec: 8 * 1024 * 1024,
            max_head: 16 * 1024,
            head_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Whether the node is locked down, asked at every connection.
pub type LockedFn = Arc<dyn Fn() -> bool + Send + Sync>;

/// The proxy of one node, shared by all its agents.
pub struct Egress {
    audit: Arc<AuditLog>,
    locked: LockedFn,
    own: RwLock<HashSet<IpAddr>>,
    limits: EgressLimits,
    /// Names the tests resolve without DNS (only loopback is used there).
    #[cfg(test)]
    pinned: RwLock<std::collections::HashMap<String, Vec<IpAddr>>>,
}

/// What one agent's connections share.
struct AgentCtx {
    egress: Arc<Egress>,
    agent: String,
    allow: Arc<RwLock<Vec<AllowEntry>>>,
    bucket: Bucket,
}

impl Egress {
    /// A proxy that audits into `audit`, refuses everything while `locked`
    /// says so, and bounds each agent by `limits`.
    pub fn new(audit: Arc<AuditLog>, locked: LockedFn, limits: EgressLimits) -> Self {
        Self {
            audit,
            locked,
            own: RwLock::new(HashSet::new()),
            limits,
            #[cfg(test)]
            pinned: RwLock::default(),
        }
    }

    pub fn limits(&self) -> &EgressLimits {
        &self.limits
    }

    /// Replaces the node's own addresses (reachable only through an entry
    /// naming them); at most 1,024 are kept.
    pub fn set_own_addresses(&self, addrs: impl IntoIterator<Item = IpAddr>) {
        let set: HashSet<IpAddr> = addrs.into_iter().map(canonical).take(MAX_OWN).collect();
        *self.own.write().unwrap_or_else(|e| e.into_inner()) = set;
    }

    fn own_addresses(&self) -> HashSet<IpAddr> {
        self.own.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    #[cfg(test)]
    fn pinned(&self, host: &str) -> Option<Vec<IpAddr>> {
        self.pinned
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
            .cloned()
    }

    #[cfg(not(test))]
    fn pinned(&self, _host: &str) -> Option<Vec<IpAddr>> {
        None
    }

    /// Serves `agent`'s connections on `listener` until the handle is
    /// aborted, which also ends its open connections (each still audited).
    /// `allow` is read at every connection, so changes apply to the next.
    pub fn serve(
        self: &Arc<Self>,
        agent: String,
        allow: Arc<RwLock<Vec<AllowEntry>>>,
        listener: TcpListener,
    ) -> JoinHandle<()> {
        let ctx = Arc::new(AgentCtx {
            egress: self.clone(),
            agent,
            allow,
            bucket: Bucket::new(self.limits.bytes_per_sec),
        });
        let slots = Arc::new(Semaphore::new(self.limits.max_connections));
        let overflow = Arc::new(Semaphore::new(OVERFLOW));
        tokio::spawn(async move {
            // Owned here, so aborting this task drops and aborts them all.
            let mut tasks = JoinSet::new();
            loop {
                while tasks.try_join_next().is_some() {}
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors, most likely: wait, do not spin.
                        tracing::warn!(agent = %ctx.agent, error = %e, "egress accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (permit, admitted) = match slots.clone().try_acquire_owned() {
                    Ok(p) => (p, true),
                    Err(_) => match overflow.clone().acquire_owned().await {
                        Ok(p) => (p, false),
                        Err(_) => return,
                    },
                };
                let ctx = ctx.clone();
                tasks.spawn(async move {
                    proxy::handle(ctx, stream, admitted).await;
                    // Held until the audit entry is written: pending
                    // entries are bounded by the same limit.
                    drop(permit);
                });
            }
        })
    }
}

/// A token bucket shared by all of an agent's connections: `rate` bytes a
/// second, a burst of one second's worth. A take may overdraw it; the
/// taker then sleeps until the debt is repaid, so a large read never waits
/// for a burst larger than the bucket.
struct Bucket {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(rate: u64) -> Self {
        let rate = rate.max(1) as f64;
        Self {
            rate,
            state: Mutex::new((rate, Instant::now())),
        }
    }

    async fn take(&self, n: usize) {
        let wait = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let refill = now.duration_since(state.1).as_secs_f64() * self.rate;
            state.0 = (state.0 + refill).min(self.rate) - n as f64;
            state.1 = now;
            if state.0 < 0.0 {
                Duration::from_secs_f64(-state.0 / self.rate)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}
