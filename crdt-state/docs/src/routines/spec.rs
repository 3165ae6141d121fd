//! The parts of a routine definition: when it runs (schedule), where
//! (target) and what (action), with their bounds and textual forms.

use std::fmt;

use croner::parser::CronParser;

use crate::error::RoutineError;
use crate::ids::{check_token, MAX_NODE_ID_BYTES};

/// Longest schedule text, in bytes.
pub const MAX_SCHEDULE_BYTES: usize = 128;
/// Longest interval: 31 days, in seconds.
pub const MAX_INTERVAL_SECS: u64 = 31 * 86_400;
/// Most nodes named by one target.
pub const MAX_TARGET_NODES: usize = 256;
/// Longest label key or value, in bytes.
pub const MAX_LABEL_BYTES: usize = 63;
/// Longest command, in bytes.
pub const MAX_COMMAND_BYTES: usize = 1024;
/// Most arguments.
pub const MAX_ARGS: usize = 64;
/// Longest argument, in bytes.
pub const MAX_ARG_BYTES: usize = 1024;
/// Longest timeout: one day.
pub const MAX_TIMEOUT_SECS: u32 = 86_400;

fn invalid(field: &'static str, reason: impl Into<String>) -> RoutineError {
    RoutineError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// When a routine runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// A cron expression (5 fields, or 6 with seconds first; `@daily` and
    /// friends), validated with `croner`. Kept as written, trimmed.
    Cron(String),
    /// `every N{s,m,h,d}`, kept in seconds.
    Every { secs: u64 },
}

impl Schedule {
    /// Parses `every 5m` style intervals and cron expressions. Errors name
    /// the problem (the cron parser's own message for cron expressions).
    pub fn parse(text: &str) -> Result<Self, RoutineError> {
        let bad = |reason: String| RoutineError::InvalidSchedule {
            schedule: text.to_owned(),
            reason,
        };
        if text.len() > MAX_SCHEDULE_BYTES {
            return Err(bad(format!("over {MAX_SCHEDULE_BYTES} bytes")));
        }
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(bad("empty".into()));
        }
        if let Some(rest) = trimmed.strip_prefix("every") {
            return parse_interval(rest.trim()).map_err(bad);
        }
        CronParser::new()
            .parse(trimmed)
            .map_err(|e| bad(format!("not a cron expression: {e}")))?;
        Ok(Self::Cron(trimmed.to_owned()))
    }
}

fn parse_interval(text: &str) -> Result<Schedule, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("interval {text:?} has no unit (s, m, h or d)"))?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("interval {text:?} does not start with a number"))?;
    let scale = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        other => {
            return Err(format!(
                "unknown interval unit {other:?} (use s, m, h or d)"
            ))
        }
    };
    let secs = n.saturating_mul(scale);
    if secs == 0 || secs > MAX_INTERVAL_SECS {
        return Err(format!("interval must be 1s to 31d, got {text:?}"));
    }
    Ok(Schedule::Every { secs })
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cron(expr) => f.write_str(expr),
            Self::Every { secs } if secs % 86_400 == 0 => write!(f, "every {}d", secs / 86_400),
            Self::Every { secs } if secs % 3_600 == 0 => write!(f, "every {}h", secs / 3_600),
            Self::Every { secs } if secs % 60 == 0 => write!(f, "every {}m", secs / 60),
            Self::Every { secs } => write!(f, "every {secs}s"),
        }
    }
}

/// Which nodes run a routine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    All,
    /// Named nodes, sorted and deduplicated.
    Nodes(Vec<String>),
    /// Nodes whose label `key` equals `value`.
    Label {
        key: String,
        value: String,
    },
}

impl Target {
    /// Parses `all`, `nodes:a,b,c` or `label:key=value`.
    pub fn parse(text: &str) -> Result<Self, RoutineError> {
        let text = text.trim();
        let target = if text == "all" {
            Self::All
        } else if let Some(list) = text.strip_prefix("nodes:") {
            Self::Nodes(list.split(',').map(|n| n.trim().to_owned()).collect())
        } else if let Some(sel) = text.strip_prefix("label:") {
            let (key, value) = sel
                .split_once('=')
                .ok_or_else(|| invalid("target", "a label selector is key=value"))?;
            Self::Label {
                key: key.trim().to_owned(),
                value: value.trim().to_owned(),
            }
        } else {
            return Err(invalid(
                "target",
                format!("{text:?} is not all, nodes:a,b or label:key=value"),
            ));
        };
        target.validated()
    }

    /// Checks bounds and normalises the node list.
    pub fn validated(self) -> Result<Self, RoutineError> {
        match self {
            Self::All => Ok(Self::All),
            Self::Nodes(mut nodes) => {
                for n in &nodes {
                    check_token("node id", n, MAX_NODE_ID_BYTES)
                        .map_err(|e| invalid("target", e.to_string()))?;
                }
                nodes.sort();
                nodes.dedup();
                if nodes.is_empty() || nodes.len() > MAX_TARGET_NODES {
                    return Err(invalid(
                        "target",
                        format!("name 1 to {MAX_TARGET_NODES} nodes, not {}", nodes.len()),
                    ));
                }
                Ok(Self::Nodes(nodes))
            }
            Self::Label { key, value } => {
                check_token("label key", &key, MAX_LABEL_BYTES)
                    .and_then(|()| check_token("label value", &value, MAX_LABEL_BYTES))
                    .map_err(|e| invalid("target", e.to_string()))?;
                Ok(Self::Label { key, value })
            }
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::Nodes(nodes) => write!(f, "nodes:{}", nodes.join(",")),
            Self::Label { key, value } => write!(f, "label:{key}={value}"),
        }
    }
}

/// What a routine runs: a command with arguments (no shell), and how long
/// it may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub command: String,
    pub args: Vec<String>,
    pub timeout_secs: u32,
}

impl Action {
    pub fn validate(&self) -> Result<(), RoutineError> {
        if self.command.trim().is_empty() {
            return Err(invalid("command", "empty"));
        }
        if self.command.len() > MAX_COMMAND_BYTES {
            return Err(RoutineError::TooLong {
                field: "command",
                len: self.command.len(),
                max: MAX_COMMAND_BYTES,
            });
        }
        if self.command.chars().any(char::is_control) {
            return Err(invalid("command", "contains a control character"));
        }
        if self.args.len() > MAX_ARGS {
            return Err(invalid(
                "args",
                format!("{} arguments, over {MAX_ARGS}", self.args.len()),
            ));
        }
        for arg in &self.args {
            if arg.len() > MAX_ARG_BYTES {
                return Err(RoutineError::TooLong {
                    field: "argument",
                    len: arg.len(),
                    max: MAX_ARG_BYTES,
                });
            }
            if arg.contains('\0') {
                return Err(invalid("args", "an argument contains NUL"));
            }
        }
        if self.timeout_secs == 0 || self.timeout_secs > MAX_TIMEOUT_SECS {
            return Err(invalid(
                "timeout",
                format!(
                    "must be 1 to {MAX_TIMEOUT_SECS} seconds, not {}",
                    self.timeout_secs
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse() {
        assert_eq!(
            Schedule::parse("every 5m").ok(),
            Some(Schedule::Every { secs: 300 })
        );
        assert_eq!(
            Schedule::parse(" every 90 s ").ok(),
            Some(Schedule::Every { secs: 90 })
        );
        assert_eq!(
            Schedule::parse("*/5 * * * *").ok(),
            Some(Schedule::Cron("*/5 * * * *".into()))
        );
        assert!(
            Schedule::parse("0 0 * * * *").is_ok(),
            "six fields, with seconds"
        );
        assert!(Schedule::parse("@daily").is_ok());
        assert_eq!(Schedule::Every { secs: 7200 }.to_string(), "every 2h");
        for bad in [
            "every 0s",
            "every 5",
            "every 5y",
            "every 32d",
            "",
            "every m",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn targets_parse_and_print() {
        for text in ["all", "nodes:a,b", "label:role=db"] {
            assert_eq!(Target::parse(text).expect(text).to_string(), text);
        }
        assert_eq!(
            Target::parse("nodes: b , a,b").ok(),
            Some(Target::Nodes(vec!["a".into(), "b".into()]))
        );
        for bad in ["some", "nodes:", "nodes:a b", "label:role", "label:=x"] {
            assert!(Target::parse(bad).is_err(), "{bad:?}");
        }
    }
}
