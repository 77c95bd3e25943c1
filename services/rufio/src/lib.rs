//! Rufio: out-of-band control of bare-metal machines through their BMCs.
//!
//! Two protocols, both native and async:
//! * [`ipmi`]: an IPMI v2.0 RMCP+ ("lanplus") client over UDP, cipher suites 3 and 17 (the
//!   RAKP-HMAC-SHA1 / HMAC-SHA1-96 / AES-CBC-128 and RAKP-HMAC-SHA256 / HMAC-SHA256-128 /
//!   AES-CBC-128 suites), written here instead of shelling out to `ipmitool` as bmclib does.
//! * [`redfish`]: a Redfish client (session or basic auth) for power, boot override and
//!   virtual media, with vendor quirks kept in one table.
//!
//! [`Bmc`] is the common face of both; [`BmcConfig`] is built from the values of a
//! `bmc.tinkerbell.org` Machine's `connection` (see [`BmcConfig::from_connection`]).
//! [`controller`] runs the bmc.tinkerbell.org Machine, Job and Task reconcilers over any
//! store; the `rufio` binary and `tinkerbell serve` run it.
//!
//! Every call opens a session, does one thing and closes the session, like bmclib does per
//! task. Errors are [`BmcError`], classified by [`BmcError::kind`] so that callers can say
//! whether authentication was refused, the BMC was unreachable, it timed out, or the
//! operation is unsupported.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use tinkerbell_core::model::bmc::Connection;

pub use controller::{ControllerError, Controllers};

/// The kinds rufio reads and writes (what a `--backend kube` start-up checks it may list).
pub const STORE_KINDS: &[tinkerbell_core::store::Kind] = &[
    tinkerbell_core::store::Kind::Machine,
    tinkerbell_core::store::Kind::Job,
    tinkerbell_core::store::Kind::Task,
    tinkerbell_core::store::Kind::Secret,
];

pub mod action;
pub mod controller;
pub mod ipmi;
pub mod redfish;

/// A password or token: never shown by `Debug` or `Display`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret value, for the wire only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_string())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

/// A power operation (Machine/Task `powerAction`, except `status`, which is
/// [`Bmc::power_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// Power on.
    On,
    /// Hard power off.
    Off,
    /// Graceful (ACPI) shutdown.
    Soft,
    /// Power cycle.
    Cycle,
    /// Hard reset.
    Reset,
}

impl PowerAction {
    /// Parse a `powerAction` value (`on`, `off`, `soft`, `cycle`, `reset`).
    pub fn parse(s: &str) -> Option<PowerAction> {
        use PowerAction::*;
        [On, Off, Soft, Cycle, Reset]
            .into_iter()
            .find(|a| a.as_str() == s)
    }

    /// The `powerAction` string.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::On => "on",
            PowerAction::Off => "off",
            PowerAction::Soft => "soft",
            PowerAction::Cycle => "cycle",
            PowerAction::Reset => "reset",
        }
    }
}

/// Observed power state (Machine `status.powerState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    /// Powered on.
    On,
    /// Powered off.
    Off,
    /// Neither (e.g. a Redfish `PoweringOn`), or not known.
    Unknown,
}

impl PowerState {
    /// The `status.powerState` string.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::On => "on",
            PowerState::Off => "off",
            PowerState::Unknown => "unknown",
        }
    }
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A boot device (`bootDevice.device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootDevice {
    /// Network (PXE).
    Pxe,
    /// Local disk.
    Disk,
    /// Firmware setup.
    Bios,
    /// CD/DVD, including virtual media.
    Cdrom,
    /// Disk, safe mode.
    Safe,
}

impl BootDevice {
    /// Parse a `bootDevice.device` value (`pxe`, `disk`, `bios`, `cdrom`, `safe`).
    pub fn parse(s: &str) -> Option<BootDevice> {
        use BootDevice::*;
        [Pxe, Disk, Bios, Cdrom, Safe]
            .into_iter()
            .find(|d| d.as_str() == s)
    }

    /// The `bootDevice.device` string.
    pub fn as_str(self) -> &'static str {
        match self {
            BootDevice::Pxe => "pxe",
            BootDevice::Disk => "disk",
            BootDevice::Bios => "bios",
            BootDevice::Cdrom => "cdrom",
            BootDevice::Safe => "safe",
        }
    }
}

/// How an error should be reported: the four cases a user can act on, and the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The BMC refused the credentials (or the requested privilege).
    AuthenticationRefused,
    /// The BMC could not be reached (no route, refused, name does not resolve).
    Unreachable,
    /// The BMC did not answer in time.
    TimedOut,
    /// The BMC, or this client, does not support what was asked.
    Unsupported,
    /// The BMC answered with an error, or with something that makes no sense.
    Failed,
    /// The configuration is invalid.
    Config,
}

impl ErrorKind {
    /// A short phrase for messages: `authentication refused`, `unreachable`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::AuthenticationRefused => "authentication refused",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::TimedOut => "timed out",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Failed => "failed",
            ErrorKind::Config => "invalid configuration",
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Errors talking to a BMC.
#[derive(Debug, thiserror::Error)]
pub enum BmcError {
    /// The BMC refused the user name, password or privilege level.
    #[error("authentication refused by BMC {host}: {detail}")]
    AuthenticationRefused {
        /// BMC address.
        host: String,
        /// What was refused.
        detail: String,
    },
    /// The BMC could not be reached.
    #[error("BMC {host} is unreachable")]
    Unreachable {
        /// BMC address.
        host: String,
        /// The network error.
        #[source]
        source: BoxError,
    },
    /// The BMC did not answer in time.
    #[error("BMC {host} did not answer within {timeout:?}")]
    TimedOut {
        /// BMC address.
        host: String,
        /// The time waited.
        timeout: Duration,
    },
    /// The BMC (or this client) does not support the request.
    #[error("unsupported by BMC {host}: {detail}")]
    Unsupported {
        /// BMC address.
        host: String,
        /// What is unsupported.
        detail: String,
    },
    /// The BMC answered with an error.
    #[error("BMC {host} failed {operation}: {detail}")]
    Failed {
        /// BMC address.
        host: String,
        /// The operation.
        operation: String,
        /// The BMC's answer.
        detail: String,
    },
    /// The BMC answered with something that does not parse or does not authenticate.
    #[error("protocol error from BMC {host}: {detail}")]
    Protocol {
        /// BMC address.
        host: String,
        /// What was wrong.
        detail: String,
    },
    /// The BMC supplied a URL (an `@odata.id`, a session `Location`, an action target)
    /// outside its configured endpoint: it is not followed, so no credential goes there.
    #[error("BMC {host} pointed at {url:?}, outside its configured endpoint; not followed")]
    ForeignUrl {
        /// BMC address.
        host: String,
        /// The URL as the BMC supplied it.
        url: String,
    },
    /// The BMC answered with a body larger than the client reads.
    #[error("BMC {host} answered {path} with a body over {limit} bytes")]
    ResponseTooLarge {
        /// BMC address.
        host: String,
        /// The path requested.
        path: String,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The configuration is invalid.
    #[error("invalid BMC configuration: {0}")]
    Config(String),
}

impl BmcError {
    /// The class of the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BmcError::AuthenticationRefused { .. } => ErrorKind::AuthenticationRefused,
            BmcError::Unreachable { .. } => ErrorKind::Unreachable,
            BmcError::TimedOut { .. } => ErrorKind::TimedOut,
            BmcError::Unsupported { .. } => ErrorKind::Unsupported,
            BmcError::Failed { .. }
            | BmcError::Protocol { .. }
            | BmcError::ForeignUrl { .. }
            | BmcError::ResponseTooLarge { .. } => ErrorKind::Failed,
            BmcError::Config(_) => ErrorKind::Config,
        }
    }
}

/// What every BMC protocol can do.
#[async_trait]
pub trait Bmc: Send + Sync {
    /// Read the power state.
    async fn power_state(&self) -> Result<PowerState, BmcError>;
    /// Run a power operation.
    async fn power(&self, action: PowerAction) -> Result<(), BmcError>;
    /// Set the boot device, for the next boot or persistently, EFI or legacy.
    async fn boot_device(
        &self,
        device: BootDevice,
        persistent: bool,
        efi: bool,
    ) -> Result<(), BmcError>;
    /// Insert `url` as virtual media of `kind` (eject when `url` is empty). Only Redfish
    /// has virtual media.
    async fn virtual_media(&self, url: &str, kind: &str) -> Result<(), BmcError> {
        let _ = (url, kind);
        Err(BmcError::Unsupported {
            host: String::new(),
            detail: "virtual media needs Redfish".into(),
        })
    }
}

/// Which protocol to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// IPMI v2.0 RMCP+ (bmclib's `ipmitool` provider).
    Ipmi,
    /// Redfish (bmclib's `gofish` provider).
    Redfish,
}

/// Everything needed to reach one BMC with either protocol.
#[derive(Debug, Clone)]
pub enum BmcConfig {
    /// IPMI.
    Ipmi(ipmi::IpmiConfig),
    /// Redfish.
    Redfish(redfish::RedfishConfig),
}

impl BmcConfig {
    /// Build the configuration for `protocol` from a Machine's `connection` and the
    /// credentials from its Secret. Port precedence: the provider's own port, then
    /// `connection.port` (when it is not the IPMI default for Redfish), then the protocol
    /// default.
    pub fn from_connection(
        protocol: Protocol,
        conn: &Connection,
        username: &str,
        password: Secret,
    ) -> Result<BmcConfig, BmcError> {
        let port_of = |p: i64| -> Result<Option<u16>, BmcError> {
            match p {
                0 => Ok(None),
                1..=65535 => Ok(Some(p as u16)),
                _ => Err(BmcError::Config(format!("port {p} is out of range"))),
            }
        };
        let host = conn.host.as_deref().unwrap_or_default();
        let opts = conn.provider_options.clone().unwrap_or_default();
        let conn_port = port_of(conn.port.unwrap_or(0))?;
        match protocol {
            Protocol::Ipmi => {
                let ipmitool = opts.ipmitool.unwrap_or_default();
                let mut c = ipmi::IpmiConfig::new(host, username, password);
                if let Some(p) = port_of(ipmitool.port.unwrap_or(0))?.or(conn_port) {
                    c.port = p;
                }
                let cs = ipmitool.cipher_suite.unwrap_or_default();
                let cs = cs.trim();
                if !cs.is_empty() {
                    let n: u8 = cs.parse().map_err(|_| {
                        BmcError::Config(format!("cipher suite {cs:?} is not a number"))
                    })?;
                    c.cipher_suite = Some(n);
                }
                c.validate()?;
                Ok(BmcConfig::Ipmi(c))
            }
            Protocol::Redfish => {
                let redfish = opts.redfish.unwrap_or_default();
                let mut c = redfish::RedfishConfig::new(host, username, password);
                let conn_port = conn_port.filter(|p| *p != ipmi::DEFAULT_PORT);
                c.port = port_of(redfish.port.unwrap_or(0))?.or(conn_port);
                c.use_basic_auth = redfish.use_basic_auth.unwrap_or(false);
                c.system_name = redfish.system_name.filter(|s| !s.is_empty());
                c.insecure_tls = conn.insecure_tls.unwrap_or(false);
                c.validate()?;
                Ok(BmcConfig::Redfish(c))
            }
        }
    }

    /// A client for this configuration.
    pub fn client(&self) -> Result<Box<dyn Bmc>, BmcError> {
        Ok(match self {
            BmcConfig::Ipmi(c) => Box::new(ipmi::IpmiClient::new(c.clone())?),
            BmcConfig::Redfish(c) => Box::new(redfish::RedfishClient::new(c.clone())?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "\"<redacted>\"");
        let c = ipmi::IpmiConfig::new("h", "u", s.clone());
        assert!(!format!("{c:?}").contains("hunter2"));
        let r = redfish::RedfishConfig::new("h", "u", s);
        assert!(!format!("{r:?}").contains("hunter2"));
    }

    #[test]
    fn strings_round_trip() {
        for a in tinkerbell_core::model::bmc::power_action::ALL {
            if *a == "status" {
                continue;
            }
            assert_eq!(PowerAction::parse(a).map(|p| p.as_str()), Some(*a));
        }
        for d in tinkerbell_core::model::bmc::boot_device::ALL {
            assert_eq!(BootDevice::parse(d).map(|p| p.as_str()), Some(*d));
        }
    }

    #[test]
    fn config_from_connection() {
        use tinkerbell_core::model::bmc::{IpmitoolOptions, ProviderOptions, RedfishOptions};
        let mut conn = Connection {
            host: Some("10.0.0.1".into()),
            port: Some(623),
            provider_options: Some(ProviderOptions {
                ipmitool: Some(IpmitoolOptions {
                    cipher_suite: Some("17".into()),
                    ..Default::default()
                }),
                redfish: Some(RedfishOptions {
                    port: Some(8443),
                    system_name: Some("node1".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            insecure_tls: Some(true),
            ..Default::default()
        };
        let BmcConfig::Ipmi(c) =
            BmcConfig::from_connection(Protocol::Ipmi, &conn, "admin", "pw".into()).unwrap()
        else {
            panic!("not ipmi")
        };
        assert_eq!((c.port, c.cipher_suite), (623, Some(17)));
        let BmcConfig::Redfish(r) =
            BmcConfig::from_connection(Protocol::Redfish, &conn, "admin", "pw".into()).unwrap()
        else {
            panic!("not redfish")
        };
        assert_eq!(r.port, Some(8443));
        assert_eq!(r.system_name.as_deref(), Some("node1"));
        assert!(r.insecure_tls);
        conn.provider_options.as_mut().unwrap().ipmitool = Some(IpmitoolOptions {
            cipher_suite: Some("2".into()),
            ..Default::default()
        });
        let e =
            BmcConfig::from_connection(Protocol::Ipmi, &conn, "admin", "pw".into()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
    }
}
