//! Every RMCP / RMCP+ / IPMI parser rufio runs on datagrams from the network, with and
//! without an active session (suite 3 and suite 17 keys).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinkerbell_rufio::ipmi::packet::{self, CipherSuite, SessionCrypto, SessionKeys};

fuzz_target!(|data: &[u8]| {
    for id in [3u8, 17] {
        let suite = CipherSuite::by_id(id).expect("implemented");
        let crypto = SessionCrypto {
            suite,
            keys: SessionKeys::derive(suite.auth, &[7; 20]),
        };
        let _ = packet::decode(data, Some(&crypto));
        let _ = packet::decrypt_aes(&crypto.keys.k2, data);
    }
    let _ = packet::decode(data, None);
    let _ = packet::decode_response(data);
    let _ = packet::parse_open_session_response(data);
    let _ = packet::parse_rakp2(data);
    let _ = packet::parse_rakp4(data);
});
