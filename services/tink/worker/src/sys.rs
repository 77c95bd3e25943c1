//! The few Linux syscalls the actions need that std and nix's safe API do not cover: block
//! device ioctls (BLKRRPART, BLKZEROOUT, BLKGETSIZE64), sync_file_range and kexec_file_load. Every `unsafe` of
//! the crate lives here, each with its `SAFETY:` note.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use nix::libc;

mod ioctls {
    // <linux/fs.h>: BLKRRPART _IO(0x12,95), BLKGETSIZE64 _IOR(0x12,114,size_t),
    // BLKZEROOUT _IO(0x12,127) taking a pointer to `uint64_t[2]` (offset, length).
    nix::ioctl_none!(blkrrpart, 0x12, 95);
    nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
    nix::ioctl_write_ptr_bad!(blkzeroout, nix::request_code_none!(0x12, 127), [u64; 2]);
}

/// Ask the kernel to re-read the partition table of the block device `dev`.
pub fn reread_partitions(dev: &File) -> io::Result<()> {
    // SAFETY: BLKRRPART takes no argument; the fd is open for the duration of the call.
    unsafe { ioctls::blkrrpart(dev.as_raw_fd()) }
        .map(drop)
        .map_err(io::Error::from)
}

/// Size in bytes of the block device `dev`.
pub fn block_device_size(dev: &File) -> io::Result<u64> {
    let mut size = 0u64;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points at `size`.
    unsafe { ioctls::blkgetsize64(dev.as_raw_fd(), &mut size) }.map_err(io::Error::from)?;
    Ok(size)
}

/// Zero `len` bytes at `offset` of block device `dev` (both multiples of 512). The kernel
/// uses the device's WRITE ZEROES/UNMAP when it has one and writes zero pages otherwise, so
/// the range reads back as zeroes either way.
pub fn zero_out(dev: &File, offset: u64, len: u64) -> io::Result<()> {
    let range = [offset, len];
    // SAFETY: BLKZEROOUT reads two u64 from the pointer, which points at `range`.
    unsafe { ioctls::blkzeroout(dev.as_raw_fd(), &range) }
        .map(drop)
        .map_err(io::Error::from)
}

/// Start writeback of the dirty pages of `[offset, offset + len)` of `f` without waiting for
/// it (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). Works on regular files and block devices.
pub fn start_writeback(f: &File, offset: u64, len: u64) -> io::Result<()> {
    sync_file_range(f, offset, len, libc::SYNC_FILE_RANGE_WRITE)
}

/// Wait until the pages of `[offset, offset + len)` of `f` that were dirty are on their way to
/// the device or written (`WAIT_BEFORE | WRITE | WAIT_AFTER`). Not a durability barrier (no
/// metadata, no device cache flush): the writer still ends with fsync.
pub fn wait_writeback(f: &File, offset: u64, len: u64) -> io::Result<()> {
    sync_file_range(
        f,
        offset,
        len,
        libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER,
    )
}

fn sync_file_range(f: &File, offset: u64, len: u64, flags: libc::c_uint) -> io::Result<()> {
    let (Ok(off), Ok(n)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: plain syscall on an open fd with integer arguments; no memory is passed.
    let rc = unsafe { libc::sync_file_range(f.as_raw_fd(), off, n, flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Load `kernel` (and `initrd`) with `cmdline` as the kernel to boot on the next
/// `reboot(RB_KEXEC)` (kexec_file_load(2)).
pub fn kexec_file_load(kernel: &File, initrd: Option<&File>, cmdline: &str) -> io::Result<()> {
    const KEXEC_FILE_NO_INITRAMFS: libc::c_ulong = 0x4;
    let cmd = std::ffi::CString::new(cmdline)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in the cmdline"))?;
    let bytes = cmd.as_bytes_with_nul();
    let (initrd_fd, flags) = match initrd {
        Some(f) => (f.as_raw_fd(), 0),
        None => (-1, KEXEC_FILE_NO_INITRAMFS),
    };
    // SAFETY: the fds are open; the cmdline pointer/length describe a NUL-terminated buffer
    // that lives across the call; the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            kernel.as_raw_fd(),
            initrd_fd,
            bytes.len() as libc::c_ulong,
            bytes.as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Configure `cmd` to chroot into `root` (and chdir to `/`) in the child before exec.
pub fn chroot_command(cmd: &mut tokio::process::Command, root: std::path::PathBuf) {
    // SAFETY: the closure runs in the forked child before exec and only calls the
    // async-signal-safe chroot(2) and chdir(2) (no allocation: the path was converted up front).
    let root = std::ffi::CString::new(root.into_os_string().into_encoded_bytes())
        .unwrap_or_else(|_| c"/nonexistent".to_owned());
    unsafe {
        cmd.pre_exec(move || {
            if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
