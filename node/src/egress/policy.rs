//! What the proxy lets through: the allowlist match on the name the agent
//! asked for, then a check of every address that name resolves to. The
//! addresses checked are the ones connected to, so a name cannot resolve
//! to one address for the check and another for the connection.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use osmoda_agentd::AllowEntry;

/// Most addresses of one name tried: a resolver answer is outside input.
const MAX_ADDRS: usize = 16;

/// Why the proxy did not relay a connection. Each is one HTTP status
/// ([`Refusal::status`]) and a short text the agent reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("no complete request head within {0} s")]
    HeadTimeout(u64),
    #[error("this node is locked down: every connection is refused")]
    LockedDown,
    #[error("{0} is not in this agent's allowlist")]
    NotAllowed(String),
    #[error("address refused: {target} resolves to {ip}, a {why} address; only an entry naming {ip} itself reaches it")]
    AddressRefused {
        target: String,
        ip: IpAddr,
        why: &'static str,
    },
    #[error("too many connections: at most {0} at once per agent")]
    TooMany(usize),
    #[error("cannot resolve {0}")]
    Unresolved(String),
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    #[error("upstream timeout: no connection within {0} s")]
    Timeout(u64),
}

impl Refusal {
    /// The HTTP status answered, with its reason phrase.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Refusal::BadRequest(_) => (400, "Bad Request"),
            Refusal::HeadTimeout(_) => (408, "Request Timeout"),
            Refusal::LockedDown | Refusal::NotAllowed(_) | Refusal::AddressRefused { .. } => {
                (403, "Forbidden")
            }
            Refusal::TooMany(_) => (429, "Too Many Requests"),
            Refusal::Unresolved(_) | Refusal::Unreachable(_) => (502, "Bad Gateway"),
            Refusal::Timeout(_) => (504, "Gateway Timeout"),
        }
    }

    /// Whether policy refused (audited as `denied`) rather than something
    /// failing (audited as `failed: REASON`), as the service maps its
    /// Forbidden/Denied errors.
    pub fn is_policy(&self) -> bool {
        self.status().0 == 403
    }
}

/// The address as the proxy judges and dials it: an IPv4-mapped IPv6
/// address is its IPv4 address, so `::ffff:127.0.0.1` is loopback.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Why `ip` (canonical) may only be reached by an entry naming it, or None.
pub fn forbidden(ip: IpAddr, own: &HashSet<IpAddr>) -> Option<&'static str> {
    let why = match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    };
    why.or_else(|| own.contains(&ip).then_some("node's own"))
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || ip.octets()[0] == 0 {
        // 0.0.0.0/8 is "this host" to the kernel: loopback in disguise.
        Some("unspecified")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_multicast() || ip.is_broadcast() {
        Some("multicast")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.segments()[0] & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

/// The entries of `allow` that admit `host:port`; empty means refused.
pub fn matching(allow: &[AllowEntry], host: &str, port: u16) -> Vec<AllowEntry> {
    allow
        .iter()
        .filter(|e| e.matches(host, port))
        .cloned()
        .collect()
}

/// Resolves `host` once (unless `pinned` already says what it is) and
/// checks every address against `matched` (the entries that admitted the
/// name) and the node's own addresses. Any forbidden address refuses the
/// whole name: a resolver may order its answers, and a later attempt must
/// not land on a refused one.
pub async fn resolve_checked(
    host: &str,
    port: u16,
    matched: &[AllowEntry],
    own: &HashSet<IpAddr>,
    within: Duration,
    pinned: Option<Vec<IpAddr>>,
) -> Result<Vec<SocketAddr>, Refusal> {
    let target = format!("{host}:{port}");
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let found: Vec<IpAddr> = if let Ok(ip) = literal.parse::<IpAddr>() {
        vec![ip]
    } else if let Some(ips) = pinned {
        ips.into_iter().take(MAX_ADDRS).collect()
    } else {
        match tokio::time::timeout(within, tokio::net::lookup_host((host, port))).await {
            Err(_) => return Err(Refusal::Timeout(within.as_secs())),
            Ok(Err(_)) => return Err(Refusal::Unresolved(target)),
            Ok(Ok(addrs)) => addrs.take(MAX_ADDRS).map(|a| a.ip()).collect(),
        }
    };
    check(&target, found, port, matched, own)
}

fn check(
    target: &str,
    found: Vec<IpAddr>,
    port: u16,
    matched: &[AllowEntry],
    own: &HashSet<IpAddr>,
) -> Result<Vec<SocketAddr>, Refusal> {
    if found.is_empty() {
        return Err(Refusal::Unresolved(target.into()));
    }
    let mut out = Vec::with_capacity(found.len());
    for raw in found {
        let ip = canonical(raw);
        if let Some(why) = forbidden(ip, own) {
            if !matched.iter().any(|e| e.names_ip(ip) || e.names_ip(raw)) {
                return Err(Refusal::AddressRefused {
                    target: target.into(),
                    ip,
                    why,
                });
            }
        }
        let addr = SocketAddr::new(ip, port);
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    Ok(out)
}
