//! hegel: the EC2-compatible instance metadata service of tinkerbell-rs (upstream Tinkerbell's
//! Hegel, called Tootles in the monorepo).
//!
//! A machine asks `http://<hegel>/2009-04-04/meta-data/...` (or `latest/...`) and gets the
//! metadata of the Hardware whose `interfaces[].dhcp.ip.address` is the machine's source
//! address — that is how cloud-init's Ec2 datasource configures an installed OS. The Hardware is
//! looked up on every request, so a changed Hardware is served immediately.
//!
//! * [`ec2`]: the metadata tree as pure functions of a Hardware.
//! * [`http`]: routes, identity (peer address; X-Forwarded-For only from trusted proxies),
//!   IMDSv2 session tokens, metrics, error mapping.
//! * [`server`]: [`Hegel::start`] for the standalone `hegel` binary; `tinkerbell serve` mounts
//!   [`router`] on its consolidated HTTP port instead.

pub mod config;
pub mod ec2;
pub mod http;
pub mod metrics;
pub mod server;
pub mod tokens;

pub use config::{Config, ConfigError};
pub use http::{AppState, router};

/// The kinds hegel reads from the store (what a `--backend kube` start-up checks it may list).
pub const STORE_KINDS: &[tinkerbell_core::store::Kind] = &[tinkerbell_core::store::Kind::Hardware];
pub use server::{Hegel, HegelError};
