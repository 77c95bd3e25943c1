//! Bytes ↔ [`Message`], defensively.
//!
//! dhcproto is a codec for well-formed packets: a few option decoders `debug_assert!` on the
//! length (80, 81, 94, 151–155) and one subtracts from it, so a hostile packet could panic a
//! debug build, and a truncated option simply ends parsing without an error. [`decode`]
//! therefore walks the option area itself first and refuses anything dhcproto would not decode
//! exactly — a malformed packet is dropped and counted, never half-understood.

use dhcproto::v4::{Message, Opcode};
use dhcproto::{Decodable, Decoder, Encodable};

/// Fixed BOOTP header (236 bytes) plus the magic cookie.
pub const HEADER_LEN: usize = 240;
/// The DHCP magic cookie.
pub const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// RFC 2131 / BOOTP: replies are at least 300 bytes (some PXE ROMs insist).
pub const MIN_REPLY_LEN: usize = 300;

/// Why a packet was not decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Shorter than the BOOTP header and magic cookie.
    #[error("shorter than a DHCP header")]
    Short,
    /// The magic cookie is wrong (a BOOTP or non-DHCP packet).
    #[error("bad magic cookie")]
    Magic,
    /// `op` is not BOOTREQUEST/BOOTREPLY.
    #[error("bad op code")]
    Op,
    /// `hlen` is larger than `chaddr`.
    #[error("bad hardware address length")]
    Hlen,
    /// An option runs past the end of the packet.
    #[error("option {0} truncated")]
    Truncated(u8),
    /// An option has a length its type does not allow.
    #[error("option {0} has a bad length")]
    BadLength(u8),
    /// No END option.
    #[error("no end option")]
    NoEnd,
    /// dhcproto refused it.
    #[error("undecodable")]
    Decode,
}

/// Whether an option's data length suits the decoder dhcproto uses for its code.
fn length_ok(code: u8, len: usize) -> bool {
    match code {
        53 => len == 1,
        80 => len == 0,
        81 => len >= 3,
        93 => len >= 2,
        94 => len == 3,
        151 => len >= 1,
        152..=155 => len == 4,
        1 | 28 | 50 | 54 | 118 | 150 => len == 4,
        51 | 58 | 59 => len == 4,
        _ => true,
    }
}

/// Check the option area: every option complete, lengths valid for the types whose decoders
/// assume them, and an END. dhcproto joins a run of adjacent options with the same code into
/// one (RFC 3396 long options; `94 3 … 94 3 …` becomes one 94 of length 6), so the length
/// rules apply to each run's total, as dhcproto will decode it.
fn check_options(opts: &[u8]) -> Result<(), Malformed> {
    let mut i = 0;
    // The run being collected: its code and total data length.
    let mut run: Option<(u8, usize)> = None;
    let end_run = |run: Option<(u8, usize)>| match run {
        Some((code, len)) if !length_ok(code, len) => Err(Malformed::BadLength(code)),
        _ => Ok(()),
    };
    while i < opts.len() {
        let code = opts[i];
        match code {
            0 => {
                end_run(run.take())?;
                i += 1;
                continue;
            }
            255 => return end_run(run),
            _ => {}
        }
        let len = *opts.get(i + 1).ok_or(Malformed::Truncated(code))? as usize;
        if i + 2 + len > opts.len() {
            return Err(Malformed::Truncated(code));
        }
        run = match run {
            Some((c, total)) if c == code => Some((c, total + len)),
            other => {
                end_run(other)?;
                Some((code, len))
            }
        };
        i += 2 + len;
    }
    Err(Malformed::NoEnd)
}

/// Decode a DHCPv4 packet, refusing anything malformed (see the module docs).
pub fn decode(buf: &[u8]) -> Result<Message, Malformed> {
    if buf.len() < HEADER_LEN {
        return Err(Malformed::Short);
    }
    if buf[236..240] != MAGIC {
        return Err(Malformed::Magic);
    }
    if !matches!(buf[0], 1 | 2) {
        return Err(Malformed::Op);
    }
    if buf[2] > 16 {
        return Err(Malformed::Hlen);
    }
    check_options(&buf[HEADER_LEN..])?;
    let msg = Message::decode(&mut Decoder::new(buf)).map_err(|_| Malformed::Decode)?;
    if !matches!(msg.opcode(), Opcode::BootRequest | Opcode::BootReply) {
        return Err(Malformed::Op);
    }
    Ok(msg)
}

/// Encode a reply, padded to [`MIN_REPLY_LEN`].
pub fn encode(msg: &Message) -> Option<Vec<u8>> {
    let mut v = msg.to_vec().ok()?;
    if v.len() < MIN_REPLY_LEN {
        v.resize(MIN_REPLY_LEN, 0);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::{DhcpOption, MessageType};
    use std::net::Ipv4Addr;

    fn good() -> Vec<u8> {
        let mut m = Message::new_with_id(
            7,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &[1, 2, 3, 4, 5, 6],
        );
        m.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Discover));
        m.to_vec().unwrap()
    }

    #[test]
    fn accepts_a_discover() {
        let m = decode(&good()).unwrap();
        assert_eq!(m.xid(), 7);
        assert_eq!(m.opts().msg_type(), Some(MessageType::Discover));
    }

    #[test]
    fn refuses_malformed_table() {
        let g = good();
        let opts_at = |extra: &[u8]| {
            let mut v = g[..HEADER_LEN].to_vec();
            v.extend_from_slice(extra);
            v
        };
        let mut bad_magic = g.clone();
        bad_magic[236] = 0;
        let mut bad_op = g.clone();
        bad_op[0] = 9;
        let mut bad_hlen = g.clone();
        bad_hlen[2] = 17;
        let cases: Vec<(&str, Vec<u8>, Malformed)> = vec![
            ("empty", vec![], Malformed::Short),
            ("short", g[..200].to_vec(), Malformed::Short),
            ("magic", bad_magic, Malformed::Magic),
            ("op", bad_op, Malformed::Op),
            ("hlen", bad_hlen, Malformed::Hlen),
            ("no end", opts_at(&[53, 1, 1]), Malformed::NoEnd),
            ("truncated len", opts_at(&[53]), Malformed::Truncated(53)),
            (
                "truncated data",
                opts_at(&[12, 10, b'a']),
                Malformed::Truncated(12),
            ),
            (
                "94 len 2",
                opts_at(&[53, 1, 1, 94, 2, 1, 2, 255]),
                Malformed::BadLength(94),
            ),
            (
                "80 len 1",
                opts_at(&[80, 1, 0, 255]),
                Malformed::BadLength(80),
            ),
            (
                "151 len 0",
                opts_at(&[151, 0, 255]),
                Malformed::BadLength(151),
            ),
            (
                "81 len 1",
                opts_at(&[81, 1, 0, 255]),
                Malformed::BadLength(81),
            ),
            (
                "53 len 2",
                opts_at(&[53, 2, 1, 1, 255]),
                Malformed::BadLength(53),
            ),
            // Adjacent repeats are one option to dhcproto (RFC 3396): 3 + 3 is not 3.
            (
                "94 3 94 3",
                opts_at(&[53, 1, 1, 94, 3, 1, 2, 3, 94, 3, 1, 2, 3, 255]),
                Malformed::BadLength(94),
            ),
            (
                "53 1 53 1",
                opts_at(&[53, 1, 1, 53, 1, 1, 255]),
                Malformed::BadLength(53),
            ),
            (
                "80 0 80 1",
                opts_at(&[80, 0, 80, 1, 0, 255]),
                Malformed::BadLength(80),
            ),
        ];
        for (name, bytes, want) in cases {
            assert_eq!(decode(&bytes).unwrap_err(), want, "{name}");
        }
    }

    #[test]
    fn no_panic_on_mutations() {
        // Every single-byte change and every truncation of a real packet: decode returns,
        // it never panics (the fuzz target does this at scale).
        let g = good();
        for i in 0..g.len() {
            for b in [0u8, 1, 2, 3, 4, 0x7f, 0x80, 0xfe, 0xff] {
                let mut v = g.clone();
                v[i] = b;
                let _ = decode(&v);
            }
            let _ = decode(&g[..i]);
        }
    }

    #[test]
    fn split_runs_are_separate_options() {
        // A PAD or another code between two 94s: dhcproto keeps the last one, 3 bytes long.
        let g = good();
        for extra in [
            &[94, 3, 1, 2, 3, 0, 94, 3, 4, 5, 6, 255][..],
            &[94, 3, 1, 2, 3, 53, 1, 1, 94, 3, 4, 5, 6, 255][..],
        ] {
            let mut v = g[..HEADER_LEN].to_vec();
            v.extend_from_slice(extra);
            decode(&v).expect("two separate 94s decode");
        }
    }

    #[test]
    fn replies_are_padded() {
        let m = decode(&good()).unwrap();
        assert!(encode(&m).unwrap().len() >= MIN_REPLY_LEN);
    }
}
