//! What the CLI prints: JSON for scripts (`--json`), short text for people.

use anyhow::Result;
use osmoda_fabric::proto::{hex, FleetCert, JoinToken, Revocation};
use serde_json::{json, Value};

use crate::datadir::DataDir;
use crate::fleet::Invite;

pub fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

fn node_id(cert: &FleetCert) -> String {
    osmoda_fabric::peer_id_of(&cert.node)
        .map(|p| p.to_string())
        .unwrap_or_default()
}

fn cert_json(cert: &FleetCert) -> Value {
    json!({
        "node_id": node_id(cert),
        "name": cert.name,
        "role": cert.role.to_string(),
        "fleet_id": hex(&cert.fleet),
        "issued_at": cert.issued_at,
        "expires_at": cert.expires_at,
    })
}

pub fn created(json: bool, data: &DataDir, fleet: &str, cert: &FleetCert) {
    if json {
        print_json(
            &json!({ "fleet": fleet, "fleet_id": hex(&cert.fleet), "node": cert_json(cert), "data": data.root() }),
        );
    } else {
        println!("created fleet {fleet} ({})", hex(&cert.fleet));
        println!(
            "this node: {} ({}), admin; the root key is in {}",
            cert.name,
            node_id(cert),
            data.root().display()
        );
    }
}

pub fn invite(json: bool, invite: &Invite) {
    if json {
        print_json(
            &json!({ "token": &*invite.token, "node": cert_json(&invite.cert), "bootstrap": invite.bootstrap }),
        );
    } else {
        // The token alone on stdout, so that `$(osmoda fleet invite)` works.
        println!("{}", &*invite.token);
        eprintln!(
            "token for {} ({}); it is a secret: it lets its holder act as that node",
            invite.cert.name,
            node_id(&invite.cert)
        );
    }
}

pub fn joined(json: bool, data: &DataDir, token: &JoinToken) {
    if json {
        print_json(
            &json!({ "fleet": token.fleet_name, "node": cert_json(&token.cert), "bootstrap": token.bootstrap, "data": data.root() }),
        );
    } else {
        println!(
            "joined fleet {} as {} ({}, {}); start it with: osmoda --data {} run",
            token.fleet_name,
            token.cert.name,
            node_id(&token.cert),
            token.cert.role,
            data.root().display()
        );
    }
}

pub fn revoked(json: bool, node: &str, rev: &Revocation, live: bool) {
    if json {
        print_json(&json!({ "node_id": node, "revoked_at": rev.revoked_at, "announced": live }));
    } else if live {
        println!("revoked {node}; the fleet is cutting it off");
    } else {
        println!("revoked {node}; stored here, it spreads to the fleet when this node runs");
    }
}

pub fn fleet(json: bool, data: &DataDir) -> Result<()> {
    let info = data.fleet()?;
    let cert = data.cert()?;
    let revoked: Vec<String> = data
        .revocations()?
        .iter()
        .filter_map(|r| osmoda_fabric::peer_id_of(&r.node))
        .map(|p| p.to_string())
        .collect();
    if json {
        print_json(
            &json!({ "fleet": info.name, "fleet_id": info.id, "node": cert_json(&cert), "holds_root_key": data.has_root(), "revoked": revoked }),
        );
    } else {
        println!("fleet {} ({})", info.name, info.id);
        println!(
            "this node: {} ({}), {}, expires at {}",
            cert.name,
            node_id(&cert),
            cert.role,
            cert.expires_at
        );
        println!(
            "root key here: {}",
            if data.has_root() { "yes" } else { "no" }
        );
        println!("revoked: {}", revoked.len());
        for r in revoked {
            println!("  {r}");
        }
    }
    Ok(())
}

pub fn status(json: bool, v: &Value) {
    if json {
        return print_json(v);
    }
    let s = |k: &str| v[k].as_str().unwrap_or("?").to_string();
    println!("node      {} ({})", s("name"), s("node_id"));
    println!("role      {}", s("role"));
    println!(
        "fleet     {} ({})",
        v["fleet"]["name"].as_str().unwrap_or("?"),
        v["fleet"]["id"].as_str().unwrap_or("?")
    );
    println!("peers     {}", v["connected_peers"]);
    for addr in v["listen"].as_array().into_iter().flatten() {
        println!("listen    {}", addr.as_str().unwrap_or("?"));
    }
    let a = &v["agents"];
    println!(
        "agents    {} (limits: {}){}{}",
        a["count"],
        a["limit_mode"].as_str().unwrap_or("?"),
        if a["lockdown"] == true {
            "  LOCKED DOWN"
        } else {
            ""
        },
        if a["frozen"] == true { "  FROZEN" } else { "" },
    );
}

pub fn peers(json: bool, v: &Value) {
    if json {
        return print_json(v);
    }
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no peers connected");
        return;
    }
    println!(
        "{:<16} {:<7} {:<5} {:>8}  {:<34} {:<53} ADDRESS",
        "NAME", "ROLE", "TRANS", "RTT", "KEY EXCHANGE", "NODE ID"
    );
    for p in list {
        let rtt = p["rtt_ms"]
            .as_f64()
            .map(|r| format!("{r:.1}ms"))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<16} {:<7} {:<5} {:>8}  {:<34} {:<53} {}",
            p["name"].as_str().unwrap_or("?"),
            p["role"].as_str().unwrap_or("?"),
            p["transport"].as_str().unwrap_or("?"),
            rtt,
            p["key_exchange"].as_str().unwrap_or("?"),
            p["node_id"].as_str().unwrap_or("?"),
            p["address"].as_str().unwrap_or("?"),
        );
    }
}

pub fn inbox(json: bool, v: &Value) {
    if json {
        return print_json(v);
    }
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("inbox is empty");
    }
    for m in list {
        let from = m["from_name"]
            .as_str()
            .or(m["from"].as_str())
            .unwrap_or("?");
        println!(
            "[{}] {}: {}",
            m["kind"].as_str().unwrap_or("?"),
            from,
            m["text"].as_str().unwrap_or("")
        );
    }
}

pub fn done(json: bool, v: &Value, text: &str) {
    if json {
        print_json(v);
    } else {
        println!("{text}");
    }
}

pub fn audit_log(json: bool, v: &Value) {
    if json {
        return print_json(v);
    }
    for e in v.as_array().cloned().unwrap_or_default() {
        println!(
            "{:>6}  {}  {:<22} {:<14} {:<8} {}",
            e["seq"],
            e["time_ms"],
            e["actor"].as_str().unwrap_or("?"),
            e["action"].as_str().unwrap_or("?"),
            e["outcome"].as_str().unwrap_or("?"),
            e["target"].as_str().unwrap_or(""),
        );
    }
}

pub fn audit_verify(json: bool, v: &Value) {
    if json {
        return print_json(v);
    }
    if v["ok"].as_bool() == Some(true) {
        println!(
            "audit log verifies: {} entries, {} covered by the signed checkpoint",
            v["entries"], v["checkpoint_size"]
        );
        if let Some(source) = v["served_by"].as_str() {
            println!("  served by {source}");
        }
    } else {
        println!(
            "audit log does NOT verify: {}",
            v["problem"].as_str().unwrap_or("?")
        );
    }
}

pub fn audit_heads(json: bool, v: &Value) {
    if json {
        return print_json(v);
    }
    for h in v.as_array().cloned().unwrap_or_default() {
        println!(
            "{:<53} size {:>6}  root {}",
            h["node_id"].as_str().unwrap_or("?"),
            h["size"],
            h["root"].as_str().unwrap_or("?")
        );
    }
}

pub fn audit_forks(json: bool, v: &Value) {
    if json {
        return print_json(v);
    }
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no forks known");
    }
    for f in list {
        println!(
            "FORK {}: {} piece(s) of evidence",
            f["node_id"].as_str().unwrap_or("?"),
            f["evidence"].as_array().map(|e| e.len()).unwrap_or(0)
        );
    }
}

pub fn id(json: bool, v: &Value) {
    if json {
        print_json(v);
    } else {
        println!("{}", v["id"].as_str().unwrap_or("?"));
    }
}

pub fn entry(json: bool, e: &Value) {
    if json {
        return print_json(e);
    }
    println!(
        "{}  {}",
        e["id"].as_str().unwrap_or("?"),
        e["title"].as_str().unwrap_or("")
    );
    let tags: Vec<&str> = e["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !tags.is_empty() {
        println!("tags: {}", tags.join(", "));
    }
    println!(
        "by {} on {}",
        e["actor"].as_str().unwrap_or("?"),
        e["author_node"].as_str().unwrap_or("?")
    );
    println!();
    println!("{}", e["body"].as_str().unwrap_or(""));
}

pub fn entries(json: bool, v: &Value) {
    if json {
        return print_json(v);
    }
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no entries");
    }
    for e in list {
        println!(
            "{}  {}",
            e["id"].as_str().unwrap_or("?"),
            e["title"].as_str().unwrap_or("")
        );
    }
}

pub fn routine(json: bool, r: &Value) {
    if json {
        return print_json(r);
    }
    let args: Vec<&str> = r["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    println!(
        "{}  {} [{}] {} on {}: {} {} (timeout {}s)",
        r["id"].as_str().unwrap_or("?"),
        r["name"].as_str().unwrap_or(""),
        if r["enabled"].as_bool() == Some(true) {
            "enabled"
        } else {
            "disabled"
        },
        r["schedule"].as_str().unwrap_or(""),
        r["target"].as_str().unwrap_or(""),
        r["command"].as_str().unwrap_or(""),
        args.join(" "),
        r["timeout_secs"],
    );
}

pub fn routines(json: bool, v: &Value) {
    if json {
        return print_json(v);
    }
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no routines");
    }
    for r in list {
        routine(false, &r);
    }
}

fn agent_state(v: &Value) -> String {
    let state = &v["state"];
    let name = state["state"].as_str().unwrap_or("?");
    match state.get("pid") {
        Some(pid) => format!("{name} (pid {pid})"),
        None => name.to_string(),
    }
}

pub fn agents(json: bool, v: &Value) {
    if json {
        return print_json(v);
    }
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no agents; add one with `osmoda agent add NAME -- CMD ARGS...`");
        return;
    }
    println!(
        "{:<20} {:<5} {:<24} {:>8}  COMMAND",
        "NAME", "RING", "STATE", "RESTARTS"
    );
    for a in list {
        println!(
            "{:<20} {:<5} {:<24} {:>8}  {}",
            a["spec"]["name"].as_str().unwrap_or("?"),
            a["spec"]["ring"],
            agent_state(&a),
            a["restarts"],
            a["spec"]["command"].as_str().unwrap_or("?")
        );
    }
}

pub fn agent(json: bool, v: &Value) {
    if json {
        return print_json(v);
    }
    if let Some(name) = v["removed"].as_str() {
        println!("removed agent {name}");
        return;
    }
    let spec = &v["spec"];
    println!("agent     {}", spec["name"].as_str().unwrap_or("?"));
    println!("state     {}", agent_state(v));
    println!("ring      {}", spec["ring"]);
    let args: Vec<&str> = spec["args"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    println!(
        "command   {} {}",
        spec["command"].as_str().unwrap_or("?"),
        args.join(" ")
    );
    println!(
        "restart   {}  (automatic restarts: {})",
        spec["restart"].as_str().unwrap_or("?"),
        v["restarts"]
    );
    println!(
        "limits    {} ({})",
        spec["limits"],
        v["limit_mode"].as_str().unwrap_or("?")
    );
    if !v["last_exit"].is_null() {
        println!("last exit {}", v["last_exit"]);
    }
}

pub fn approvals(json: bool, v: &Value) {
    if json {
        return print_json(v);
    }
    let pending = v["pending"].as_array().cloned().unwrap_or_default();
    if pending.is_empty() {
        println!("no tool calls wait for approval");
    }
    for p in pending {
        println!(
            "#{:<5} {:<16} {:<16} {}{}",
            p["id"],
            p["agent"].as_str().unwrap_or("?"),
            p["tool"].as_str().unwrap_or("?"),
            p["arguments"],
            p["reason"]
                .as_str()
                .filter(|r| !r.is_empty())
                .map(|r| format!("  ({r})"))
                .unwrap_or_default()
        );
    }
    for g in v["grants"].as_array().into_iter().flatten() {
        println!(
            "grant: {} may use {} until {} (Unix ms)",
            g["agent"].as_str().unwrap_or("?"),
            g["tool"].as_str().unwrap_or("?"),
            g["expires_at_ms"]
        );
    }
}
