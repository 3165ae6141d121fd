//! What an agent is: [`AgentSpec`], its checks, and the size parser the CLI
//! uses for `--memory 256M`.
//!
//! A spec is plain data the node stores and replicates; nothing here starts a
//! process. [`AgentSpec::validate`] is the one gate: the supervisor refuses a
//! spec that does not pass it, and the name check is also what keeps an
//! agent's folders inside the supervisor's base folder.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::allow::{AllowEntry, MAX_ALLOW};

/// Longest agent name; names become folder and cgroup names.
pub const MAX_NAME_LEN: usize = 64;
/// Most arguments a spec may carry.
pub const MAX_ARGS: usize = 256;
/// Most environment variables a spec may carry.
pub const MAX_ENV: usize = 256;
/// Longest single argument, environment value or command (64 KiB): enough
/// for an inline script, small enough to keep a spec a small record.
pub const MAX_STRING_LEN: usize = 64 * 1024;
/// Longest environment variable name.
pub const MAX_ENV_KEY_LEN: usize = 256;
/// Longest `created_by`.
pub const MAX_CREATED_BY_LEN: usize = 256;
/// Smallest memory limit: below this not even a shell starts, so a smaller
/// value is a typo (bytes instead of megabytes), not a wish.
pub const MIN_MEMORY_BYTES: u64 = 4 * 1024 * 1024;
/// Largest CPU limit in percent of one core (1,024 cores).
pub const MAX_CPU_PERCENT: u32 = 100 * 1024;
/// Most host paths (`ro` and `rw` together) an agent may see beyond its
/// workspace.
pub const MAX_PATHS: usize = 32;
/// Longest host path.
pub const MAX_PATH_LEN: usize = 4096;

/// Everything needed to run one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// 1 to 64 characters of `a-z 0-9 - _`, starting with a letter or digit.
    pub name: String,
    /// The program; a bare name is looked up in `PATH`.
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Set on top of the small base environment (see the supervisor docs).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Privilege ring: 1 (trusted) or 2 (default). The node decides what a
    /// ring may do; the supervisor only carries it.
    #[serde(default = "default_ring")]
    pub ring: u8,
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default)]
    pub limits: Limits,
    /// Who asked for this agent (an actor id for the audit log).
    #[serde(default)]
    pub created_by: String,
    /// Where the agent may connect through the node's egress proxy; it has
    /// no other way out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<AllowEntry>,
    /// Host paths the agent sees read-only, at the same place, beyond the
    /// system (which it sees read-only anyway) and its workspace: for paths
    /// under folders a confined agent does not see (`/tmp`, `/home`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ro: Vec<PathBuf>,
    /// Host paths the agent may write, at the same place.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rw: Vec<PathBuf>,
    /// Run without the confinement (own user, namespaces, seccomp,
    /// Landlock) where the host cannot provide it. Only an operator sets
    /// it, explicitly, and the node audits it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unconfined: bool,
}

fn default_ring() -> u8 {
    2
}

/// When a process that ended is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// After any exit, clean or not.
    Always,
    /// After a non-zero exit code or a signal; a clean exit (code 0) is done.
    #[default]
    OnFailure,
    /// Never; the agent stays down after its first exit.
    Never,
}

/// Resource limits. How they are enforced depends on the host, see
/// [`crate::LimitMode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Memory in bytes: `memory.max` (and no swap) under cgroup v2,
    /// `memory.limit_in_bytes` (and `memory.memsw.limit_in_bytes` to the
    /// same value, so no swap, where the kernel accounts swap) under cgroup
    /// v1, the address space (`RLIMIT_AS`) under rlimits.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// CPU time in percent of one core (100 = one core, 250 = two and a
    /// half), as a quota per 100 ms period. Enforced under cgroup v2
    /// (`cpu.max`) and cgroup v1 (`cpu.cfs_quota_us`, when the cpu
    /// hierarchy is mounted); not under rlimits.
    #[serde(default)]
    pub cpu_percent: Option<u32>,
    /// Processes and threads: `pids.max` under cgroup v2 and v1,
    /// `RLIMIT_NPROC` under rlimits (which counts per user and does not
    /// bind root).
    #[serde(default)]
    pub max_processes: Option<u32>,
}

/// Why a spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    #[error("agent name is empty")]
    NameEmpty,
    #[error("agent name is {len} characters long; the limit is {MAX_NAME_LEN}")]
    NameTooLong { len: usize },
    #[error("agent name {name:?} contains {ch:?}; use only a-z, 0-9, '-' and '_'")]
    NameCharacter { name: String, ch: char },
    #[error("agent name {name:?} must start with a letter or a digit")]
    NameStart { name: String },
    #[error("command is empty")]
    CommandEmpty,
    #[error("{field} contains a NUL byte")]
    Nul { field: String },
    #[error("{field} is {len} bytes long; the limit is {MAX_STRING_LEN}")]
    TooLong { field: String, len: usize },
    #[error("{count} arguments; the limit is {MAX_ARGS}")]
    TooManyArgs { count: usize },
    #[error("{count} environment variables; the limit is {MAX_ENV}")]
    TooManyEnv { count: usize },
    #[error("environment variable name {key:?} is empty, contains '=' or NUL, or is over {MAX_ENV_KEY_LEN} bytes")]
    EnvKey { key: String },
    #[error("ring {ring} does not exist; use 1 or 2")]
    Ring { ring: u8 },
    #[error("memory limit of {bytes} bytes is below the minimum of {MIN_MEMORY_BYTES} bytes (4M)")]
    MemoryTooSmall { bytes: u64 },
    #[error(
        "cpu limit of {percent}% is out of range; use 1 to {MAX_CPU_PERCENT} (100 = one core)"
    )]
    CpuPercent { percent: u32 },
    #[error("process limit of 0 would not let the agent itself start")]
    MaxProcessesZero,
    #[error("created_by is {len} bytes long; the limit is {MAX_CREATED_BY_LEN}")]
    CreatedByTooLong { len: usize },
    #[error("{count} allowlist entries; the limit is {MAX_ALLOW}")]
    TooManyAllow { count: usize },
    #[error("{count} host paths; the limit is {MAX_PATHS}")]
    TooManyPaths { count: usize },
    #[error("host path {path:?} must be absolute, without '.' or '..', NUL, or over {MAX_PATH_LEN} bytes")]
    Path { path: String },
}

impl AgentSpec {
    /// A spec with defaults for everything but the name and the command.
    pub fn new(name: impl Into<String>, command: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            command: command.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            ring: default_ring(),
            restart: RestartPolicy::default(),
            limits: Limits::default(),
            created_by: String::new(),
            allow: Vec::new(),
            ro: Vec::new(),
            rw: Vec::new(),
            unconfined: false,
        }
    }

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), SpecError> {
        validate_name(&self.name)?;
        if self.command.is_empty() {
            return Err(SpecError::CommandEmpty);
        }
        check_string("command", &self.command)?;
        if self.args.len() > MAX_ARGS {
            return Err(SpecError::TooManyArgs {
                count: self.args.len(),
            });
        }
        for (index, arg) in self.args.iter().enumerate() {
            check_string(&format!("argument {index}"), arg)?;
        }
        if self.env.len() > MAX_ENV {
            return Err(SpecError::TooManyEnv {
                count: self.env.len(),
            });
        }
        for (key, value) in &self.env {
            validate_env_key(key)?;
            check_string(&format!("environment variable {key}"), value)?;
        }
        if !matches!(self.ring, 1 | 2) {
            return Err(SpecError::Ring { ring: self.ring });
        }
        self.limits.validate()?;
        if self.created_by.len() > MAX_CREATED_BY_LEN {
            return Err(SpecError::CreatedByTooLong {
                len: self.created_by.len(),
            });
        }
        if self.allow.len() > MAX_ALLOW {
            return Err(SpecError::TooManyAllow {
                count: self.allow.len(),
            });
        }
        if self.ro.len() + self.rw.len() > MAX_PATHS {
            return Err(SpecError::TooManyPaths {
                count: self.ro.len() + self.rw.len(),
            });
        }
        for path in self.ro.iter().chain(&self.rw) {
            validate_host_path(path)?;
        }
        Ok(())
    }
}

impl Limits {
    /// Checks that each limit set is one a process can live with.
    pub fn validate(&self) -> Result<(), SpecError> {
        if let Some(bytes) = self.memory_bytes {
            if bytes < MIN_MEMORY_BYTES {
                return Err(SpecError::MemoryTooSmall { bytes });
            }
        }
        if let Some(percent) = self.cpu_percent {
            if percent == 0 || percent > MAX_CPU_PERCENT {
                return Err(SpecError::CpuPercent { percent });
            }
        }
        if self.max_processes == Some(0) {
            return Err(SpecError::MaxProcessesZero);
        }
        Ok(())
    }

    /// True when no limit is set.
    pub fn is_empty(&self) -> bool {
        self.memory_bytes.is_none() && self.cpu_percent.is_none() && self.max_processes.is_none()
    }
}

/// Checks an agent name: 1–64 characters of `[a-z0-9-_]`, the first a letter
/// or a digit. Such a name is safe as a single path component (no `/`, no
/// `.`, no `..`) and as a cgroup name.
pub fn validate_name(name: &str) -> Result<(), SpecError> {
    let Some(first) = name.chars().next() else {
        return Err(SpecError::NameEmpty);
    };
    if name.len() > MAX_NAME_LEN {
        return Err(SpecError::NameTooLong { len: name.len() });
    }
    if let Some(ch) = name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-' | '_'))
    {
        return Err(SpecError::NameCharacter {
            name: name.to_owned(),
            ch,
        });
    }
    if !first.is_ascii_alphanumeric() {
        return Err(SpecError::NameStart {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Checks an environment variable name as `execve` needs it: not empty, no
/// `=` (it would split differently), no NUL, bounded.
pub fn validate_env_key(key: &str) -> Result<(), SpecError> {
    if key.is_empty() || key.len() > MAX_ENV_KEY_LEN || key.contains(['=', '\0']) {
        return Err(SpecError::EnvKey {
            key: key.to_owned(),
        });
    }
    Ok(())
}

/// A host path an agent sees: absolute and plain (no `.` or `..`, which
/// would let the same entry mean another place than it reads), no NUL.
pub fn validate_host_path(path: &std::path::Path) -> Result<(), SpecError> {
    let text = path.as_os_str().as_encoded_bytes();
    let plain = path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && !text.contains(&0)
        && text.len() <= MAX_PATH_LEN;
    if plain {
        Ok(())
    } else {
        Err(SpecError::Path {
            path: path.display().to_string(),
        })
    }
}

/// Strings reach `execve` as C strings: a NUL would cut them short.
fn check_string(field: &str, value: &str) -> Result<(), SpecError> {
    if value.contains('\0') {
        return Err(SpecError::Nul {
            field: field.to_owned(),
        });
    }
    if value.len() > MAX_STRING_LEN {
        return Err(SpecError::TooLong {
            field: field.to_owned(),
            len: value.len(),
        });
    }
    Ok(())
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "never",
        })
    }
}

/// A restart policy that is not `always`, `on-failure` or `never`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("restart policy {0:?} does not exist; use always, on-failure or never")]
pub struct RestartPolicyError(pub String);

impl FromStr for RestartPolicy {
    type Err = RestartPolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(RestartPolicy::Always),
            "on-failure" => Ok(RestartPolicy::OnFailure),
            "never" => Ok(RestartPolicy::Never),
            other => Err(RestartPolicyError(other.to_owned())),
        }
    }
}

/// A size the parser could not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SizeError {
    #[error("size {input:?} is not a number with an optional unit (K, M, G, T), e.g. 256M")]
    Invalid { input: String },
    #[error("size {input:?} is too large")]
    Overflow { input: String },
}

/// Reads a human size: a number (fractions allowed) and an optional binary
/// unit `K`, `M`, `G` or `T`, optionally followed by `B` or `iB`, any case:
/// `"4096"`, `"256M"`, `"1G"`, `"1.5GiB"`. Units are powers of 1,024, as for
/// memory limits everywhere else (docker, systemd). Fractions round down to
/// whole bytes.
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let invalid = || SizeError::Invalid {
        input: input.to_owned(),
    };
    let overflow = || SizeError::Overflow {
        input: input.to_owned(),
    };
    let text = input.trim();
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_end);
    let shift = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(invalid()),
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    if whole.is_empty() && fraction.is_empty() {
        return Err(invalid());
    }
    // Digits only from here (a second '.' lands in `fraction` and fails).
    if !fraction.bytes().all(|b| b.is_ascii_digit()) || fraction.len() > 9 {
        return Err(invalid());
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| overflow())?
    };
    if whole.leading_zeros() < shift {
        return Err(overflow());
    }
    let mut bytes = whole << shift;
    if !fraction.is_empty() {
        // fraction / 10^digits of a unit, in integers: at most 9 digits and
        // a unit of at most 2^40 keep the product under 2^70, so use u128.
        let digits = fraction.len() as u32;
        let numerator: u128 = fraction.parse().map_err(|_| invalid())?;
        let part = (numerator << shift) / 10u128.pow(digits);
        let part = u64::try_from(part).map_err(|_| overflow())?;
        bytes = bytes.checked_add(part).ok_or_else(overflow)?;
    }
    Ok(bytes)
}

/// Writes a size the way [`parse_size`] reads it, with the largest unit
/// that divides it exactly: `268435456` becomes `"256M"`, `1000` stays
/// `"1000"`.
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes != 0 && bytes.trailing_zeros() >= shift {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
