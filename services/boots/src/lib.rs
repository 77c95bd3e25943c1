//! boots: the network-boot service (upstream Smee, formerly Boots).
//!
//! This crate is a placeholder in the workspace layout: it has no code yet. It will serve
//! DHCPv4 (reservation, proxy and auto-proxy modes, relays), TFTP for the iPXE binaries, iPXE
//! binaries and `auto.ipxe` scripts over HTTP, and a syslog receiver, all reading Hardware
//! through `tinkerbell_core::store::HardwareLookup`. See `README.md` in this crate.

pub mod http;
pub mod tftp;
