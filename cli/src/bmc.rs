//! `tinkerbell bmc`: ad hoc BMC power and boot device control, by address or by the name of
//! a bmc.tinkerbell.org Machine (its connection and credentials Secret read through the
//! store API). Errors name their class first: authentication refused, unreachable, timed
//! out, unsupported.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use tinkerbell_core::model::bmc::Connection;
use tinkerbell_core::store::{Backend, Kind, Object};
use tinkerbell_rufio::{BmcConfig, BmcError, BootDevice, ErrorKind, PowerAction, Protocol, Secret};

use crate::Global;

/// `bmc` subcommands.
#[derive(Debug, Subcommand)]
pub enum BmcCommand {
    /// Power on, off (hard), soft (graceful), cycle, reset, or show the power state.
    Power {
        /// What to do.
        #[arg(value_enum)]
        action: PowerArg,
        #[command(flatten)]
        target: Target,
    },
    /// Set the boot device.
    Bootdev {
        /// Device to boot from.
        #[arg(value_enum)]
        device: DeviceArg,
        /// Keep the setting for every boot, not just the next.
        #[arg(long)]
        persistent: bool,
        /// Boot in EFI mode.
        #[arg(long)]
        efi: bool,
        #[command(flatten)]
        target: Target,
    },
}

/// Power subcommand actions.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PowerArg {
    /// Power on.
    On,
    /// Hard power off.
    Off,
    /// Graceful shutdown.
    Soft,
    /// Power cycle.
    Cycle,
    /// Hard reset.
    Reset,
    /// Print `on`, `off` or `unknown`.
    Status,
}

/// Boot devices.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DeviceArg {
    /// Network boot.
    Pxe,
    /// Local disk.
    Disk,
    /// CD/DVD (virtual media).
    Cdrom,
    /// Firmware setup.
    Bios,
}

/// Protocols.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProtocolArg {
    /// IPMI v2.0 RMCP+ (lanplus).
    Ipmi,
    /// Redfish.
    Redfish,
}

/// Which BMC, and how to reach it.
#[derive(Debug, Args)]
pub struct Target {
    /// A bmc Machine (in --namespace): its connection and credentials Secret are used.
    #[arg(long, conflicts_with_all = ["host", "user"])]
    pub machine: Option<String>,
    /// BMC address (ad hoc).
    #[arg(long, required_unless_present = "machine")]
    pub host: Option<String>,
    /// BMC port (default: 623 for IPMI, 443 for Redfish).
    #[arg(long)]
    pub port: Option<u16>,
    /// BMC user name.
    #[arg(long, required_unless_present = "machine")]
    pub user: Option<String>,
    /// Environment variable holding the BMC password.
    #[arg(long, default_value = "TINKERBELL_BMC_PASSWORD")]
    pub password_env: String,
    /// Protocol. Default: ipmi; for a Machine, the first of its preferredOrder we speak.
    #[arg(long, value_enum)]
    pub protocol: Option<ProtocolArg>,
    /// IPMI cipher suite (3 or 17; default: 3, then 17).
    #[arg(long)]
    pub cipher_suite: Option<u8>,
    /// Redfish: accept any TLS certificate.
    #[arg(long)]
    pub insecure_tls: bool,
    /// Redfish: use HTTP basic auth instead of a session.
    #[arg(long)]
    pub basic_auth: bool,
    /// Seconds to wait for each answer (IPMI retransmits twice after it).
    #[arg(long, default_value_t = 2)]
    pub timeout: u64,
}

/// Run a `bmc` subcommand.
pub async fn run(g: &Global, cmd: BmcCommand) -> anyhow::Result<()> {
    let target = match &cmd {
        BmcCommand::Power { target, .. } | BmcCommand::Bootdev { target, .. } => target,
    };
    let cfg = config(g, target).await?;
    let bmc = cfg.client().map_err(classify)?;
    match cmd {
        BmcCommand::Power {
            action: PowerArg::Status,
            ..
        } => {
            let s = bmc.power_state().await.map_err(classify)?;
            println!("{s}");
        }
        BmcCommand::Power { action, .. } => {
            let a = match action {
                PowerArg::On => PowerAction::On,
                PowerArg::Off => PowerAction::Off,
                PowerArg::Soft => PowerAction::Soft,
                PowerArg::Cycle => PowerAction::Cycle,
                PowerArg::Reset => PowerAction::Reset,
                PowerArg::Status => unreachable!("handled above"),
            };
            bmc.power(a).await.map_err(classify)?;
            println!("power {}: ok", a.as_str());
        }
        BmcCommand::Bootdev {
            device,
            persistent,
            efi,
            ..
        } => {
            let d = match device {
                DeviceArg::Pxe => BootDevice::Pxe,
                DeviceArg::Disk => BootDevice::Disk,
                DeviceArg::Cdrom => BootDevice::Cdrom,
                DeviceArg::Bios => BootDevice::Bios,
            };
            bmc.boot_device(d, persistent, efi)
                .await
                .map_err(classify)?;
            println!(
                "bootdev {}{}{}: ok",
                d.as_str(),
                if persistent { " persistent" } else { "" },
                if efi { " efi" } else { "" }
            );
        }
    }
    Ok(())
}

/// The error with its class in front: `timed out: BMC 10.0.0.5 did not answer within 6s`.
fn classify(e: BmcError) -> anyhow::Error {
    match e.kind() {
        ErrorKind::Failed | ErrorKind::Config => anyhow::Error::new(e),
        k => anyhow::Error::new(e).context(k.as_str().to_string()),
    }
}

fn password(var: &str) -> anyhow::Result<Secret> {
    std::env::var(var).map(Secret::new).map_err(|_| {
        anyhow!("the BMC password is read from ${var}, which is not set (see --password-env)")
    })
}

async fn config(g: &Global, t: &Target) -> anyhow::Result<BmcConfig> {
    let timeout = Duration::from_secs(t.timeout.max(1));
    let (protocol, mut cfg) = match &t.machine {
        Some(name) => {
            let store = crate::commands::connect(g).await?;
            let (conn, user, pass) = machine_connection(store.as_ref(), &g.namespace, name).await?;
            let protocol = match t.protocol {
                Some(ProtocolArg::Ipmi) => Protocol::Ipmi,
                Some(ProtocolArg::Redfish) => Protocol::Redfish,
                None => preferred(&conn),
            };
            let cfg = BmcConfig::from_connection(protocol, &conn, &user, pass).map_err(classify)?;
            (protocol, cfg)
        }
        None => {
            let host = t.host.as_deref().context("--host is required")?;
            let user = t.user.as_deref().context("--user is required")?;
            let pass = password(&t.password_env)?;
            match t.protocol.unwrap_or(ProtocolArg::Ipmi) {
                ProtocolArg::Ipmi => (
                    Protocol::Ipmi,
                    BmcConfig::Ipmi(tinkerbell_rufio::ipmi::IpmiConfig::new(host, user, pass)),
                ),
                ProtocolArg::Redfish => (
                    Protocol::Redfish,
                    BmcConfig::Redfish(tinkerbell_rufio::redfish::RedfishConfig::new(
                        host, user, pass,
                    )),
                ),
            }
        }
    };
    match &mut cfg {
        BmcConfig::Ipmi(c) => {
            if let Some(p) = t.port {
                c.port = p;
            }
            if t.cipher_suite.is_some() {
                c.cipher_suite = t.cipher_suite;
            }
            c.timeout = timeout;
            c.validate().map_err(classify)?;
        }
        BmcConfig::Redfish(c) => {
            if t.port.is_some() {
                c.port = t.port;
            }
            c.insecure_tls |= t.insecure_tls;
            c.use_basic_auth |= t.basic_auth;
            c.timeout = timeout.max(Duration::from_secs(5));
            c.connect_timeout = timeout;
        }
    }
    tracing::debug!(?protocol, "BMC configuration ready");
    Ok(cfg)
}

/// The first provider in `preferredOrder` that we speak; IPMI otherwise (bmclib's default
/// order starts with ipmitool). The controllers try the rest in turn; the CLI uses the first.
fn preferred(conn: &Connection) -> Protocol {
    tinkerbell_rufio::controller::protocols(conn)
        .first()
        .copied()
        .unwrap_or(Protocol::Ipmi)
}

/// A Machine's connection and the username/password from its Secret.
async fn machine_connection(
    store: &dyn Backend,
    namespace: &str,
    name: &str,
) -> anyhow::Result<(Connection, String, Secret)> {
    let obj = store
        .get(Kind::Machine, namespace, name)
        .await
        .with_context(|| format!("reading Machine {namespace}/{name}"))?;
    let Object::Machine(m) = obj else {
        bail!("{namespace}/{name} is not a Machine");
    };
    let conn = m
        .spec
        .connection
        .clone()
        .with_context(|| format!("Machine {namespace}/{name} has no connection"))?;
    let sref = conn
        .auth_secret_ref
        .clone()
        .with_context(|| format!("Machine {namespace}/{name} has no authSecretRef"))?;
    let sname = sref.name.unwrap_or_default();
    let sns = sref
        .namespace
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| namespace.to_string());
    let obj = store
        .get(Kind::Secret, &sns, &sname)
        .await
        .with_context(|| format!("reading Secret {sns}/{sname}"))?;
    let Object::Secret(s) = obj else {
        bail!("{sns}/{sname} is not a Secret");
    };
    let field = |k: &str| -> Option<String> {
        if let Some(v) = s.data.as_ref().and_then(|d| d.get(k)) {
            return String::from_utf8(v.0.clone()).ok();
        }
        s.string_data.as_ref().and_then(|d| d.get(k)).cloned()
    };
    let user =
        field("username").with_context(|| format!("Secret {sns}/{sname} has no username"))?;
    let pass =
        field("password").with_context(|| format!("Secret {sns}/{sname} has no password"))?;
    Ok((conn, user, Secret::new(pass)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinkerbell_core::store::Store;
    use tinkerbell_core::store::embedded::EmbeddedStore;

    #[tokio::test]
    async fn machine_connection_and_credentials_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let machine = serde_json::json!({
            "apiVersion": "bmc.tinkerbell.org/v1alpha1", "kind": "Machine",
            "metadata": {"name": "m1", "namespace": "lab"},
            "spec": {"connection": {
                "host": "10.0.0.5", "port": 623, "insecureTLS": true,
                "authSecretRef": {"name": "m1-auth", "namespace": "lab"},
                "providerOptions": {"preferredOrder": ["gofish", "ipmitool"],
                                    "redfish": {"port": 8443}}}}});
        let secret = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "m1-auth", "namespace": "lab"},
            "type": "kubernetes.io/basic-auth",
            "data": {"username": "YWRtaW4=", "password": "czNjcmV0"}});
        for v in [machine, secret] {
            store
                .create(Object::from_typed_json(v).unwrap())
                .await
                .unwrap();
        }
        let (conn, user, pass) = machine_connection(&store, "lab", "m1").await.unwrap();
        assert_eq!((user.as_str(), pass.expose()), ("admin", "s3cret"));
        assert_eq!(preferred(&conn), Protocol::Redfish);
        let BmcConfig::Redfish(r) =
            BmcConfig::from_connection(Protocol::Redfish, &conn, &user, pass).unwrap()
        else {
            panic!("not redfish")
        };
        assert_eq!((r.port, r.insecure_tls), (Some(8443), true));
        assert!(machine_connection(&store, "lab", "nope").await.is_err());
    }

    #[test]
    fn errors_name_their_class() {
        let e = classify(BmcError::TimedOut {
            host: "h".into(),
            timeout: Duration::from_secs(6),
        });
        assert_eq!(
            tinkerbell_core::error_chain(e.as_ref()),
            "timed out: BMC h did not answer within 6s"
        );
    }
}
