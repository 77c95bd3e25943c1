//! The image writer shared by image2disk, qemuimg2disk and oci2disk: positional writes of
//! fixed-size buffers, zero-block detection, and the end-of-image ritual (fsync, BLKRRPART).
//!
//! ## When zero blocks are skipped (and why that is always correct)
//!
//! Every 64 KiB block of the image that is entirely zero is not written as data. What
//! happens instead depends on the target, so that the target always reads back exactly as
//! if every byte had been written:
//!
//! - **Regular file**: a zero block past the file's original length is simply skipped (it
//!   becomes a hole; a *fresh* file — created empty — is the common case). A zero block inside
//!   the original length is deallocated with `fallocate(PUNCH_HOLE|KEEP_SIZE)`, which reads
//!   back as zeroes; if the filesystem refuses, zeroes are written. At the end the file is
//!   extended to the image size.
//! - **Block device**: runs of zero blocks become one `BLKZEROOUT` ioctl each. The kernel
//!   turns it into the device's WRITE ZEROES / UNMAP-with-zeroing when it has one (NVMe, SCSI,
//!   virtio, loop devices over files punch holes) and writes zero pages itself otherwise, so
//!   stale data is never left behind. If the ioctl is refused, zeroes are written.
//! - `SPARSE=false` in the action's environment writes every byte.
//!
//! We deliberately do not "skip when the device was discarded": `BLKDISCARDZEROES` always
//! answers 0 on current kernels and a read-back sample proves nothing about the rest of the
//! device, whereas BLKZEROOUT is defined to leave zeroes.
//!
//! ## Write-behind
//!
//! Writes go through the page cache. Left alone, the kernel keeps gigabytes of an image dirty
//! (the default dirty limits are a percentage of RAM) and the final fsync then writes all of
//! it while nothing else happens. Instead, every [`WRITE_BEHIND`] bytes the sink starts
//! writeback of the window just written (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which does
//! not block) and waits for the window before it. Writeback thus overlaps decompression, dirty
//! memory stays at about two windows, and the fsync at the end only has the last window left.
//! The windows follow the highest offset written (the writers are sequential; anything written
//! below it later is covered by the final fsync, which is the durability barrier either way).
//! If the kernel refuses `sync_file_range`, the sink falls back to fsync alone.
//!
//! Memory is bounded: the writer holds no buffer of its own (callers pass their buffers) and
//! one static 64 KiB block of zeroes.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{FallocateFlags, fallocate};

use crate::sys;

/// Granularity of zero detection.
pub const ZERO_BLOCK: usize = 64 * 1024;

/// Write-behind window (see the module docs).
pub const WRITE_BEHIND: u64 = 16 << 20;

static ZEROES: [u8; ZERO_BLOCK] = [0; ZERO_BLOCK];

/// What the target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// A block device.
    BlockDevice,
    /// A regular file and its length when opened.
    File {
        /// Length before we started.
        original_len: u64,
    },
}

/// Totals of a finished write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteStats {
    /// Image size (bytes produced, written or skipped).
    pub size: u64,
    /// Bytes written as data.
    pub data: u64,
    /// Bytes of zero blocks not written as data.
    pub zero_skipped: u64,
}

/// A target being written.
#[derive(Debug)]
pub struct Sink {
    path: PathBuf,
    file: File,
    kind: TargetKind,
    sparse: bool,
    zero_run: Option<(u64, u64)>,
    end: u64,
    stats: WriteStats,
    /// Writeback has been started for everything below this offset.
    wb_started: u64,
    /// Writeback has been waited for below this offset.
    wb_waited: u64,
    /// False once the kernel refused sync_file_range.
    write_behind: bool,
}

/// Whether `buf` is all zero bytes. Scans 256-byte strides as 64-bit words OR-ed together
/// (the compiler turns the inner loop into vector ORs) and stops at the first stride holding a
/// set bit, so a block of real data costs one stride and a zero block one pass at memory speed.
pub fn is_zero(buf: &[u8]) -> bool {
    let mut strides = buf.chunks_exact(256);
    for stride in &mut strides {
        let mut acc = 0u64;
        for w in stride.chunks_exact(8) {
            acc |= u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        }
        if acc != 0 {
            return false;
        }
    }
    strides.remainder().iter().all(|&b| b == 0)
}

impl Sink {
    /// Open `path` for writing: a block device as is, a regular file created if absent (never
    /// truncated: the image overwrites it like a disk).
    pub fn open(path: &Path, sparse: bool) -> io::Result<Sink> {
        let meta = std::fs::metadata(path);
        let is_block = matches!(&meta, Ok(m) if m.file_type().is_block_device());
        let file = if is_block {
            OpenOptions::new().write(true).open(path)?
        } else {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)?
        };
        let kind = if is_block {
            TargetKind::BlockDevice
        } else {
            TargetKind::File {
                original_len: file.metadata()?.len(),
            }
        };
        Ok(Sink {
            path: path.to_path_buf(),
            file,
            kind,
            sparse,
            zero_run: None,
            end: 0,
            stats: WriteStats::default(),
            wb_started: 0,
            wb_waited: 0,
            write_behind: true,
        })
    }

    /// What the target is.
    pub fn kind(&self) -> TargetKind {
        self.kind
    }

    /// Capacity of a block device target (None for files).
    pub fn capacity(&self) -> Option<u64> {
        match self.kind {
            TargetKind::BlockDevice => sys::block_device_size(&self.file).ok(),
            TargetKind::File { .. } => None,
        }
    }

    /// Totals so far.
    pub fn stats(&self) -> WriteStats {
        self.stats
    }

    /// Write `data` at `offset`; all-zero 64 KiB blocks (aligned to `offset`) are skipped as
    /// described in the module docs.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut run_start = 0usize; // start of a pending data run in `data`
        let mut i = 0usize;
        if self.sparse {
            while i < data.len() {
                let n = ZERO_BLOCK.min(data.len() - i);
                let block = &data[i..i + n];
                if n == ZERO_BLOCK && is_zero(block) {
                    if run_start < i {
                        self.data_at(offset + run_start as u64, &data[run_start..i])?;
                    }
                    self.zeroes(offset + i as u64, n as u64)?;
                    run_start = i + n;
                }
                i += n;
            }
        }
        if run_start < data.len() {
            self.data_at(offset + run_start as u64, &data[run_start..])?;
        }
        self.write_behind();
        Ok(())
    }

    /// Start writeback of the window just written and wait for the one before it (module
    /// docs, "Write-behind").
    fn write_behind(&mut self) {
        if !self.write_behind || self.end < self.wb_started + WRITE_BEHIND {
            return;
        }
        let (start, end) = (self.wb_started, self.end);
        let r = sys::start_writeback(&self.file, start, end - start).and_then(|()| {
            if start > self.wb_waited {
                sys::wait_writeback(&self.file, self.wb_waited, start - self.wb_waited)
            } else {
                Ok(())
            }
        });
        match r {
            Ok(()) => {
                self.wb_waited = start;
                self.wb_started = end;
            }
            Err(e) => {
                tracing::debug!(target = %self.path.display(), error = %e,
                    "sync_file_range refused: no write-behind, fsync at the end only");
                self.write_behind = false;
            }
        }
    }

    fn data_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.flush_zero_run()?;
        self.file.write_all_at(data, offset)?;
        self.stats.data += data.len() as u64;
        self.end = self.end.max(offset + data.len() as u64);
        self.stats.size = self.end;
        Ok(())
    }

    /// Record that `[offset, offset+len)` of the image is zero.
    pub fn zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        if !self.sparse {
            let mut off = offset;
            while off < offset + len {
                let n = (offset + len - off).min(ZERO_BLOCK as u64) as usize;
                self.file.write_all_at(&ZEROES[..n], off)?;
                off += n as u64;
            }
            self.stats.data += len;
        } else {
            match &mut self.zero_run {
                Some((s, l)) if *s + *l == offset => *l += len,
                _ => {
                    self.flush_zero_run()?;
                    self.zero_run = Some((offset, len));
                }
            }
            self.stats.zero_skipped += len;
        }
        self.end = self.end.max(offset + len);
        self.stats.size = self.end;
        self.write_behind();
        Ok(())
    }

    fn flush_zero_run(&mut self) -> io::Result<()> {
        let Some((offset, len)) = self.zero_run.take() else {
            return Ok(());
        };
        match self.kind {
            TargetKind::File { original_len } => {
                // Past the original end the file has never held data: a hole already.
                let end = (offset + len).min(original_len);
                if offset < end {
                    let r = fallocate(
                        &self.file,
                        FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
                        offset as i64,
                        (end - offset) as i64,
                    );
                    if r.is_err() {
                        self.write_zeroes(offset, end - offset)?;
                    }
                }
            }
            TargetKind::BlockDevice => {
                let aligned = offset.is_multiple_of(512) && len.is_multiple_of(512);
                if !aligned || sys::zero_out(&self.file, offset, len).is_err() {
                    self.write_zeroes(offset, len)?;
                }
            }
        }
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut off = offset;
        while off < offset + len {
            let n = (offset + len - off).min(ZERO_BLOCK as u64) as usize;
            self.file.write_all_at(&ZEROES[..n], off)?;
            off += n as u64;
        }
        Ok(())
    }

    /// Finish: apply pending zeroes, extend a file to the image size, fsync, and on a block
    /// device ask the kernel to re-read the partition table (errors there are logged only, as
    /// upstream: the device may be busy or have no partitions).
    pub fn finish(mut self) -> io::Result<WriteStats> {
        self.flush_zero_run()?;
        if let TargetKind::File { .. } = self.kind
            && self.file.metadata()?.len() < self.end
        {
            self.file.set_len(self.end)?;
        }
        self.file.sync_all()?;
        if self.kind == TargetKind::BlockDevice
            && let Err(e) = sys::reread_partitions(&self.file)
        {
            tracing::info!(target = %self.path.display(), error = %e, "BLKRRPART failed (ignored)");
        }
        Ok(self.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[0u8; 200]));
        let mut b = vec![0u8; 4096];
        b[4095] = 1;
        assert!(!is_zero(&b));
        b[4095] = 0;
        b[3] = 9;
        assert!(!is_zero(&b));
        assert!(is_zero(&[]));
        // A set byte anywhere — in any 256-byte stride, any word lane, or the tail — counts.
        for len in [255usize, 256, 300, 4096 + 17] {
            for pos in 0..len {
                let mut b = vec![0u8; len];
                b[pos] = 0x80;
                assert!(!is_zero(&b), "len {len} pos {pos}");
            }
            assert!(is_zero(&vec![0u8; len]));
        }
    }

    #[test]
    fn write_behind_windows_keep_the_data() {
        // More than three write-behind windows, in 128 KiB writes with zero runs, into a
        // fresh file and a dirty one: sync_file_range must not change what reads back.
        let dir = tempfile::tempdir().unwrap();
        let len = (3 * WRITE_BEHIND + WRITE_BEHIND / 2) as usize + 777;
        let img = pattern(len, 5);
        for (name, sparse, prefill) in [("fresh", true, 0usize), ("dirty", false, len / 2)] {
            let p = dir.path().join(name);
            std::fs::write(&p, vec![0xAAu8; prefill]).unwrap();
            let mut s = Sink::open(&p, sparse).unwrap();
            for (k, chunk) in img.chunks(128 << 10).enumerate() {
                s.write_at((k * (128 << 10)) as u64, chunk).unwrap();
            }
            assert!(
                s.write_behind,
                "{name}: sync_file_range refused on this filesystem"
            );
            assert!(s.wb_started >= 3 * WRITE_BEHIND, "{name}: windows started");
            let st = s.finish().unwrap();
            assert_eq!(st.size, len as u64);
            assert!(std::fs::read(&p).unwrap() == img, "{name}");
        }
    }

    fn pattern(len: usize, zero_every: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        for (i, chunk) in v.chunks_mut(ZERO_BLOCK).enumerate() {
            if i % zero_every != 0 {
                for (j, b) in chunk.iter_mut().enumerate() {
                    *b = ((i * 31 + j) % 251) as u8 + 1;
                }
            }
        }
        v
    }

    #[test]
    fn sparse_file_reads_back_identical_fresh_and_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let img = pattern(ZERO_BLOCK * 10 + 1234, 3);
        for (name, prefill) in [("fresh", 0usize), ("dirty", ZERO_BLOCK * 20)] {
            let p = dir.path().join(name);
            if prefill > 0 {
                std::fs::write(&p, vec![0xAAu8; prefill]).unwrap();
            }
            let mut s = Sink::open(&p, true).unwrap();
            for (k, chunk) in img.chunks(ZERO_BLOCK * 3).enumerate() {
                s.write_at((k * ZERO_BLOCK * 3) as u64, chunk).unwrap();
            }
            let st = s.finish().unwrap();
            assert_eq!(st.size, img.len() as u64);
            assert_eq!(st.zero_skipped, (ZERO_BLOCK * 4) as u64, "{name}");
            let back = std::fs::read(&p).unwrap();
            assert_eq!(&back[..img.len()], &img[..], "{name}");
            if prefill > 0 {
                assert_eq!(back.len(), prefill, "a disk-like target keeps its tail");
                assert!(back[img.len()..].iter().all(|&b| b == 0xAA));
            }
        }
    }

    #[test]
    fn non_sparse_writes_everything() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, vec![0x55u8; ZERO_BLOCK * 2]).unwrap();
        let mut s = Sink::open(&p, false).unwrap();
        s.write_at(0, &[0u8; ZERO_BLOCK]).unwrap();
        s.zeroes(ZERO_BLOCK as u64, 10).unwrap();
        let st = s.finish().unwrap();
        assert_eq!(st.zero_skipped, 0);
        let back = std::fs::read(&p).unwrap();
        assert!(back[..ZERO_BLOCK + 10].iter().all(|&b| b == 0));
        assert_eq!(back[ZERO_BLOCK + 10], 0x55);
    }
}
