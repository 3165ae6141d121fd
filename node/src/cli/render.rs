//! What the CLI prints for each answer: with `--json`, the answer as the
//! node gave it (raw Unix times, every field); otherwise short text for
//! people, with local times, names beside ids and aligned columns.

use osmoda_agentd::{AgentState, ExitStatus};
use serde::Serialize;

use super::out::{self, say};
use super::time;
use crate::api::{
    AgentView, ApprovalsView, AuditEntryView, AuditLogView, EmergencyOutcome, EntryView, ForkView,
    HeadView, InboxEntry, PeerInfo, RoutineView, SecretView, SourceView, StatusView, VerifyReport,
};

/// Columns padded to their widest cell; the last column is not padded.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn print(&self) {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let mut text = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    text.push_str(cell);
                } else {
                    let pad = widths[c].saturating_sub(cell.chars().count());
                    text.push_str(cell);
                    text.push_str(&" ".repeat(pad + 2));
                }
            }
            out::line(text.trim_end());
        }
    }
}

/// JSON when asked for, else the text `text` prints.
pub fn either<T: Serialize + ?Sized>(json: bool, value: &T, text: impl FnOnce(&T)) {
    if json {
        out::json(value);
    } else {
        text(value);
    }
}

/// A node id shortened for columns: enough to tell nodes apart.
pub fn short_id(id: &str) -> String {
    match id.char_indices().nth(16) {
        Some((cut, _)) => format!("{}…", &id[..cut]),
        None => id.to_owned(),
    }
}

pub fn status(s: &StatusView) {
    say!("node      {} ({})", s.node.name, s.node.node_id);
    say!("role      {}", s.node.role);
    say!("fleet     {} ({})", s.node.fleet.name, s.node.fleet.id);
    say!(
        "cert      expires {}",
        time::when_ms(s.node.certificate_expires_at.saturating_mul(1000))
    );
    for (key, value) in &s.labels {
        say!("label     {key} = {value}");
    }
    say!("peers     {}", s.connected_peers);
    for addr in &s.listen {
        say!("listen    {addr}");
    }
    if !s.knowledge.damaged_shards.is_empty() {
        let shards: Vec<String> = s
            .knowledge
            .damaged_shards
            .iter()
            .map(u16::to_string)
            .collect();
        say!(
            "knowledge DAMAGED shard(s) {}: did not load at start; recovering from peers by sync",
            shards.join(", ")
        );
    }
    let a = &s.agents;
    say!(
        "agents    {} (limits: {}){}{}",
        a.count,
        a.limit_mode,
        if a.lockdown { "  LOCKED DOWN" } else { "" },
        if a.frozen { "  FROZEN" } else { "" },
    );
    for layer in &a.confinement {
        if layer.state != "ok" {
            say!(
                "confine   {} {}: {}",
                layer.layer,
                layer.state.to_uppercase(),
                layer.detail
            );
        }
    }
    if !a.held_down.is_empty() {
        say!(
            "held      {} stay stopped until started: {}",
            a.held_down.len(),
            a.held_down.join(", ")
        );
    }
}

pub fn peers(list: &[PeerInfo]) {
    if list.is_empty() {
        say!("no peers connected");
        return;
    }
    let mut table = Table::new(&[
        "NAME",
        "ROLE",
        "TRANS",
        "RTT",
        "KEY EXCHANGE",
        "NODE ID",
        "ADDRESS",
    ]);
    for p in list {
        table.row(vec![
            p.name.clone(),
            p.role.clone(),
            p.transport.clone(),
            p.rtt_ms
                .map(|r| format!("{r:.1}ms"))
                .unwrap_or_else(|| "-".into()),
            p.key_exchange.clone(),
            p.node_id.clone(),
            p.address.clone(),
        ]);
    }
    table.print();
}

pub fn inbox(list: &[InboxEntry]) {
    if list.is_empty() {
        say!("inbox is empty");
    }
    for m in list {
        let from = m.from_name.as_deref().unwrap_or(&m.from);
        say!(
            "{}  [{}] {}: {}",
            time::local_ms(m.received_at_ms),
            m.kind,
            from,
            m.text
        );
    }
}

/// `peer:ID` with the node's name when it is known.
fn actor(e: &AuditEntryView) -> String {
    match (&e.actor_name, e.actor.strip_prefix("peer:")) {
        (Some(name), Some(id)) => format!("peer {name} ({})", short_id(id)),
        (None, Some(id)) => format!("peer {}", short_id(id)),
        _ => e.actor.clone(),
    }
}

/// Where another node's entries came from, and what they were checked
/// against: said before the entries, so a copy that is behind or forked is
/// not read as current.
fn audit_source(s: &SourceView) {
    say!(
        "served by {}; every entry verified against the owner's checkpoint of {} entries",
        s.served_by,
        s.checkpoint_size
    );
    if let Some(known) = s.fleet_size {
        say!(
            "BEHIND: served up to seq {}, the fleet knows seq {}; later entries are not shown",
            last_seq(s.checkpoint_size),
            last_seq(known)
        );
    }
    if let Some(fork) = &s.fork {
        say!("FORK: {fork} (see `osmoda audit forks`)");
    }
    for why in &s.refused {
        say!("refused, did not verify: {why}");
    }
}

/// The last sequence number a checkpoint of `size` entries covers.
fn last_seq(size: u64) -> String {
    match size.checked_sub(1) {
        Some(seq) => seq.to_string(),
        None => "none (an empty log)".into(),
    }
}

pub fn audit_log(view: &AuditLogView) {
    if let Some(source) = &view.source {
        audit_source(source);
    }
    let list = &view.entries;
    if list.is_empty() {
        say!("no entries");
        return;
    }
    let mut table = Table::new(&[
        "SEQ",
        "TIME",
        "ACTOR",
        "ACTION",
        "OUTCOME",
        "TARGET / DETAILS",
    ]);
    for e in list {
        let mut what = e.target.clone();
        if !e.details.is_empty() {
            if !what.is_empty() {
                what.push_str("  ");
            }
            what.push_str(&format!("({})", e.details));
        }
        let actor = if e.ring > 0 {
            format!("{} [ring {}]", actor(e), e.ring)
        } else {
            actor(e)
        };
        table.row(vec![
            e.seq.to_string(),
            time::local_ms(e.time_ms),
            actor,
            e.action.clone(),
            e.outcome.clone(),
            what,
        ]);
    }
    table.print();
}

pub fn audit_verify(v: &VerifyReport) {
    if v.ok {
        say!(
            "audit log verifies: {} entries, {} covered by the signed checkpoint",
            v.entries,
            v.checkpoint_size
        );
        if let Some(source) = &v.served_by {
            say!("  served by {source}");
        }
        if let Some(known) = v.fleet_size {
            say!(
                "  BEHIND: served up to seq {}, the fleet knows seq {}",
                last_seq(v.checkpoint_size),
                last_seq(known)
            );
        }
    } else {
        say!(
            "audit log does NOT verify: {}",
            v.problem.as_deref().unwrap_or("?")
        );
        if let Some(source) = &v.served_by {
            say!("  served by {source}");
        }
    }
    for why in &v.refused {
        say!("  refused, did not verify: {why}");
    }
}

pub fn audit_heads(list: &[HeadView]) {
    if list.is_empty() {
        say!("no audit heads known yet");
        return;
    }
    let mut table = Table::new(&["NAME", "NODE ID", "SIZE", "SIGNED", "ROOT"]);
    for h in list {
        table.row(vec![
            h.name.clone().unwrap_or_else(|| "?".into()),
            h.node_id.clone(),
            h.size.to_string(),
            time::local_ms(h.time_ms),
            short_id(&h.root),
        ]);
    }
    table.print();
}

pub fn audit_forks(list: &[ForkView]) {
    if list.is_empty() {
        say!("no forks known");
    }
    for f in list {
        say!(
            "FORK {}: {} piece(s) of evidence",
            f.node_id,
            f.evidence.len()
        );
    }
}

pub fn entry(e: &EntryView) {
    say!("{}  {}", e.id, e.title);
    if !e.tags.is_empty() {
        say!("tags: {}", e.tags.join(", "));
    }
    say!(
        "by {} on {}, {}",
        e.actor,
        short_id(&e.author_node),
        time::when_ms(e.updated_ms)
    );
    say!("");
    say!("{}", e.body);
}

pub fn entries(list: &[EntryView]) {
    if list.is_empty() {
        say!("no entries");
        return;
    }
    let mut table = Table::new(&["ID", "UPDATED", "TITLE"]);
    for e in list {
        table.row(vec![
            e.id.clone(),
            time::local_ms(e.updated_ms),
            e.title.clone(),
        ]);
    }
    table.print();
}

pub fn routine(r: &RoutineView) {
    say!("routine   {} ({})", r.name, r.id);
    say!(
        "state     {}",
        if r.enabled { "enabled" } else { "disabled" }
    );
    say!("schedule  {}", r.schedule);
    say!("target    {}", r.target);
    say!("command   {} {}", r.command, r.args.join(" "));
    say!("timeout   {} s", r.timeout_secs);
    say!(
        "by        {}, {}",
        r.created_by,
        time::when_ms(r.updated_ms)
    );
}

pub fn routines(list: &[RoutineView]) {
    if list.is_empty() {
        say!("no routines");
        return;
    }
    let mut table = Table::new(&["NAME", "ID", "STATE", "SCHEDULE", "TARGET", "COMMAND"]);
    for r in list {
        table.row(vec![
            r.name.clone(),
            r.id.clone(),
            if r.enabled { "enabled" } else { "disabled" }.into(),
            r.schedule.clone(),
            r.target.clone(),
            format!("{} {}", r.command, r.args.join(" "))
                .trim()
                .to_owned(),
        ]);
    }
    table.print();
}

fn exit_text(status: &ExitStatus) -> String {
    match status {
        ExitStatus::Code { code } => format!("exit code {code}"),
        ExitStatus::Signal { signal } => format!("signal {signal}"),
        ExitStatus::Unknown => "unknown exit".into(),
    }
}

fn state_text(a: &AgentView) -> String {
    let state = match &a.status.state {
        AgentState::Running { pid, since_unix_ms } => {
            format!("running (pid {pid}, {})", time::relative_ms(*since_unix_ms))
        }
        AgentState::Frozen { pid, .. } => format!("frozen (pid {pid})"),
        AgentState::Stopping { pid } => format!("stopping (pid {pid})"),
        AgentState::BackingOff { until_unix_ms, .. } => {
            format!("restarting {}", time::relative_ms(*until_unix_ms))
        }
        AgentState::Stopped => "stopped".into(),
        AgentState::Exited { status } => format!("exited ({})", exit_text(status)),
        AgentState::Failed { reason } => format!("failed: {reason}"),
    };
    if a.held && !matches!(a.status.state, AgentState::Running { .. }) {
        format!("{state}, held")
    } else {
        state
    }
}

fn limits_text(a: &AgentView) -> String {
    let l = &a.status.spec.limits;
    let mut parts = Vec::new();
    if let Some(bytes) = l.memory_bytes {
        parts.push(format!("memory {} MiB", bytes / (1024 * 1024)));
    }
    if let Some(cpu) = l.cpu_percent {
        parts.push(format!("cpu {cpu}%"));
    }
    if let Some(n) = l.max_processes {
        parts.push(format!("{n} processes"));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

pub fn agents(list: &[AgentView]) {
    if list.is_empty() {
        say!("no agents; add one with `osmoda agent add NAME -- CMD ARGS...`");
        return;
    }
    let mut table = Table::new(&["NAME", "RING", "STATE", "RESTARTS", "COMMAND"]);
    for a in list {
        let spec = &a.status.spec;
        table.row(vec![
            spec.name.clone(),
            spec.ring.to_string(),
            state_text(a),
            a.status.restarts.to_string(),
            format!("{} {}", spec.command, spec.args.join(" "))
                .trim()
                .to_owned(),
        ]);
    }
    table.print();
}

pub fn agent(a: &AgentView) {
    let spec = &a.status.spec;
    say!("agent     {}", spec.name);
    say!("state     {}", state_text(a));
    if a.held {
        say!(
            "          stays stopped until `osmoda agent start {}`",
            spec.name
        );
    }
    say!("ring      {}", spec.ring);
    say!("command   {} {}", spec.command, spec.args.join(" "));
    say!(
        "restart   {}  (automatic restarts: {})",
        spec.restart,
        a.status.restarts
    );
    say!("limits    {} ({})", limits_text(a), a.status.limit_mode);
    if let Some(exit) = &a.status.last_exit {
        say!("last exit {}", exit_text(exit));
    }
}

pub fn approvals(v: &ApprovalsView) {
    if v.pending.is_empty() {
        say!("no tool calls wait for approval");
    } else {
        let mut table = Table::new(&["ID", "AGENT", "TOOL", "ASKED", "ARGUMENTS"]);
        for p in &v.pending {
            let mut args = p.arguments.to_string();
            if !p.reason.is_empty() {
                args.push_str(&format!("  ({})", p.reason));
            }
            table.row(vec![
                format!("#{}", p.id),
                p.agent.clone(),
                p.tool.clone(),
                time::relative_ms(p.requested_at_ms),
                args,
            ]);
        }
        table.print();
    }
    for g in &v.grants {
        say!(
            "grant: {} may use {} until {}",
            g.agent,
            g.tool,
            time::when_ms(g.expires_at_ms)
        );
    }
}

pub fn emergency(o: &EmergencyOutcome) {
    if o.scope == "fleet" {
        let published = match o.published {
            Some(true) => "sent to the fleet",
            _ => "NOT sent to the fleet",
        };
        say!("{}: signed and {published}; here: {}", o.kind, o.here);
        if let Some(e) = &o.publish_error {
            say!("  warning: {e}");
        }
    } else {
        say!("{}: {}", o.kind, o.here);
    }
}

pub fn secret(s: &SecretView) {
    say!("secret    {} (version {})", s.name, s.version);
    say!("agents    {}", agents_text(&s.agents));
    say!("created   {}", time::local_ms(s.created_ms));
    say!("rotated   {}", time::local_ms(s.rotated_ms));
}

fn agents_text(agents: &[String]) -> String {
    if agents.is_empty() {
        "-".into()
    } else {
        agents.join(", ")
    }
}

pub fn secrets(list: &[SecretView]) {
    if list.is_empty() {
        say!("no secrets");
        return;
    }
    let mut table = Table::new(&["NAME", "VERSION", "ROTATED", "AGENTS"]);
    for s in list {
        table.row(vec![
            s.name.clone(),
            s.version.to_string(),
            time::local_ms(s.rotated_ms),
            agents_text(&s.agents),
        ]);
    }
    table.print();
}
