//! `config.toml`'s `labels` and `[[agents]]`: what an operator (or the
//! NixOS module) declares in the file rather than through the CLI.

use std::collections::BTreeMap;
use std::path::PathBuf;

use osmoda_agentd::{AgentSpec, AllowEntry, Limits, RestartPolicy};
use serde::{Deserialize, Serialize};

use crate::api::CardEdit;
use crate::error::{NodeError, NodeResult as Result};

/// Labels are shown by `osmoda status` and kept small, so a status answer
/// stays small whatever the file says.
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_KEY: usize = 63;
pub const MAX_LABEL_VALUE: usize = 256;

/// Checks `labels`: keys in the character set of agent names plus `.` and
/// `/` (so `site/zone` style keys work), values printable.
pub fn check_labels(labels: &BTreeMap<String, String>) -> Result<()> {
    if labels.len() > MAX_LABELS {
        return Err(NodeError::Invalid(format!(
            "labels: {} entries, at most {MAX_LABELS}",
            labels.len()
        )));
    }
    for (key, value) in labels {
        let key_ok = !key.is_empty()
            && key.len() <= MAX_LABEL_KEY
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_./".contains(&b));
        if !key_ok {
            return Err(NodeError::Invalid(format!(
                "label key {key:?}: use 1 to {MAX_LABEL_KEY} characters of a-z 0-9 - _ . /"
            )));
        }
        // Printed in status and later in other members' views: no control
        // characters that could rewrite a terminal.
        if value.len() > MAX_LABEL_VALUE || value.chars().any(char::is_control) {
            return Err(NodeError::Invalid(format!(
                "label {key:?}: the value must be at most {MAX_LABEL_VALUE} bytes without control characters"
            )));
        }
    }
    Ok(())
}

/// One `[[agents]]` entry: the same fields as `osmoda agent add`'s flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigAgent {
    pub name: String,
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default = "ring_two")]
    pub ring: u8,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// A size such as "256M" or "1G".
    #[serde(default)]
    pub memory: Option<String>,
    /// Percent of one core.
    #[serde(default)]
    pub cpu: Option<u32>,
    #[serde(default)]
    pub processes: Option<u32>,
    #[serde(default)]
    pub allow: Vec<AllowEntry>,
    #[serde(default)]
    pub ro: Vec<PathBuf>,
    #[serde(default)]
    pub rw: Vec<PathBuf>,
    #[serde(default)]
    pub unconfined: bool,
    /// The agent's card, as `agent add`/`agent edit` set it; what is not
    /// given is left as it is.
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub skills: Option<Vec<String>>,
    #[serde(default)]
    pub accept_rings: Option<Vec<u8>>,
}

fn ring_two() -> u8 {
    2
}

impl ConfigAgent {
    /// The spec the node stores, checked as `agent add` checks it.
    pub fn spec(&self) -> Result<AgentSpec> {
        let memory_bytes = match &self.memory {
            Some(m) => Some(osmoda_agentd::parse_size(m).map_err(|e| {
                NodeError::Invalid(format!("agent {:?}: memory {m:?}: {e}", self.name))
            })?),
            None => None,
        };
        // The CLI resolves relative paths from where it runs; a file has no
        // such place, so its paths must be absolute already.
        for path in self.ro.iter().chain(&self.rw) {
            if !path.is_absolute() {
                return Err(NodeError::Invalid(format!(
                    "agent {:?}: {} is not an absolute path",
                    self.name,
                    path.display()
                )));
            }
        }
        let spec = AgentSpec {
            name: self.name.clone(),
            command: self.command.clone(),
            args: self.args.clone(),
            env: self.env.clone(),
            ring: self.ring,
            restart: self.restart,
            limits: Limits {
                memory_bytes,
                cpu_percent: self.cpu,
                max_processes: self.processes,
            },
            created_by: String::new(),
            allow: self.allow.clone(),
            ro: self.ro.clone(),
            rw: self.rw.clone(),
            unconfined: self.unconfined,
        };
        spec.validate()
            .map_err(|e| NodeError::Invalid(format!("agent {:?}: {e}", self.name)))?;
        Ok(spec)
    }
}

/// Every `[[agents]]` entry as a spec; a name given twice is an error.
pub fn specs(agents: &[ConfigAgent]) -> Result<Vec<(AgentSpec, CardEdit)>> {
    let mut seen = std::collections::BTreeSet::new();
    agents
        .iter()
        .map(|agent| {
            if !seen.insert(agent.name.as_str()) {
                return Err(NodeError::Invalid(format!(
                    "agent {:?} is declared twice in [[agents]]",
                    agent.name
                )));
            }
            let card = CardEdit {
                description: agent.description.clone(),
                skills: agent.skills.clone(),
                accept_rings: agent.accept_rings.clone(),
            };
            Ok((agent.spec()?, card))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_checked() {
        let ok: BTreeMap<String, String> = [("site".to_string(), "plant 3".to_string())].into();
        assert!(check_labels(&ok).is_ok());
        for (k, v) in [
            ("", "x"),
            ("Site", "x"),
            ("a b", "x"),
            ("site", "a\u{1b}[2J"),
        ] {
            let bad: BTreeMap<String, String> = [(k.to_string(), v.to_string())].into();
            assert!(check_labels(&bad).is_err(), "{k:?}={v:?}");
        }
    }

    #[test]
    fn agents_become_checked_specs() {
        let err = crate::config::parse(
            "[[agents]]\nname = \"a\"\ncommand = \"sleep\"\n\
             [[agents]]\nname = \"a\"\ncommand = \"true\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("twice"), "{err}");
        let file = crate::config::parse(
            "[[agents]]\nname = \"a\"\ncommand = \"sleep\"\nargs = [\"9\"]\nmemory = \"64M\"\n",
        )
        .unwrap();
        let spec = file.agents[0].spec().unwrap();
        assert_eq!(spec.limits.memory_bytes, Some(64 << 20));
        let err =
            crate::config::parse("[[agents]]\nname = \"b\"\ncommand = \"true\"\nro = [\"etc\"]\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("absolute"), "{err}");
        assert!(
            crate::config::parse("[[agents]]\nname = \"c\"\ncommand = \"x\"\nbogus = 1\n").is_err()
        );
    }
}
