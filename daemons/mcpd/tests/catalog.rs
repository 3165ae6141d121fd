//! The catalogue: names, rings, schemas and argument checks.

use osmoda_mcpd::args::{FileWrite, HostExec, MAX_FILE_BYTES, MAX_KEY_BYTES};
use osmoda_mcpd::{parse_arguments, tool, tools, validate_arguments, ArgumentError, Ring};
use serde_json::{json, Value};

const RING_ONE: &[&str] = &[
    "knowledge_put",
    "mesh_send",
    "mesh_broadcast",
    "routine_create",
    "host_exec",
];

#[test]
fn every_tool_is_listed_once_with_its_ring() {
    let names: Vec<&str> = tools().iter().map(|t| t.name).collect();
    let expected = [
        "knowledge_put",
        "knowledge_get",
        "knowledge_search",
        "knowledge_list",
        "audit_log",
        "audit_verify",
        "mesh_peers",
        "mesh_send",
        "mesh_broadcast",
        "agent_message",
        "routine_create",
        "routine_list",
        "kv_get",
        "kv_set",
        "kv_delete",
        "kv_list",
        "file_read",
        "file_write",
        "file_list",
        "file_delete",
        "agent_status",
        "host_exec",
        "approval_request",
        "approval_status",
        "secret_get",
        "agents_find",
        "task_submit",
        "task_status",
        "task_wait",
        "task_reply",
        "task_inbox",
        "task_update",
        "task_complete",
        "task_fail",
        "task_input_required",
    ];
    assert_eq!(names, expected);
    for info in tools() {
        let ring = if RING_ONE.contains(&info.name) {
            Ring::One
        } else {
            Ring::Two
        };
        assert_eq!(info.ring, ring, "{}", info.name);
        assert!(!info.description.is_empty());
        assert!(info
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_'));
    }
    assert_eq!(tool("host_exec").map(|t| t.ring), Some(Ring::One));
    assert!(tool("nope").is_none());
}

#[test]
fn schemas_are_closed_objects_with_documented_properties() {
    for info in tools() {
        let schema = &info.input_schema;
        assert_eq!(schema.get("type"), Some(&json!("object")), "{}", info.name);
        assert_eq!(
            schema.get("additionalProperties"),
            Some(&json!(false)),
            "{}",
            info.name
        );
        assert!(!schema.contains_key("title"), "{}", info.name);
        let properties = schema["properties"].as_object().expect("properties");
        for (name, property) in properties {
            let described = property.get("description").and_then(Value::as_str);
            assert!(
                described.is_some_and(|d| !d.is_empty()),
                "{}.{name}",
                info.name
            );
        }
    }
    let exec = tool("host_exec").expect("host_exec");
    assert_eq!(exec.input_schema["required"], json!(["command"]));
    assert_eq!(
        exec.input_schema["properties"]["timeout_secs"]["maximum"],
        json!(3600)
    );
}

fn field_of(tool: &str, arguments: Value) -> String {
    match validate_arguments(tool, &arguments) {
        Err(ArgumentError::Invalid { field, .. }) => field,
        other => panic!("{tool} {arguments}: expected an invalid argument, got {other:?}"),
    }
}

#[test]
fn errors_name_the_field() {
    assert_eq!(field_of("knowledge_get", json!({})), "id");
    assert_eq!(field_of("knowledge_get", json!({ "id": 7 })), "id");
    assert_eq!(
        field_of("knowledge_get", json!({ "id": "a", "ID": "b" })),
        "ID"
    );
    assert_eq!(
        field_of("host_exec", json!({ "command": "ls", "timeout_secs": -1 })),
        "timeout_secs"
    );
    assert_eq!(
        field_of(
            "host_exec",
            json!({ "command": "ls", "timeout_secs": 3601 })
        ),
        "timeout_secs"
    );
    assert_eq!(
        field_of("host_exec", json!({ "command": "ls", "args": [1] })),
        "args[0]"
    );
    assert_eq!(field_of("host_exec", json!({ "command": "" })), "command");
    assert_eq!(
        field_of(
            "knowledge_put",
            json!({ "title": "t", "tags": vec!["x"; 33] })
        ),
        "tags"
    );
    assert_eq!(
        field_of(
            "knowledge_put",
            json!({ "title": "t", "tags": ["ok", "x".repeat(65)] })
        ),
        "tags[1]"
    );
    assert_eq!(
        field_of("kv_get", json!({ "key": "k".repeat(MAX_KEY_BYTES + 1) })),
        "key"
    );
    assert_eq!(
        field_of("kv_set", json!({ "key": "k\n", "value": "" })),
        "key"
    );
    assert_eq!(
        field_of(
            "file_write",
            json!({ "path": "a", "content": "x".repeat(MAX_FILE_BYTES + 1) })
        ),
        "content"
    );
    assert_eq!(
        field_of("knowledge_search", json!({ "query": "q", "limit": 0 })),
        "limit"
    );
    let message = validate_arguments(
        "host_exec",
        &json!({ "command": "ls", "timeout_secs": "x" }),
    )
    .expect_err("wrong type")
    .to_string();
    assert!(
        message.contains("`timeout_secs`") && message.contains("u32"),
        "{message}"
    );
}

#[test]
fn whole_arguments_and_tools_are_checked() {
    assert_eq!(
        validate_arguments("nope", &json!({})),
        Err(ArgumentError::UnknownTool("nope".into()))
    );
    assert_eq!(
        validate_arguments("kv_get", &json!(["k"])),
        Err(ArgumentError::NotAnObject("an array"))
    );
    assert_eq!(validate_arguments("mesh_peers", &Value::Null), Ok(()));
    assert_eq!(validate_arguments("mesh_peers", &json!({})), Ok(()));
    assert_eq!(field_of("mesh_peers", json!({ "x": 1 })), "x");
}

#[test]
fn valid_arguments_parse_with_their_defaults() {
    let exec: HostExec = parse_arguments(&json!({ "command": "uptime" })).expect("parse");
    assert_eq!(exec.args, Vec::<String>::new());
    assert_eq!(exec.timeout_secs, 60);
    let write: FileWrite =
        parse_arguments(&json!({ "path": "notes/a.md", "content": "é".repeat(1000) }))
            .expect("parse");
    assert_eq!(write.path, "notes/a.md");
    for (tool, arguments) in [
        (
            "knowledge_put",
            json!({ "title": "t", "body": "b", "tags": ["a"] }),
        ),
        ("knowledge_list", json!({ "tag": "a", "limit": 1000 })),
        ("audit_log", json!({ "start": 5, "limit": 10 })),
        ("mesh_send", json!({ "node": "edge-2", "text": "hi" })),
        (
            "routine_create",
            json!({ "name": "n", "schedule": "every 5m", "command": "true" }),
        ),
        ("kv_list", json!({})),
        ("file_list", json!({ "path": "." })),
        ("approval_status", json!({ "request_id": "r-1" })),
    ] {
        assert_eq!(validate_arguments(tool, &arguments), Ok(()), "{tool}");
    }
}

#[test]
fn approval_requests_are_checked_against_their_tool() {
    let ok = json!({
        "tool": "host_exec",
        "arguments": { "command": "systemctl", "args": ["restart", "nginx"] },
        "reason": "nginx is stuck",
    });
    assert_eq!(validate_arguments("approval_request", &ok), Ok(()));
    let bad_args = json!({ "tool": "host_exec", "arguments": { "command": 5 }, "reason": "r" });
    assert_eq!(field_of("approval_request", bad_args), "arguments.command");
    let ring_two = json!({ "tool": "kv_get", "arguments": { "key": "k" }, "reason": "r" });
    assert_eq!(field_of("approval_request", ring_two), "tool");
    let unknown = json!({ "tool": "rm_rf", "reason": "r" });
    assert_eq!(field_of("approval_request", unknown), "tool");
    let no_reason =
        json!({ "tool": "mesh_broadcast", "arguments": { "text": "x" }, "reason": " " });
    assert_eq!(field_of("approval_request", no_reason), "reason");
    let not_object = json!({ "tool": "mesh_broadcast", "arguments": [], "reason": "r" });
    assert_eq!(field_of("approval_request", not_object), "arguments");
}
