//! The Redfish JSON rufio reads from a BMC: error bodies and ComputerSystem power state.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinkerbell_rufio::redfish;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = redfish::error_message(&v);
        let _ = redfish::parse_power_state(&v);
    }
});
