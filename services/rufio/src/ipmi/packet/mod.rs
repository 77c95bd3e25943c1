//! RMCP / RMCP+ wire format and the RAKP key exchange arithmetic (IPMI v2.0 sections 13.x),
//! kept free of I/O so that it can be tested against known answers and fuzzed.
//!
//! Layout of an RMCP+ session packet:
//! ```text
//! RMCP header   06 00 ff 07
//! session hdr   auth-type(06) payload-type(bit7 encrypted, bit6 authenticated)
//!               session-id(4, LE) sequence(4, LE) payload-length(2, LE)
//! payload       [IV(16) AES-CBC-128(payload | 01 02 .. n | n)] when encrypted
//! trailer       integrity pad (ff..) pad-length next-header(07) AuthCode
//! ```
//! The AuthCode covers everything from the auth-type byte to the next-header byte, keyed
//! with K1; the pad makes that span a multiple of 4 bytes.

use aes::Aes128;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

/// RMCP header for IPMI class messages (version 6, no RMCP ACK, class IPMI).
pub const RMCP_HEADER: [u8; 4] = [0x06, 0x00, 0xff, 0x07];
/// Session auth type of IPMI v1.5 unauthenticated messages.
pub const AUTH_TYPE_NONE: u8 = 0x00;
/// Session auth type (format) of RMCP+ messages.
pub const AUTH_TYPE_RMCP_PLUS: u8 = 0x06;

/// RMCP+ payload types.
pub mod payload {
    /// An IPMI message.
    pub const IPMI: u8 = 0x00;
    /// OEM explicit (has IANA + payload id in the header).
    pub const OEM: u8 = 0x02;
    /// RMCP+ Open Session Request.
    pub const OPEN_SESSION_REQUEST: u8 = 0x10;
    /// RMCP+ Open Session Response.
    pub const OPEN_SESSION_RESPONSE: u8 = 0x11;
    /// RAKP Message 1.
    pub const RAKP1: u8 = 0x12;
    /// RAKP Message 2.
    pub const RAKP2: u8 = 0x13;
    /// RAKP Message 3.
    pub const RAKP3: u8 = 0x14;
    /// RAKP Message 4.
    pub const RAKP4: u8 = 0x15;
}

/// Our software ID as requester (remote console, 0x81).
pub const CONSOLE_ADDR: u8 = 0x81;
/// The BMC's slave address.
pub const BMC_ADDR: u8 = 0x20;

/// The authentication (RAKP) algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthAlg {
    /// RAKP-HMAC-SHA1.
    HmacSha1,
    /// RAKP-HMAC-SHA256.
    HmacSha256,
}

/// The integrity algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrityAlg {
    /// None.
    None,
    /// HMAC-SHA1-96.
    HmacSha1_96,
    /// HMAC-SHA256-128.
    HmacSha256_128,
}

/// The confidentiality algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptAlg {
    /// None.
    None,
    /// AES-CBC-128.
    AesCbc128,
}

/// A cipher suite: one algorithm of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CipherSuite {
    /// The cipher suite ID (IPMI v2.0 table 22-20).
    pub id: u8,
    /// Authentication.
    pub auth: AuthAlg,
    /// Integrity.
    pub integrity: IntegrityAlg,
    /// Confidentiality.
    pub crypt: CryptAlg,
}

impl CipherSuite {
    /// The suites this client implements (MD5 ones are not). `None` for others.
    pub fn by_id(id: u8) -> Option<CipherSuite> {
        use AuthAlg::*;
        let (auth, integrity, crypt) = match id {
            1 => (HmacSha1, IntegrityAlg::None, CryptAlg::None),
            2 => (HmacSha1, IntegrityAlg::HmacSha1_96, CryptAlg::None),
            3 => (HmacSha1, IntegrityAlg::HmacSha1_96, CryptAlg::AesCbc128),
            15 => (HmacSha256, IntegrityAlg::None, CryptAlg::None),
            16 => (HmacSha256, IntegrityAlg::HmacSha256_128, CryptAlg::None),
            17 => (
                HmacSha256,
                IntegrityAlg::HmacSha256_128,
                CryptAlg::AesCbc128,
            ),
            _ => return None,
        };
        Some(CipherSuite {
            id,
            auth,
            integrity,
            crypt,
        })
    }

    /// Whether the suite has both integrity and confidentiality (3 and 17).
    pub fn is_strong(&self) -> bool {
        self.integrity != IntegrityAlg::None && self.crypt != CryptAlg::None
    }

    fn auth_code(self) -> u8 {
        match self.auth {
            AuthAlg::HmacSha1 => 0x01,
            AuthAlg::HmacSha256 => 0x03,
        }
    }

    fn integrity_code(self) -> u8 {
        match self.integrity {
            IntegrityAlg::None => 0x00,
            IntegrityAlg::HmacSha1_96 => 0x01,
            IntegrityAlg::HmacSha256_128 => 0x04,
        }
    }

    fn crypt_code(self) -> u8 {
        match self.crypt {
            CryptAlg::None => 0x00,
            CryptAlg::AesCbc128 => 0x01,
        }
    }

    /// Length of the AuthCode in session packets.
    pub fn auth_code_len(&self) -> usize {
        match self.integrity {
            IntegrityAlg::None => 0,
            IntegrityAlg::HmacSha1_96 => 12,
            IntegrityAlg::HmacSha256_128 => 16,
        }
    }
}

/// HMAC with the suite's authentication hash.
pub fn hmac(alg: AuthAlg, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    match alg {
        AuthAlg::HmacSha1 => {
            let mut m = <Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC takes any key");
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().to_vec()
        }
        AuthAlg::HmacSha256 => {
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key");
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().to_vec()
        }
    }
}

/// Constant-time comparison.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Everything both sides know after RAKP 1 and 2, from which the keys follow.
#[derive(Clone)]
pub struct Rakp {
    /// Authentication algorithm.
    pub alg: AuthAlg,
    /// The user's key (Kuid): the password, at most 20 bytes.
    pub kuid: Vec<u8>,
    /// The BMC key (Kg); empty means "use Kuid".
    pub kg: Vec<u8>,
    /// Our (remote console) session ID, SIDm.
    pub console_sid: u32,
    /// The BMC's (managed system) session ID, SIDc.
    pub bmc_sid: u32,
    /// Our random number, Rm.
    pub console_rand: [u8; 16],
    /// The BMC's random number, Rc.
    pub bmc_rand: [u8; 16],
    /// The BMC's GUID, GUIDc.
    pub bmc_guid: [u8; 16],
    /// The requested role byte as sent in RAKP 1 (privilege | 0x10 for name-only lookup).
    pub role: u8,
    /// The user name.
    pub username: Vec<u8>,
}

impl std::fmt::Debug for Rakp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rakp")
            .field("alg", &self.alg)
            .field("console_sid", &self.console_sid)
            .field("bmc_sid", &self.bmc_sid)
            .finish_non_exhaustive()
    }
}

impl Rakp {
    /// The AuthCode the BMC must put in RAKP 2:
    /// HMAC(Kuid, SIDm | SIDc | Rm | Rc | GUIDc | ROLEm | ULENGTHm | UNAMEm).
    pub fn rakp2_auth_code(&self) -> Vec<u8> {
        hmac(
            self.alg,
            &self.kuid,
            &[
                &self.console_sid.to_le_bytes(),
                &self.bmc_sid.to_le_bytes(),
                &self.console_rand,
                &self.bmc_rand,
                &self.bmc_guid,
                &[self.role, self.username.len() as u8],
                &self.username,
            ],
        )
    }

    /// The AuthCode we send in RAKP 3: HMAC(Kuid, Rc | SIDm | ROLEm | ULENGTHm | UNAMEm).
    pub fn rakp3_auth_code(&self) -> Vec<u8> {
        hmac(
            self.alg,
            &self.kuid,
            &[
                &self.bmc_rand,
                &self.console_sid.to_le_bytes(),
                &[self.role, self.username.len() as u8],
                &self.username,
            ],
        )
    }

    /// The session integrity key: HMAC(Kg or Kuid, Rm | Rc | ROLEm | ULENGTHm | UNAMEm).
    pub fn sik(&self) -> Vec<u8> {
        let key = if self.kg.is_empty() {
            &self.kuid
        } else {
            &self.kg
        };
        hmac(
            self.alg,
            key,
            &[
                &self.console_rand,
                &self.bmc_rand,
                &[self.role, self.username.len() as u8],
                &self.username,
            ],
        )
    }

    /// The integrity check value the BMC must put in RAKP 4: HMAC(SIK, Rm | SIDc | GUIDc),
    /// truncated to 12 bytes (SHA1) or 16 bytes (SHA256).
    pub fn rakp4_icv(&self, sik: &[u8]) -> Vec<u8> {
        let mut v = hmac(
            self.alg,
            sik,
            &[
                &self.console_rand,
                &self.bmc_sid.to_le_bytes(),
                &self.bmc_guid,
            ],
        );
        v.truncate(match self.alg {
            AuthAlg::HmacSha1 => 12,
            AuthAlg::HmacSha256 => 16,
        });
        v
    }
}

/// The keys of an established session.
#[derive(Clone)]
pub struct SessionKeys {
    /// Integrity key K1 = HMAC(SIK, 0x01 x 20).
    pub k1: Vec<u8>,
    /// Confidentiality key K2 = HMAC(SIK, 0x02 x 20); AES uses its first 16 bytes.
    pub k2: Vec<u8>,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(<redacted>)")
    }
}

impl SessionKeys {
    /// Derive K1 and K2 from the SIK.
    pub fn derive(alg: AuthAlg, sik: &[u8]) -> SessionKeys {
        SessionKeys {
            k1: hmac(alg, sik, &[&[0x01; 20]]),
            k2: hmac(alg, sik, &[&[0x02; 20]]),
        }
    }
}

/// The security context of an active session, for sealing and opening packets.
#[derive(Debug, Clone)]
pub struct SessionCrypto {
    /// The negotiated suite.
    pub suite: CipherSuite,
    /// The session keys.
    pub keys: SessionKeys,
}

/// IPMI checksum: two's complement of the byte sum.
pub fn checksum(data: &[u8]) -> u8 {
    data.iter()
        .fold(0u8, |a, b| a.wrapping_add(*b))
        .wrapping_neg()
}

/// Encode an IPMI LAN request message (BMC at LUN 0, us as 0x81).
pub fn encode_request(netfn: u8, cmd: u8, rq_seq: u8, data: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(7 + data.len());
    m.extend_from_slice(&[BMC_ADDR, netfn << 2]);
    m.push(checksum(&m[0..2]));
    m.extend_from_slice(&[CONSOLE_ADDR, (rq_seq & 0x3f) << 2, cmd]);
    m.extend_from_slice(data);
    m.push(checksum(&m[3..]));
    m
}

/// A decoded IPMI LAN response message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Network function (the response netfn, request netfn + 1).
    pub netfn: u8,
    /// Command.
    pub cmd: u8,
    /// The request sequence number it answers.
    pub rq_seq: u8,
    /// Completion code.
    pub completion: u8,
    /// Response data after the completion code.
    pub data: Vec<u8>,
}

/// Decode an IPMI LAN response message, checking both checksums.
pub fn decode_response(m: &[u8]) -> Result<Response, String> {
    if m.len() < 8 {
        return Err(format!("IPMI response of {} bytes is too short", m.len()));
    }
    if checksum(&m[0..2]) != m[2] {
        return Err("bad IPMI header checksum".into());
    }
    let last = m.len() - 1;
    if checksum(&m[3..last]) != m[last] {
        return Err("bad IPMI data checksum".into());
    }
    Ok(Response {
        netfn: m[1] >> 2,
        cmd: m[5],
        rq_seq: m[4] >> 2,
        completion: m[6],
        data: m[7..last].to_vec(),
    })
}

/// Encode an IPMI v1.5 packet outside a session (auth type none); used for Get Channel
/// Authentication Capabilities before RMCP+ is negotiated.
pub fn encode_v15(message: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(14 + message.len());
    p.extend_from_slice(&RMCP_HEADER);
    p.push(AUTH_TYPE_NONE);
    p.extend_from_slice(&[0; 8]); // sequence, session id
    p.push(message.len() as u8);
    p.extend_from_slice(message);
    p
}

/// Encode an RMCP+ packet outside a session (Open Session, RAKP): no integrity, no
/// encryption, session ID and sequence 0.
pub fn encode_presession(payload_type: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(16 + payload.len());
    p.extend_from_slice(&RMCP_HEADER);
    p.push(AUTH_TYPE_RMCP_PLUS);
    p.push(payload_type & 0x3f);
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(&(payload.len() as u16).to_le_bytes());
    p.extend_from_slice(payload);
    p
}

fn random_iv() -> [u8; 16] {
    let mut iv = [0u8; 16];
    getrandom::fill(&mut iv).expect("the OS random source works");
    iv
}

/// Encrypt with AES-CBC-128 and IPMI's confidentiality padding (01 02 .. n, then n),
/// IV first. `iv` is random unless given (known-answer tests).
pub fn encrypt_aes(k2: &[u8], payload: &[u8], iv: Option<[u8; 16]>) -> Vec<u8> {
    let iv = iv.unwrap_or_else(random_iv);
    let pad = (16 - (payload.len() + 1) % 16) % 16;
    let mut buf = Vec::with_capacity(16 + payload.len() + pad + 1);
    buf.extend_from_slice(payload);
    buf.extend((1..=pad as u8).collect::<Vec<_>>());
    buf.push(pad as u8);
    let len = buf.len();
    let enc = cbc::Encryptor::<Aes128>::new(k2[..16].into(), &iv.into());
    enc.encrypt_padded_mut::<NoPadding>(&mut buf, len)
        .expect("the buffer is a multiple of the block size");
    let mut out = iv.to_vec();
    out.extend_from_slice(&buf);
    out
}

/// Decrypt an AES-CBC-128 payload (IV first) and strip IPMI's confidentiality padding.
pub fn decrypt_aes(k2: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
    if data.len() < 32 || !data.len().is_multiple_of(16) {
        return Err(format!(
            "encrypted payload of {} bytes is not IV + whole blocks",
            data.len()
        ));
    }
    let (iv, ct) = data.split_at(16);
    let mut buf = ct.to_vec();
    let dec = cbc::Decryptor::<Aes128>::new(k2[..16].into(), iv.into());
    dec.decrypt_padded_mut::<NoPadding>(&mut buf)
        .map_err(|_| "AES-CBC decryption failed".to_string())?;
    let pad = *buf.last().unwrap_or(&0) as usize;
    if pad > 15 || pad + 1 > buf.len() {
        return Err(format!("bad confidentiality pad length {pad}"));
    }
    let body = buf.len() - pad - 1;
    for (i, b) in buf[body..body + pad].iter().enumerate() {
        if *b as usize != i + 1 {
            return Err("bad confidentiality padding".into());
        }
    }
    buf.truncate(body);
    Ok(buf)
}

/// Encode an IPMI message inside an active session: encrypted and authenticated as the
/// suite says. `iv` is for known-answer tests only.
pub fn encode_session(
    crypto: &SessionCrypto,
    bmc_sid: u32,
    seq: u32,
    message: &[u8],
    iv: Option<[u8; 16]>,
) -> Vec<u8> {
    let suite = crypto.suite;
    let mut ptype = payload::IPMI;
    let body = if suite.crypt == CryptAlg::AesCbc128 {
        ptype |= 0x80;
        encrypt_aes(&crypto.keys.k2, message, iv)
    } else {
        message.to_vec()
    };
    if suite.integrity != IntegrityAlg::None {
        ptype |= 0x40;
    }
    let mut p = Vec::with_capacity(64 + body.len());
    p.extend_from_slice(&RMCP_HEADER);
    p.push(AUTH_TYPE_RMCP_PLUS);
    p.push(ptype);
    p.extend_from_slice(&bmc_sid.to_le_bytes());
    p.extend_from_slice(&seq.to_le_bytes());
    p.extend_from_slice(&(body.len() as u16).to_le_bytes());
    p.extend_from_slice(&body);
    if suite.integrity != IntegrityAlg::None {
        // From auth type (offset 4) through next header must be a multiple of 4.
        let covered = p.len() - 4 + 2;
        let pad = (4 - covered % 4) % 4;
        p.extend(std::iter::repeat_n(0xff, pad));
        p.push(pad as u8);
        p.push(0x07);
        let code = integrity_code(crypto, &p[4..]);
        p.extend_from_slice(&code);
    }
    p
}

fn integrity_code(crypto: &SessionCrypto, data: &[u8]) -> Vec<u8> {
    let alg = match crypto.suite.integrity {
        IntegrityAlg::None => return Vec::new(),
        IntegrityAlg::HmacSha1_96 => AuthAlg::HmacSha1,
        IntegrityAlg::HmacSha256_128 => AuthAlg::HmacSha256,
    };
    let mut v = hmac(alg, &crypto.keys.k1, &[data]);
    v.truncate(crypto.suite.auth_code_len());
    v
}

/// A decoded inbound packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// An IPMI v1.5 packet (only unauthenticated ones are accepted).
    V15 {
        /// Session ID.
        session_id: u32,
        /// The IPMI message.
        message: Vec<u8>,
    },
    /// An RMCP+ packet, decrypted and checked.
    V20 {
        /// Payload type (low 6 bits).
        payload_type: u8,
        /// Session ID (ours, for packets inside a session).
        session_id: u32,
        /// Session sequence number.
        seq: u32,
        /// Whether the packet was authenticated.
        authenticated: bool,
        /// The (decrypted) payload.
        payload: Vec<u8>,
    },
}

/// Decode an inbound RMCP/RMCP+ packet. Packets inside a session (session ID not 0) are
/// checked with `crypto` and decrypted; without `crypto` they are refused.
pub fn decode(p: &[u8], crypto: Option<&SessionCrypto>) -> Result<Packet, String> {
    if p.len() < 5 {
        return Err(format!("packet of {} bytes is too short", p.len()));
    }
    if p[0] != 0x06 {
        return Err(format!("RMCP version {:#04x} is not 0x06", p[0]));
    }
    if p[3] & 0x1f != 0x07 {
        return Err(format!("RMCP class {:#04x} is not IPMI", p[3]));
    }
    match p[4] & 0x0f {
        AUTH_TYPE_NONE => {
            if p.len() < 14 {
                return Err("IPMI v1.5 session header is truncated".into());
            }
            let session_id = u32::from_le_bytes([p[9], p[10], p[11], p[12]]);
            let len = p[13] as usize;
            let message = p
                .get(14..14 + len)
                .ok_or("IPMI v1.5 message is truncated")?
                .to_vec();
            Ok(Packet::V15 {
                session_id,
                message,
            })
        }
        AUTH_TYPE_RMCP_PLUS => decode_v20(p, crypto),
        t => Err(format!("unsupported session auth type {t:#04x}")),
    }
}

fn decode_v20(p: &[u8], crypto: Option<&SessionCrypto>) -> Result<Packet, String> {
    let mut off = 5;
    let ptype_byte = *p.get(off).ok_or("RMCP+ header is truncated")?;
    off += 1;
    let payload_type = ptype_byte & 0x3f;
    let encrypted = ptype_byte & 0x80 != 0;
    let authenticated = ptype_byte & 0x40 != 0;
    if payload_type == payload::OEM {
        off += 6;
    }
    let hdr = p.get(off..off + 10).ok_or("RMCP+ header is truncated")?;
    let session_id = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
    let seq = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
    let len = u16::from_le_bytes([hdr[8], hdr[9]]) as usize;
    off += 10;
    let body = p.get(off..off + len).ok_or("RMCP+ payload is truncated")?;
    if session_id == 0 {
        if encrypted || authenticated {
            return Err("secured packet outside a session".into());
        }
        return Ok(Packet::V20 {
            payload_type,
            session_id,
            seq,
            authenticated,
            payload: body.to_vec(),
        });
    }
    let crypto = crypto.ok_or("session packet without an active session")?;
    let suite = crypto.suite;
    if suite.integrity != IntegrityAlg::None {
        if !authenticated {
            return Err("unauthenticated packet in an authenticated session".into());
        }
        let n = suite.auth_code_len();
        if p.len() < off + len + 2 + n {
            return Err("RMCP+ trailer is truncated".into());
        }
        let code_at = p.len() - n;
        let want = integrity_code(crypto, &p[4..code_at]);
        if !ct_eq(&want, &p[code_at..]) {
            return Err("integrity check failed".into());
        }
        if p[code_at - 1] != 0x07 {
            return Err("bad next header in RMCP+ trailer".into());
        }
        let pad = p[code_at - 2] as usize;
        if off + len + pad + 2 != code_at {
            return Err("bad integrity pad length".into());
        }
    }
    let payload = if encrypted {
        if suite.crypt == CryptAlg::None {
            return Err("encrypted packet in a session without confidentiality".into());
        }
        decrypt_aes(&crypto.keys.k2, body)?
    } else {
        if suite.crypt != CryptAlg::None && payload_type == payload::IPMI {
            return Err("cleartext packet in an encrypted session".into());
        }
        body.to_vec()
    };
    Ok(Packet::V20 {
        payload_type,
        session_id,
        seq,
        authenticated,
        payload,
    })
}

/// Open Session Request payload.
pub fn open_session_request(
    tag: u8,
    privilege: u8,
    console_sid: u32,
    suite: CipherSuite,
) -> Vec<u8> {
    let mut p = vec![tag, privilege, 0, 0];
    p.extend_from_slice(&console_sid.to_le_bytes());
    p.extend_from_slice(&[0x00, 0, 0, 0x08, suite.auth_code(), 0, 0, 0]);
    p.extend_from_slice(&[0x01, 0, 0, 0x08, suite.integrity_code(), 0, 0, 0]);
    p.extend_from_slice(&[0x02, 0, 0, 0x08, suite.crypt_code(), 0, 0, 0]);
    p
}

/// Open Session Response fields we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSessionResponse {
    /// Message tag.
    pub tag: u8,
    /// RMCP+ status code.
    pub status: u8,
    /// Our session ID, echoed.
    pub console_sid: u32,
    /// The BMC's session ID.
    pub bmc_sid: u32,
    /// The algorithms the BMC chose (auth, integrity, confidentiality codes).
    pub algorithms: [u8; 3],
}

/// Parse an Open Session Response. A non-zero status comes back with only the first bytes.
pub fn parse_open_session_response(p: &[u8]) -> Result<OpenSessionResponse, String> {
    // An error response may stop after the status (ipmi_sim does).
    if p.len() < 2 || (p[1] == 0 && p.len() < 8) {
        return Err("Open Session Response is truncated".into());
    }
    let mut r = OpenSessionResponse {
        tag: p[0],
        status: p[1],
        console_sid: 0,
        bmc_sid: 0,
        algorithms: [0; 3],
    };
    if r.status != 0 {
        return Ok(r);
    }
    r.console_sid = u32::from_le_bytes([p[4], p[5], p[6], p[7]]);
    if p.len() < 36 {
        return Err("Open Session Response is truncated".into());
    }
    r.bmc_sid = u32::from_le_bytes([p[8], p[9], p[10], p[11]]);
    r.algorithms = [p[16], p[24], p[32]];
    Ok(r)
}

/// RAKP Message 1 payload.
pub fn rakp1(tag: u8, r: &Rakp) -> Vec<u8> {
    let mut p = vec![tag, 0, 0, 0];
    p.extend_from_slice(&r.bmc_sid.to_le_bytes());
    p.extend_from_slice(&r.console_rand);
    p.extend_from_slice(&[r.role, 0, 0, r.username.len() as u8]);
    p.extend_from_slice(&r.username);
    p
}

/// RAKP Message 2 fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp2 {
    /// Message tag.
    pub tag: u8,
    /// RMCP+ status code.
    pub status: u8,
    /// Our session ID, echoed.
    pub console_sid: u32,
    /// Rc.
    pub bmc_rand: [u8; 16],
    /// GUIDc.
    pub bmc_guid: [u8; 16],
    /// Key exchange AuthCode.
    pub auth_code: Vec<u8>,
}

/// Parse RAKP Message 2.
pub fn parse_rakp2(p: &[u8]) -> Result<Rakp2, String> {
    if p.len() < 2 || (p[1] == 0 && p.len() < 8) {
        return Err("RAKP 2 is truncated".into());
    }
    let mut r = Rakp2 {
        tag: p[0],
        status: p[1],
        console_sid: p
            .get(4..8)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0),
        bmc_rand: [0; 16],
        bmc_guid: [0; 16],
        auth_code: Vec::new(),
    };
    if r.status != 0 {
        return Ok(r);
    }
    if p.len() < 40 {
        return Err("RAKP 2 is truncated".into());
    }
    r.bmc_rand.copy_from_slice(&p[8..24]);
    r.bmc_guid.copy_from_slice(&p[24..40]);
    r.auth_code = p[40..].to_vec();
    Ok(r)
}

/// RAKP Message 3 payload (status 0 with our AuthCode, or an error status without one).
pub fn rakp3(tag: u8, status: u8, bmc_sid: u32, auth_code: &[u8]) -> Vec<u8> {
    let mut p = vec![tag, status, 0, 0];
    p.extend_from_slice(&bmc_sid.to_le_bytes());
    if status == 0 {
        p.extend_from_slice(auth_code);
    }
    p
}

/// RAKP Message 4 fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp4 {
    /// Message tag.
    pub tag: u8,
    /// RMCP+ status code.
    pub status: u8,
    /// Our session ID, echoed.
    pub console_sid: u32,
    /// Integrity check value.
    pub icv: Vec<u8>,
}

/// Parse RAKP Message 4.
pub fn parse_rakp4(p: &[u8]) -> Result<Rakp4, String> {
    if p.len() < 2 || (p[1] == 0 && p.len() < 8) {
        return Err("RAKP 4 is truncated".into());
    }
    Ok(Rakp4 {
        tag: p[0],
        status: p[1],
        console_sid: p
            .get(4..8)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0),
        icv: p.get(8..).unwrap_or_default().to_vec(),
    })
}

/// Text for an RMCP+ status code (IPMI v2.0 table 13-15).
pub fn rmcp_status_text(code: u8) -> &'static str {
    match code {
        0x00 => "no errors",
        0x01 => "insufficient resources to create a session",
        0x02 => "invalid session ID",
        0x03 => "invalid payload type",
        0x04 => "invalid authentication algorithm",
        0x05 => "invalid integrity algorithm",
        0x06 => "no matching authentication payload",
        0x07 => "no matching integrity payload",
        0x08 => "inactive session ID",
        0x09 => "invalid role",
        0x0a => "unauthorized role or privilege level requested",
        0x0b => "insufficient resources to create a session at the requested role",
        0x0c => "invalid name length",
        0x0d => "unauthorized name",
        0x0e => "unauthorized GUID",
        0x0f => "invalid integrity check value",
        0x10 => "invalid confidentiality algorithm",
        0x11 => "no cipher suite match with proposed security algorithms",
        0x12 => "illegal or unrecognized parameter",
        _ => "unknown status",
    }
}

/// Text for an IPMI completion code.
pub fn completion_text(code: u8) -> &'static str {
    match code {
        0x00 => "ok",
        0xc0 => "node busy",
        0xc1 => "invalid command",
        0xc2 => "invalid command for this LUN",
        0xc3 => "timeout while processing",
        0xc4 => "out of space",
        0xc5 => "reservation cancelled",
        0xc6 => "request data truncated",
        0xc7 => "request data length invalid",
        0xc8 => "request data field length limit exceeded",
        0xc9 => "parameter out of range",
        0xcc => "invalid data field in request",
        0xcd => "command illegal for this sensor or record type",
        0xce => "response could not be provided",
        0xd4 => "insufficient privilege level",
        0xd5 => "command not supported in present state",
        0xd6 => "command sub-function disabled or unavailable",
        0x80 => "parameter not supported",
        0x81 => "attempt to set 'set in progress' when not in 'set complete' state",
        0x82 => "attempt to write a read-only parameter",
        _ => "unspecified error",
    }
}

#[cfg(test)]
mod tests;
