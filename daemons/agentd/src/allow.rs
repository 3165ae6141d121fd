//! Egress allowlist entries: `HOST:PORT`, where HOST is a DNS name, a
//! `*.suffix` wildcard or an IP literal (`[v6]` for IPv6) and PORT a number
//! or `*`. Only the parser and the match live here; the node's egress proxy
//! applies them.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Most allowlist entries one agent may carry.
pub const MAX_ALLOW: usize = 64;
/// Longest host name in an entry (DNS's limit).
const MAX_HOST_LEN: usize = 253;

/// The host part of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AllowHost {
    /// Exactly this name (lowercase, no trailing dot).
    Name(String),
    /// Any name ending in `.suffix` (not `suffix` itself).
    Suffix(String),
    /// This address, named literally: the only way to reach a loopback,
    /// link-local or the node's own address.
    Ip(IpAddr),
}

/// One parsed entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AllowEntry {
    pub host: AllowHost,
    /// None means any port.
    pub port: Option<u16>,
}

/// An entry that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("allowlist entry {entry:?} is not HOST:PORT (HOST a name, *.suffix or an IP, [v6] for IPv6; PORT a number or *): {why}")]
pub struct AllowError {
    pub entry: String,
    pub why: &'static str,
}

impl AllowEntry {
    /// Whether a connection to `host:port` (a name as the client asked for
    /// it, or an IP literal) matches this entry.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match &self.host {
            AllowHost::Name(name) => *name == host,
            AllowHost::Suffix(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            AllowHost::Ip(ip) => host.parse::<IpAddr>().is_ok_and(|h| h == *ip),
        }
    }

    /// Whether the entry names `ip` literally.
    pub fn names_ip(&self, ip: IpAddr) -> bool {
        matches!(self.host, AllowHost::Ip(own) if own == ip)
    }
}

impl FromStr for AllowEntry {
    type Err = AllowError;

    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let fail = |why| AllowError {
            entry: entry.chars().take(300).collect(),
            why,
        };
        let (host, port) = entry.rsplit_once(':').ok_or_else(|| fail("no ':PORT'"))?;
        let port = match port {
            "*" => None,
            digits => match digits.parse::<u16>() {
                Ok(0) | Err(_) => return Err(fail("the port is not 1-65535 or *")),
                Ok(p) => Some(p),
            },
        };
        let host = if let Some(inner) = host.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or_else(|| fail("'[' without ']'"))?;
            match inner.parse::<IpAddr>() {
                Ok(ip @ IpAddr::V6(_)) => AllowHost::Ip(ip),
                _ => return Err(fail("brackets hold an IPv6 address only")),
            }
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            if ip.is_ipv6() {
                return Err(fail("write an IPv6 address in brackets: [::1]:443"));
            }
            AllowHost::Ip(ip)
        } else if let Some(suffix) = host.strip_prefix("*.") {
            AllowHost::Suffix(check_name(suffix).map_err(fail)?)
        } else {
            AllowHost::Name(check_name(host).map_err(fail)?)
        };
        Ok(Self { host, port })
    }
}

/// A DNS name as entries keep it: lowercase, labels of `a-z 0-9 -` (and
/// `_`, seen in service names), no empty label.
fn check_name(name: &str) -> Result<String, &'static str> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() || name.len() > MAX_HOST_LEN {
        return Err("the host is empty or longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("a label of the host is empty or longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("the host has a character other than a-z, 0-9, '-', '_' and '.'");
        }
    }
    Ok(name)
}

impl fmt::Display for AllowEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            AllowHost::Name(name) => f.write_str(name)?,
            AllowHost::Suffix(suffix) => write!(f, "*.{suffix}")?,
            AllowHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            AllowHost::Ip(ip) => write!(f, "{ip}")?,
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => f.write_str(":*"),
        }
    }
}

impl Serialize for AllowEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AllowEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(s: &str) -> AllowEntry {
        s.parse().unwrap()
    }

    #[test]
    fn entries_parse_and_print_back() {
        for s in [
            "api.example.org:443",
            "*.example.org:*",
            "10.0.0.1:8080",
            "[::1]:443",
        ] {
            assert_eq!(entry(s).to_string(), s);
        }
        assert_eq!(
            entry("API.Example.org.:443").to_string(),
            "api.example.org:443"
        );
    }

    #[test]
    fn bad_entries_are_refused_with_a_reason() {
        for s in [
            "example.org",
            "example.org:0",
            "example.org:70000",
            ":443",
            "exa mple.org:443",
            "::1:443",
            "[example.org]:443",
            "a..b:443",
            "*.:443",
        ] {
            assert!(s.parse::<AllowEntry>().is_err(), "{s} parsed");
        }
    }

    #[test]
    fn matching_follows_host_and_port() {
        let exact = entry("api.example.org:443");
        assert!(exact.matches("API.example.org", 443));
        assert!(!exact.matches("api.example.org", 80));
        assert!(!exact.matches("evil-api.example.org", 443));
        let wild = entry("*.example.org:*");
        assert!(wild.matches("a.example.org", 1));
        assert!(wild.matches("a.b.example.org", 2));
        assert!(!wild.matches("example.org", 443));
        assert!(!wild.matches("badexample.org", 443));
        let ip = entry("127.0.0.1:8080");
        assert!(ip.matches("127.0.0.1", 8080));
        assert!(!ip.matches("localhost", 8080));
        assert!(ip.names_ip("127.0.0.1".parse().unwrap()));
        assert!(entry("[::1]:80").matches("[::1]", 80));
    }
}
