//! MAC addresses: one type, and the two ways upstream writes them.
//!
//! * In a Hardware (`interfaces[].dhcp.mac`), a hardware.csv or a claim: six hex pairs
//!   separated by `:` or `-` (one separator throughout), any case, surrounding blanks ignored
//!   ([`MacAddr::parse_stored`]).
//! * In a URL boots serves (`/<mac>/auto.ipxe`, `<mac>/ipxe.efi` over TFTP), also the forms
//!   iPXE's `${mac}` formats can produce: `aabb.ccdd.eeff` and `aabbccddeeff`
//!   ([`MacAddr::parse_any`], also `FromStr`).
//!
//! Written back ([`Display`](std::fmt::Display)) it is lower-case and colon-separated, the form
//! Hardware stores.

use std::fmt;
use std::str::FromStr;

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

/// A string that is not a MAC address in the form asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address")]
pub struct MacAddrError(pub String);

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Six hex pairs at `at(i)` for pair `i` (the byte offset of its first digit).
fn pairs(s: &[u8], at: impl Fn(usize) -> usize) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    for (i, b) in out.iter_mut().enumerate() {
        let j = at(i);
        *b = nibble(s[j])? << 4 | nibble(s[j + 1])?;
    }
    Some(out)
}

/// `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff`, exactly (no blanks).
fn separated(s: &[u8]) -> Option<[u8; 6]> {
    if s.len() != 17 {
        return None;
    }
    let sep = s[2];
    if sep != b':' && sep != b'-' {
        return None;
    }
    if (1..6).any(|i| s[i * 3 - 1] != sep) {
        return None;
    }
    pairs(s, |i| i * 3)
}

impl MacAddr {
    /// The form a Hardware stores: colon- or dash-separated, any case, blanks around ignored.
    pub fn parse_stored(s: &str) -> Option<MacAddr> {
        separated(s.as_bytes().trim_ascii()).map(MacAddr)
    }

    /// Any form upstream puts into a URL: colon, dash, dot (`aabb.ccdd.eeff`) or none
    /// (`aabbccddeeff`), any case, nothing around it.
    pub fn parse_any(s: &str) -> Option<MacAddr> {
        let b = s.as_bytes();
        match b.len() {
            17 => separated(b),
            14 if b[4] == b'.' && b[9] == b'.' => {
                pairs(b, |i| i * 2 + if i >= 4 { 2 } else { usize::from(i >= 2) })
            }
            12 => pairs(b, |i| i * 2),
            _ => None,
        }
        .map(MacAddr)
    }

    /// Whether `s`, as a Hardware stores it ([`MacAddr::parse_stored`]), is this address.
    /// Allocation-free: boots runs it for every interface of every answered request.
    pub fn is_spelt_by(&self, s: &str) -> bool {
        MacAddr::parse_stored(s) == Some(*self)
    }
}

impl FromStr for MacAddr {
    type Err = MacAddrError;

    /// [`MacAddr::parse_any`].
    fn from_str(s: &str) -> Result<MacAddr, MacAddrError> {
        MacAddr::parse_any(s).ok_or_else(|| MacAddrError(s.to_string()))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: MacAddr = MacAddr([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);

    #[test]
    fn stored_forms() {
        for yes in [
            "52:54:00:ab:cd:ef",
            "52:54:00:AB:CD:EF",
            "52-54-00-ab-cd-ef",
            " 52:54:00:ab:cd:ef\t",
        ] {
            assert_eq!(MacAddr::parse_stored(yes), Some(M), "{yes:?}");
            assert!(M.is_spelt_by(yes), "{yes:?}");
        }
        for no in [
            "52:54:00-ab:cd:ef",
            "5254.00ab.cdef",
            "525400abcdef",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:eg",
            "52:54:00:ab:cd:ef:00",
            "",
            "52;54;00;ab;cd;ef",
        ] {
            assert_eq!(MacAddr::parse_stored(no), None, "{no:?}");
            assert!(!M.is_spelt_by(no), "{no:?}");
        }
    }

    #[test]
    fn url_forms() {
        for yes in [
            "52:54:00:ab:cd:ef",
            "52-54-00-AB-CD-EF",
            "5254.00ab.cdef",
            "525400ABCDEF",
        ] {
            assert_eq!(yes.parse::<MacAddr>(), Ok(M), "{yes:?}");
        }
        for no in [
            " 52:54:00:ab:cd:ef",
            "5254.00ab.cde",
            "5254-00ab-cdef",
            "525400abcde",
            "525400abcdeg",
            "52540.0abc.def",
        ] {
            assert!(no.parse::<MacAddr>().is_err(), "{no:?}");
        }
        assert_eq!(M.to_string(), "52:54:00:ab:cd:ef");
    }
}
