//! A bounded, read-only qcow2 reader that converts an image onto a [`Sink`] in guest order.
//!
//! Supported: versions 2 and 3, cluster sizes 512 B – 2 MiB, plain, zero (v3 flag) and
//! unallocated clusters, zlib (raw deflate) and zstd compressed clusters. Refused with a
//! clear error: backing files, encryption, external data files, extended L2 entries, images
//! marked corrupt, unknown incompatible features.
//!
//! qcow2 needs random access, so the source is a [`ReadAt`] (a file, or HTTP Range requests).
//! Reads are bounded: one L1 table (at most 32 MiB, i.e. a multi-petabyte image), one L2
//! table (one cluster), and groups of clusters that are contiguous in the file, fetched with
//! one read of at most [`MAX_GROUP`] bytes. The output never exceeds the virtual size, which
//! is checked against the target's capacity first.

use std::io;

use tokio_util::sync::CancellationToken;

use super::ActionError;
use super::sink::Sink;

/// Most bytes fetched from the source in one read.
pub const MAX_GROUP: u64 = 4 << 20;
const MAX_L1_BYTES: u64 = 32 << 20;
const L1_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const L2_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const L2_COMPRESSED: u64 = 1 << 62;
const L2_ZERO: u64 = 1;

/// Random-access source of image bytes.
pub trait ReadAt: Send {
    /// Total size of the source.
    fn len(&self) -> u64;
    /// Whether the source is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fill `buf` from `offset`; short only at the end of the source.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
}

/// A local file as a [`ReadAt`].
#[derive(Debug)]
pub struct FileSource(pub std::fs::File, pub u64);

impl ReadAt for FileSource {
    fn len(&self) -> u64 {
        self.1
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let mut n = 0;
        while n < buf.len() {
            match self.0.read_at(&mut buf[n..], offset + n as u64)? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    }
}

/// Cluster compression of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterCompression {
    /// Raw deflate (qemu's "zlib").
    Zlib,
    /// zstd frames.
    Zstd,
}

/// The parts of a qcow2 header we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// 2 or 3.
    pub version: u32,
    /// log2 of the cluster size.
    pub cluster_bits: u32,
    /// Virtual disk size in bytes.
    pub size: u64,
    /// Entries in the L1 table.
    pub l1_size: u32,
    /// File offset of the L1 table.
    pub l1_offset: u64,
    /// Compression of compressed clusters.
    pub compression: ClusterCompression,
}

fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]))
}
fn be64(b: &[u8], o: usize) -> u64 {
    u64::from_be_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]))
}

/// Whether `head` starts with the qcow2 magic.
pub fn is_qcow2(head: &[u8]) -> bool {
    head.starts_with(b"QFI\xfb")
}

/// Parse and validate the header (`buf`: at least the first 112 bytes of the file).
pub fn parse_header(buf: &[u8]) -> Result<Header, ActionError> {
    let bad = |m: &str| ActionError::Qcow2(m.to_string());
    if buf.len() < 72 || !is_qcow2(buf) {
        return Err(bad("not a qcow2 image"));
    }
    let version = be32(buf, 4);
    if version != 2 && version != 3 {
        return Err(ActionError::Qcow2(format!("unsupported version {version}")));
    }
    if be64(buf, 8) != 0 {
        return Err(bad("images with a backing file are not supported"));
    }
    let cluster_bits = be32(buf, 20);
    if !(9..=21).contains(&cluster_bits) {
        return Err(ActionError::Qcow2(format!(
            "invalid cluster_bits {cluster_bits}"
        )));
    }
    if be32(buf, 32) != 0 {
        return Err(bad("encrypted images are not supported"));
    }
    let mut compression = ClusterCompression::Zlib;
    if version == 3 {
        if buf.len() < 104 {
            return Err(bad("truncated v3 header"));
        }
        let incompatible = be64(buf, 72);
        if incompatible & 0b10 != 0 {
            return Err(bad("the image is marked corrupt"));
        }
        if incompatible & 0b100 != 0 {
            return Err(bad("external data files are not supported"));
        }
        if incompatible & 0b1_0000 != 0 {
            return Err(bad("extended L2 entries are not supported"));
        }
        if incompatible & !0b1001 != 0 {
            return Err(ActionError::Qcow2(format!(
                "unknown incompatible features {incompatible:#x}"
            )));
        }
        let header_len = be32(buf, 100);
        if incompatible & 0b1000 != 0 {
            if header_len < 105 || buf.len() < 105 {
                return Err(bad(
                    "compression type bit set but no compression type field",
                ));
            }
            compression = match buf[104] {
                0 => ClusterCompression::Zlib,
                1 => ClusterCompression::Zstd,
                t => return Err(ActionError::Qcow2(format!("unknown compression type {t}"))),
            };
        }
    }
    let h = Header {
        version,
        cluster_bits,
        size: be64(buf, 24),
        l1_size: be32(buf, 36),
        l1_offset: be64(buf, 40),
        compression,
    };
    let cs = 1u64 << cluster_bits;
    let per_l1 = cs * (cs / 8);
    let needed = h.size.div_ceil(per_l1);
    if needed > u64::from(h.l1_size) {
        return Err(ActionError::Qcow2(format!(
            "L1 table has {} entries but the size needs {needed}",
            h.l1_size
        )));
    }
    if needed * 8 > MAX_L1_BYTES {
        return Err(bad("L1 table too large"));
    }
    Ok(h)
}

#[derive(Debug, Clone, Copy)]
enum Extent {
    Zero {
        guest: u64,
        len: u64,
    },
    Data {
        guest: u64,
        len: u64,
        host: u64,
    },
    Compressed {
        guest: u64,
        len: u64,
        host: u64,
        clen: u64,
    },
}

/// Convert the image in `src` onto `sink` (guest byte `i` at target offset `i`).
/// `progress(bytes_of_image_done)` is called after every group.
pub fn convert(
    src: &mut dyn ReadAt,
    h: &Header,
    sink: &mut Sink,
    cancel: &CancellationToken,
    progress: &mut dyn FnMut(u64, &Sink),
) -> Result<(), ActionError> {
    let cs = 1u64 << h.cluster_bits;
    let per_l2 = cs / 8;
    let per_l1 = cs * per_l2;
    let l1_needed = h.size.div_ceil(per_l1);
    let mut l1 = vec![0u8; (l1_needed * 8) as usize];
    read_exact_at(src, h.l1_offset, &mut l1, "L1 table")?;
    let mut l2 = vec![0u8; cs as usize];
    let mut group: Vec<Extent> = Vec::new();
    let mut buf = Vec::new();
    let mut out = vec![0u8; cs as usize];
    for i in 0..l1_needed {
        if cancel.is_cancelled() {
            return Err(ActionError::Cancelled);
        }
        let base = i * per_l1;
        let span = per_l1.min(h.size - base);
        let l2_off = be64(&l1, (i * 8) as usize) & L1_OFFSET_MASK;
        if l2_off == 0 {
            sink.zeroes(base, span).map_err(write_err)?;
            continue;
        }
        read_exact_at(src, l2_off, &mut l2, "L2 table")?;
        for j in 0..span.div_ceil(cs) {
            let guest = base + j * cs;
            let len = cs.min(h.size - guest);
            let e = be64(&l2, (j * 8) as usize);
            let ext = if e & L2_COMPRESSED != 0 {
                let shift = 62 - (h.cluster_bits - 8);
                let host = e & ((1u64 << shift) - 1);
                let sectors = ((e >> shift) & ((1u64 << (h.cluster_bits - 8)) - 1)) + 1;
                Extent::Compressed {
                    guest,
                    len,
                    host,
                    clen: sectors * 512 - (host & 511),
                }
            } else {
                let host = e & L2_OFFSET_MASK;
                if (h.version == 3 && e & L2_ZERO != 0) || host == 0 {
                    Extent::Zero { guest, len }
                } else {
                    Extent::Data { guest, len, host }
                }
            };
            if let Extent::Zero { guest, len } = ext {
                flush(src, h, sink, &mut group, &mut buf, &mut out)?;
                sink.zeroes(guest, len).map_err(write_err)?;
                continue;
            }
            let (host, hlen) = host_range(&ext, cs);
            if let (Some(first), Some(last)) = (group.first(), group.last()) {
                let gstart = host_range(first, cs).0;
                let gend = group
                    .iter()
                    .map(|e| {
                        let (o, l) = host_range(e, cs);
                        o + l
                    })
                    .max()
                    .unwrap_or(0);
                let contiguous = match (last, &ext) {
                    (Extent::Data { .. }, Extent::Data { .. }) => host == gend,
                    _ => host >= gstart && host <= gend,
                };
                if !contiguous || (host + hlen).max(gend) - gstart > MAX_GROUP {
                    flush(src, h, sink, &mut group, &mut buf, &mut out)?;
                }
            }
            group.push(ext);
        }
        flush(src, h, sink, &mut group, &mut buf, &mut out)?;
        progress(base + span, sink);
    }
    Ok(())
}

fn host_range(e: &Extent, cs: u64) -> (u64, u64) {
    match *e {
        Extent::Zero { .. } => (0, 0),
        Extent::Data { host, .. } => (host, cs),
        Extent::Compressed { host, clen, .. } => (host, clen),
    }
}

fn write_err(e: io::Error) -> ActionError {
    ActionError::io("writing the target", e)
}

fn read_exact_at(
    src: &mut dyn ReadAt,
    off: u64,
    buf: &mut [u8],
    what: &str,
) -> Result<(), ActionError> {
    let n = src
        .read_at(off, buf)
        .map_err(|e| ActionError::io(format!("reading the {what}"), e))?;
    if n != buf.len() {
        return Err(ActionError::Qcow2(format!(
            "{what} at {off} extends past the end of the file"
        )));
    }
    Ok(())
}

fn flush(
    src: &mut dyn ReadAt,
    h: &Header,
    sink: &mut Sink,
    group: &mut Vec<Extent>,
    buf: &mut Vec<u8>,
    out: &mut [u8],
) -> Result<(), ActionError> {
    if group.is_empty() {
        return Ok(());
    }
    let cs = 1u64 << h.cluster_bits;
    let gstart = host_range(&group[0], cs).0;
    let gend = group
        .iter()
        .map(|e| {
            let (o, l) = host_range(e, cs);
            o + l
        })
        .max()
        .unwrap_or(gstart);
    // Compressed clusters near the end of the file may claim sectors past it.
    let want = gend.min(src.len().max(gstart)) - gstart;
    buf.resize(want as usize, 0);
    let got = src
        .read_at(gstart, buf)
        .map_err(|e| ActionError::io(format!("reading clusters at {gstart}"), e))?;
    buf.truncate(got);
    for e in group.drain(..) {
        match e {
            Extent::Zero { .. } => {}
            Extent::Data { guest, len, host } => {
                let s = (host - gstart) as usize;
                let d = buf.get(s..s + len as usize).ok_or_else(|| {
                    ActionError::Qcow2(format!("data cluster at {host} past the end of the file"))
                })?;
                sink.write_at(guest, d).map_err(write_err)?;
            }
            Extent::Compressed {
                guest,
                len,
                host,
                clen,
            } => {
                let s = (host - gstart) as usize;
                let end = (s + clen as usize).min(buf.len());
                let input = buf.get(s..end).ok_or_else(|| {
                    ActionError::Qcow2(format!(
                        "compressed cluster at {host} past the end of the file"
                    ))
                })?;
                let n = decompress(h.compression, input, out)?;
                if (n as u64) < len {
                    return Err(ActionError::Qcow2(format!(
                        "compressed cluster at {host} inflates to {n} bytes, expected {len}"
                    )));
                }
                sink.write_at(guest, &out[..len as usize])
                    .map_err(write_err)?;
            }
        }
    }
    Ok(())
}

/// Decompress one cluster into `out` (at most `out.len()` bytes); returns the bytes produced.
fn decompress(c: ClusterCompression, input: &[u8], out: &mut [u8]) -> Result<usize, ActionError> {
    match c {
        ClusterCompression::Zlib => {
            let mut d = flate2::Decompress::new(false);
            d.decompress(input, out, flate2::FlushDecompress::Finish)
                .map_err(|e| ActionError::Qcow2(format!("deflate: {e}")))?;
            Ok(d.total_out() as usize)
        }
        ClusterCompression::Zstd => {
            use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};
            let mut d = Decoder::new().map_err(|e| ActionError::io("zstd", e))?;
            let mut inb = InBuffer::around(input);
            let mut outb = OutBuffer::around(out);
            loop {
                let before = (inb.pos(), outb.pos());
                let hint = d
                    .run(&mut inb, &mut outb)
                    .map_err(|e| ActionError::Qcow2(format!("zstd: {e}")))?;
                if hint == 0 || outb.pos() == outb.capacity() || (inb.pos(), outb.pos()) == before {
                    break;
                }
            }
            Ok(outb.pos())
        }
    }
}
