//! Fleet administration on the local folder: create, invite, join, revoke.
//! These work without a running node; where one runs, they tell it too.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use ed25519_dalek::SigningKey;
use libp2p::PeerId;
use osmoda_fabric::proto::cert::validate_name;
use osmoda_fabric::proto::enroll::{token_version, ENROLL_TOKEN_VERSION};
use osmoda_fabric::proto::{hex, EnrollToken, FleetCert, FleetRoot, JoinToken, Revocation, Role};
use zeroize::Zeroizing;

use super::client::{Client, ClientError};
use crate::api::{InviteBody, InviteView, RecordBody, Recorded, RevokeBody, Revoked, StatusView};
use crate::config::FileConfig;
use crate::datadir::{DataDir, FleetInfo, CONFIG, SOCKET};
use crate::error::{Context, NodeError};
use crate::service::unix_now;

/// How long the founding admin's certificate lasts.
pub const FOUNDER_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Certificates start a minute in the past, for clocks a little behind.
const BACKDATE_SECS: u64 = 60;

fn default_node_name(node: &[u8; 32]) -> String {
    format!("node-{}", &hex(node)[..8])
}

/// Audits an operator action taken by the CLI itself: through the running
/// node when there is one (it holds the store), else in the store directly.
pub async fn audit(data: &DataDir, action: &str, target: &str) -> Result<()> {
    let body = RecordBody {
        action: action.into(),
        target: target.into(),
        details: String::new(),
    };
    let client = Client::new(&data.path(SOCKET));
    match client.post::<_, Recorded>("/v1/audit/record", &body).await {
        Ok(_) => Ok(()),
        Err(ClientError::NotRunning(_)) => {
            let key = SigningKey::from_bytes(&data.identity()?);
            let log = crate::state::audit_log::AuditLog::open(&data.store()?, key)?;
            log.record(
                osmoda_crdt_state::Actor::Operator,
                action,
                target,
                osmoda_crdt_state::Outcome::Ok,
                "",
            )
            .await?;
            log.checkpoint().await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// A fresh identity key and the root's certificate for it, valid from a
/// minute ago for `valid_for`.
fn new_member(
    root: &FleetRoot,
    name: Option<&str>,
    role: Role,
    valid_for: Duration,
) -> Result<(SigningKey, FleetCert)> {
    let identity = SigningKey::generate(&mut rand::rngs::OsRng);
    let node = identity.verifying_key().to_bytes();
    let name = name
        .map(str::to_owned)
        .unwrap_or_else(|| default_node_name(&node));
    let now = unix_now();
    let cert = root.issue(
        node,
        &name,
        role,
        now.saturating_sub(BACKDATE_SECS),
        now.saturating_add(valid_for.as_secs()),
    )?;
    Ok((identity, cert))
}

/// Creates a fleet in an empty folder; this node becomes its first admin.
/// The root key goes to `root_key` when given (a file that must not exist
/// yet, e.g. on removable media), else into the folder.
pub fn create(
    data: &DataDir,
    fleet_name: &str,
    node_name: Option<&str>,
    root_key: Option<&Path>,
) -> Result<FleetCert> {
    if data.is_member() {
        let fleet = data.fleet().map(|f| f.name).unwrap_or_else(|_| "?".into());
        return Err(NodeError::Conflict(format!(
            "{} already belongs to the fleet {fleet:?}; use another --data folder",
            data.root().display()
        ))
        .into());
    }
    validate_name(fleet_name).invalid(|| "invalid fleet name".into())?;
    data.ensure()?;
    let root = FleetRoot::generate(&mut rand::rngs::OsRng);
    let (identity, cert) = new_member(&root, node_name, Role::Admin, FOUNDER_VALIDITY)?;
    // The certificate goes last: its presence is what makes the folder a
    // member, so a crash part-way leaves a folder that can be created again.
    data.write_root(&root, root_key)?;
    data.write_identity(&identity.to_bytes())?;
    data.write_fleet(&FleetInfo {
        name: fleet_name.to_owned(),
        id: hex(&root.public()),
    })?;
    data.write_cert(&cert)?;
    data.record_issued(&cert.name, &hex(&cert.node))?;
    Ok(cert)
}

pub struct Invite {
    pub token: Zeroizing<String>,
    pub cert: FleetCert,
    pub bootstrap: Vec<String>,
    /// Unix seconds after which the token no longer joins.
    pub valid_until: u64,
}

/// Makes a join token for a new node. `bootstrap` lists where the new node
/// should dial first; the running node's own addresses are added to it.
pub async fn invite(
    data: &DataDir,
    role: Role,
    ttl: Duration,
    valid_for: Duration,
    name: Option<&str>,
    mut bootstrap: Vec<String>,
    root_key: Option<&Path>,
) -> Result<Invite> {
    if !data.is_member() {
        return Err(NodeError::Invalid(format!(
            "{} holds no fleet yet: create one first with `osmoda --data {} run` (or `fleet create`), \
             then invite from it; to join another fleet, get a token from its founding node and run `osmoda join TOKEN`",
            data.root().display(),
            data.root().display()
        ))
        .into());
    }
    let root = data.fleet_root(root_key)?;
    let fleet = data.fleet()?;
    if let Some(name) = name {
        if let Some(taken) = data.issued_name(name)? {
            return Err(NodeError::Conflict(format!(
                "a node named {name:?} was invited already ({taken}); names are unique in a fleet: pick another --name"
            ))
            .into());
        }
    }
    let (identity, cert) = new_member(&root, name, role, valid_for)?;
    let now = unix_now();
    let client = Client::new(&data.path(SOCKET));
    if let Ok(status) = client.get::<StatusView>("/v1/status").await {
        let id = status.node.node_id;
        for addr in status.listen {
            bootstrap.push(format!("{addr}/p2p/{id}"));
        }
    }
    bootstrap.truncate(osmoda_fabric::proto::token::MAX_BOOTSTRAP);
    let valid_until = now.saturating_add(ttl.as_secs());
    let token = JoinToken {
        fleet_name: fleet.name,
        node_secret: Zeroizing::new(identity.to_bytes()),
        cert: cert.clone(),
        valid_until,
        bootstrap: bootstrap.clone(),
    }
    .encode(&root)?;
    data.record_issued(&cert.name, &hex(&cert.node))?;
    Ok(Invite {
        token,
        cert,
        bootstrap,
        valid_until,
    })
}

/// What joining made of this folder.
pub struct Joined {
    pub fleet_name: String,
    pub cert: FleetCert,
    pub bootstrap: Vec<String>,
}

/// Makes an enrollment token on the running admin node, which records it
/// and alone redeems it; with `admin_for`, a token for an admin whose
/// certificate the root key in this folder signs for that long. `None`
/// when no node runs here.
pub async fn invite_enrollment(
    data: &DataDir,
    ttl: Duration,
    admin_for: Option<Duration>,
    name: Option<&str>,
    addresses: Vec<String>,
) -> Result<Option<InviteView>> {
    let name = match name {
        Some(name) => name.to_owned(),
        None => {
            let mut tag = [0u8; 4];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut tag);
            format!("node-{}", hex(&tag))
        }
    };
    if let Some(taken) = data.issued_name(&name)? {
        return Err(NodeError::Conflict(format!(
            "a node named {name:?} was invited already ({taken}); names are unique in a fleet: pick another --name"
        ))
        .into());
    }
    let body = InviteBody {
        name: name.clone(),
        ttl_secs: ttl.as_secs().max(1),
        addresses,
        role: admin_for.map(|_| "admin".to_owned()),
        valid_for_secs: admin_for.map(|d| d.as_secs().max(1)),
    };
    let client = Client::new(&data.path(SOCKET));
    match client
        .post::<_, InviteView>("/v1/fleet/invites", &body)
        .await
    {
        Ok(view) => {
            data.record_issued(&name, "enrolling")?;
            Ok(Some(view))
        }
        Err(ClientError::NotRunning(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Makes this folder a member, from a token: an enrollment token (this
/// node makes its key and gets its certificate from the token's admin),
/// or the root's direct token (key and certificate inside).
pub async fn join(data: &DataDir, token: &str) -> Result<Joined> {
    if data.is_member() {
        return Err(NodeError::Conflict(format!(
            "{} is already a member of a fleet; use an empty --data folder to join",
            data.root().display()
        ))
        .into());
    }
    let version = token_version(token).invalid(|| "cannot join".into())?;
    let (identity, joined) = if version == ENROLL_TOKEN_VERSION {
        enroll(token).await?
    } else {
        let token = JoinToken::decode(token, unix_now()).invalid(|| "cannot join".into())?;
        let joined = Joined {
            fleet_name: token.fleet_name.clone(),
            cert: token.cert,
            bootstrap: token.bootstrap,
        };
        (token.node_secret, joined)
    };
    data.ensure()?;
    data.write_identity(&identity)?;
    data.write_fleet(&FleetInfo {
        name: joined.fleet_name.clone(),
        id: hex(&joined.cert.fleet),
    })?;
    if !joined.bootstrap.is_empty() {
        let mut config = if data.path(CONFIG).exists() {
            crate::config::load(data)?
        } else {
            FileConfig::default()
        };
        for addr in &joined.bootstrap {
            if !config.bootstrap.contains(addr) {
                config.bootstrap.push(addr.clone());
            }
        }
        data.write(CONFIG, toml::to_string(&config)?.as_bytes(), 0o644)?;
    }
    // Last, as in `create`: the certificate marks the folder a member.
    data.write_cert(&joined.cert)?;
    Ok(joined)
}

/// Enrolls with the admin named in an enrollment token: a fresh identity
/// key, and the certificate the admin issued for it. Tries the admin's
/// TCP addresses in order until one answers; an answer is final.
async fn enroll(token: &str) -> Result<(Zeroizing<[u8; 32]>, Joined)> {
    let token = EnrollToken::decode(token, unix_now()).invalid(|| "cannot join".into())?;
    let identity = SigningKey::generate(&mut rand::rngs::OsRng);
    let mut failures = Vec::new();
    for addr in &token.addresses {
        let Ok(addr) = addr.parse::<libp2p::Multiaddr>() else {
            continue;
        };
        match osmoda_fabric::enroll::enroll(&addr, &token, &identity).await {
            Ok(cert) => {
                let joined = Joined {
                    fleet_name: token.fleet_name.clone(),
                    cert,
                    bootstrap: token.addresses.clone(),
                };
                return Ok((Zeroizing::new(identity.to_bytes()), joined));
            }
            Err(e) if e.try_next_address() => failures.push(e.to_string()),
            Err(e) => {
                return Err(NodeError::Forbidden(format!("cannot join: {e}")).into());
            }
        }
    }
    let tried = if failures.is_empty() {
        "the token names no TCP address of its admin".to_string()
    } else {
        failures.join("; ")
    };
    Err(NodeError::Unavailable(format!(
        "cannot join: no address of the admin answered ({tried}); is the inviting node running and reachable?"
    ))
    .into())
}

/// Signs a revocation with the root key, stores it, and hands it to the
/// running node (which gossips it). Returns the revocation and whether a
/// running node took it.
pub async fn revoke(
    data: &DataDir,
    node_id: &str,
    root_key: Option<&Path>,
) -> Result<(Revocation, bool)> {
    let root = data.fleet_root(root_key)?;
    let peer: PeerId = node_id
        .parse()
        .invalid(|| format!("{node_id:?} is not a node id (see `osmoda peers`)"))?;
    let node = osmoda_fabric::node_key_of(&peer)
        .ok_or_else(|| NodeError::Invalid(format!("{node_id} is not an osmoda node id")))?;
    if node == data.cert()?.node {
        return Err(NodeError::Invalid("refusing to revoke this node itself".into()).into());
    }
    let rev = root.revoke(node, unix_now());
    let body = RevokeBody {
        revocation: hex(&rev.encode()),
    };
    let client = Client::new(&data.path(SOCKET));
    match client
        .post::<_, Revoked>("/v1/fleet/revocations", &body)
        .await
    {
        Ok(_) => Ok((rev, true)),
        Err(ClientError::NotRunning(_)) => {
            let mut all = data.revocations()?;
            if !all.iter().any(|r| r.node == rev.node) {
                all.push(rev.clone());
                data.write_revocations(&all)?;
            }
            Ok((rev, false))
        }
        Err(e) => Err(e.into()),
    }
}
