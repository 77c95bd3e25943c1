//! The HTTP edge of tinkerbell-rs: what every service that listens on the provisioning
//! network shares, below the services and the store.
//!
//! * [`server`]: [`HttpServer`], the one listener type every HTTP port runs on (boots' iPXE
//!   and HookOS routes, hegel's metadata, `tinkerbell serve`'s consolidated port, the store
//!   API). It serves until cancelled and then gives in-flight requests a grace period, with
//!   limits against clients that hold connections open ([`HttpLimits`]) and optional TLS.
//! * [`tls`]: loading a server certificate and key, and the client side's trust: a CA bundle,
//!   or a certificate pinned as it is.
//! * [`metrics`]: the one prometheus-client registry a process serves, and helpers for
//!   collectors over atomic counters.
//! * [`net`]: CIDRs, canonical addresses and the client address behind trusted proxies
//!   (`X-Forwarded-For`).
//! * `testing` (feature): a throwaway CA and server certificate for tests.

pub mod metrics;
pub mod net;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;

pub use net::{Cidr, CidrError, canonical, client_ip};
pub use server::{HttpLimits, HttpServer, ServeError, ServeOptions};
