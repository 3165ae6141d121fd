//! `osmoda fleet ...` and `osmoda join`: fleet administration on the data
//! folder, told to the running node when there is one, and what they print.

use anyhow::Result;
use osmoda_fabric::proto::{hex, FleetCert, Revocation, Role};
use serde_json::json;

use super::args::FleetCommand;
use super::client::Client;
use super::folder::{self as fleet, Invite, Joined};
use super::out::{self, say};
use super::time;
use crate::api::{InviteView, PeerInfo, Renewed};
use crate::datadir::DataDir;

fn node_id(cert: &FleetCert) -> String {
    osmoda_fabric::peer_id_of(&cert.node)
        .map(|p| p.to_string())
        .unwrap_or_default()
}

fn cert_json(cert: &FleetCert) -> serde_json::Value {
    json!({
        "node_id": node_id(cert),
        "name": cert.name,
        "role": cert.role.to_string(),
        "fleet_id": hex(&cert.fleet),
        "issued_at": cert.issued_at,
        "expires_at": cert.expires_at,
        // The admin node that issued it; null when the root did.
        "issuer": cert.issuer().map(node_id),
    })
}

pub async fn command(
    data: &DataDir,
    client: &Client,
    json: bool,
    command: FleetCommand,
) -> Result<()> {
    match command {
        FleetCommand::Create {
            name,
            node_name,
            root_key,
        } => {
            let cert = fleet::create(data, &name, node_name.as_deref(), root_key.as_deref())?;
            fleet::audit(data, "fleet.create", &name).await?;
            created(json, data, &name, &cert, root_key.as_deref());
        }
        FleetCommand::Invite {
            role,
            ttl,
            valid_for,
            name,
            bootstrap,
            root_key,
        } => {
            // The running admin node enrolls the new node itself (an admin
            // only where the root key is in the folder: the root signs
            // admins); the root issues a direct token, which carries the
            // new node's key, when its key is asked for, or when no node
            // here can enroll.
            let enrolls = role == Role::Member || data.has_root();
            if root_key.is_none() && enrolls && data.is_member() {
                let admin_for = (role == Role::Admin).then_some(valid_for);
                let view = fleet::invite_enrollment(
                    data,
                    ttl,
                    admin_for,
                    name.as_deref(),
                    bootstrap.clone(),
                )
                .await?;
                if let Some(view) = view {
                    // The running node audited it.
                    enrollment_invited(json, &view);
                    return Ok(());
                }
            }
            let invite = fleet::invite(
                data,
                role,
                ttl,
                valid_for,
                name.as_deref(),
                bootstrap,
                root_key.as_deref(),
            )
            .await?;
            let target = format!("{} {}", invite.cert.name, node_id(&invite.cert));
            fleet::audit(data, "fleet.invite", &target).await?;
            invited(json, &invite);
        }
        FleetCommand::Revoke { node_id, root_key } => {
            let node_id = resolve_connected(client, &node_id).await?;
            let (rev, live) = fleet::revoke(data, &node_id, root_key.as_deref()).await?;
            if !live {
                // A running node audits the revocation itself.
                fleet::audit(data, "fleet.revoke", &node_id).await?;
            }
            revoked(json, &node_id, &rev, live);
        }
        FleetCommand::Show => show(json, data)?,
        FleetCommand::Renew => {
            let renewed: Renewed = client.post("/v1/fleet/renewal", &()).await?;
            if json {
                out::json(&renewed);
            } else {
                say!(
                    "renewed by {}; valid until {}",
                    renewed.issued_by,
                    time::when_ms(renewed.expires_at.saturating_mul(1000))
                );
            }
        }
    }
    Ok(())
}

/// A node id as given, or the id of the one connected node with that name.
async fn resolve_connected(client: &Client, node: &str) -> Result<String> {
    if node.parse::<libp2p::PeerId>().is_ok() {
        return Ok(node.to_owned());
    }
    let peers: Vec<PeerInfo> = client.get("/v1/peers").await.unwrap_or_default();
    let named: Vec<&PeerInfo> = peers.iter().filter(|p| p.name == node).collect();
    match named.as_slice() {
        [one] => Ok(one.node_id.clone()),
        [] => anyhow::bail!(
            "{node:?} is neither a node id nor the name of a connected node (see `osmoda peers`)"
        ),
        _ => anyhow::bail!("several connected nodes are named {node:?}; give the node id"),
    }
}

pub fn created(
    json: bool,
    data: &DataDir,
    fleet: &str,
    cert: &FleetCert,
    root_key: Option<&std::path::Path>,
) {
    let key = data.root_key_path(root_key);
    if json {
        return out::json(
            &json!({ "fleet": fleet, "fleet_id": hex(&cert.fleet), "node": cert_json(cert), "data": data.root(), "root_key": key }),
        );
    }
    say!("created fleet {fleet} ({})", hex(&cert.fleet));
    say!(
        "this node: {} ({}), admin; the fleet root key is {}",
        cert.name,
        node_id(cert),
        key.display()
    );
}

fn invited(json: bool, invite: &Invite) {
    if json {
        return out::json(
            &json!({ "token": &*invite.token, "node": cert_json(&invite.cert), "bootstrap": invite.bootstrap, "valid_until": invite.valid_until }),
        );
    }
    // The token alone on stdout, so that `$(osmoda fleet invite)` works.
    out::line(&*invite.token);
    eprintln!(
        "token for {} ({}), joins until {}; it is a secret: it lets its holder act as that node",
        invite.cert.name,
        node_id(&invite.cert),
        time::when_ms(invite.valid_until.saturating_mul(1000))
    );
}

fn enrollment_invited(json: bool, view: &InviteView) {
    if json {
        return out::json(
            &json!({ "token": view.token, "name": view.name, "admin": view.admin, "addresses": view.addresses, "valid_until": view.valid_until, "kind": "enrollment" }),
        );
    }
    out::line(&view.token);
    eprintln!(
        "enrollment token for {}, redeemed once by this node ({}) until {}; \
         the new node makes its own key; keep the token secret until it is used",
        view.name,
        view.admin,
        time::when_ms(view.valid_until.saturating_mul(1000))
    );
}

pub fn joined(json: bool, data: &DataDir, token: &Joined) {
    if json {
        return out::json(
            &json!({ "fleet": token.fleet_name, "node": cert_json(&token.cert), "bootstrap": token.bootstrap, "data": data.root() }),
        );
    }
    say!(
        "joined fleet {} as {} ({}, {}, member until {}); start it with: osmoda --data {} run",
        token.fleet_name,
        token.cert.name,
        node_id(&token.cert),
        token.cert.role,
        time::local_secs(token.cert.expires_at),
        data.root().display()
    );
}

fn revoked(json: bool, node: &str, rev: &Revocation, live: bool) {
    if json {
        return out::json(
            &json!({ "node_id": node, "revoked_at": rev.revoked_at, "announced": live }),
        );
    }
    if live {
        say!("revoked {node}; the fleet is cutting it off");
    } else {
        say!("revoked {node}; stored here, it spreads to the fleet when this node runs");
    }
}

fn show(json: bool, data: &DataDir) -> Result<()> {
    let info = data.fleet()?;
    let cert = data.cert()?;
    let revoked: Vec<String> = data
        .revocations()?
        .iter()
        .filter_map(|r| osmoda_fabric::peer_id_of(&r.node))
        .map(|p| p.to_string())
        .collect();
    if json {
        out::json(
            &json!({ "fleet": info.name, "fleet_id": info.id, "node": cert_json(&cert), "holds_root_key": data.has_root(), "revoked": revoked }),
        );
        return Ok(());
    }
    say!("fleet     {} ({})", info.name, info.id);
    say!(
        "this node {} ({}), {}",
        cert.name,
        node_id(&cert),
        cert.role
    );
    say!(
        "valid     {} to {}",
        time::local_secs(cert.issued_at),
        time::when_ms(cert.expires_at.saturating_mul(1000))
    );
    say!(
        "root key  {}",
        if data.has_root() {
            "held here"
        } else {
            "not here"
        }
    );
    say!("revoked   {}", revoked.len());
    for r in revoked {
        say!("  {r}");
    }
    Ok(())
}
