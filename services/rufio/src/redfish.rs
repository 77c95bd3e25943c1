//! Redfish client: the handful of endpoints bmclib's gofish provider uses.
//!
//! * Authentication: a session (POST `SessionService/Sessions`, then `X-Auth-Token`), always
//!   deleted afterwards, or HTTP basic auth when configured (or when the service has no
//!   session service).
//! * The ComputerSystem: the configured `systemName` (matched against the member's path
//!   segment, `Id` or `Name`), else the first member of `Systems`.
//! * Power: `ComputerSystem.Reset` with upstream's mapping (on → `On`, skipped when already
//!   on; off → `ForceOff`; soft → `GracefulShutdown`; cycle → `PowerCycle`; reset →
//!   `ForceRestart`).
//! * Boot override: PATCH `Boot` with target, enabled and mode; a refusal is retried without
//!   the mode (HPE DL160 Gen10).
//! * Virtual media: a slot whose `MediaTypes` has the kind; eject whatever is inserted; insert
//!   with up to three payload variants in turn.
//!
//! Vendor differences are rows of [`QUIRKS`], looked up by the service root's `Vendor` (or
//! the system's `Manufacturer`), not conditionals spread through the code.
//!
//! The BMC is not trusted with where the credentials go or how much we read:
//!
//! * Every URL it supplies (`@odata.id`, the session `Location`, action targets) is pinned to
//!   the configured endpoint: a path, or an absolute URL with the endpoint's scheme, host and
//!   port; anything else is [`BmcError::ForeignUrl`] and is never requested.
//! * Redirects are not followed (see [`RedfishClient::new`]).
//! * Bodies are read in chunks up to [`MAX_BODY_BYTES`]; a larger one is
//!   [`BmcError::ResponseTooLarge`].

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{Bmc, BmcError, BootDevice, PowerAction, PowerState, Secret};

/// Configuration of one Redfish BMC.
#[derive(Debug, Clone)]
pub struct RedfishConfig {
    /// Host name or address; a `http://` or `https://` prefix picks the scheme (default
    /// https).
    pub host: String,
    /// Port; the scheme's default when `None`.
    pub port: Option<u16>,
    /// User name.
    pub username: String,
    /// Password.
    pub password: Secret,
    /// Use HTTP basic auth instead of a session.
    pub use_basic_auth: bool,
    /// System to manage when the BMC has several.
    pub system_name: Option<String>,
    /// Accept any TLS certificate (self-signed BMCs).
    pub insecure_tls: bool,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of each request.
    pub timeout: Duration,
}

impl RedfishConfig {
    /// Defaults: https, session auth, 10 s connect, 30 s per request.
    pub fn new(host: &str, username: &str, password: Secret) -> RedfishConfig {
        RedfishConfig {
            host: host.to_string(),
            port: None,
            username: username.to_string(),
            password,
            use_basic_auth: false,
            system_name: None,
            insecure_tls: false,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
        }
    }

    /// Check the configuration.
    pub fn validate(&self) -> Result<(), BmcError> {
        self.base_url().map(|_| ())
    }

    /// `scheme://host[:port]`.
    pub fn base_url(&self) -> Result<String, BmcError> {
        let (scheme, rest) = if let Some(r) = self.host.strip_prefix("https://") {
            ("https", r)
        } else if let Some(r) = self.host.strip_prefix("http://") {
            ("http", r)
        } else {
            ("https", self.host.as_str())
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') {
            return Err(BmcError::Config(format!(
                "Redfish host {:?} must be a host name or address",
                self.host
            )));
        }
        Ok(match self.port {
            Some(p) => format!("{scheme}://{rest}:{p}"),
            None => format!("{scheme}://{rest}"),
        })
    }
}

const DEFAULT_SESSIONS: &str = "/redfish/v1/SessionService/Sessions";

/// The largest response body read from a BMC, in bytes. Redfish resources are a few KiB (a
/// large collection some tens); a body over this is refused, not buffered.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Vendor-specific behaviour, one row per vendor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quirks {
    /// Matched, case-insensitively, as a substring of the service root's `Vendor` or the
    /// system's `Manufacturer`; the empty string is the default row.
    pub vendor: &'static str,
    /// Send `BootSourceOverrideMode` on the first boot override try (the retry without it
    /// follows on refusal anyway).
    pub boot_mode_first_try: bool,
    /// Reset types to use, in order, when the system's `ResetType@Redfish.AllowableValues`
    /// does not list the mapped one.
    pub reset_fallbacks: &'static [(&'static str, &'static str)],
    /// Why the row exists.
    pub note: &'static str,
}

/// The vendor table. The first row whose `vendor` matches wins; the last row is the
/// default.
pub const QUIRKS: &[Quirks] = &[
    Quirks {
        vendor: "hpe",
        boot_mode_first_try: false,
        reset_fallbacks: &[("PowerCycle", "ForceRestart")],
        note: "DL160 Gen10 refuses BootSourceOverrideMode in the boot override PATCH",
    },
    Quirks {
        vendor: "",
        boot_mode_first_try: true,
        reset_fallbacks: &[("PowerCycle", "ForceRestart")],
        note: "default: upstream bmclib behaviour",
    },
];

/// The quirks row for a vendor string.
pub fn quirks_for(vendor: &str) -> &'static Quirks {
    let v = vendor.to_ascii_lowercase();
    QUIRKS
        .iter()
        .find(|q| !q.vendor.is_empty() && v.contains(q.vendor))
        .unwrap_or(&QUIRKS[QUIRKS.len() - 1])
}

/// The `ResetType` for a power action (upstream's mapping).
pub fn reset_type(action: PowerAction) -> &'static str {
    match action {
        PowerAction::On => "On",
        PowerAction::Off => "ForceOff",
        PowerAction::Soft => "GracefulShutdown",
        PowerAction::Cycle => "PowerCycle",
        PowerAction::Reset => "ForceRestart",
    }
}

/// The `BootSourceOverrideTarget` for a boot device; `None` when Redfish has none.
pub fn boot_target(dev: BootDevice) -> Option<&'static str> {
    match dev {
        BootDevice::Pxe => Some("Pxe"),
        BootDevice::Disk => Some("Hdd"),
        BootDevice::Cdrom => Some("Cd"),
        BootDevice::Bios => Some("BiosSetup"),
        BootDevice::Safe => None,
    }
}

/// The boot override PATCH bodies to try in order.
pub fn boot_override_bodies(
    target: &str,
    persistent: bool,
    efi: bool,
    quirks: &Quirks,
) -> Vec<Value> {
    let enabled = if persistent { "Continuous" } else { "Once" };
    let mode = if efi { "UEFI" } else { "Legacy" };
    let without =
        json!({"Boot": {"BootSourceOverrideTarget": target, "BootSourceOverrideEnabled": enabled}});
    if quirks.boot_mode_first_try {
        vec![
            json!({"Boot": {
                "BootSourceOverrideTarget": target,
                "BootSourceOverrideEnabled": enabled,
                "BootSourceOverrideMode": mode,
            }}),
            without,
        ]
    } else {
        vec![without]
    }
}

/// The InsertMedia payload variants, in the order bmclib tries them.
pub fn insert_media_bodies(url: &str) -> [Value; 3] {
    [
        json!({"Image": url, "Inserted": true, "WriteProtected": true}),
        json!({"Image": url, "Inserted": true}),
        json!({"Image": url}),
    ]
}

/// The `@odata.id` of a JSON object member.
fn odata_id(v: &Value) -> Option<&str> {
    v.get("@odata.id").and_then(Value::as_str)
}

/// The `@odata.id`s of a JSON array of links (`Members`, `ManagedBy`).
fn odata_ids(links: Option<&Value>) -> Vec<String> {
    links
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(odata_id).map(str::to_string).collect())
        .unwrap_or_default()
}

/// The most useful message in a Redfish error body.
pub fn error_message(body: &Value) -> Option<String> {
    let e = body.get("error")?;
    if let Some(m) = e
        .get("@Message.ExtendedInfo")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(|i| i.get("Message"))
        .and_then(Value::as_str)
    {
        return Some(m.to_string());
    }
    e.get("message").and_then(Value::as_str).map(str::to_string)
}

/// The current boot override of a system, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootOverride {
    /// `BootSourceOverrideTarget`.
    pub target: Option<String>,
    /// `BootSourceOverrideEnabled`.
    pub enabled: Option<String>,
    /// `BootSourceOverrideMode`.
    pub mode: Option<String>,
}

/// A virtual media slot, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualMedia {
    /// Path of the slot.
    pub path: String,
    /// Inserted image URL.
    pub image: Option<String>,
    /// Whether media is inserted.
    pub inserted: bool,
}

/// A Redfish client for one BMC. Each [`Bmc`] call logs in and out.
#[derive(Debug, Clone)]
pub struct RedfishClient {
    cfg: RedfishConfig,
    /// `scheme://host[:port]`, the configured endpoint.
    base: String,
    /// `base` parsed: every request's origin must be this one's.
    origin: reqwest::Url,
    http: reqwest::Client,
}

#[derive(Clone)]
enum Auth {
    Basic,
    Session { token: Secret, location: String },
}

/// A logged-in connection. [`Conn::logout`] deletes the session; dropping a `Conn` without
/// it deletes the session in the background.
struct Conn<'a> {
    c: &'a RedfishClient,
    auth: Auth,
    root: Value,
    logged_out: bool,
}

impl RedfishClient {
    /// A client; checks the configuration and builds the HTTP client (TLS verification off
    /// only when `insecure_tls`).
    ///
    /// The HTTP client follows no redirect (`redirect::Policy::none()`); a 3xx answer is a
    /// [`BmcError::Protocol`] naming its `Location`. reqwest's default policy would resend
    /// our headers to wherever the BMC points: on a hop to another origin it drops
    /// `Authorization` but keeps `X-Auth-Token`, so the session token would leave. A
    /// same-origin-only policy would be sound too, but Redfish never needs a redirect (every
    /// resource is named by its `@odata.id`), so refusing all of them is the simplest rule
    /// that is obviously right, and a misconfigured scheme (`http` on an `https`-only BMC)
    /// reads as such in the error.
    pub fn new(cfg: RedfishConfig) -> Result<RedfishClient, BmcError> {
        let base = cfg.base_url()?;
        let origin = reqwest::Url::parse(&base)
            .map_err(|e| BmcError::Config(format!("Redfish endpoint {base:?}: {e}")))?;
        tinkerbell_edge::tls::install_crypto_provider();
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(cfg.connect_timeout)
                .timeout(cfg.timeout)
                .redirect(reqwest::redirect::Policy::none())
                .danger_accept_invalid_certs(cfg.insecure_tls)
        };
        // The platform verifier needs a CA bundle on disk; fall back to none (only insecure
        // TLS and plain HTTP then work) rather than failing where there is none.
        let http = match builder().build() {
            Ok(c) => c,
            Err(_) => builder()
                .tls_certs_only(Vec::new())
                .build()
                .map_err(|e| BmcError::Config(format!("HTTP client: {e}")))?,
        };
        Ok(RedfishClient {
            cfg,
            base,
            origin,
            http,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RedfishConfig {
        &self.cfg
    }

    /// The URL to request for `path`, a path or URL the BMC (or this client) supplied,
    /// pinned to the configured endpoint: a path (`/...`) is appended to it; an absolute URL
    /// is taken only when its scheme, host and port are the endpoint's and it has no user
    /// info. Anything else (another origin, a relative reference without the leading `/`,
    /// which could splice user info or a host onto the endpoint) is
    /// [`BmcError::ForeignUrl`].
    fn url(&self, path: &str) -> Result<reqwest::Url, BmcError> {
        let parsed = if path.starts_with('/') {
            reqwest::Url::parse(&format!("{}{}", self.base, path))
        } else {
            reqwest::Url::parse(path)
        };
        match parsed {
            Ok(u)
                if u.origin() == self.origin.origin()
                    && u.username().is_empty()
                    && u.password().is_none() =>
            {
                Ok(u)
            }
            _ => Err(BmcError::ForeignUrl {
                host: self.cfg.host.clone(),
                url: path.to_string(),
            }),
        }
    }

    fn send_error(&self, e: reqwest::Error) -> BmcError {
        if e.is_timeout() {
            BmcError::TimedOut {
                host: self.cfg.host.clone(),
                timeout: self.cfg.timeout,
            }
        } else {
            BmcError::Unreachable {
                host: self.cfg.host.clone(),
                source: Box::new(e),
            }
        }
    }

    async fn raw(
        &self,
        method: Method,
        path: &str,
        auth: Option<&Auth>,
        body: Option<&Value>,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, Value), BmcError> {
        let mut rq = self
            .http
            .request(method.clone(), self.url(path)?)
            .header("Accept", "application/json");
        match auth {
            Some(Auth::Basic) => {
                rq = rq.basic_auth(&self.cfg.username, Some(self.cfg.password.expose()));
            }
            Some(Auth::Session { token, .. }) => {
                rq = rq.header("X-Auth-Token", token.expose());
            }
            None => {}
        }
        if let Some(b) = body {
            rq = rq.json(b);
        }
        let resp = rq.send().await.map_err(|e| self.send_error(e))?;
        let status = resp.status();
        tracing::debug!(host = %self.cfg.host, %method, path, status = status.as_u16(), "redfish");
        let headers = resp.headers().clone();
        if status.is_redirection() {
            let to = headers
                .get(reqwest::header::LOCATION)
                .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned())
                .unwrap_or_default();
            return Err(BmcError::Protocol {
                host: self.cfg.host.clone(),
                detail: format!(
                    "{method} {path} answered HTTP {} redirecting to {to:?}; redirects are not followed",
                    status.as_u16()
                ),
            });
        }
        let bytes = self.read_body(path, resp).await?;
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, headers, v))
    }

    /// The body of `resp`, read chunk by chunk and refused past [`MAX_BODY_BYTES`] (at once
    /// when the `Content-Length` says so).
    async fn read_body(
        &self,
        path: &str,
        mut resp: reqwest::Response,
    ) -> Result<Vec<u8>, BmcError> {
        let too_large = || BmcError::ResponseTooLarge {
            host: self.cfg.host.clone(),
            path: path.to_string(),
            limit: MAX_BODY_BYTES,
        };
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.send_error(e))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn status_error(&self, what: &str, status: StatusCode, body: &Value) -> BmcError {
        let host = self.cfg.host.clone();
        let detail = match error_message(body) {
            Some(m) => format!("HTTP {}: {m}", status.as_u16()),
            None => format!("HTTP {}", status.as_u16()),
        };
        match status.as_u16() {
            401 | 403 => BmcError::AuthenticationRefused {
                host,
                detail: format!("{what}: {detail}"),
            },
            405 | 501 => BmcError::Unsupported {
                host,
                detail: format!("{what}: {detail}"),
            },
            _ => BmcError::Failed {
                host,
                operation: what.to_string(),
                detail,
            },
        }
    }

    /// Log in (or not, with basic auth) and read the service root.
    async fn connect(&self) -> Result<Conn<'_>, BmcError> {
        let (status, _, root) = self.raw(Method::GET, "/redfish/v1/", None, None).await?;
        if !status.is_success() {
            return Err(self.status_error("reading the service root", status, &root));
        }
        let basic = |root| Conn {
            c: self,
            auth: Auth::Basic,
            root,
            logged_out: true,
        };
        if self.cfg.use_basic_auth {
            return Ok(basic(root));
        }
        let sessions = match (root.pointer("/Links/Sessions"), root.get("SessionService")) {
            (Some(s), _) => odata_id(s).unwrap_or(DEFAULT_SESSIONS).to_string(),
            (None, Some(_)) => DEFAULT_SESSIONS.to_string(),
            (None, None) => {
                // No session service (sushy-tools, some old BMCs): basic auth is all there is.
                tracing::debug!(host = %self.cfg.host, "no Redfish session service; using basic auth");
                return Ok(basic(root));
            }
        };
        let body = json!({"UserName": self.cfg.username, "Password": self.cfg.password.expose()});
        let (status, headers, v) = self.raw(Method::POST, &sessions, None, Some(&body)).await?;
        if matches!(status.as_u16(), 404 | 405 | 501) {
            tracing::debug!(host = %self.cfg.host, "Redfish session service refused; using basic auth");
            return Ok(basic(root));
        }
        if !status.is_success() {
            return Err(self.status_error("session login", status, &v));
        }
        let token = headers
            .get("X-Auth-Token")
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| BmcError::Protocol {
                host: self.cfg.host.clone(),
                detail: "session login answered without X-Auth-Token".into(),
            })?;
        let location = headers
            .get("Location")
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| odata_id(&v).map(str::to_string))
            .ok_or_else(|| BmcError::Protocol {
                host: self.cfg.host.clone(),
                detail: "session login answered without a Location".into(),
            })?;
        // Checked now, not at logout: a session we could only delete by sending its token
        // elsewhere is refused (and left to the BMC's session timeout).
        if let Err(e) = self.url(&location) {
            tracing::warn!(host = %self.cfg.host, error = %e, "Redfish session Location refused; the session is left to expire");
            return Err(e);
        }
        Ok(Conn {
            c: self,
            auth: Auth::Session {
                token: Secret::new(token),
                location,
            },
            root,
            logged_out: false,
        })
    }

    /// `f` on a fresh connection, logged out afterwards.
    async fn with_conn<T>(
        &self,
        f: impl AsyncFnOnce(&Conn<'_>) -> Result<T, BmcError>,
    ) -> Result<T, BmcError> {
        let conn = self.connect().await?;
        let r = f(&conn).await;
        conn.logout().await;
        r
    }

    /// Read the boot override of the system.
    pub async fn boot_override(&self) -> Result<BootOverride, BmcError> {
        self.with_conn(async |conn| {
            let (_, sys) = conn.system().await?;
            let b = sys.get("Boot").cloned().unwrap_or(Value::Null);
            let s = |k: &str| b.get(k).and_then(Value::as_str).map(str::to_string);
            Ok(BootOverride {
                target: s("BootSourceOverrideTarget"),
                enabled: s("BootSourceOverrideEnabled"),
                mode: s("BootSourceOverrideMode"),
            })
        })
        .await
    }

    /// Insert `url` as virtual media of `kind` (e.g. `CD`), or eject when `url` is empty.
    pub async fn virtual_media(&self, url: &str, kind: &str) -> Result<(), BmcError> {
        self.with_conn(async |conn| conn.virtual_media(url, kind).await)
            .await
    }

    /// The virtual media slots of the system.
    pub async fn virtual_media_slots(&self) -> Result<Vec<VirtualMedia>, BmcError> {
        self.with_conn(async |conn| {
            let mut out = Vec::new();
            for (path, v) in conn.media_slots().await? {
                out.push(VirtualMedia {
                    path,
                    image: v
                        .get("Image")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                    inserted: v.get("Inserted").and_then(Value::as_bool).unwrap_or(false),
                });
            }
            Ok(out)
        })
        .await
    }
}

impl Conn<'_> {
    async fn get(&self, path: &str) -> Result<Value, BmcError> {
        let (status, _, v) = self
            .c
            .raw(Method::GET, path, Some(&self.auth), None)
            .await?;
        if !status.is_success() {
            return Err(self.c.status_error(&format!("GET {path}"), status, &v));
        }
        Ok(v)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<(StatusCode, Value), BmcError> {
        let (status, _, v) = self
            .c
            .raw(method, path, Some(&self.auth), Some(body))
            .await?;
        Ok((status, v))
    }

    fn vendor(&self, sys: &Value) -> String {
        let root = self
            .root
            .get("Vendor")
            .and_then(Value::as_str)
            .unwrap_or("");
        let m = sys
            .get("Manufacturer")
            .and_then(Value::as_str)
            .unwrap_or("");
        format!("{root} {m}")
    }

    /// The managed ComputerSystem: its path and body.
    async fn system(&self) -> Result<(String, Value), BmcError> {
        let systems = self
            .root
            .get("Systems")
            .and_then(odata_id)
            .unwrap_or("/redfish/v1/Systems")
            .to_string();
        let members = odata_ids(self.get(&systems).await?.get("Members"));
        let host = &self.c.cfg.host;
        match &self.c.cfg.system_name {
            None => {
                let first = members.first().ok_or_else(|| BmcError::Unsupported {
                    host: host.clone(),
                    detail: "the BMC lists no ComputerSystem".into(),
                })?;
                Ok((first.clone(), self.get(first).await?))
            }
            Some(name) => {
                for m in &members {
                    if m.trim_end_matches('/').rsplit('/').next() == Some(name.as_str()) {
                        return Ok((m.clone(), self.get(m).await?));
                    }
                }
                for m in &members {
                    let v = self.get(m).await?;
                    let hit = |k: &str| v.get(k).and_then(Value::as_str) == Some(name.as_str());
                    if hit("Id") || hit("Name") {
                        return Ok((m.clone(), v));
                    }
                }
                Err(BmcError::Failed {
                    host: host.clone(),
                    operation: "finding the ComputerSystem".into(),
                    detail: format!("no system named {name:?} among {} members", members.len()),
                })
            }
        }
    }

    async fn power_state(&self) -> Result<PowerState, BmcError> {
        let (_, sys) = self.system().await?;
        Ok(parse_power_state(&sys))
    }

    async fn power(&self, action: PowerAction) -> Result<(), BmcError> {
        let (path, sys) = self.system().await?;
        if action == PowerAction::On && parse_power_state(&sys) == PowerState::On {
            tracing::debug!(host = %self.c.cfg.host, "already on; Reset skipped");
            return Ok(());
        }
        let quirks = quirks_for(&self.vendor(&sys));
        let reset = sys.pointer("/Actions/#ComputerSystem.Reset");
        let target = reset
            .and_then(|r| r.get("target"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("{path}/Actions/ComputerSystem.Reset"));
        let allowed: Option<Vec<&str>> = reset
            .and_then(|r| r.get("ResetType@Redfish.AllowableValues"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect());
        let mut rt = reset_type(action);
        if let Some(allowed) = &allowed
            && !allowed.contains(&rt)
        {
            match quirks
                .reset_fallbacks
                .iter()
                .find(|(from, to)| *from == rt && allowed.contains(to))
            {
                Some((_, to)) => {
                    tracing::debug!(host = %self.c.cfg.host, from = rt, to, "reset type not allowed; using the fallback");
                    rt = to;
                }
                None => {
                    return Err(BmcError::Unsupported {
                        host: self.c.cfg.host.clone(),
                        detail: format!(
                            "ResetType {rt} is not among the allowed {}",
                            allowed.join(", ")
                        ),
                    });
                }
            }
        }
        let (status, v) = self
            .send(Method::POST, &target, &json!({"ResetType": rt}))
            .await?;
        if !status.is_success() {
            return Err(self
                .c
                .status_error(&format!("ComputerSystem.Reset {rt}"), status, &v));
        }
        Ok(())
    }

    async fn boot_device(
        &self,
        dev: BootDevice,
        persistent: bool,
        efi: bool,
    ) -> Result<(), BmcError> {
        let target = boot_target(dev).ok_or_else(|| BmcError::Unsupported {
            host: self.c.cfg.host.clone(),
            detail: format!(
                "boot device {} has no Redfish override target",
                dev.as_str()
            ),
        })?;
        let (path, sys) = self.system().await?;
        let quirks = quirks_for(&self.vendor(&sys));
        let bodies = boot_override_bodies(target, persistent, efi, quirks);
        self.first_accepted(Method::PATCH, &path, bodies, "boot override")
            .await
    }

    /// `method` on `path` with each body in turn until one is accepted. An authentication
    /// refusal ends the tries; otherwise the last refusal is the error.
    async fn first_accepted(
        &self,
        method: Method,
        path: &str,
        bodies: impl IntoIterator<Item = Value>,
        what: &str,
    ) -> Result<(), BmcError> {
        let mut last = None;
        for body in bodies {
            let (status, v) = self.send(method.clone(), path, &body).await?;
            if status.is_success() {
                return Ok(());
            }
            let e = self.c.status_error(what, status, &v);
            if matches!(e, BmcError::AuthenticationRefused { .. }) {
                return Err(e);
            }
            tracing::debug!(host = %self.c.cfg.host, error = %e, "{what} refused; trying the next form");
            last = Some(e);
        }
        Err(last.expect("at least one body was tried"))
    }

    /// Every virtual media slot: the system's collection, else its managers'.
    async fn media_slots(&self) -> Result<Vec<(String, Value)>, BmcError> {
        let (_, sys) = self.system().await?;
        let mut collections: Vec<String> = Vec::new();
        if let Some(p) = sys.get("VirtualMedia").and_then(odata_id) {
            collections.push(p.to_string());
        } else {
            for m in odata_ids(sys.pointer("/Links/ManagedBy")) {
                if let Some(p) = self.get(&m).await?.get("VirtualMedia").and_then(odata_id) {
                    collections.push(p.to_string());
                }
            }
        }
        let mut out = Vec::new();
        for c in collections {
            for m in odata_ids(self.get(&c).await?.get("Members")) {
                let v = self.get(&m).await?;
                out.push((m, v));
            }
        }
        Ok(out)
    }

    async fn virtual_media(&self, url: &str, kind: &str) -> Result<(), BmcError> {
        let host = &self.c.cfg.host;
        let slots = self.media_slots().await?;
        let kinds: &[&str] = if kind.eq_ignore_ascii_case("CD") {
            &["CD", "DVD"]
        } else {
            &[kind]
        };
        let (path, slot) = slots
            .into_iter()
            .find(|(_, v)| {
                v.get("MediaTypes")
                    .and_then(Value::as_array)
                    .is_some_and(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .any(|t| kinds.iter().any(|k| k.eq_ignore_ascii_case(t)))
                    })
            })
            .ok_or_else(|| BmcError::Unsupported {
                host: host.clone(),
                detail: format!("no virtual media slot takes {kind}"),
            })?;
        let action = |name: &str, default: &str| {
            slot.pointer(&format!("/Actions/#VirtualMedia.{name}/target"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("{path}/Actions/VirtualMedia.{default}"))
        };
        if slot.get("Inserted").and_then(Value::as_bool) == Some(true)
            || slot
                .get("Image")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        {
            let (status, v) = self
                .send(
                    Method::POST,
                    &action("EjectMedia", "EjectMedia"),
                    &json!({}),
                )
                .await?;
            if !status.is_success() {
                return Err(self.c.status_error("EjectMedia", status, &v));
            }
        }
        if url.is_empty() {
            return Ok(());
        }
        let target = action("InsertMedia", "InsertMedia");
        self.first_accepted(
            Method::POST,
            &target,
            insert_media_bodies(url),
            "InsertMedia",
        )
        .await
    }

    /// Delete the session. Failures are logged: the caller's result matters more.
    async fn logout(mut self) {
        self.logged_out = true;
        if let Auth::Session { location, .. } = &self.auth {
            match self
                .c
                .raw(Method::DELETE, location, Some(&self.auth), None)
                .await
            {
                Ok((s, _, _)) if s.is_success() => {
                    tracing::debug!(host = %self.c.cfg.host, "Redfish session deleted");
                }
                Ok((s, _, _)) => {
                    tracing::warn!(host = %self.c.cfg.host, status = s.as_u16(), "Redfish logout refused");
                }
                Err(e) => {
                    tracing::warn!(host = %self.c.cfg.host, error = %e, "Redfish logout failed")
                }
            }
        }
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if self.logged_out {
            return;
        }
        // A cancelled call: delete the session in the background.
        if let (Auth::Session { .. }, Ok(rt)) = (&self.auth, tokio::runtime::Handle::try_current())
        {
            let c = self.c.clone();
            let auth = self.auth.clone();
            rt.spawn(async move {
                if let Auth::Session { location, .. } = &auth {
                    let _ = c.raw(Method::DELETE, location, Some(&auth), None).await;
                }
            });
        }
    }
}

/// The power state of a ComputerSystem body (`PowerState`: `On`, `Off`, anything else is
/// unknown).
pub fn parse_power_state(sys: &Value) -> PowerState {
    match sys.get("PowerState").and_then(Value::as_str) {
        Some("On") => PowerState::On,
        Some("Off") => PowerState::Off,
        _ => PowerState::Unknown,
    }
}

#[async_trait]
impl Bmc for RedfishClient {
    async fn power_state(&self) -> Result<PowerState, BmcError> {
        self.with_conn(async |conn| conn.power_state().await).await
    }

    async fn power(&self, action: PowerAction) -> Result<(), BmcError> {
        self.with_conn(async |conn| conn.power(action).await).await
    }

    async fn boot_device(
        &self,
        device: BootDevice,
        persistent: bool,
        efi: bool,
    ) -> Result<(), BmcError> {
        self.with_conn(async |conn| conn.boot_device(device, persistent, efi).await)
            .await
    }

    async fn virtual_media(&self, url: &str, kind: &str) -> Result<(), BmcError> {
        RedfishClient::virtual_media(self, url, kind).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_reset_mapping() {
        let table = [
            (PowerAction::On, "On"),
            (PowerAction::Off, "ForceOff"),
            (PowerAction::Soft, "GracefulShutdown"),
            (PowerAction::Cycle, "PowerCycle"),
            (PowerAction::Reset, "ForceRestart"),
        ];
        for (a, want) in table {
            assert_eq!(reset_type(a), want, "{a:?}");
        }
    }

    #[test]
    fn boot_bodies_and_fallback() {
        let d = quirks_for("Sushy Emulator");
        assert_eq!(d.vendor, "");
        let b = boot_override_bodies("Pxe", true, true, d);
        assert_eq!(b.len(), 2);
        assert_eq!(
            b[0],
            json!({"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Continuous", "BootSourceOverrideMode": "UEFI"}})
        );
        assert_eq!(
            b[1],
            json!({"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Continuous"}})
        );
        let h = quirks_for("HPE");
        assert_eq!(boot_override_bodies("Hdd", false, false, h).len(), 1);
        assert_eq!(boot_target(BootDevice::Safe), None);
        assert_eq!(boot_target(BootDevice::Bios), Some("BiosSetup"));
    }

    #[test]
    fn insert_media_variants() {
        let v = insert_media_bodies("http://x/a.iso");
        assert_eq!(v[0]["WriteProtected"], json!(true));
        assert!(v[1].get("WriteProtected").is_none());
        assert_eq!(v[2], json!({"Image": "http://x/a.iso"}));
    }

    #[test]
    fn error_messages() {
        let ext = json!({"error": {"code": "Base.1.0.GeneralError", "message": "general",
            "@Message.ExtendedInfo": [{"Message": "The property X is read only."}]}});
        assert_eq!(
            error_message(&ext).as_deref(),
            Some("The property X is read only.")
        );
        let plain = json!({"error": {"message": "nope"}});
        assert_eq!(error_message(&plain).as_deref(), Some("nope"));
        assert_eq!(error_message(&json!("x")), None);
        assert_eq!(error_message(&Value::Null), None);
    }

    #[test]
    fn urls_pinned_to_the_endpoint() {
        let mut cfg = RedfishConfig::new("http://127.0.0.1", "u", "p".into());
        cfg.port = Some(8000);
        let c = RedfishClient::new(cfg).unwrap();
        let table = [
            (
                "/redfish/v1/Systems/1",
                Some("http://127.0.0.1:8000/redfish/v1/Systems/1"),
            ),
            (
                "http://127.0.0.1:8000/redfish/v1/",
                Some("http://127.0.0.1:8000/redfish/v1/"),
            ),
            ("HTTP://127.0.0.1:8000/a", Some("http://127.0.0.1:8000/a")),
            // A path that looks like a network-path reference stays a path on the endpoint.
            (
                "//evil.example/x",
                Some("http://127.0.0.1:8000//evil.example/x"),
            ),
            ("http://127.0.0.1:8001/redfish/v1/", None),
            ("https://127.0.0.1:8000/redfish/v1/", None),
            ("http://localhost:8000/redfish/v1/", None),
            ("http://evil.example/redfish/v1/", None),
            ("http://u:p@127.0.0.1:8000/redfish/v1/", None),
            ("@evil.example/x", None),
            ("evil.example/x", None),
            ("redfish/v1/Systems", None),
            ("ftp://127.0.0.1:8000/x", None),
            ("", None),
        ];
        for (path, want) in table {
            match (c.url(path), want) {
                (Ok(u), Some(w)) => assert_eq!(u.as_str(), w, "{path:?}"),
                (Err(BmcError::ForeignUrl { url, .. }), None) => assert_eq!(url, path),
                (got, _) => panic!("{path:?}: {got:?}"),
            }
        }
        // The scheme's default port is the same origin whether written or not.
        let c = RedfishClient::new(RedfishConfig::new("10.0.0.1", "u", "p".into())).unwrap();
        assert!(c.url("https://10.0.0.1:443/redfish/v1/").is_ok());
        assert!(c.url("https://10.0.0.1/redfish/v1/").is_ok());
        assert!(c.url("http://10.0.0.1/redfish/v1/").is_err());
    }

    #[test]
    fn base_urls() {
        let mut c = RedfishConfig::new("10.0.0.1", "u", "p".into());
        assert_eq!(c.base_url().unwrap(), "https://10.0.0.1");
        c.port = Some(8000);
        c.host = "http://127.0.0.1".into();
        assert_eq!(c.base_url().unwrap(), "http://127.0.0.1:8000");
        c.host = "http://a/b".into();
        assert!(c.base_url().is_err());
    }
}
