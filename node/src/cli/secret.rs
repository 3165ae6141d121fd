//! The command line for the agents' secrets. Values are read from standard
//! input, never from arguments (which `ps` and shell history show), and
//! never printed.

use std::io::{IsTerminal, Read};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use zeroize::Zeroizing;

use super::client::{segment, Client};
use super::out::say;
use super::render;
use crate::api::{NewSecret, Removed, RotateSecret, SecretAgent, SecretValue, SecretView};
use crate::state::vault::MAX_VALUE_BYTES;

#[derive(Subcommand)]
pub enum SecretCommand {
    /// Store a new secret, its value read from standard input.
    ///
    /// One trailing newline is dropped, an empty value refused:
    /// `printf %s "$TOKEN" | osmoda secret set NAME --agent A`.
    Set {
        /// The secret's name: a-z, 0-9, '-' and '_', at most 64.
        name: String,
        /// An agent that may read it (repeatable); more with `secret grant`.
        #[arg(long = "agent", value_name = "AGENT")]
        agents: Vec<String>,
    },
    /// Let an agent read a secret (at its next start, or with the `secret_get` tool).
    Grant {
        /// The secret's name.
        name: String,
        /// The agent's name.
        #[arg(long, value_name = "AGENT")]
        agent: String,
    },
    /// Stop an agent from reading a secret.
    ///
    /// A running agent keeps what it read: rotate the value too if it must
    /// not.
    Revoke {
        /// The secret's name.
        name: String,
        /// The agent's name.
        #[arg(long, value_name = "AGENT")]
        agent: String,
    },
    /// Replace a secret's value, read from standard input.
    ///
    /// Its version goes up by one; agents get the new value at their next
    /// start (or `secret_get`).
    Rotate {
        /// The secret's name.
        name: String,
    },
    /// List the secrets: names, versions, agents, times (never values).
    List,
    /// Delete a secret.
    Rm {
        /// The secret's name.
        name: String,
    },
}

/// A value from standard input: at most the vault's limit, UTF-8, one
/// trailing newline dropped, not empty. The buffer is sized up front so
/// that reading never leaves a copy behind in a freed allocation.
fn read_value() -> Result<SecretValue> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("type the value, then Ctrl-D");
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_VALUE_BYTES + 3));
    stdin
        .lock()
        .take(MAX_VALUE_BYTES as u64 + 2)
        .read_to_end(&mut bytes)
        .context("cannot read the value from standard input")?;
    let newline = if bytes.ends_with(b"\r\n") {
        2
    } else {
        usize::from(bytes.ends_with(b"\n"))
    };
    let len = bytes.len() - newline;
    bytes.truncate(len);
    if bytes.is_empty() {
        bail!("the value is empty: pipe it on standard input (`printf %s \"$VALUE\" | osmoda secret ...`)");
    }
    if bytes.len() > MAX_VALUE_BYTES {
        bail!("the value is over the limit of {MAX_VALUE_BYTES} bytes");
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        anyhow::anyhow!(
            "the value is not UTF-8 text; encode binary values first (base64, for example)"
        )
    })?;
    Ok(SecretValue::new(text.to_owned()))
}

pub async fn secret(client: &Client, json: bool, command: SecretCommand) -> Result<()> {
    let path = |name: &str, tail: &str| format!("/v1/secrets/{}{tail}", segment(name));
    let view: SecretView = match command {
        SecretCommand::Set { name, agents } => {
            let value = read_value()?;
            client
                .post(
                    "/v1/secrets",
                    &NewSecret {
                        name,
                        value,
                        agents,
                    },
                )
                .await?
        }
        SecretCommand::Grant { name, agent } => {
            client
                .post(&path(&name, "/grant"), &SecretAgent { agent })
                .await?
        }
        SecretCommand::Revoke { name, agent } => {
            client
                .post(&path(&name, "/revoke"), &SecretAgent { agent })
                .await?
        }
        SecretCommand::Rotate { name } => {
            let value = read_value()?;
            client
                .post(&path(&name, "/rotate"), &RotateSecret { value })
                .await?
        }
        SecretCommand::List => {
            let list: Vec<SecretView> = client.get("/v1/secrets").await?;
            render::either(json, &list, |l| render::secrets(l));
            return Ok(());
        }
        SecretCommand::Rm { name } => {
            let removed: Removed = client.delete(&path(&name, "")).await?;
            render::either(json, &removed, |r| say!("removed secret {}", r.removed));
            return Ok(());
        }
    };
    render::either(json, &view, render::secret);
    Ok(())
}
