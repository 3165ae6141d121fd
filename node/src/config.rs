//! Node configuration: embedded defaults, then `config.toml` in the data
//! folder, then environment variables and flags (clap folds those two).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{Context, NodeError, NodeResult as Result};
use libp2p::Multiaddr;
use osmoda_fabric::FabricConfig;
use serde::{Deserialize, Serialize};

use crate::datadir::{DataDir, CONFIG};
use crate::state::agent_uids::UidRange;

pub mod agents;

pub use agents::ConfigAgent;

/// The port a node listens on by default, for TCP and for QUIC. A stable
/// port keeps the addresses in join tokens valid across restarts; when it is
/// taken (a second node on the host), the node falls back to random ports.
pub const DEFAULT_PORT: u16 = 7410;

/// The default listen addresses.
pub fn default_listen(port: u16) -> Vec<String> {
    vec![
        format!("/ip4/0.0.0.0/tcp/{port}"),
        format!("/ip4/0.0.0.0/udp/{port}/quic-v1"),
    ]
}

/// What `config.toml` may hold. Unknown keys are errors, so a typo is not
/// silently ignored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// Multiaddrs to listen on.
    pub listen: Vec<String>,
    /// Members to dial at start.
    pub bootstrap: Vec<String>,
    /// Local-network discovery.
    pub mdns: bool,
    /// Messages kept for `osmoda mesh inbox`.
    pub inbox_capacity: usize,
    /// Seconds a connection may take to become secured.
    pub handshake_timeout_secs: u64,
    /// Most connections held at once.
    pub max_connections: u32,
    /// User ids for agents, `FIRST-LAST`: each agent gets one of its own.
    pub agent_uid_range: UidRange,
    /// Days a member certificate this node issues lasts (an admin node;
    /// it never outlasts the admin's own).
    pub certificate_lifetime_days: u64,
    /// `IP:PORT` serving `GET /metrics` over plain TCP; none by default.
    pub metrics_listen: Option<String>,
    /// Lets `metrics_listen` be other than a loopback address: the
    /// metrics show this node's links, gossip and agents, which tell
    /// the fleet's topology and activity.
    pub metrics_listen_remote: bool,
    /// Free-form `key = "value"` pairs describing the host (site, rack,
    /// role), shown by `osmoda status`.
    pub labels: BTreeMap<String, String>,
    /// Agents declared here, reconciled at every start
    /// (`Node::reconcile_agents`).
    pub agents: Vec<ConfigAgent>,
    /// The A2A front (`[a2a]`): off unless `listen` is given.
    pub a2a: A2aConfig,
}

/// `[a2a]`: where the node serves its agents to A2A clients, and the
/// bearer tokens those clients present.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct A2aConfig {
    /// `IP:PORT`; none (the default) serves no A2A at all.
    pub listen: Option<String>,
    /// Lets `listen` be other than a loopback address: the front is
    /// plain HTTP, so beyond this host the tokens would travel in the
    /// clear unless something in front adds TLS.
    pub listen_remote: bool,
    /// The clients: each a token in a file and the ring it submits as.
    pub tokens: Vec<A2aToken>,
}

/// One A2A client.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct A2aToken {
    /// Who the client is in task records and audit entries (`a2a:NAME`).
    pub name: String,
    /// The file holding the token (relative: to the data folder).
    pub token_file: std::path::PathBuf,
    /// The ring its tasks come from, checked against each card's
    /// `accept_rings`: 1 or 2, never the operator's 0.
    pub ring: u8,
}

/// Default lifetime of the member certificates an admin node issues: a
/// leaked key that nobody revoked is a member for a month at most, and a
/// host away for a few weeks still finds its certificate valid.
pub const DEFAULT_CERT_LIFETIME_DAYS: u64 = 30;

impl FileConfig {
    /// The checked lifetime of the certificates this node issues.
    pub fn certificate_lifetime(&self) -> Result<Duration> {
        in_range(
            "certificate_lifetime_days",
            self.certificate_lifetime_days,
            1,
            3650,
        )?;
        Ok(Duration::from_secs(
            self.certificate_lifetime_days * 24 * 3600,
        ))
    }

    /// The checked `metrics_listen`: loopback unless
    /// `metrics_listen_remote` allows otherwise.
    pub fn metrics_address(&self) -> Result<Option<std::net::SocketAddr>> {
        let Some(text) = &self.metrics_listen else {
            return Ok(None);
        };
        let addr: std::net::SocketAddr = text.trim().parse().map_err(|_| {
            NodeError::Invalid(format!(
                "metrics_listen = {text:?} is not an IP:PORT address (for example \"127.0.0.1:9410\")"
            ))
        })?;
        if !addr.ip().is_loopback() && !self.metrics_listen_remote {
            return Err(NodeError::Invalid(format!(
                "metrics_listen = {text:?} is not a loopback address; the metrics show this \
                 node's links, gossip and agents, so serving them beyond this host needs \
                 metrics_listen_remote = true as well"
            )));
        }
        Ok(Some(addr))
    }
}

impl A2aConfig {
    /// The checked `listen`: loopback unless `listen_remote` allows
    /// otherwise, and only with at least one token.
    pub fn address(&self) -> Result<Option<std::net::SocketAddr>> {
        let Some(text) = &self.listen else {
            return Ok(None);
        };
        let addr: std::net::SocketAddr = text.trim().parse().map_err(|_| {
            NodeError::Invalid(format!(
                "[a2a] listen = {text:?} is not an IP:PORT address (for example \"127.0.0.1:9411\")"
            ))
        })?;
        if !addr.ip().is_loopback() && !self.listen_remote {
            return Err(NodeError::Invalid(format!(
                "[a2a] listen = {text:?} is not a loopback address; the A2A front is plain \
                 HTTP carrying bearer tokens, so serving it beyond this host needs \
                 listen_remote = true as well"
            )));
        }
        if self.tokens.is_empty() {
            return Err(NodeError::Invalid(
                "[a2a] listen is set but [a2a] tokens is empty: no client could use it".into(),
            ));
        }
        Ok(Some(addr))
    }
}

impl Default for FileConfig {
    fn default() -> Self {
        let fabric = FabricConfig::default();
        Self {
            listen: default_listen(DEFAULT_PORT),
            bootstrap: Vec::new(),
            mdns: fabric.mdns,
            inbox_capacity: fabric.inbox_capacity,
            handshake_timeout_secs: fabric.handshake_timeout.as_secs(),
            max_connections: fabric.limits.max_established,
            agent_uid_range: UidRange::default(),
            certificate_lifetime_days: DEFAULT_CERT_LIFETIME_DAYS,
            metrics_listen: None,
            metrics_listen_remote: false,
            labels: BTreeMap::new(),
            agents: Vec::new(),
            a2a: A2aConfig::default(),
        }
    }
}

/// Overrides from the command line and environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Vec<String>,
    pub bootstrap: Vec<String>,
    pub no_mdns: bool,
}

/// Reads `config.toml` if present. A broken file is an error that names the
/// line and column.
pub fn load(data: &DataDir) -> Result<FileConfig> {
    let path = data.path(CONFIG);
    if !path.exists() {
        return Ok(FileConfig::default());
    }
    let text =
        std::fs::read_to_string(&path).internal(|| format!("cannot read {}", path.display()))?;
    parse(&text).invalid(|| format!("invalid configuration in {}", path.display()))
}

pub fn parse(text: &str) -> Result<FileConfig> {
    let file: FileConfig =
        toml::from_str(text).map_err(|e| NodeError::Invalid(describe_toml_error(text, &e)))?;
    agents::check_labels(&file.labels)?;
    agents::specs(&file.agents)?;
    Ok(file)
}

fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {}", e.message())
        }
        None => e.message().to_string(),
    }
}

pub fn parse_addrs(what: &str, addrs: &[String]) -> Result<Vec<Multiaddr>> {
    addrs
        .iter()
        .map(|a| {
            a.parse::<Multiaddr>().invalid(|| {
                format!("{what} address {a:?} is not a multiaddr (e.g. /ip4/127.0.0.1/tcp/4001)")
            })
        })
        .collect()
}

/// True when neither the flags nor the file chose listen addresses.
pub fn listens_by_default(file: &FileConfig, overrides: &Overrides) -> bool {
    overrides.listen.is_empty() && file.listen == default_listen(DEFAULT_PORT)
}

/// The fabric configuration after all overrides.
pub fn resolve(file: FileConfig, overrides: &Overrides) -> Result<FabricConfig> {
    let listen = if overrides.listen.is_empty() {
        &file.listen
    } else {
        &overrides.listen
    };
    let mut bootstrap = file.bootstrap.clone();
    bootstrap.extend(overrides.bootstrap.iter().cloned());
    in_range("inbox_capacity", file.inbox_capacity as u64, 1, 1_000_000)?;
    in_range(
        "handshake_timeout_secs",
        file.handshake_timeout_secs,
        1,
        300,
    )?;
    in_range(
        "max_connections",
        u64::from(file.max_connections),
        1,
        65_536,
    )?;
    let mut fabric = FabricConfig {
        listen: parse_addrs("listen", listen)?,
        bootstrap: parse_addrs("bootstrap", &bootstrap)?,
        mdns: file.mdns && !overrides.no_mdns,
        inbox_capacity: file.inbox_capacity,
        handshake_timeout: Duration::from_secs(file.handshake_timeout_secs),
        ..FabricConfig::default()
    };
    fabric.limits.max_established = file.max_connections;
    Ok(fabric)
}

/// A value out of its range is an error that says the range, never
/// silently moved into it.
fn in_range(key: &str, value: u64, min: u64, max: u64) -> Result<()> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(NodeError::Invalid(format!(
        "{key} = {value} is out of range; use {min} to {max}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_line() {
        let err = parse("mdns = true\nlisten = 5\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        let err = parse("mdns = true\n\nlistne = []\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("listne"), "{err}");
    }

    #[test]
    fn metrics_listen_is_loopback_unless_allowed() {
        assert_eq!(parse("").unwrap().metrics_address().unwrap(), None);
        let local = parse("metrics_listen = \"127.0.0.1:9410\"\n").unwrap();
        assert_eq!(local.metrics_address().unwrap().unwrap().port(), 9410);
        let wide = parse("metrics_listen = \"0.0.0.0:9410\"\n").unwrap();
        let err = wide.metrics_address().unwrap_err().to_string();
        assert!(err.contains("metrics_listen_remote"), "{err}");
        let allowed =
            parse("metrics_listen = \"0.0.0.0:9410\"\nmetrics_listen_remote = true\n").unwrap();
        assert!(allowed.metrics_address().unwrap().is_some());
        let junk = parse("metrics_listen = \"localhost\"\n").unwrap();
        assert!(junk.metrics_address().is_err());
    }

    #[test]
    fn a2a_is_off_by_default_and_loopback_unless_allowed() {
        assert_eq!(parse("").unwrap().a2a.address().unwrap(), None);
        let token = "tokens = [{ name = \"ci\", token_file = \"a2a.token\", ring = 2 }]\n";
        let local = parse(&format!("[a2a]\nlisten = \"127.0.0.1:9411\"\n{token}")).unwrap();
        assert_eq!(local.a2a.address().unwrap().unwrap().port(), 9411);
        let wide = parse(&format!("[a2a]\nlisten = \"0.0.0.0:9411\"\n{token}")).unwrap();
        let err = wide.a2a.address().unwrap_err().to_string();
        assert!(err.contains("listen_remote"), "{err}");
        let allowed = parse(&format!(
            "[a2a]\nlisten = \"0.0.0.0:9411\"\nlisten_remote = true\n{token}"
        ))
        .unwrap();
        assert!(allowed.a2a.address().unwrap().is_some());
        let tokenless = parse("[a2a]\nlisten = \"127.0.0.1:9411\"\n").unwrap();
        assert!(tokenless.a2a.address().is_err());
    }

    #[test]
    fn flags_override_the_file() {
        let file = parse("listen = [\"/ip4/127.0.0.1/tcp/1\"]\nmdns = true\n").unwrap();
        let overrides = Overrides {
            listen: vec!["/ip4/127.0.0.1/tcp/2".into()],
            bootstrap: vec!["/ip4/127.0.0.1/tcp/3".into()],
            no_mdns: true,
        };
        let fabric = resolve(file, &overrides).unwrap();
        assert_eq!(fabric.listen[0].to_string(), "/ip4/127.0.0.1/tcp/2");
        assert_eq!(fabric.bootstrap.len(), 1);
        assert!(!fabric.mdns);
    }

    #[test]
    fn values_out_of_range_are_errors_not_clamped() {
        for (text, key) in [
            ("inbox_capacity = 0\n", "inbox_capacity"),
            ("handshake_timeout_secs = 0\n", "handshake_timeout_secs"),
            ("handshake_timeout_secs = 301\n", "handshake_timeout_secs"),
            ("max_connections = 0\n", "max_connections"),
        ] {
            let file = parse(text).unwrap();
            let err = resolve(file, &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(key) && err.contains("out of range"), "{err}");
        }
        let ok = parse("inbox_capacity = 1\nmax_connections = 1\n").unwrap();
        assert!(resolve(ok, &Overrides::default()).is_ok());
    }

    #[test]
    fn bad_addresses_are_clear_errors() {
        let overrides = Overrides {
            bootstrap: vec!["localhost:4001".into()],
            ..Default::default()
        };
        let err = resolve(FileConfig::default(), &overrides)
            .unwrap_err()
            .to_string();
        assert!(err.contains("localhost:4001"), "{err}");
    }
}
