//! Arbitrary bytes as the head an agent sends to the egress proxy. A head
//! that parses names a host and a port; a plain HTTP request is forwarded
//! as exactly one origin-form request that closes the connection and
//! carries no proxy header, whatever the agent wrote (no request smuggled
//! past the allowlist check).
#![no_main]

use libfuzzer_sys::fuzz_target;
use osmoda_node::egress::{parse_head, RequestKind};

fuzz_target!(|data: &[u8]| {
    let Some(end) = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
    else {
        return;
    };
    let Ok(request) = parse_head(data, end) else {
        return;
    };
    assert!(!request.host.is_empty(), "an empty host");
    assert!(request.port != 0, "port 0");
    let after = &data[end..];
    match &request.kind {
        RequestKind::Connect => assert_eq!(request.rest, after, "a tunnel's early bytes go on"),
        // Bytes past the declared body would be a second request.
        RequestKind::Forward {
            body: Some(len), ..
        } => {
            let kept = after.len().min(usize::try_from(*len).unwrap_or(usize::MAX));
            assert_eq!(request.rest, &after[..kept], "only the body goes on");
        }
        RequestKind::Forward { body: None, .. } => assert_eq!(request.rest, after),
    }
    if let RequestKind::Forward { head, .. } = &request.kind {
        assert!(head.ends_with(b"\r\n\r\n"));
        let mut headers = [httparse::EMPTY_HEADER; 80];
        let mut parsed = httparse::Request::new(&mut headers);
        let status = parsed.parse(head).expect("the forwarded head parses");
        assert_eq!(
            status,
            httparse::Status::Complete(head.len()),
            "one head, nothing after"
        );
        let mut closes = false;
        for header in parsed.headers.iter() {
            let name = header.name.to_ascii_lowercase();
            assert!(!name.starts_with("proxy-"), "a proxy header forwarded");
            if name == "connection" {
                closes = header.value.eq_ignore_ascii_case(b"close");
            }
        }
        assert!(closes, "the forwarded request must close the connection");
    }
});
