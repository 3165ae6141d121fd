//! The node's vault: secrets its operator keeps for its agents, sealed at
//! rest.
//!
//! Each value is sealed with XChaCha20-Poly1305 under a 32-byte key kept
//! in `DATA/vault.key` (mode 0600, made on first use, never in the store),
//! so the store, which backups copy and tools read, holds only ciphertext.
//! Every seal draws a fresh random 24-byte nonce: XChaCha's nonces are long
//! enough that random ones do not repeat. The secret's name and version are
//! the associated data, so a ciphertext copied under another name, or put
//! back beside an older version's metadata, does not open.
//!
//! Store table `secrets`: name → a JSON [`Record`] (metadata, grants, and
//! `nonce || ciphertext` in base64). Values are held in [`Zeroizing`]
//! buffers and never reach a log, an error or `Debug` output: errors name
//! the secret, never its value.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use osmoda_store::{Batch, Store};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::api::SecretView;
use crate::error::NodeResult;

/// Secrets one node keeps.
pub const MAX_SECRETS: usize = 256;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// The key's file in the data folder.
pub const KEY_FILE: &str = "vault.key";

const TABLE: &str = "secrets";
const NONCE_BYTES: usize = 24;

/// Why a vault operation failed. No variant carries a value.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("secret name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("agent name {name:?}: {reason}")]
    InvalidAgent { name: String, reason: String },
    #[error("the value is empty; a secret needs a value")]
    Empty,
    #[error("the value is {len} bytes, over the limit of {MAX_VALUE_BYTES}")]
    TooLarge { len: usize },
    #[error("this node keeps at most {MAX_SECRETS} secrets; remove one first")]
    Full,
    #[error("a secret named {0:?} exists; change its value with `osmoda secret rotate {0}`")]
    Exists(String),
    #[error("no secret {0:?}")]
    NotFound(String),
    #[error("secret {name:?} is not granted to agent {agent:?}")]
    NotGranted { name: String, agent: String },
    /// The same answer whether the secret exists or not, so an agent
    /// cannot probe for names it was not given.
    #[error("secret {0:?} is not granted to this agent")]
    Withheld(String),
    #[error("secret {0:?} does not open: its stored ciphertext was changed or moved, or vault.key is not the key it was sealed with")]
    Damaged(String),
    #[error("the stored record of secret {name:?} is damaged: {reason}")]
    Malformed { name: String, reason: String },
    #[error("{0} is missing, so the stored secrets cannot be opened; put the key back (a new key cannot open them)")]
    KeyMissing(String),
    #[error("secret {0:?} holds bytes that are not UTF-8 text")]
    NotText(String),
}

/// One secret as stored.
#[derive(Clone, Serialize, Deserialize)]
struct Record {
    version: u32,
    created_ms: u64,
    rotated_ms: u64,
    agents: BTreeSet<String>,
    /// `nonce || ciphertext || tag`, base64.
    sealed: String,
}

impl Record {
    fn view(&self, name: &str) -> SecretView {
        SecretView {
            name: name.to_owned(),
            version: self.version,
            created_ms: self.created_ms,
            rotated_ms: self.rotated_ms,
            agents: self.agents.iter().cloned().collect(),
        }
    }
}

/// A secret released to an agent: its name, version and value.
pub struct Released {
    pub name: String,
    pub version: u32,
    pub value: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Released {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Released")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("value", &"<redacted>")
            .finish()
    }
}

type Key = Zeroizing<[u8; 32]>;

pub struct Vault {
    store: Store,
    key_path: PathBuf,
    /// The key once read or made.
    key: Mutex<Option<Key>>,
    /// Held by every change, from reading a record to its commit, so two
    /// changes of one secret (or two first secrets) do not interleave.
    writes: tokio::sync::Mutex<()>,
}

fn check_name(name: &str) -> Result<(), String> {
    osmoda_agentd::validate_name(name).map_err(|e| e.to_string())
}

fn secret_name(name: &str) -> Result<(), VaultError> {
    check_name(name).map_err(|reason| VaultError::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

fn agent_name(name: &str) -> Result<(), VaultError> {
    check_name(name).map_err(|reason| VaultError::InvalidAgent {
        name: name.to_owned(),
        reason,
    })
}

fn value_bounds(value: &[u8]) -> Result<(), VaultError> {
    if value.is_empty() {
        return Err(VaultError::Empty);
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(VaultError::TooLarge { len: value.len() });
    }
    Ok(())
}

/// What a ciphertext is bound to: its name and version.
fn associated_data(name: &str, version: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(16 + name.len() + 5);
    aad.extend_from_slice(b"osmoda-vault-v1\0");
    aad.extend_from_slice(name.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

fn seal(key: &Key, name: &str, version: u32, value: &[u8]) -> Result<String, VaultError> {
    let cipher = XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&key[..]));
    let mut nonce = [0u8; NONCE_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    // Room for the tag up front: the buffer never reallocates, so no copy
    // of the value is left behind unzeroed.
    let mut buf = Zeroizing::new(Vec::with_capacity(value.len() + 16));
    buf.extend_from_slice(value);
    cipher
        .encrypt_in_place(
            XNonce::from_slice(&nonce),
            &associated_data(name, version),
            &mut *buf,
        )
        .map_err(|_| VaultError::Damaged(name.to_owned()))?;
    let mut sealed = Vec::with_capacity(NONCE_BYTES + buf.len());
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&buf);
    Ok(BASE64.encode(sealed))
}

fn open(key: &Key, name: &str, record: &Record) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let malformed = |reason: &str| VaultError::Malformed {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    let sealed = BASE64
        .decode(&record.sealed)
        .map_err(|_| malformed("the ciphertext is not base64"))?;
    if sealed.len() < NONCE_BYTES + 16 {
        return Err(malformed("the ciphertext is too short"));
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    let cipher = XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&key[..]));
    cipher
        .decrypt_in_place(
            XNonce::from_slice(nonce),
            &associated_data(name, record.version),
            &mut *buf,
        )
        .map_err(|_| VaultError::Damaged(name.to_owned()))?;
    Ok(buf)
}

impl Vault {
    /// A vault over `store`, its key at `key_path` (read on first use).
    pub fn new(store: Store, key_path: PathBuf) -> Self {
        Self {
            store,
            key_path,
            key: Mutex::new(None),
            writes: tokio::sync::Mutex::new(()),
        }
    }

    /// The key: cached, else read from its file (refused when others may
    /// read it), else, when `make` and the vault is empty, made and
    /// written with mode 0600. `None` when there is none and none is made.
    fn key(&self, make: bool) -> NodeResult<Option<Key>> {
        let mut cached = self.key.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = cached.as_ref() {
            return Ok(Some(key.clone()));
        }
        let key = if self.key_path.exists() {
            Zeroizing::new(crate::datadir::read_secret_at(&self.key_path)?)
        } else if make {
            // A missing key with secrets stored is a lost key: a new one
            // would seal new values beside ones nothing can open.
            if !self.store.scan_prefix(TABLE, b"", 1)?.is_empty() {
                return Err(VaultError::KeyMissing(self.key_path.display().to_string()).into());
            }
            let mut key = Zeroizing::new([0u8; 32]);
            rand::rngs::OsRng.fill_bytes(key.as_mut());
            let text = Zeroizing::new(format!("{}\n", osmoda_fabric::proto::hex(&key[..])));
            crate::datadir::write_atomic(&self.key_path, text.as_bytes(), 0o600)?;
            key
        } else {
            return Ok(None);
        };
        *cached = Some(key.clone());
        Ok(Some(key))
    }

    /// The key to open stored records with.
    fn opening_key(&self) -> NodeResult<Key> {
        self.key(false)?
            .ok_or_else(|| VaultError::KeyMissing(self.key_path.display().to_string()).into())
    }

    fn record(&self, name: &str) -> NodeResult<Option<Record>> {
        let Some(bytes) = self.store.get(TABLE, name.as_bytes())? else {
            return Ok(None);
        };
        let record = serde_json::from_slice(&bytes).map_err(|e| VaultError::Malformed {
            name: name.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Some(record))
    }

    fn existing(&self, name: &str) -> NodeResult<Record> {
        self.record(name)?
            .ok_or_else(|| VaultError::NotFound(name.to_owned()).into())
    }

    async fn put(&self, name: &str, record: &Record) -> NodeResult<()> {
        let bytes = serde_json::to_vec(record).map_err(crate::error::NodeError::internal)?;
        let mut batch = Batch::new();
        batch.put(TABLE, name.as_bytes(), &bytes);
        self.store.submit_batch(batch)?.await?;
        Ok(())
    }

    /// Every secret's metadata, by name; never a value.
    pub fn list(&self) -> NodeResult<Vec<SecretView>> {
        let mut out = Vec::new();
        for (key, bytes) in self.store.scan_prefix(TABLE, b"", MAX_SECRETS)? {
            let name = String::from_utf8_lossy(&key).into_owned();
            let record: Record =
                serde_json::from_slice(&bytes).map_err(|e| VaultError::Malformed {
                    name: name.clone(),
                    reason: e.to_string(),
                })?;
            out.push(record.view(&name));
        }
        Ok(out)
    }

    pub fn show(&self, name: &str) -> NodeResult<SecretView> {
        Ok(self.existing(name)?.view(name))
    }

    /// Stores a new secret, granted to `agents`.
    pub async fn create(
        &self,
        name: &str,
        value: &[u8],
        agents: &[String],
    ) -> NodeResult<SecretView> {
        secret_name(name)?;
        value_bounds(value)?;
        for agent in agents {
            agent_name(agent)?;
        }
        let _writing = self.writes.lock().await;
        if self.record(name)?.is_some() {
            return Err(VaultError::Exists(name.to_owned()).into());
        }
        if self.store.scan_prefix(TABLE, b"", MAX_SECRETS)?.len() >= MAX_SECRETS {
            return Err(VaultError::Full.into());
        }
        let key = self
            .key(true)?
            .ok_or_else(|| VaultError::KeyMissing(self.key_path.display().to_string()))?;
        let now = crate::service::now_ms();
        let record = Record {
            version: 1,
            created_ms: now,
            rotated_ms: now,
            agents: agents.iter().cloned().collect(),
            sealed: seal(&key, name, 1, value)?,
        };
        self.put(name, &record).await?;
        Ok(record.view(name))
    }

    /// Gives `agent` the secret (no change when it has it already).
    pub async fn grant(&self, name: &str, agent: &str) -> NodeResult<SecretView> {
        agent_name(agent)?;
        let _writing = self.writes.lock().await;
        let mut record = self.existing(name)?;
        if record.agents.insert(agent.to_owned()) {
            self.put(name, &record).await?;
        }
        Ok(record.view(name))
    }

    /// Takes the secret from `agent`; it keeps what it already read.
    pub async fn revoke(&self, name: &str, agent: &str) -> NodeResult<SecretView> {
        let _writing = self.writes.lock().await;
        let mut record = self.existing(name)?;
        if !record.agents.remove(agent) {
            return Err(VaultError::NotGranted {
                name: name.to_owned(),
                agent: agent.to_owned(),
            }
            .into());
        }
        self.put(name, &record).await?;
        Ok(record.view(name))
    }

    /// Replaces the value; the version goes up by one.
    pub async fn rotate(&self, name: &str, value: &[u8]) -> NodeResult<SecretView> {
        value_bounds(value)?;
        let _writing = self.writes.lock().await;
        let mut record = self.existing(name)?;
        let key = self.opening_key()?;
        let version = record.version.saturating_add(1);
        record.sealed = seal(&key, name, version, value)?;
        record.version = version;
        record.rotated_ms = crate::service::now_ms();
        self.put(name, &record).await?;
        Ok(record.view(name))
    }

    pub async fn remove(&self, name: &str) -> NodeResult<()> {
        let _writing = self.writes.lock().await;
        self.existing(name)?;
        let mut batch = Batch::new();
        batch.delete(TABLE, name.as_bytes());
        self.store.submit_batch(batch)?.await?;
        Ok(())
    }

    /// One secret for `agent`, opened, when it is granted to it; refused
    /// alike when it is not granted and when it does not exist.
    pub fn release_one(&self, agent: &str, name: &str) -> NodeResult<Released> {
        let record = match self.record(name)? {
            Some(r) if r.agents.contains(agent) => r,
            _ => return Err(VaultError::Withheld(name.to_owned()).into()),
        };
        let value = open(&self.opening_key()?, name, &record)?;
        Ok(Released {
            name: name.to_owned(),
            version: record.version,
            value,
        })
    }

    /// Every secret granted to `agent`, opened, by name.
    pub fn release_all(&self, agent: &str) -> NodeResult<Vec<Released>> {
        let mut out = Vec::new();
        for (key, bytes) in self.store.scan_prefix(TABLE, b"", MAX_SECRETS)? {
            let name = String::from_utf8_lossy(&key).into_owned();
            let record: Record =
                serde_json::from_slice(&bytes).map_err(|e| VaultError::Malformed {
                    name: name.clone(),
                    reason: e.to_string(),
                })?;
            if !record.agents.contains(agent) {
                continue;
            }
            let value = open(&self.opening_key()?, &name, &record)?;
            out.push(Released {
                name,
                version: record.version,
                value,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Zeroizing::new([7u8; 32])
    }

    fn record(sealed: String, version: u32) -> Record {
        Record {
            version,
            created_ms: 0,
            rotated_ms: 0,
            agents: BTreeSet::new(),
            sealed,
        }
    }

    #[test]
    fn a_value_opens_only_under_its_own_name_and_version() {
        let sealed = seal(&key(), "alpha", 1, b"hunter2").unwrap();
        let opened = open(&key(), "alpha", &record(sealed.clone(), 1)).unwrap();
        assert_eq!(opened.as_slice(), b"hunter2");
        assert!(matches!(
            open(&key(), "beta", &record(sealed.clone(), 1)),
            Err(VaultError::Damaged(_))
        ));
        assert!(matches!(
            open(&key(), "alpha", &record(sealed.clone(), 2)),
            Err(VaultError::Damaged(_))
        ));
        let other = Zeroizing::new([8u8; 32]);
        assert!(open(&other, "alpha", &record(sealed, 1)).is_err());
    }

    #[test]
    fn every_seal_draws_a_new_nonce_and_hides_the_value() {
        let a = seal(&key(), "alpha", 1, b"hunter2").unwrap();
        let b = seal(&key(), "alpha", 1, b"hunter2").unwrap();
        assert_ne!(a, b);
        let raw = BASE64.decode(&a).unwrap();
        assert_eq!(raw.len(), NONCE_BYTES + 7 + 16);
        assert!(!raw.windows(7).any(|w| w == b"hunter2"));
    }

    #[test]
    fn a_flipped_or_cut_ciphertext_is_an_error() {
        let sealed = seal(&key(), "alpha", 1, b"hunter2").unwrap();
        let mut raw = BASE64.decode(&sealed).unwrap();
        for i in 0..raw.len() {
            raw[i] ^= 1;
            let flipped = record(BASE64.encode(&raw), 1);
            assert!(open(&key(), "alpha", &flipped).is_err(), "byte {i}");
            raw[i] ^= 1;
        }
        let cut = record(BASE64.encode(&raw[..20]), 1);
        assert!(matches!(
            open(&key(), "alpha", &cut),
            Err(VaultError::Malformed { .. })
        ));
        let junk = record("not base64!".into(), 1);
        assert!(open(&key(), "alpha", &junk).is_err());
    }

    #[test]
    fn debug_output_never_shows_a_value() {
        let released = Released {
            name: "alpha".into(),
            version: 3,
            value: Zeroizing::new(b"hunter2".to_vec()),
        };
        let text = format!("{released:?}");
        assert!(
            text.contains("alpha") && !text.contains("hunter2"),
            "{text}"
        );
        let body = crate::api::NewSecret {
            name: "alpha".into(),
            value: crate::api::SecretValue::new("hunter2".into()),
            agents: vec!["scribe".into()],
        };
        let text = format!("{body:?}");
        assert!(
            text.contains("scribe") && !text.contains("hunter2"),
            "{text}"
        );
    }
}
