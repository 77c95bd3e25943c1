//! TFTP: the first network-boot hop. A PXE ROM gets `undionly.kpxe` / `ipxe.efi` /
//! `snponly.efi` over TFTP and everything after that over HTTP (`crate::http`).
//!
//! Our own server on tokio rather than a crate, because what matters here is the option matrix
//! and its failure modes, which we test one by one:
//!
//! * read requests only; a write request gets an ERROR (access violation);
//! * options blksize (RFC 2348), tsize and timeout (RFC 2349) and windowsize (RFC 7440),
//!   answered with an OACK; a client that asked for none gets plain RFC 1350 lockstep;
//! * one task and one connected UDP socket per transfer (the transfer ID of RFC 1350), with
//!   retransmission on timeout and no answer to duplicate ACKs (no Sorcerer's Apprentice);
//! * a bounded number of concurrent transfers, in all and per client address: beyond either
//!   bound requests are dropped (the client retransmits) rather than queued without limit, so
//!   one client that never acknowledges cannot lock the others out;
//! * asset files are shared in memory by the transfers serving them, within a byte budget
//!   (`cache`);
//! * file names resolve to the in-memory iPXE binaries (also as `<mac>/<binary>`, the form
//!   upstream's DHCP hands to iPXE) or to files under the asset directory, confined by
//!   `openat2(RESOLVE_BENEATH)` ([`files`]);
//! * undecodable datagrams are dropped and counted ([`metrics`]); nothing a client sends can
//!   stop the listener.

pub mod packet;

#[cfg(feature = "server")]
mod cache;
#[cfg(feature = "server")]
pub mod files;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
mod transfer;

#[cfg(feature = "server")]
pub use files::{AssetRoot, IpxeBinaries};
#[cfg(feature = "server")]
pub use metrics::TftpMetrics;
#[cfg(feature = "server")]
pub use server::{
    Config, DEFAULT_MAX_FILE_CACHE_BYTES, DEFAULT_MAX_TRANSFERS_PER_CLIENT, MAX_BLOCK_SIZE, Tftp,
    TftpError,
};
