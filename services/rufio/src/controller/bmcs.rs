//! Reaching a Machine's BMC: credentials from the referenced Secret, protocols in the
//! `preferredOrder`, and the limits (one operation at a time per BMC host, a global cap, a
//! timeout per operation).
//!
//! Like bmclib, an operation is tried with each protocol in turn until one succeeds. When all
//! fail, the error reported is the one a user can act on first (bad configuration, refused
//! credentials, unsupported, a BMC error, a timeout, and only then "unreachable", which is
//! what a protocol the BMC does not speak usually yields).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tinkerbell_core::model::bmc::Connection;
use tinkerbell_core::store::{Kind, Object, Store, StoreError};
use tokio::sync::Semaphore;

use crate::action::{self, ActionOutcome, Step};
use crate::{BmcConfig, BmcError, ErrorKind, Protocol, Secret};

/// The protocols to try for a connection: those named in `providerOptions.preferredOrder`
/// that we speak (`ipmitool` → IPMI, `gofish`/`redfish` → Redfish), then the rest in bmclib's
/// default order (ipmitool before gofish).
pub fn protocols(conn: &Connection) -> Vec<Protocol> {
    let order = conn
        .provider_options
        .as_ref()
        .and_then(|o| o.preferred_order.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    let named = order
        .iter()
        .filter_map(|p| match p.to_ascii_lowercase().as_str() {
            "ipmitool" => Some(Protocol::Ipmi),
            "gofish" | "redfish" => Some(Protocol::Redfish),
            _ => None,
        });
    for p in named.chain([Protocol::Ipmi, Protocol::Redfish]) {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// One BMC, ready to be called: its host (the lock key) and a configuration per protocol,
/// in the order to try them (a protocol whose configuration is invalid keeps its error).
#[derive(Debug)]
pub struct Target {
    /// BMC host, as in `connection.host`.
    pub host: String,
    /// Configurations to try, in order.
    pub configs: Vec<Result<BmcConfig, BmcError>>,
}

impl Target {
    /// Build from a connection and credentials.
    pub fn new(conn: &Connection, username: &str, password: Secret) -> Target {
        Target {
            host: conn.host.clone().unwrap_or_default(),
            configs: protocols(conn)
                .into_iter()
                .map(|p| BmcConfig::from_connection(p, conn, username, password.clone()))
                .collect(),
        }
    }

    /// Read the connection's Secret (`authSecretRef`; its namespace defaults to
    /// `default_ns`) and build the target. The error is a message for a condition; it never
    /// contains the password.
    pub async fn resolve(
        store: &dyn Store,
        conn: &Connection,
        default_ns: &str,
    ) -> Result<Target, String> {
        let sref = conn
            .auth_secret_ref
            .clone()
            .ok_or("connection has no authSecretRef")?;
        let name = sref.name.unwrap_or_default();
        let ns = sref
            .namespace
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| default_ns.to_string());
        let secret = match store.get(Kind::Secret, &ns, &name).await {
            Ok(Object::Secret(s)) => s,
            Ok(_) => return Err(format!("{ns}/{name} is not a Secret")),
            Err(StoreError::NotFound(_)) => return Err(format!("Secret {ns}/{name} not found")),
            Err(e) => {
                return Err(format!(
                    "reading Secret {ns}/{name}: {}",
                    tinkerbell_core::error_chain(&e)
                ));
            }
        };
        let field = |k: &str| -> Option<String> {
            if let Some(v) = secret.data.as_ref().and_then(|d| d.get(k)) {
                return String::from_utf8(v.0.clone()).ok();
            }
            secret.string_data.as_ref().and_then(|d| d.get(k)).cloned()
        };
        let user = field("username")
            .filter(|u| !u.is_empty())
            .ok_or_else(|| format!("Secret {ns}/{name} has no username"))?;
        let pass = field("password")
            .filter(|p| !p.is_empty())
            .ok_or_else(|| format!("Secret {ns}/{name} has no password"))?;
        Ok(Target::new(conn, &user, Secret::new(pass)))
    }
}

/// How a failed BMC operation reads in a condition: its class first, then the chain.
pub(crate) fn message(e: &BmcError) -> String {
    let chain = tinkerbell_core::error_chain(e);
    match e.kind() {
        ErrorKind::Failed => chain,
        k => format!("{}: {chain}", k.as_str()),
    }
}

/// The order in which failures are worth reporting (lower first).
fn rank(k: ErrorKind) -> u8 {
    match k {
        ErrorKind::Config => 0,
        ErrorKind::AuthenticationRefused => 1,
        ErrorKind::Unsupported => 2,
        ErrorKind::Failed => 3,
        ErrorKind::TimedOut => 4,
        ErrorKind::Unreachable => 5,
    }
}

/// The shared limits.
pub(crate) struct Bmcs {
    hosts: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    permits: Semaphore,
    timeout: Duration,
}

impl Bmcs {
    pub(crate) fn new(max: usize, timeout: Duration) -> Bmcs {
        Bmcs {
            hosts: Mutex::new(HashMap::new()),
            permits: Semaphore::new(max),
            timeout,
        }
    }

    fn host_lock(&self, host: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts.entry(host.to_string()).or_default().clone()
    }

    /// Run one step against the BMC: hold the host's lock and a global permit, try each
    /// protocol until one succeeds.
    pub(crate) async fn run(
        &self,
        target: &Target,
        step: &Step,
    ) -> Result<ActionOutcome, BmcError> {
        let lock = self.host_lock(&target.host);
        let _host = lock.lock().await;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| BmcError::Config("controller is shutting down".into()))?;
        let mut errors = Vec::new();
        for cfg in &target.configs {
            let cfg = match cfg {
                Ok(c) => c,
                Err(e) => {
                    errors.push(match e.kind() {
                        ErrorKind::Unsupported => BmcError::Unsupported {
                            host: target.host.clone(),
                            detail: e.to_string(),
                        },
                        _ => BmcError::Config(e.to_string()),
                    });
                    continue;
                }
            };
            let attempt = async {
                let client = cfg.client()?;
                action::run(client.as_ref(), step).await
            };
            match tokio::time::timeout(self.timeout, attempt).await {
                Ok(Ok(outcome)) => return Ok(outcome),
                Ok(Err(e)) => {
                    tracing::debug!(host = %target.host, protocol = ?protocol_of(cfg), error = %tinkerbell_core::error_chain(&e), "BMC operation failed");
                    errors.push(e);
                }
                Err(_) => errors.push(BmcError::TimedOut {
                    host: target.host.clone(),
                    timeout: self.timeout,
                }),
            }
        }
        Err(errors
            .into_iter()
            .min_by_key(|e| rank(e.kind()))
            .unwrap_or_else(|| BmcError::Config("no protocol to try".into())))
    }
}

fn protocol_of(c: &BmcConfig) -> Protocol {
    match c {
        BmcConfig::Ipmi(_) => Protocol::Ipmi,
        BmcConfig::Redfish(_) => Protocol::Redfish,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinkerbell_core::model::bmc::ProviderOptions;

    #[test]
    fn preferred_order_then_default() {
        let conn = |order: &[&str]| Connection {
            provider_options: Some(ProviderOptions {
                preferred_order: Some(order.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }),
            ..Default::default()
        };
        use Protocol::*;
        assert_eq!(protocols(&Connection::default()), [Ipmi, Redfish]);
        assert_eq!(protocols(&conn(&["gofish"])), [Redfish, Ipmi]);
        assert_eq!(
            protocols(&conn(&["Dell", "GoFish", "ipmitool"])),
            [Redfish, Ipmi]
        );
        assert_eq!(protocols(&conn(&["ipmitool", "gofish"])), [Ipmi, Redfish]);
        assert_eq!(protocols(&conn(&["openbmc"])), [Ipmi, Redfish]);
    }

    #[test]
    fn the_actionable_error_wins() {
        let unreachable = BmcError::Unreachable {
            host: "h".into(),
            source: "refused".into(),
        };
        let auth = BmcError::AuthenticationRefused {
            host: "h".into(),
            detail: "bad password".into(),
        };
        let best = [unreachable, auth]
            .into_iter()
            .min_by_key(|e| rank(e.kind()))
            .unwrap();
        assert_eq!(best.kind(), ErrorKind::AuthenticationRefused);
        assert!(
            message(&best).starts_with("authentication refused: "),
            "{}",
            message(&best)
        );
    }
}
