//! The node's state folder: keys, certificate, fleet metadata, revocations,
//! configuration and the control socket. Secrets are written with mode 0600
//! through a temporary file and a rename, so a crash never leaves half a key.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Context, NodeError, NodeResult as Result};
use osmoda_fabric::proto::{hex, parse_hex, parse_hex_bytes, FleetCert, FleetRoot, Revocation};
use serde::{Deserialize, Serialize};

pub const IDENTITY_KEY: &str = "identity.key";
pub const ROOT_KEY: &str = "root.key";
pub const CERT: &str = "membership.cert";
pub const FLEET: &str = "fleet.toml";
pub const REVOCATIONS: &str = "revocations";
pub const CONFIG: &str = "config.toml";
pub const SOCKET: &str = "control.sock";
/// Where agents make their tool calls (authenticated by their token).
pub const AGENT_SOCKET: &str = "agent.sock";
pub const LOCK: &str = "lock";
/// Names the root holder gave to the nodes it invited: `NAME NODE_KEY_HEX`
/// per line, so that no name is given twice.
pub const ISSUED: &str = "issued";
pub const STATE: &str = "state.redb";

/// Non-secret facts about the fleet this folder belongs to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetInfo {
    pub name: String,
    /// Hex of the root public key.
    pub id: String,
}

#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The folder `--data` names, else `$OSMODA_DATA`, else the default.
    pub fn chosen(flag: Option<PathBuf>) -> Self {
        let env = std::env::var_os("OSMODA_DATA").filter(|v| !v.is_empty());
        Self::new(
            flag.or(env.map(PathBuf::from))
                .unwrap_or_else(Self::default_path),
        )
    }

    /// `$XDG_DATA_HOME/osmoda`, else `~/.local/share/osmoda`.
    pub fn default_path() -> PathBuf {
        if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
            return PathBuf::from(dir).join("osmoda");
        }
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(".local/share/osmoda");
        }
        PathBuf::from("osmoda-data")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn ensure(&self) -> Result<()> {
        fs::create_dir_all(&self.root)
            .internal(|| format!("cannot create the data folder {}", self.root.display()))?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
            .internal(|| format!("cannot restrict {}", self.root.display()))?;
        Ok(())
    }

    /// Opens the node's durable store (the running node holds it open).
    pub fn store(&self) -> Result<osmoda_store::Store> {
        let path = self.path(STATE);
        osmoda_store::Store::open(&path).internal(|| format!("cannot open {}", path.display()))
    }

    pub fn is_member(&self) -> bool {
        self.path(IDENTITY_KEY).exists() && self.path(CERT).exists()
    }

    pub fn has_root(&self) -> bool {
        self.path(ROOT_KEY).exists()
    }

    /// Holds an exclusive lock on the folder for as long as the file lives.
    pub fn lock(&self) -> Result<File> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(self.path(LOCK))
            .internal(|| format!("cannot open {}", self.path(LOCK).display()))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(_) => Err(NodeError::Conflict(format!(
                "another osmoda process is using {}; stop it first or pick another --data folder",
                self.root.display()
            ))),
        }
    }

    /// Writes `contents` atomically with the given mode.
    pub fn write(&self, name: &str, contents: &[u8], mode: u32) -> Result<()> {
        write_atomic(&self.path(name), contents, mode)
    }

    fn read_text(&self, name: &str) -> Result<String> {
        let path = self.path(name);
        fs::read_to_string(&path).internal(|| format!("cannot read {}", path.display()))
    }

    fn read_secret(&self, name: &str) -> Result<[u8; 32]> {
        read_secret_at(&self.path(name))
    }

    pub fn write_identity(&self, secret: &[u8; 32]) -> Result<()> {
        self.write(IDENTITY_KEY, format!("{}\n", hex(secret)).as_bytes(), 0o600)
    }

    pub fn identity(&self) -> Result<[u8; 32]> {
        self.read_secret(IDENTITY_KEY)
    }

    /// Where the fleet root key is: the file the operator chose
    /// (`--root-key`), or `DATA/root.key`.
    pub fn root_key_path(&self, chosen: Option<&Path>) -> PathBuf {
        chosen
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.path(ROOT_KEY))
    }

    /// Writes a new fleet's root key (mode 0600) where the operator chose,
    /// or into the folder; never over an existing file, which may be
    /// another fleet's key.
    pub fn write_root(&self, root: &FleetRoot, chosen: Option<&Path>) -> Result<()> {
        let path = self.root_key_path(chosen);
        if chosen.is_some() && path.exists() {
            return Err(NodeError::Conflict(format!(
                "{} exists; a new fleet's root key is never written over a file (it may be another fleet's key)",
                path.display()
            )));
        }
        write_atomic(
            &path,
            format!("{}\n", hex(&root.secret())).as_bytes(),
            0o600,
        )
    }

    /// The fleet root key, from the file the operator chose or from the
    /// folder; refused unless it is this fleet's.
    pub fn fleet_root(&self, chosen: Option<&Path>) -> Result<FleetRoot> {
        let path = self.root_key_path(chosen);
        if !path.exists() {
            return Err(NodeError::Forbidden(format!(
                "the fleet's root key is not at {}; pass --root-key FILE (or run this on the node that keeps it in its folder)",
                path.display()
            )));
        }
        let root = FleetRoot::from_secret(read_secret_at(&path)?);
        let fleet = self.fleet()?;
        if hex(&root.public()) != fleet.id {
            return Err(NodeError::Forbidden(format!(
                "{} is not the root key of the fleet {:?} this folder belongs to",
                path.display(),
                fleet.name
            )));
        }
        Ok(root)
    }

    pub fn write_cert(&self, cert: &FleetCert) -> Result<()> {
        self.write(CERT, format!("{}\n", hex(&cert.encode())).as_bytes(), 0o644)
    }

    pub fn cert(&self) -> Result<FleetCert> {
        let text = self.read_text(CERT)?;
        let bytes = parse_hex_bytes(text.trim()).ok_or_else(|| {
            NodeError::Invalid(format!("{} is not hex", self.path(CERT).display()))
        })?;
        FleetCert::decode(&bytes).invalid(|| format!("{} is damaged", self.path(CERT).display()))
    }

    pub fn write_fleet(&self, info: &FleetInfo) -> Result<()> {
        let text = toml::to_string(info).internal(|| "cannot encode fleet.toml".into())?;
        self.write(FLEET, text.as_bytes(), 0o644)
    }

    pub fn fleet(&self) -> Result<FleetInfo> {
        let text = self.read_text(FLEET)?;
        toml::from_str(&text).invalid(|| format!("{} is damaged", self.path(FLEET).display()))
    }

    /// Revocations stored so far; damaged lines are reported and skipped.
    pub fn revocations(&self) -> Result<Vec<Revocation>> {
        let path = self.path(REVOCATIONS);
        if !path.exists() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for (i, line) in self.read_text(REVOCATIONS)?.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            match parse_hex_bytes(line).and_then(|b| Revocation::decode(&b).ok()) {
                Some(rev) => out.push(rev),
                None => {
                    tracing::warn!(line = i + 1, file = %path.display(), "skipping a damaged revocation")
                }
            }
        }
        Ok(out)
    }

    /// The node key (hex) a name was issued to, if it was.
    pub fn issued_name(&self, name: &str) -> Result<Option<String>> {
        let path = self.path(ISSUED);
        if !path.exists() {
            return Ok(None);
        }
        Ok(self.read_text(ISSUED)?.lines().find_map(|line| {
            let (n, key) = line.trim().rsplit_once(' ')?;
            (n == name).then(|| key.to_owned())
        }))
    }

    /// Remembers that `name` was issued to the node with key `node_hex`.
    pub fn record_issued(&self, name: &str, node_hex: &str) -> Result<()> {
        let mut text = if self.path(ISSUED).exists() {
            self.read_text(ISSUED)?
        } else {
            String::new()
        };
        text.push_str(&format!("{name} {node_hex}\n"));
        self.write(ISSUED, text.as_bytes(), 0o644)
    }

    pub fn write_revocations(&self, revocations: &[Revocation]) -> Result<()> {
        let mut text = String::new();
        for rev in revocations {
            text.push_str(&hex(&rev.encode()));
            text.push('\n');
        }
        self.write(REVOCATIONS, text.as_bytes(), 0o644)
    }
}

/// Writes a file through a temporary one and a rename, with `mode`, and
/// syncs it and its folder, so a crash never leaves half a key.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{name}.tmp"));
    let writing = || format!("cannot write {}", tmp.display());
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(mode)
        .open(&tmp)
        .internal(writing)?;
    file.write_all(contents).internal(writing)?;
    file.sync_all().internal(writing)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).internal(writing)?;
    fs::rename(&tmp, path).internal(|| format!("cannot write {}", path.display()))?;
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// A 32-byte hex key from a file that only its owner may read.
pub(crate) fn read_secret_at(path: &Path) -> Result<[u8; 32]> {
    let mode = fs::metadata(path)
        .internal(|| format!("cannot read {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(NodeError::Invalid(format!(
            "{} is readable by others (mode {:o}); run: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    let text = fs::read_to_string(path).internal(|| format!("cannot read {}", path.display()))?;
    parse_hex::<32>(&text).ok_or_else(|| {
        NodeError::Invalid(format!(
            "{} does not hold a 32-byte hex key",
            path.display()
        ))
    })
}
