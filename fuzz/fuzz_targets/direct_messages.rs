//! Arbitrary bytes as a direct-protocol message of the fabric (request and
//! response), and as the body of each of the node's own direct protocols
//! (audit ranges, document sync rounds, anti-entropy). The first byte picks
//! the node protocol, so that every decoder sees every input shape. The
//! body is also read as a state summary (carried inside anti-entropy
//! messages and decoded by the sync code).
#![no_main]

use libfuzzer_sys::fuzz_target;
use osmoda_fabric::{DirectRequest, DirectResponse};
use osmoda_node::replication::sync::StateSummary;
use osmoda_node::replication::wire::{Request, Response};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = DirectRequest::decode(data) {
        assert_eq!(request.encode(), data, "decode and encode must agree");
    }
    if let Ok(response) = DirectResponse::decode(data) {
        assert_eq!(response.encode(), data, "decode and encode must agree");
    }
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    // The node's four protocols, and one it does not speak.
    let protocol = u16::from(selector % 5);
    if let Ok(request) = Request::decode(protocol, body) {
        assert_eq!(request.protocol(), protocol);
        assert_eq!(request.encode(), body, "decode and encode must agree");
    }
    if let Ok(response) = Response::decode(protocol, body) {
        assert_eq!(response.encode(), body, "decode and encode must agree");
    }
    let singles = usize::from(selector % 3);
    if let Some(summary) = StateSummary::decode(body, singles) {
        assert_eq!(summary.singles.len(), singles);
        let again = StateSummary::decode(&summary.encode(), singles).map(|s| s.singles);
        assert_eq!(again, Some(summary.singles), "a decoded summary re-encodes");
    }
});
