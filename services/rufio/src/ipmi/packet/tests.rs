//! Table tests of the wire format and known-answer tests of the key exchange.
//!
//! The expected values were computed independently of this code by
//! `services/rufio/tools/ipmi_vectors.py` (Python `hmac`/`hashlib`, AES from `openssl enc`)
//! from the IPMI v2.0 formulas, for suite 3 (SHA1) and suite 17 (SHA256). Suite 17 cannot be
//! exercised against ipmi_sim, so these vectors are its proof.

use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn fixture(alg: AuthAlg) -> Rakp {
    let mut r = Rakp {
        alg,
        kuid: b"password".to_vec(),
        kg: Vec::new(),
        console_sid: 0x1122_3344,
        bmc_sid: 0xa1b2_c3d4,
        console_rand: [0; 16],
        bmc_rand: [0; 16],
        bmc_guid: [0; 16],
        role: 0x14,
        username: b"admin".to_vec(),
    };
    for i in 0..16 {
        r.console_rand[i] = i as u8;
        r.bmc_rand[i] = 0x10 + i as u8;
        r.bmc_guid[i] = 0xa0 + i as u8;
    }
    r
}

struct Vectors {
    suite: u8,
    rakp2: &'static str,
    rakp3: &'static str,
    sik: &'static str,
    rakp4: &'static str,
    k1: &'static str,
    k2: &'static str,
    packet: &'static str,
}

const VECTORS: &[Vectors] = &[
    Vectors {
        suite: 3,
        rakp2: "5e1e3071758946a1098c2f8f1ba46703b112ac7d",
        rakp3: "4402012e214da511895a399bd77d5396e7998a4d",
        sik: "122c77c4b11ccd93251cbae6c34a9cb6310da154",
        rakp4: "f3ddb892095bfcbeee5ce415",
        k1: "e4472be78f9a81fa68297aab696a7be8c97fc9f8",
        k2: "2b6552012a2517cb3b5713901d757a6efc7d8301",
        packet: "0600ff0706c0d4c3b2a10700000020005a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5af8d79a97efb0e443c9b7cfda57f3580cffff0207b57be7885e57c1b58c953f6e",
    },
    Vectors {
        suite: 17,
        rakp2: "a167e273bca0fb0c3e6110e6f9d599efd15fd300a56d1bb1e1f001137ee8896e",
        rakp3: "e6f17841e92f8c11cbc4fd1cafcc9c21e3d814e713e13e9ee640103b50c0ef15",
        sik: "e5935f7199865ad961063477b0662684e2ce9b1da8f2b8d41c5ce127d37e9bcf",
        rakp4: "fc9960dda465b803d35c5e40c4705b3d",
        k1: "dc4fe73d075306f6897115dd63257385e845c10404fa1d73991790c6a101bec2",
        k2: "2a4f969ea6dfa83066f36674fdc2fea289fa1a21da90303e9b5269b54ec5adb5",
        packet: "0600ff0706c0d4c3b2a10700000020005a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a2802d188114bf0172ced07cbb4da2971ffff0207813f31c2aebb1e1b761dd24ecf3c8078",
    },
];

#[test]
fn key_exchange_known_answers() {
    for v in VECTORS {
        let suite = CipherSuite::by_id(v.suite).unwrap();
        let r = fixture(suite.auth);
        assert_eq!(
            r.rakp2_auth_code(),
            hex(v.rakp2),
            "suite {} RAKP 2",
            v.suite
        );
        assert_eq!(
            r.rakp3_auth_code(),
            hex(v.rakp3),
            "suite {} RAKP 3",
            v.suite
        );
        let sik = r.sik();
        assert_eq!(sik, hex(v.sik), "suite {} SIK", v.suite);
        assert_eq!(r.rakp4_icv(&sik), hex(v.rakp4), "suite {} RAKP 4", v.suite);
        let keys = SessionKeys::derive(suite.auth, &sik);
        assert_eq!(keys.k1, hex(v.k1), "suite {} K1", v.suite);
        assert_eq!(keys.k2, hex(v.k2), "suite {} K2", v.suite);
    }
}

#[test]
fn sealed_packet_known_answers() {
    for v in VECTORS {
        let suite = CipherSuite::by_id(v.suite).unwrap();
        let r = fixture(suite.auth);
        let crypto = SessionCrypto {
            suite,
            keys: SessionKeys::derive(suite.auth, &r.sik()),
        };
        let msg = encode_request(0x00, 0x01, 5, &[]);
        let p = encode_session(&crypto, r.bmc_sid, 7, &msg, Some([0x5a; 16]));
        assert_eq!(p, hex(v.packet), "suite {} sealed packet", v.suite);
        // And it opens again (decode checks integrity and strips both paddings).
        match decode(&p, Some(&crypto)).unwrap() {
            Packet::V20 {
                payload_type,
                session_id,
                seq,
                authenticated,
                payload,
            } => {
                assert_eq!(
                    (payload_type, session_id, seq, authenticated),
                    (payload::IPMI, r.bmc_sid, 7, true)
                );
                assert_eq!(payload, msg);
            }
            other => panic!("unexpected {other:?}"),
        }
        // A flipped bit anywhere fails the integrity check.
        for i in [5, 20, p.len() - 1] {
            let mut bad = p.clone();
            bad[i] ^= 0x01;
            assert!(decode(&bad, Some(&crypto)).is_err(), "flip at {i}");
        }
    }
}

#[test]
fn ipmi_message_encoding() {
    // (netfn, cmd, seq, data, encoded) — checksums per IPMI v2.0 section 13.8.
    let table: &[(u8, u8, u8, &[u8], &str)] = &[
        (0x06, 0x38, 0, &[0x8e, 0x04], "2018c88100388e04b5"),
        (0x00, 0x01, 5, &[], "2000e08114016a"),
        (0x00, 0x02, 1, &[0x01], "2000e08104020178"),
        (
            0x06,
            0x3c,
            63,
            &[0xd4, 0xc3, 0xb2, 0xa1],
            "2018c881fc3cd4c3b2a15d",
        ),
    ];
    for (netfn, cmd, seq, data, want) in table {
        let got = encode_request(*netfn, *cmd, *seq, data);
        assert_eq!(got, hex(want), "netfn {netfn:#x} cmd {cmd:#x}");
        assert_eq!(checksum(&got[3..]), 0, "data checksum closes the sum");
    }
}

#[test]
fn ipmi_response_decoding() {
    // Get Chassis Status response: power on.
    let mut m = vec![0x81, 0x01 << 2];
    m.push(checksum(&m));
    let body = [0x20, 5 << 2, 0x01, 0x00, 0x01, 0x00, 0x00];
    m.extend_from_slice(&body);
    m.push(checksum(&body));
    let r = decode_response(&m).unwrap();
    assert_eq!(
        r,
        Response {
            netfn: 1,
            cmd: 1,
            rq_seq: 5,
            completion: 0,
            data: vec![1, 0, 0]
        }
    );
    let mut bad = m.clone();
    bad[2] ^= 1;
    assert!(decode_response(&bad).is_err());
    let mut bad = m.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert!(decode_response(&bad).is_err());
    assert!(decode_response(&m[..5]).is_err());
}

#[test]
fn presession_and_v15_framing() {
    let p = encode_v15(&[1, 2, 3]);
    assert_eq!(
        p,
        hex(concat!("0600ff0700", "0000000000000000", "03010203"))
    );
    assert_eq!(
        decode(&p, None).unwrap(),
        Packet::V15 {
            session_id: 0,
            message: vec![1, 2, 3]
        }
    );
    let p = encode_presession(payload::OPEN_SESSION_REQUEST, &[9, 9]);
    assert_eq!(
        p,
        hex(concat!("0600ff070610", "0000000000000000", "0200", "0909"))
    );
    assert_eq!(
        decode(&p, None).unwrap(),
        Packet::V20 {
            payload_type: payload::OPEN_SESSION_REQUEST,
            session_id: 0,
            seq: 0,
            authenticated: false,
            payload: vec![9, 9]
        }
    );
}

#[test]
fn decode_rejects_garbage() {
    let cases: &[&[u8]] = &[
        &[],
        &[0x06, 0x00, 0xff],
        &[0x07, 0x00, 0xff, 0x07, 0x00],             // RMCP version
        &[0x06, 0x00, 0xff, 0x06, 0x00],             // ASF class
        &[0x06, 0x00, 0xff, 0x07, 0x02],             // MD5 auth type
        &[0x06, 0x00, 0xff, 0x07, 0x00, 0, 0, 0, 0], // truncated v1.5
        &[
            0x06, 0x00, 0xff, 0x07, 0x06, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0x00,
        ], // length past end
        &[
            0x06, 0x00, 0xff, 0x07, 0x06, 0xc0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ], // session packet, no session
        &[
            0x06, 0x00, 0xff, 0x07, 0x06, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ], // secured outside a session
    ];
    for c in cases {
        assert!(decode(c, None).is_err(), "{c:02x?}");
    }
}

#[test]
fn open_session_and_rakp_payloads() {
    let suite = CipherSuite::by_id(3).unwrap();
    let p = open_session_request(7, 4, 0x1122_3344, suite);
    assert_eq!(
        p,
        hex(concat!(
            "07040000",
            "44332211",
            "0000000801000000",
            "0100000801000000",
            "0200000801000000"
        ))
    );
    let p17 = open_session_request(7, 4, 0x1122_3344, CipherSuite::by_id(17).unwrap());
    assert_eq!((p17[12], p17[20], p17[28]), (0x03, 0x04, 0x01));

    // A response echoing the suite.
    let mut resp = vec![7, 0, 4, 0];
    resp.extend_from_slice(&0x1122_3344u32.to_le_bytes());
    resp.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    resp.extend_from_slice(&p[8..]);
    let r = parse_open_session_response(&resp).unwrap();
    assert_eq!(
        (r.tag, r.status, r.console_sid, r.bmc_sid),
        (7, 0, 0x1122_3344, 0xa1b2_c3d4)
    );
    assert_eq!(r.algorithms, [1, 1, 1]);
    // An error response is short.
    let r = parse_open_session_response(&[7, 4, 0, 0, 0x44, 0x33, 0x22, 0x11]).unwrap();
    assert_eq!(r.status, 4);
    let r = parse_open_session_response(&[7, 0x11]).unwrap();
    assert_eq!(r.status, 0x11);
    assert!(parse_open_session_response(&[7, 0, 0]).is_err());
    assert!(parse_open_session_response(&[7]).is_err());
    assert_eq!(parse_rakp2(&[8, 0x0d]).unwrap().status, 0x0d);
    assert_eq!(parse_rakp4(&[8, 0x0f]).unwrap().status, 0x0f);

    let rk = fixture(AuthAlg::HmacSha1);
    let m1 = rakp1(8, &rk);
    assert_eq!(m1.len(), 28 + 5);
    assert_eq!(&m1[4..8], &rk.bmc_sid.to_le_bytes());
    assert_eq!(&m1[24..28], &[0x14, 0, 0, 5]);
    assert_eq!(&m1[28..], b"admin");

    let mut m2 = vec![8, 0, 0, 0];
    m2.extend_from_slice(&rk.console_sid.to_le_bytes());
    m2.extend_from_slice(&rk.bmc_rand);
    m2.extend_from_slice(&rk.bmc_guid);
    m2.extend_from_slice(&rk.rakp2_auth_code());
    let r2 = parse_rakp2(&m2).unwrap();
    assert_eq!(r2.bmc_rand, rk.bmc_rand);
    assert_eq!(r2.bmc_guid, rk.bmc_guid);
    assert_eq!(r2.auth_code, rk.rakp2_auth_code());
    assert!(parse_rakp2(&m2[..30]).is_err());

    let m3 = rakp3(9, 0, rk.bmc_sid, &rk.rakp3_auth_code());
    assert_eq!(m3.len(), 8 + 20);
    assert_eq!(rakp3(9, 0x0f, rk.bmc_sid, &[]).len(), 8);
    let r4 = parse_rakp4(&[9, 0, 0, 0, 0x44, 0x33, 0x22, 0x11, 1, 2, 3]).unwrap();
    assert_eq!(
        (r4.status, r4.console_sid, r4.icv.clone()),
        (0, 0x1122_3344, vec![1, 2, 3])
    );
}

#[test]
fn aes_padding_round_trips() {
    let k2 = [7u8; 20];
    for n in 0..40 {
        let data: Vec<u8> = (0..n as u8).collect();
        let c = encrypt_aes(&k2, &data, None);
        assert_eq!(c.len() % 16, 0);
        assert!(c.len() >= 32);
        assert_eq!(decrypt_aes(&k2, &c).unwrap(), data, "length {n}");
    }
    assert!(decrypt_aes(&k2, &[0; 17]).is_err());
}

#[test]
fn cipher_suite_table() {
    for (id, strong) in [
        (1, false),
        (2, false),
        (3, true),
        (15, false),
        (16, false),
        (17, true),
    ] {
        assert_eq!(
            CipherSuite::by_id(id).unwrap().is_strong(),
            strong,
            "suite {id}"
        );
    }
    for id in [0, 6, 7, 8, 11, 12, 18] {
        assert!(CipherSuite::by_id(id).is_none(), "suite {id}");
    }
    assert_eq!(CipherSuite::by_id(3).unwrap().auth_code_len(), 12);
    assert_eq!(CipherSuite::by_id(17).unwrap().auth_code_len(), 16);
}

/// A small deterministic generator (xorshift), so the robustness test needs no extra crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn mutated_packets_never_panic() {
    // Valid packets of every framing, then random bit flips, truncations and extensions: the
    // decoder must answer Ok or Err, never panic (fuzz/ runs the same entry points longer).
    let suite = CipherSuite::by_id(17).unwrap();
    let r = fixture(suite.auth);
    let crypto = SessionCrypto {
        suite,
        keys: SessionKeys::derive(suite.auth, &r.sik()),
    };
    let seeds = [
        encode_v15(&encode_request(0x06, 0x38, 0, &[0x8e, 0x04])),
        encode_presession(payload::RAKP2, &[1; 60]),
        encode_session(&crypto, r.bmc_sid, 9, &encode_request(0, 1, 3, &[]), None),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let mut p = seeds[(rng.next() % seeds.len() as u64) as usize].clone();
        match rng.next() % 4 {
            0 => {
                let i = (rng.next() as usize) % p.len();
                p[i] ^= 1 << (rng.next() % 8);
            }
            1 => p.truncate((rng.next() as usize) % p.len()),
            2 => p.extend((0..rng.next() % 40).map(|_| rng.next() as u8)),
            _ => {
                let i = (rng.next() as usize) % p.len();
                p[i] = rng.next() as u8;
            }
        }
        let _ = decode(&p, Some(&crypto));
        let _ = decode(&p, None);
        let _ = decode_response(&p);
        let _ = parse_open_session_response(&p);
        let _ = parse_rakp2(&p);
        let _ = parse_rakp4(&p);
        let _ = decrypt_aes(&crypto.keys.k2, &p);
    }
}
