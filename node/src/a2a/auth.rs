//! The A2A front's clients: bearer tokens read from files at start, each
//! mapped to a name and a ring. Only the tokens' BLAKE3 hashes are kept;
//! a presented token is hashed and compared with every one of them, in
//! constant time (`blake3::Hash`'s equality), so neither a match's
//! place nor a near miss shows in the time an answer takes.

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::{error_response, locked_down, Front};
use crate::config::A2aConfig;
use crate::error::{NodeError, NodeResult};
use crate::service::RemoteClient;

/// Tokens one node accepts; the configuration is read whole at start.
const MAX_CLIENTS: usize = 64;
/// Shortest token: guessing one must be out of reach.
const MIN_TOKEN: usize = 16;
/// Longest token file read.
const MAX_TOKEN: usize = 4096;
/// Longest client name: `a2a:NAME` stays a valid audit actor.
const MAX_CLIENT_NAME: usize = 32;

pub struct Clients {
    known: Vec<(blake3::Hash, RemoteClient)>,
}

impl Clients {
    /// Reads every `token_file` (relative paths: in `data`); a missing,
    /// short or shared token, or a bad name or ring, stops the start.
    pub fn load(config: &A2aConfig, data: &Path) -> NodeResult<Self> {
        if config.tokens.len() > MAX_CLIENTS {
            return Err(NodeError::Invalid(format!(
                "[a2a] tokens lists at most {MAX_CLIENTS} clients"
            )));
        }
        let mut known: Vec<(blake3::Hash, RemoteClient)> = Vec::new();
        for entry in &config.tokens {
            let name = &entry.name;
            if name.len() > MAX_CLIENT_NAME || osmoda_agentd::validate_name(name).is_err() {
                return Err(NodeError::Invalid(format!(
                    "[a2a] token name {name:?}: 1 to {MAX_CLIENT_NAME} of a-z, 0-9, - and _"
                )));
            }
            if !(1..=2).contains(&entry.ring) {
                return Err(NodeError::Invalid(format!(
                    "[a2a] token {name:?}: ring {} is not 1 or 2 (ring 0 is the operator's)",
                    entry.ring
                )));
            }
            let path = data.join(&entry.token_file);
            let token = read_token(&path).map_err(|why| {
                NodeError::Invalid(format!("[a2a] token {name:?} ({}): {why}", path.display()))
            })?;
            let hash = blake3::hash(token.as_bytes());
            let label = format!("a2a:{name}");
            if known.iter().any(|(h, c)| *h == hash || c.label == label) {
                return Err(NodeError::Invalid(format!(
                    "[a2a] token {name:?}: its name or its token is another entry's too"
                )));
            }
            known.push((
                hash,
                RemoteClient {
                    label,
                    ring: entry.ring,
                },
            ));
        }
        Ok(Self { known })
    }

    /// The client whose token this is. Every entry is compared, so the
    /// time taken does not depend on which one matches.
    fn find(&self, token: &str) -> Option<&RemoteClient> {
        let hash = blake3::hash(token.as_bytes());
        let mut found = None;
        for (known, client) in &self.known {
            if *known == hash {
                found = Some(client);
            }
        }
        found
    }
}

fn read_token(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > MAX_TOKEN as u64 {
        return Err(format!("over {MAX_TOKEN} bytes"));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let token = text.trim();
    if token.len() < MIN_TOKEN || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "a token is one word of at least {MIN_TOKEN} characters"
        ));
    }
    Ok(token.to_owned())
}

/// Lets a request through only with a known token, carrying its client.
pub(super) async fn require_token(
    State(front): State<Front>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(client) = token.and_then(|t| front.clients.find(t)).cloned() else {
        let mut answer = error_response(
            StatusCode::UNAUTHORIZED,
            "a known bearer token is required (Authorization: Bearer TOKEN)",
        );
        answer
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return answer;
    };
    if front.locked() {
        return locked_down();
    }
    request.extensions_mut().insert(client);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::A2aToken;

    fn config(entries: &[(&str, &str, u8)]) -> A2aConfig {
        A2aConfig {
            listen: Some("127.0.0.1:0".into()),
            listen_remote: false,
            tokens: entries
                .iter()
                .map(|(name, file, ring)| A2aToken {
                    name: (*name).into(),
                    token_file: (*file).into(),
                    ring: *ring,
                })
                .collect(),
        }
    }

    #[test]
    fn tokens_map_to_their_client_and_bad_entries_stop_the_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "0123456789abcdef-a\n").unwrap();
        std::fs::write(dir.path().join("b"), "0123456789abcdef-b").unwrap();
        std::fs::write(dir.path().join("short"), "abc").unwrap();
        let clients =
            Clients::load(&config(&[("ci", "a", 1), ("web", "b", 2)]), dir.path()).unwrap();
        assert_eq!(clients.find("0123456789abcdef-a").unwrap().label, "a2a:ci");
        assert_eq!(clients.find("0123456789abcdef-b").unwrap().ring, 2);
        assert!(clients.find("0123456789abcdef-c").is_none());
        assert!(clients.find("").is_none());
        for bad in [
            config(&[("ci", "short", 1)]),
            config(&[("ci", "missing", 1)]),
            config(&[("ci", "a", 0)]),
            config(&[("ci", "a", 3)]),
            config(&[("Bad Name", "a", 1)]),
            config(&[("ci", "a", 1), ("other", "a", 1)]),
            config(&[("ci", "a", 1), ("ci", "b", 1)]),
        ] {
            assert!(Clients::load(&bad, dir.path()).is_err(), "{bad:?}");
        }
    }
}
