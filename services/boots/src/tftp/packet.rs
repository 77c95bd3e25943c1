//! The TFTP wire format (RFC 1350) with the option extension (RFC 2347): decoding of everything
//! a client can send, encoding of everything the server sends.
//!
//! The decoder is total: any byte string yields either a packet or a [`PacketError`], never a
//! panic (a fuzz target in `fuzz/` holds it to that). It is lenient where real clients are
//! sloppy — trailing NUL padding after the options, an option name without a value at the end,
//! option names in any case — and strict where a wrong guess would serve the wrong thing: the
//! file name and mode must be present, NUL-terminated and UTF-8.

use std::fmt;

/// Opcodes.
pub mod opcode {
    /// Read request.
    pub const RRQ: u16 = 1;
    /// Write request.
    pub const WRQ: u16 = 2;
    /// Data.
    pub const DATA: u16 = 3;
    /// Acknowledgement.
    pub const ACK: u16 = 4;
    /// Error.
    pub const ERROR: u16 = 5;
    /// Option acknowledgement (RFC 2347).
    pub const OACK: u16 = 6;
}

/// Error codes (RFC 1350, RFC 2347).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    /// Not defined, see the message.
    NotDefined = 0,
    /// File not found.
    FileNotFound = 1,
    /// Access violation.
    AccessViolation = 2,
    /// Disk full or allocation exceeded.
    DiskFull = 3,
    /// Illegal TFTP operation.
    IllegalOperation = 4,
    /// Unknown transfer ID.
    UnknownTid = 5,
    /// File already exists.
    FileExists = 6,
    /// No such user.
    NoSuchUser = 7,
    /// Option negotiation refused (RFC 2347).
    OptionRefused = 8,
}

impl ErrorCode {
    /// The code for a wire value (unknown values map to `NotDefined`).
    pub fn from_u16(v: u16) -> ErrorCode {
        match v {
            1 => ErrorCode::FileNotFound,
            2 => ErrorCode::AccessViolation,
            3 => ErrorCode::DiskFull,
            4 => ErrorCode::IllegalOperation,
            5 => ErrorCode::UnknownTid,
            6 => ErrorCode::FileExists,
            7 => ErrorCode::NoSuchUser,
            8 => ErrorCode::OptionRefused,
            _ => ErrorCode::NotDefined,
        }
    }
}

/// Transfer mode of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bytes as they are.
    Octet,
    /// Text with CR LF line ends (RFC 764).
    Netascii,
    /// Obsolete `mail` mode, never served.
    Mail,
}

/// A read or write request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The requested file name, exactly as sent.
    pub filename: &'a str,
    /// The transfer mode.
    pub mode: Mode,
    /// Options in the order sent (names as sent; compare case-insensitively).
    pub options: Vec<(&'a str, &'a str)>,
}

impl Request<'_> {
    /// The value of option `name` (case-insensitive; the first occurrence wins).
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// A decoded packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Read request.
    Rrq(Request<'a>),
    /// Write request.
    Wrq(Request<'a>),
    /// Data block.
    Data {
        /// Block number.
        block: u16,
        /// Payload.
        data: &'a [u8],
    },
    /// Acknowledgement of a block (0 acknowledges an OACK).
    Ack {
        /// Block number.
        block: u16,
    },
    /// Error.
    Error {
        /// Code.
        code: u16,
        /// Message (lossy UTF-8).
        message: String,
    },
    /// Option acknowledgement.
    Oack {
        /// Options.
        options: Vec<(&'a str, &'a str)>,
    },
}

/// Why a datagram is not a TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Fewer than the 4 bytes every packet has (ACK/DATA/ERROR) or 2 bytes (requests).
    #[error("packet too short")]
    TooShort,
    /// An opcode outside 1..=6.
    #[error("unknown opcode {0}")]
    UnknownOpcode(u16),
    /// A string field without its NUL terminator.
    #[error("unterminated string")]
    Unterminated,
    /// A string field that is not UTF-8.
    #[error("string is not UTF-8")]
    NotUtf8,
    /// An empty file name.
    #[error("empty file name")]
    EmptyFilename,
    /// A mode other than netascii, octet or mail.
    #[error("unknown transfer mode")]
    UnknownMode,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Octet => "octet",
            Mode::Netascii => "netascii",
            Mode::Mail => "mail",
        })
    }
}

/// Split off one NUL-terminated UTF-8 string.
fn cstr(buf: &[u8]) -> Result<(&str, &[u8]), PacketError> {
    let end = buf
        .iter()
        .position(|b| *b == 0)
        .ok_or(PacketError::Unterminated)?;
    let s = std::str::from_utf8(&buf[..end]).map_err(|_| PacketError::NotUtf8)?;
    Ok((s, &buf[end + 1..]))
}

/// Option pairs; trailing NUL padding and a dangling last name are ignored (real PXE ROMs
/// send both).
fn options(mut rest: &[u8]) -> Result<Vec<(&str, &str)>, PacketError> {
    let mut out = Vec::new();
    loop {
        // Nothing but NUL padding left, or a last name/value without its terminator: done.
        if rest.iter().all(|b| *b == 0) || !rest.contains(&0) {
            return Ok(out);
        }
        let (name, r) = cstr(rest)?;
        if !r.contains(&0) {
            return Ok(out);
        }
        let (value, r) = cstr(r)?;
        if !name.is_empty() {
            out.push((name, value));
        }
        rest = r;
    }
}

fn request(body: &[u8]) -> Result<Request<'_>, PacketError> {
    let (filename, rest) = cstr(body)?;
    if filename.is_empty() {
        return Err(PacketError::EmptyFilename);
    }
    let (mode, rest) = cstr(rest)?;
    let mode = if mode.eq_ignore_ascii_case("octet") {
        Mode::Octet
    } else if mode.eq_ignore_ascii_case("netascii") {
        Mode::Netascii
    } else if mode.eq_ignore_ascii_case("mail") {
        Mode::Mail
    } else {
        return Err(PacketError::UnknownMode);
    };
    Ok(Request {
        filename,
        mode,
        options: options(rest)?,
    })
}

impl<'a> Packet<'a> {
    /// Decode one datagram.
    pub fn decode(buf: &'a [u8]) -> Result<Packet<'a>, PacketError> {
        if buf.len() < 2 {
            return Err(PacketError::TooShort);
        }
        let op = u16::from_be_bytes([buf[0], buf[1]]);
        let body = &buf[2..];
        let block = || {
            if body.len() < 2 {
                Err(PacketError::TooShort)
            } else {
                Ok(u16::from_be_bytes([body[0], body[1]]))
            }
        };
        match op {
            opcode::RRQ => Ok(Packet::Rrq(request(body)?)),
            opcode::WRQ => Ok(Packet::Wrq(request(body)?)),
            opcode::DATA => Ok(Packet::Data {
                block: block()?,
                data: &body[2..],
            }),
            opcode::ACK => Ok(Packet::Ack { block: block()? }),
            opcode::ERROR => {
                let code = block()?;
                let msg = &body[2..];
                let end = msg.iter().position(|b| *b == 0).unwrap_or(msg.len());
                Ok(Packet::Error {
                    code,
                    message: String::from_utf8_lossy(&msg[..end]).into_owned(),
                })
            }
            opcode::OACK => Ok(Packet::Oack {
                options: options(body)?,
            }),
            other => Err(PacketError::UnknownOpcode(other)),
        }
    }
}

/// Encode a DATA packet header plus payload into `out` (cleared first).
pub fn encode_data(out: &mut Vec<u8>, block: u16, data: &[u8]) {
    out.clear();
    out.extend_from_slice(&data_header(block));
    out.extend_from_slice(data);
}

/// The 4 bytes before a DATA packet's payload (opcode, block number), for senders that pass
/// the payload as a separate iovec.
pub fn data_header(block: u16) -> [u8; 4] {
    let [o1, o2] = opcode::DATA.to_be_bytes();
    let [b1, b2] = block.to_be_bytes();
    [o1, o2, b1, b2]
}

/// Encode an ACK.
pub fn encode_ack(block: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(4);
    out.extend_from_slice(&opcode::ACK.to_be_bytes());
    out.extend_from_slice(&block.to_be_bytes());
    out
}

/// Encode an ERROR packet.
pub fn encode_error(code: ErrorCode, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.extend_from_slice(&opcode::ERROR.to_be_bytes());
    out.extend_from_slice(&(code as u16).to_be_bytes());
    out.extend(message.bytes().filter(|b| *b != 0));
    out.push(0);
    out
}

/// Encode an OACK with `options` in order.
pub fn encode_oack(options: &[(&str, String)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&opcode::OACK.to_be_bytes());
    for (name, value) in options {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

/// Encode a request (used by tests and the benchmark client).
pub fn encode_request(op: u16, filename: &str, mode: &str, options: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&op.to_be_bytes());
    for s in [filename, mode] {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }
    for (n, v) in options {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_requests() {
        let rrq = encode_request(
            opcode::RRQ,
            "undionly.kpxe",
            "OCTET",
            &[("blksize", "1468"), ("TSIZE", "0"), ("windowsize", "16")],
        );
        let Packet::Rrq(r) = Packet::decode(&rrq).unwrap() else {
            panic!("not an RRQ")
        };
        assert_eq!(r.filename, "undionly.kpxe");
        assert_eq!(r.mode, Mode::Octet);
        assert_eq!(r.option("tsize"), Some("0"));
        assert_eq!(r.option("BLKSIZE"), Some("1468"));
        assert_eq!(r.option("timeout"), None);
        assert!(matches!(
            Packet::decode(&encode_request(opcode::WRQ, "x", "netascii", &[])).unwrap(),
            Packet::Wrq(Request {
                mode: Mode::Netascii,
                ..
            })
        ));
    }

    #[test]
    fn lenient_where_clients_are_sloppy() {
        // NUL padding after the options.
        let mut p = encode_request(opcode::RRQ, "a", "octet", &[("blksize", "512")]);
        p.extend_from_slice(&[0, 0, 0]);
        let Packet::Rrq(r) = Packet::decode(&p).unwrap() else {
            panic!()
        };
        assert_eq!(r.options, vec![("blksize", "512")]);
        // A dangling option name without a value.
        let mut p = encode_request(opcode::RRQ, "a", "octet", &[("tsize", "0")]);
        p.extend_from_slice(b"blksize");
        let Packet::Rrq(r) = Packet::decode(&p).unwrap() else {
            panic!()
        };
        assert_eq!(r.options, vec![("tsize", "0")]);
    }

    #[test]
    fn refuses_garbage() {
        let cases: &[(&[u8], PacketError)] = &[
            (b"", PacketError::TooShort),
            (b"\x00", PacketError::TooShort),
            (b"\x00\x09abc", PacketError::UnknownOpcode(9)),
            (b"\x00\x01file", PacketError::Unterminated),
            (b"\x00\x01file\x00octet", PacketError::Unterminated),
            (b"\x00\x01\x00octet\x00", PacketError::EmptyFilename),
            (b"\x00\x01f\x00binary\x00", PacketError::UnknownMode),
            (b"\x00\x01\xff\xfe\x00octet\x00", PacketError::NotUtf8),
            (b"\x00\x04\x01", PacketError::TooShort),
        ];
        for (bytes, want) in cases {
            assert_eq!(Packet::decode(bytes).unwrap_err(), *want, "{bytes:?}");
        }
    }

    #[test]
    fn round_trips_server_packets() {
        let mut d = Vec::new();
        encode_data(&mut d, 7, b"hello");
        assert_eq!(
            Packet::decode(&d).unwrap(),
            Packet::Data {
                block: 7,
                data: b"hello"
            }
        );
        assert_eq!(
            Packet::decode(&encode_ack(65535)).unwrap(),
            Packet::Ack { block: 65535 }
        );
        assert_eq!(
            Packet::decode(&encode_error(ErrorCode::FileNotFound, "nope")).unwrap(),
            Packet::Error {
                code: 1,
                message: "nope".into()
            }
        );
        let o = encode_oack(&[("blksize", "1468".into()), ("tsize", "42".into())]);
        assert_eq!(
            Packet::decode(&o).unwrap(),
            Packet::Oack {
                options: vec![("blksize", "1468"), ("tsize", "42")]
            }
        );
    }

    /// The fuzz target's property on stable, over mutations of valid packets: decoding never
    /// panics, and an accepted request survives encode/decode unchanged.
    #[test]
    fn mutated_packets_never_panic() {
        let seeds = [
            encode_request(
                opcode::RRQ,
                "a/b.efi",
                "octet",
                &[("blksize", "1468"), ("tsize", "0")],
            ),
            encode_request(opcode::WRQ, "x", "netascii", &[("windowsize", "16")]),
            encode_oack(&[("blksize", "512".into())]),
            encode_error(ErrorCode::FileNotFound, "nope"),
            encode_ack(9),
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..200_000 {
            let mut p = seeds[i % seeds.len()].clone();
            for _ in 0..(rnd() % 4 + 1) {
                let r = rnd();
                match r % 3 {
                    0 if !p.is_empty() => {
                        let at = (r >> 8) as usize % p.len();
                        p[at] = (r >> 32) as u8;
                    }
                    1 if !p.is_empty() => {
                        p.truncate((r >> 8) as usize % p.len());
                    }
                    _ => p.push((r >> 16) as u8 & 0x7f),
                }
            }
            if let Ok(Packet::Rrq(r) | Packet::Wrq(r)) = Packet::decode(&p) {
                let again =
                    encode_request(opcode::RRQ, r.filename, &r.mode.to_string(), &r.options);
                let Ok(Packet::Rrq(r2)) = Packet::decode(&again) else {
                    panic!("round trip of {p:?}")
                };
                assert_eq!(
                    (r2.filename, r2.mode, &r2.options),
                    (r.filename, r.mode, &r.options)
                );
            }
        }
    }
}
