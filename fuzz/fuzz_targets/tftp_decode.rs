//! The TFTP decoder must never panic, and whatever it accepts as a request must survive an
//! encode/decode round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinkerbell_boots::tftp::packet::{self, Mode, Packet, opcode};

fuzz_target!(|data: &[u8]| {
    if let Ok(Packet::Rrq(r) | Packet::Wrq(r)) = Packet::decode(data) {
        let mode = match r.mode {
            Mode::Octet => "octet",
            Mode::Netascii => "netascii",
            Mode::Mail => "mail",
        };
        let again = packet::encode_request(opcode::RRQ, r.filename, mode, &r.options);
        match Packet::decode(&again) {
            Ok(Packet::Rrq(r2)) => {
                assert_eq!(r2.filename, r.filename);
                assert_eq!(r2.mode, r.mode);
                assert_eq!(r2.options, r.options);
            }
            other => panic!("round trip failed: {other:?}"),
        }
    }
});
