//! Compression formats of disk images: chosen by the URL's extension as upstream's image2disk
//! does (`.gz`, `.xz`, `.bz2`/`.bzip2`, `.zs`/`.zst`), then confirmed by the stream's magic
//! bytes so a mislabelled file fails with a clear message instead of writing garbage.

use std::io::{self, BufRead, Read};

/// A compression format (or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Raw bytes.
    None,
    /// gzip (RFC 1952), multi-member.
    Gzip,
    /// xz, multi-stream.
    Xz,
    /// bzip2, multi-stream.
    Bzip2,
    /// zstd, multi-frame.
    Zstd,
}

impl Compression {
    /// The format for a URL or file name by its extension (query and fragment ignored), as
    /// upstream image2disk maps them; `None` for an unknown extension.
    pub fn from_extension(url: &str) -> Option<Compression> {
        let path = url.split(['?', '#']).next().unwrap_or(url);
        let ext = path.rsplit_once('.').map(|(_, e)| e)?;
        Some(match ext.to_ascii_lowercase().as_str() {
            "gz" | "gzip" | "tgz" => Compression::Gzip,
            "xz" => Compression::Xz,
            "bz2" | "bzip2" => Compression::Bzip2,
            "zs" | "zst" | "zstd" => Compression::Zstd,
            _ => return None,
        })
    }

    /// The format the first bytes of a stream announce (`None` when none matches).
    pub fn from_magic(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Bzip2 => "bzip2",
            Compression::Zstd => "zstd",
        }
    }

    /// Wrap `r` in this format's streaming decoder. The decoders read `r`'s buffer in place
    /// (no second input buffer) and decompress straight into the caller's buffer.
    pub fn decoder<'a, R: BufRead + 'a>(self, r: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(r),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
            Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(r)),
            Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(r)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
        })
    }
}

/// Read up to `n` bytes from the start of `r` (fewer only at end of stream).
pub fn peek<R: Read>(r: &mut R, n: usize) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match r.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(got);
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_as_upstream() {
        for (url, c) in [
            ("http://x/a.raw.gz", Some(Compression::Gzip)),
            ("http://x/a.raw.xz?sig=1", Some(Compression::Xz)),
            ("http://x/a.raw.bz2", Some(Compression::Bzip2)),
            ("http://x/a.bzip2", Some(Compression::Bzip2)),
            ("http://x/a.zs", Some(Compression::Zstd)),
            ("http://x/a.ZST#frag", Some(Compression::Zstd)),
            ("http://x/a.raw", None),
            ("http://x/a", None),
        ] {
            assert_eq!(Compression::from_extension(url), c, "{url}");
        }
    }

    #[test]
    fn magic_and_round_trip() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut e, &data).unwrap();
            e.finish().unwrap()
        };
        let zs = zstd::encode_all(&data[..], 1).unwrap();
        for (bytes, c) in [(gz, Compression::Gzip), (zs, Compression::Zstd)] {
            assert_eq!(Compression::from_magic(&bytes), c);
            let mut out = Vec::new();
            c.decoder(&bytes[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data);
        }
        assert_eq!(Compression::from_magic(b"\0\0\0\0"), Compression::None);
    }
}
