//! boots: the network-boot service of tinkerbell-rs (upstream Smee, formerly Boots).
//!
//! A machine powers on, its firmware asks DHCP for an address and a boot file, fetches iPXE
//! over TFTP (or HTTP for UEFI HTTP boot), iPXE asks DHCP again and chains to the `auto.ipxe`
//! script, which boots HookOS; HookOS then logs to boots' syslog receiver. Every answer comes
//! from the Hardware found for the machine's MAC (or source IP) through
//! [`tinkerbell_core::store::HardwareLookup`], which answers from memory.
//!
//! * [`dhcp`]: the DHCPv4 server (reservation, proxy, auto-proxy; relays; interface-scoped
//!   replies).
//! * [`syslog`]: the syslog receiver, its per-machine store and its HTTP routes.
//! * [`tftp`]: the TFTP server for the iPXE binaries (RFC 2347/2348/2349/7440).
//! * [`http`]: iPXE binaries, `auto.ipxe` scripts and HookOS artifacts over HTTP.
//! * [`hookos`]: the HookOS artifacts' names, their `SHA256SUMS`, and the check that they
//!   are there and whole.
//! * [`ra`]: an opt-in IPv6 Router Advertisement responder (lifetime 0, no prefixes) so stock
//!   iPXE's IPv6 autoconfiguration ends at once instead of waiting ~16 s for a router.
//! * [`record`]: every phase a machine passes through here (DHCP offer/ack, TFTP, iPXE
//!   binary and script, HookOS kernel and initramfs) goes into the appliance's shared
//!   [`Timeline`], keyed by its Hardware.
//!
//! [`Boots::start`] binds every UDP socket (DHCP, TFTP, syslog) and the RA responder's raw
//! ICMPv6 socket before it returns and builds
//! the HTTP routes; the caller mounts [`Boots::router`] on its own HTTP listener (upstream
//! serves iPXE binaries and scripts on the consolidated HTTP port too). The handle has
//! [`Boots::local_addrs`] and [`Boots::join`], and stops when its `CancellationToken` fires.
//!
//! All of that is the default feature `server`. Without it only the protocol logic builds
//! ([`dhcp::wire`], [`dhcp::handler`], [`dhcp::netboot`], [`tftp::packet`]) on the resource
//! model alone, with no runtime, sockets or store backends: what the fuzz targets link.

pub mod dhcp;
pub mod tftp;

#[cfg(feature = "server")]
pub mod flags;
#[cfg(feature = "server")]
pub mod hookos;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod ra;
#[cfg(feature = "server")]
pub mod record;
#[cfg(feature = "server")]
mod service;
#[cfg(feature = "server")]
pub mod syslog;

#[cfg(feature = "server")]
pub use service::{Boots, BootsError, Config};

/// The kinds boots reads from the store (what a `--backend kube` start-up checks it may list).
#[cfg(feature = "server")]
pub const STORE_KINDS: &[tinkerbell_core::store::Kind] = &[tinkerbell_core::store::Kind::Hardware];
