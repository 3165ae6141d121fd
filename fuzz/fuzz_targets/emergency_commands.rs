//! Arbitrary bytes as a fleet emergency command, as the emergency topic's
//! validator and the register exchange read them: a command that decodes
//! encodes back to its input, and neither verifying nor admitting it (as
//! news or as a register entry) panics.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use osmoda_fabric_proto::emergency::MAX_COMMAND_LEN;
use osmoda_fabric_proto::{admit, admit_news, EmergencyCommand};

fuzz_target!(|data: &[u8]| {
    let Ok(cmd) = EmergencyCommand::decode(data) else {
        return;
    };
    assert!(data.len() <= MAX_COMMAND_LEN);
    assert_eq!(cmd.encode(), data, "decode and encode must agree");
    let _ = cmd.verify(&common::root().public(), common::NOW);
    let now_ms = common::NOW * 1000;
    for last in [None, Some(cmd.order()), Some((u64::MAX, [0xff; 16]))] {
        let _ = admit(last, &cmd, now_ms);
        let _ = admit_news(last, &cmd, now_ms);
    }
    assert_eq!(
        admit(Some(cmd.order()), &cmd, u64::MAX),
        osmoda_fabric_proto::Admission::Replay,
        "a command is never newer than itself"
    );
});
