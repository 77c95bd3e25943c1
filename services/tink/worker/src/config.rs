//! Worker configuration: what `main` gathers from flags, the environment (upstream's names:
//! `ID`/`WORKER_ID`, `TINKERBELL_GRPC_AUTHORITY`, `TINKERBELL_TLS`, `TINKERBELL_INSECURE_TLS`,
//! `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY`, and `TINKERBELL_WORKER_TOKEN`) and the kernel command
//! line, merged here so it can be tested without touching the process environment.
//!
//! The kernel command line matters because in an initramfs nobody may have exported anything:
//! HookOS's bootkit reads `grpc_authority`, `worker_id`, `tinkerbell_tls`,
//! `tinkerbell_insecure_tls` and the proxy variables from `/proc/cmdline`; we read the same
//! keys, plus `worker_token` (which our boots puts there, see `tinkerbell_core::worker_token`)
//! and `hw_addr` as a last-resort worker ID. Flags and environment win over the command line.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::actions::HttpSettings;

/// The kernel command-line parameter carrying the worker token.
pub const CMDLINE_TOKEN: &str = "worker_token";
/// The environment variable carrying the worker token.
pub const ENV_TOKEN: &str = "TINKERBELL_WORKER_TOKEN";

/// Which tink server API to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// The monorepo `proto.WorkflowService` (GetAction / ReportActionStatus).
    #[default]
    Current,
    /// The standalone tink's `proto.WorkflowService` (GetWorkflowContexts / GetWorkflowActions /
    /// ReportActionStatus).
    Legacy,
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Protocol, String> {
        match s {
            "current" => Ok(Protocol::Current),
            "legacy" => Ok(Protocol::Legacy),
            _ => Err(format!("{s:?}: expected current or legacy")),
        }
    }
}

/// A secret string that never shows in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Everything the agent needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// This machine's worker (agent) ID.
    pub worker_id: String,
    /// `host:port` of the tink server's gRPC endpoint.
    pub grpc_authority: String,
    /// Use TLS to the tink server.
    pub tls: bool,
    /// Accept any server certificate.
    pub insecure_tls: bool,
    /// Bearer token sent as `authorization` metadata.
    pub token: Option<Secret>,
    /// Which API generation to speak.
    pub protocol: Protocol,
    /// Poll interval when there is nothing to do.
    pub retry_interval: Duration,
    /// Longest backoff after transport errors.
    pub backoff_max: Duration,
    /// Timeout of actions that do not set one.
    pub default_timeout: Duration,
    /// TLS roots and proxies (for the actions and the gRPC connection).
    pub http: HttpSettings,
    /// Whether reboot/kexec act on this machine.
    pub allow_power: bool,
}

/// Values from flags/environment before merging (None = not given).
#[derive(Debug, Clone, Default)]
pub struct Given {
    /// `--id`, `ID` or `WORKER_ID`.
    pub worker_id: Option<String>,
    /// `--tinkerbell-grpc-authority` / `TINKERBELL_GRPC_AUTHORITY`.
    pub grpc_authority: Option<String>,
    /// `--tinkerbell-tls` / `TINKERBELL_TLS`.
    pub tls: Option<bool>,
    /// `--tinkerbell-insecure-tls` / `TINKERBELL_INSECURE_TLS`.
    pub insecure_tls: Option<bool>,
    /// `--worker-token` / `TINKERBELL_WORKER_TOKEN`.
    pub token: Option<Secret>,
    /// `HTTP_PROXY`.
    pub http_proxy: Option<String>,
    /// `HTTPS_PROXY`.
    pub https_proxy: Option<String>,
    /// `NO_PROXY`.
    pub no_proxy: Option<String>,
}

/// Parse a kernel command line into `key=value` pairs (bare words map to ""), splitting on
/// whitespace like HookOS's bootkit; double quotes around a value are removed.
pub fn parse_cmdline(s: &str) -> BTreeMap<String, String> {
    s.split_whitespace()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (k.to_string(), v.trim_matches('"').to_string()),
            None => (w.to_string(), String::new()),
        })
        .collect()
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Merge `given` over `cmdline` into the identity/connection part of a [`Config`]; every
/// problem is reported at once. `base` supplies the remaining fields.
pub fn resolve(
    given: Given,
    cmdline: &BTreeMap<String, String>,
    base: Config,
) -> Result<Config, Vec<String>> {
    let mut errors = Vec::new();
    let cl = |k: &str| cmdline.get(k).filter(|v| !v.is_empty()).cloned();
    let cl_bool = |k: &str, errors: &mut Vec<String>| {
        cl(k).and_then(|v| {
            let b = parse_bool(v.trim());
            if b.is_none() {
                errors.push(format!("kernel command line {k}={v:?} is not a boolean"));
            }
            b
        })
    };
    let worker_id = given
        .worker_id
        .filter(|s| !s.trim().is_empty())
        .or_else(|| cl("worker_id"))
        .or_else(|| cl("hw_addr"));
    let grpc_authority = given
        .grpc_authority
        .filter(|s| !s.trim().is_empty())
        .or_else(|| cl("grpc_authority"));
    let tls = given.tls.or_else(|| cl_bool("tinkerbell_tls", &mut errors));
    let insecure = given
        .insecure_tls
        .or_else(|| cl_bool("tinkerbell_insecure_tls", &mut errors));
    if worker_id.is_none() {
        errors.push(
            "no worker ID: set --id, ID or WORKER_ID, or worker_id= on the kernel command line"
                .into(),
        );
    }
    match &grpc_authority {
        None => errors.push(
            "no tink server: set --tinkerbell-grpc-authority / TINKERBELL_GRPC_AUTHORITY, or \
             grpc_authority= on the kernel command line"
                .into(),
        ),
        Some(a) if a.contains("://") || !a.contains(':') => {
            errors.push(format!("grpc authority {a:?} must be host:port"))
        }
        Some(_) => {}
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut http = base.http;
    http.http_proxy = given
        .http_proxy
        .or_else(|| cl("HTTP_PROXY"))
        .or(http.http_proxy);
    http.https_proxy = given
        .https_proxy
        .or_else(|| cl("HTTPS_PROXY"))
        .or(http.https_proxy);
    http.no_proxy = given.no_proxy.or_else(|| cl("NO_PROXY")).or(http.no_proxy);
    Ok(Config {
        worker_id: worker_id.unwrap_or_default().trim().to_string(),
        grpc_authority: grpc_authority.unwrap_or_default(),
        tls: tls.unwrap_or(true),
        insecure_tls: insecure.unwrap_or(false),
        token: given
            .token
            .filter(|t| !t.0.trim().is_empty())
            .or_else(|| cl(CMDLINE_TOKEN).map(Secret)),
        http,
        ..base
    })
}

impl Config {
    /// Defaults for everything but identity and server (which [`resolve`] fills).
    pub fn defaults() -> Config {
        Config {
            worker_id: String::new(),
            grpc_authority: String::new(),
            tls: true,
            insecure_tls: false,
            token: None,
            protocol: Protocol::Current,
            retry_interval: Duration::from_secs(3),
            backoff_max: Duration::from_secs(30),
            default_timeout: Duration::from_secs(3600),
            http: HttpSettings::default(),
            allow_power: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_fills_what_flags_do_not() {
        let cl = parse_cmdline(
            "console=ttyS0 grpc_authority=10.0.0.1:42113 worker_id=00:11:22:33:44:55 \
             tinkerbell_tls=false worker_token=abc HTTP_PROXY=http://p:3128 quiet\n",
        );
        assert_eq!(cl["quiet"], "");
        let c = resolve(Given::default(), &cl, Config::defaults()).unwrap();
        assert_eq!(c.worker_id, "00:11:22:33:44:55");
        assert_eq!(c.grpc_authority, "10.0.0.1:42113");
        assert!(!c.tls);
        assert_eq!(c.token, Some(Secret("abc".into())));
        assert_eq!(c.http.http_proxy.as_deref(), Some("http://p:3128"));
        let given = Given {
            worker_id: Some("w1".into()),
            tls: Some(true),
            token: Some(Secret("flag".into())),
            ..Default::default()
        };
        let c = resolve(given, &cl, Config::defaults()).unwrap();
        assert_eq!(c.worker_id, "w1");
        assert!(c.tls);
        assert_eq!(c.token, Some(Secret("flag".into())));
        assert!(
            !format!("{c:?}").contains("flag"),
            "token redacted in Debug"
        );
    }

    #[test]
    fn all_problems_at_once() {
        let cl = parse_cmdline("tinkerbell_tls=maybe");
        let errs = resolve(Given::default(), &cl, Config::defaults()).unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        let errs = resolve(
            Given {
                worker_id: Some("x".into()),
                grpc_authority: Some("http://h:1".into()),
                ..Default::default()
            },
            &BTreeMap::new(),
            Config::defaults(),
        )
        .unwrap_err();
        assert!(errs[0].contains("host:port"), "{errs:?}");
    }

    #[test]
    fn hw_addr_is_the_last_resort_id() {
        let cl = parse_cmdline("hw_addr=aa:bb:cc:dd:ee:ff grpc_authority=h:1");
        let c = resolve(Given::default(), &cl, Config::defaults()).unwrap();
        assert_eq!(c.worker_id, "aa:bb:cc:dd:ee:ff");
    }

    #[test]
    fn names_agree_with_core() {
        assert_eq!(CMDLINE_TOKEN, tinkerbell_core::worker_token::CMDLINE_PARAM);
        assert_eq!(ENV_TOKEN, tinkerbell_core::worker_token::ENV_VAR);
    }
}
