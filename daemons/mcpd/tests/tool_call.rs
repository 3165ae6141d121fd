//! `ToolCall`: one variant per listed tool, parsed and checked as
//! `validate_arguments` checks, with its ring and audit target.

use osmoda_mcpd::args::HostExec;
use osmoda_mcpd::{
    tool, tools, validate_arguments, ArgumentError, Ring, ToolCall, MAX_AUDIT_TARGET_CHARS,
};
use serde_json::{json, Value};

/// Executes a call the way the node does: one arm per variant and no
/// wildcard, so a tool added to the catalogue without an arm here is a
/// compile error (E0004, non-exhaustive patterns). Returns the tool it ran.
fn execute(call: &ToolCall) -> &'static str {
    match call {
        ToolCall::KnowledgePut(_) => "knowledge_put",
        ToolCall::KnowledgeGet(_) => "knowledge_get",
        ToolCall::KnowledgeSearch(_) => "knowledge_search",
        ToolCall::KnowledgeList(_) => "knowledge_list",
        ToolCall::AuditLog(_) => "audit_log",
        ToolCall::AuditVerify(_) => "audit_verify",
        ToolCall::MeshPeers(_) => "mesh_peers",
        ToolCall::MeshSend(_) => "mesh_send",
        ToolCall::MeshBroadcast(_) => "mesh_broadcast",
        ToolCall::AgentMessage(_) => "agent_message",
        ToolCall::RoutineCreate(_) => "routine_create",
        ToolCall::RoutineList(_) => "routine_list",
        ToolCall::KvGet(_) => "kv_get",
        ToolCall::KvSet(_) => "kv_set",
        ToolCall::KvDelete(_) => "kv_delete",
        ToolCall::KvList(_) => "kv_list",
        ToolCall::FileRead(_) => "file_read",
        ToolCall::FileWrite(_) => "file_write",
        ToolCall::FileList(_) => "file_list",
        ToolCall::FileDelete(_) => "file_delete",
        ToolCall::AgentStatus(_) => "agent_status",
        ToolCall::HostExec(_) => "host_exec",
        ToolCall::ApprovalRequest(_) => "approval_request",
        ToolCall::ApprovalStatus(_) => "approval_status",
        ToolCall::SecretGet(_) => "secret_get",
        ToolCall::AgentsFind(_) => "agents_find",
        ToolCall::TaskSubmit(_) => "task_submit",
        ToolCall::TaskStatus(_) => "task_status",
        ToolCall::TaskWait(_) => "task_wait",
        ToolCall::TaskReply(_) => "task_reply",
        ToolCall::TaskInbox(_) => "task_inbox",
        ToolCall::TaskUpdate(_) => "task_update",
        ToolCall::TaskComplete(_) => "task_complete",
        ToolCall::TaskFail(_) => "task_fail",
        ToolCall::TaskInputRequired(_) => "task_input_required",
    }
}

const TASK: &str = "0123456789abcdef0123456789abcdef";

/// Valid arguments for every tool, with the audit target each must give.
/// Bodies, values and messages are `SECRET`, which no target may show.
fn samples() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "knowledge_put",
            json!({ "title": "Disk layout", "body": "SECRET", "tags": ["SECRET"] }),
            "Disk layout",
        ),
        ("knowledge_get", json!({ "id": "k-1" }), "k-1"),
        (
            "knowledge_search",
            json!({ "query": "nginx restart" }),
            "nginx restart",
        ),
        (
            "knowledge_list",
            json!({ "tag": "ops", "prefix": "k-" }),
            "ops",
        ),
        (
            "audit_log",
            json!({ "node": "edge-2", "start": 3 }),
            "edge-2",
        ),
        ("audit_verify", json!({ "node": "edge-3" }), "edge-3"),
        ("mesh_peers", json!({}), ""),
        (
            "mesh_send",
            json!({ "node": "edge-4", "text": "SECRET" }),
            "edge-4",
        ),
        ("mesh_broadcast", json!({ "text": "SECRET" }), ""),
        (
            "agent_message",
            json!({ "agent": "scribe", "text": "SECRET" }),
            "scribe",
        ),
        (
            "routine_create",
            json!({ "name": "rotate logs", "schedule": "every 1h", "command": "logrotate" }),
            "rotate logs",
        ),
        ("routine_list", Value::Null, ""),
        ("kv_get", json!({ "key": "a" }), "a"),
        ("kv_set", json!({ "key": "b", "value": "SECRET" }), "b"),
        ("kv_delete", json!({ "key": "c" }), "c"),
        ("kv_list", json!({ "prefix": "p/" }), "p/"),
        ("file_read", json!({ "path": "notes/a.md" }), "notes/a.md"),
        (
            "file_write",
            json!({ "path": "notes/b.md", "content": "SECRET" }),
            "notes/b.md",
        ),
        ("file_list", json!({ "path": "notes" }), "notes"),
        ("file_delete", json!({ "path": "notes/c.md" }), "notes/c.md"),
        ("agent_status", json!({}), ""),
        (
            "host_exec",
            json!({ "command": "uptime", "args": ["SECRET"] }),
            "uptime",
        ),
        (
            "approval_request",
            json!({ "tool": "host_exec", "arguments": { "command": "reboot" }, "reason": "SECRET" }),
            "host_exec",
        ),
        ("approval_status", json!({ "request_id": "r-7" }), "r-7"),
        ("secret_get", json!({ "name": "api-token" }), "api-token"),
        ("agents_find", json!({ "skill": "summarize" }), "summarize"),
        (
            "task_submit",
            json!({ "to": "scribe@edge-5", "input": ["SECRET"] }),
            "scribe@edge-5",
        ),
        ("task_status", json!({ "id": TASK }), TASK),
        ("task_wait", json!({ "id": TASK, "timeout_secs": 5 }), TASK),
        ("task_reply", json!({ "id": TASK, "text": "SECRET" }), TASK),
        ("task_inbox", json!({ "state": "working" }), "working"),
        ("task_update", json!({ "id": TASK, "text": "SECRET" }), TASK),
        (
            "task_complete",
            json!({ "id": TASK, "artifacts": [{ "name": "out", "text": "SECRET" }] }),
            TASK,
        ),
        ("task_fail", json!({ "id": TASK, "text": "SECRET" }), TASK),
        (
            "task_input_required",
            json!({ "id": TASK, "text": "SECRET" }),
            TASK,
        ),
    ]
}

#[test]
fn every_listed_tool_parses_to_its_own_variant() {
    let samples = samples();
    let sampled: Vec<&str> = samples.iter().map(|(name, _, _)| *name).collect();
    let listed: Vec<&str> = tools().iter().map(|t| t.name).collect();
    assert_eq!(sampled, listed);
    for (name, arguments, _) in &samples {
        let call = ToolCall::parse(name, arguments).expect(name);
        assert_eq!(execute(&call), *name);
        assert_eq!(call.name(), *name);
        let info = tool(name).expect(name);
        assert!(std::ptr::eq(call.info(), info), "{name}");
        assert_eq!(call.ring(), info.ring, "{name}");
    }
}

#[test]
fn each_call_names_its_audit_target_and_never_a_body() {
    for (name, arguments, target) in samples() {
        let call = ToolCall::parse(name, &arguments).expect(name);
        assert_eq!(call.audit_target(), target, "{name}");
        assert!(!call.audit_target().contains("SECRET"), "{name}");
    }
    // Optional targets left out are empty.
    for name in ["knowledge_list", "audit_log", "kv_list", "file_list"] {
        let call = ToolCall::parse(name, &json!({})).expect(name);
        assert_eq!(call.audit_target(), "", "{name}");
    }
}

#[test]
fn audit_targets_are_cut_to_a_bound_in_characters() {
    // 500 two-byte characters: within the command's byte bound, over the
    // target's character bound; a cut by bytes could split a character.
    let command = "é".repeat(500);
    let call = ToolCall::parse("host_exec", &json!({ "command": command })).expect("parse");
    let target = call.audit_target();
    assert_eq!(target.chars().count(), MAX_AUDIT_TARGET_CHARS);
    assert!(command.starts_with(&target));
}

#[test]
fn parsing_keeps_the_arguments_with_their_defaults() {
    let call = ToolCall::parse("host_exec", &json!({ "command": "uptime" })).expect("parse");
    assert_eq!(
        call,
        ToolCall::HostExec(HostExec {
            command: "uptime".into(),
            args: Vec::new(),
            timeout_secs: 60,
        })
    );
    assert_eq!(call.ring(), Ring::One);
    match ToolCall::parse("kv_delete", &json!({ "key": "k" })) {
        Ok(ToolCall::KvDelete(arguments)) => assert_eq!(arguments.key, "k"),
        other => panic!("expected kv_delete, got {other:?}"),
    }
}

#[test]
fn parsing_refuses_exactly_what_validation_refuses() {
    let cases = [
        ("rm_rf", json!({})),
        ("kv_get", json!(["k"])),
        ("kv_get", json!("k")),
        ("knowledge_get", json!({})),
        ("knowledge_get", json!({ "id": "a", "extra": 1 })),
        ("host_exec", json!({ "command": "ls", "timeout_secs": "x" })),
        ("host_exec", json!({ "command": "ls", "args": ["a", 2] })),
        ("mesh_peers", json!({ "x": 1 })),
        (
            "approval_request",
            json!({ "tool": "host_exec", "arguments": { "command": 5 }, "reason": "r" }),
        ),
    ];
    for (name, arguments) in cases {
        let parsed = ToolCall::parse(name, &arguments).map(drop);
        assert!(parsed.is_err(), "{name} {arguments}");
        assert_eq!(parsed, validate_arguments(name, &arguments), "{name}");
    }
    assert_eq!(
        ToolCall::parse("rm_rf", &json!({})),
        Err(ArgumentError::UnknownTool("rm_rf".into()))
    );
    assert_eq!(
        ToolCall::parse("kv_get", &json!(["k"])),
        Err(ArgumentError::NotAnObject("an array"))
    );
    let field = ToolCall::parse("host_exec", &json!({ "command": "ls", "args": ["a", 2] }))
        .err()
        .and_then(|e| e.field().map(str::to_owned));
    assert_eq!(field.as_deref(), Some("args[1]"));
}
