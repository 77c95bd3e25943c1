//! The tink server's `ReportActionStatus` dispatch (`dispatch::classify_report`: which of the two
//! upstream generations a request message belongs to, read from the wire types of its fields
//! before either generated server decodes it) on fuzzed message bytes. Nothing may panic, and
//! the rule the dispatcher relies on holds for every message a real worker could send:
//! * a legacy `WorkflowActionStatus` that carries `action_status`, `seconds` or `message` is
//!   classified legacy;
//! * a current `ActionStatusRequest` that carries `action_id`, `action_name`, `action_state`,
//!   `execution_duration` or `message` is classified current.
//! (The fuzzed bytes are decoded as each message and, when they decode, encoded again as that
//! generation's client would send them.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tinkerbell_tink_proto::{current, legacy};
use tinkerbell_tink_server::dispatch::{Generation, classify_report};

fuzz_target!(|data: &[u8]| {
    let _ = classify_report(data);

    if let Ok(m) = legacy::WorkflowActionStatus::decode(data) {
        let deciding = m.action_status != 0 || m.seconds != 0 || !m.message.is_empty();
        if deciding {
            let wire = m.encode_to_vec();
            assert_eq!(
                classify_report(&wire),
                Generation::Legacy,
                "legacy message {m:?} misrouted"
            );
        }
    }
    if let Ok(m) = current::ActionStatusRequest::decode(data) {
        let deciding = m.action_id.is_some()
            || m.action_name.is_some()
            || m.action_state.is_some()
            || m.execution_duration.is_some()
            || m.message.is_some();
        if deciding {
            let wire = m.encode_to_vec();
            assert_eq!(
                classify_report(&wire),
                Generation::Current,
                "current message {m:?} misrouted"
            );
        }
    }
});
