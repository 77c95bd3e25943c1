//! iPXE over HTTP: everything after the first TFTP hop.
//!
//! * `GET/HEAD /ipxe/binary/[<mac>/]<binary>` — the iPXE binaries (the same in-memory
//!   catalogue as TFTP), for UEFI HTTP boot and iPXE chainloading.
//! * `GET /ipxe/script/[<mac>/]auto.ipxe` — the machine's script. The MAC is the path element
//!   before `auto.ipxe`; without one the Hardware is looked up by the caller's address (the
//!   peer, or `X-Forwarded-For` only when the peer is a trusted proxy: `tinkerbell_edge::client_ip`).
//!   No Hardware, or `allowPXE` not true: 404 (the static script instead in auto-proxy mode).
//!   A Hardware with `netboot.ipxe.url`/`contents` gets its custom script.
//! * `GET/HEAD /hookos/<file>` — HookOS kernel and initramfs from a directory, with Range
//!   support ([`hookos`]: one copy in user space per byte), so one process is all a lab needs.
//!
//! [`router`] is what `tinkerbell serve` merges onto its consolidated HTTP port next to hegel;
//! [`Http::start`] serves it alone. Both count requests in [`HttpMetrics`].

pub mod hookos;
pub mod metrics;
pub mod script;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tinkerbell_core::store::HardwareLookup;
use tinkerbell_core::worker_token::{self, WorkerTokenKey};
use tinkerbell_edge::{Cidr, canonical, client_ip};
use tinkerbell_model::{Hardware, Interface, MacAddr};
use tokio_util::sync::CancellationToken;

use tinkerbell_core::timeline::Phase;

use crate::record::Recorder;
use crate::tftp::IpxeBinaries;
use crate::tftp::files::{BinariesError, DEBIAN_IPXE_DIR};

pub use metrics::{HttpMetrics, Route};
pub use script::ScriptConfig;

/// Where HookOS artifacts are served.
pub const HOOKOS_PREFIX: &str = "/hookos";

/// How the HTTP side serves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address of the standalone server (not used by [`router`]).
    pub listen: SocketAddr,
    /// Directory of iPXE binaries; `None` serves none. Default: Debian's `/usr/lib/ipxe`.
    pub ipxe_dir: Option<PathBuf>,
    /// Directory served under `/hookos/` (vmlinuz-x86_64, initramfs-x86_64, ...).
    pub hookos_dir: Option<PathBuf>,
    /// Peers whose `X-Forwarded-For` is believed (upstream `trusted-proxies`).
    pub trusted_proxies: Vec<Cidr>,
    /// The script settings.
    pub script: ScriptConfig,
    /// Auto-proxy mode: machines without Hardware get the static script instead of 404.
    pub static_script: bool,
    /// When set, every Hook script carries `worker_token=` for its worker ID.
    pub worker_token_key: Option<WorkerTokenKey>,
    /// How long in-flight requests get after cancellation (standalone server).
    pub shutdown_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            ipxe_dir: Some(PathBuf::from(DEBIAN_IPXE_DIR)),
            hookos_dir: None,
            trusted_proxies: Vec::new(),
            script: ScriptConfig::default(),
            static_script: false,
            worker_token_key: None,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Why the HTTP side could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The iPXE binaries could not be loaded.
    #[error(transparent)]
    Binaries(#[from] BinariesError),
    /// The HookOS directory is not a directory.
    #[error("HookOS directory {0} is not a readable directory")]
    HookosDir(PathBuf),
    /// The listener could not be bound, or failed.
    #[error(transparent)]
    Serve(#[from] tinkerbell_edge::ServeError),
}

struct AppState {
    backend: Arc<dyn HardwareLookup>,
    binaries: IpxeBinaries,
    config: Config,
    metrics: HttpMetrics,
    recorder: Option<Recorder>,
    /// Whether the HookOS directory is ready, when there is one.
    hookos: Option<crate::hookos::Watch>,
}

/// Build the routes. Loads the iPXE binaries (once) and checks the HookOS directory. The
/// router needs connect info (`into_make_service_with_connect_info::<SocketAddr>()`). With a
/// `recorder`, the binaries, scripts and HookOS kernel/initramfs served to a known Hardware
/// are recorded in the timeline.
pub fn router(
    backend: Arc<dyn HardwareLookup>,
    config: &Config,
    metrics: HttpMetrics,
    recorder: Option<Recorder>,
) -> Result<Router, HttpError> {
    let binaries = match &config.ipxe_dir {
        Some(d) => IpxeBinaries::load(d)?,
        None => IpxeBinaries::default(),
    };
    let state = Arc::new(AppState {
        backend,
        binaries,
        config: config.clone(),
        metrics,
        recorder,
        hookos: config.hookos_dir.clone().map(crate::hookos::Watch::new),
    });
    let mut r = Router::new()
        .route("/ipxe/binary/{*path}", get(binary))
        .route("/ipxe/script/{*path}", get(script_route))
        .with_state(state.clone());
    if let Some(dir) = &config.hookos_dir {
        if !dir.is_dir() {
            return Err(HttpError::HookosDir(dir.clone()));
        }
        let files = Arc::new(hookos::HookosDir::new(dir.clone()));
        let hookos = Router::new()
            .fallback(move |req: Request| hookos::serve(files.clone(), req))
            .layer(middleware::from_fn_with_state(state, count_hookos));
        r = r.nest_service(HOOKOS_PREFIX, hookos);
    }
    Ok(r)
}

async fn count_hookos(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical().to_string());
    // Nested under /hookos: the path here is the file's, e.g. `/vmlinuz-x86_64`.
    let file = req
        .uri()
        .path()
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string();
    let get = req.method() == http::Method::GET;
    let resp = next.run(req).await;
    st.metrics.record(Route::Hookos, resp.status().as_u16());
    let ok = matches!(resp.status(), StatusCode::OK | StatusCode::PARTIAL_CONTENT);
    if let (true, true, Some(rec)) = (ok, get, &st.recorder) {
        let phase = if file.starts_with(&st.config.script.kernel_name) {
            Some(Phase::Kernel)
        } else if file.starts_with(&st.config.script.initrd_name) {
            Some(Phase::Initramfs)
        } else {
            None
        };
        if let Some(phase) = phase {
            let detail = format!("{HOOKOS_PREFIX}/{file}");
            rec.by_mac_or_ip(None, peer.as_deref(), phase, detail, true)
                .await;
        }
    }
    resp
}

async fn binary(
    State(st): State<Arc<AppState>>,
    Path(path): Path<String>,
    ext: Extensions,
) -> Response {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let name = match parts.as_slice() {
        [name] => Some(*name),
        [mac, name] if MacAddr::parse_any(mac).is_some() => Some(*name),
        _ => None,
    };
    let resp = match name.and_then(|n| st.binaries.get(n)) {
        Some(data) => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            data.clone(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such iPXE binary\n").into_response(),
    };
    st.metrics.record(Route::Binary, resp.status().as_u16());
    if let (StatusCode::OK, Some(rec), Some(name)) = (resp.status(), &st.recorder, name) {
        let mac = match parts.as_slice() {
            [mac, _] => url_mac(mac),
            _ => None,
        };
        let peer = ext
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_canonical().to_string());
        rec.by_mac_or_ip(
            mac.as_deref(),
            peer.as_deref(),
            Phase::IpxeBinary,
            name,
            false,
        )
        .await;
    }
    resp
}

async fn script_route(
    State(st): State<Arc<AppState>>,
    Path(path): Path<String>,
    ext: Extensions,
    headers: HeaderMap,
) -> Response {
    let peer = ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let resp = script_response(&st, &path, peer, &headers).await;
    st.metrics.record(Route::Script, resp.status().as_u16());
    resp
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut r = (status, body.into()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The download URL when neither configuration nor Hardware names one: our own `/hookos`.
fn own_hookos_url(st: &AppState, headers: &HeaderMap) -> String {
    if st.config.hookos_dir.is_none() {
        return String::new();
    }
    match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        Some(host) => format!("http://{host}{HOOKOS_PREFIX}"),
        None => String::new(),
    }
}

async fn script_response(
    st: &AppState,
    path: &str,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> Response {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.last() != Some(&"auto.ipxe") {
        return text(StatusCode::NOT_FOUND, "no such script\n");
    }
    let mac = parts.len().checked_sub(2).and_then(|i| url_mac(parts[i]));
    // The address asking (through trusted proxies): a worker token goes to the machine only.
    let caller = match peer.map(|p| client_ip(p.ip(), headers, &st.config.trusted_proxies)) {
        Some(Ok(ip)) => Some(ip),
        Some(Err(_)) => return text(StatusCode::BAD_REQUEST, "bad X-Forwarded-For\n"),
        None => None,
    };
    let (found, client) = match (&mac, caller) {
        (Some(mac), _) => (st.backend.hardware_by_mac(mac).await, mac.clone()),
        (None, Some(ip)) => (
            st.backend.hardware_by_ip(&ip.to_string()).await,
            ip.to_string(),
        ),
        (None, None) => {
            return text(StatusCode::NOT_FOUND, "no MAC and no client address\n");
        }
    };
    let hw = match found {
        Ok(Some(hw)) => hw,
        Ok(None) | Err(_) => {
            if let Err(e) = &found {
                tracing::warn!(%client, error = %e, "ipxe script: hardware lookup failed");
            }
            if st.config.static_script {
                // An unknown machine (discovery): no reservation, so the token is bound to
                // the address that asked.
                let token = mac
                    .as_deref()
                    .and_then(|m| worker_token(st, m, None, caller, &client));
                tracing::info!(%client, "ipxe script: no hardware, static script");
                if let Some(r) = hookos_not_ready(st, "") {
                    return r;
                }
                return text(
                    StatusCode::OK,
                    script::static_script(
                        &st.config.script.for_host(request_host(headers).as_deref()),
                        &effective_osie(st, headers),
                        token.as_deref(),
                    ),
                );
            }
            if found.is_err() {
                return text(StatusCode::SERVICE_UNAVAILABLE, "hardware lookup failed\n");
            }
            tracing::info!(%client, "ipxe script: no hardware");
            return text(StatusCode::NOT_FOUND, "no hardware for this machine\n");
        }
    };
    let iface = match &mac {
        Some(m) => interface_by_mac(&hw, m),
        None => peer_ip_interface(&hw, headers, st, peer),
    };
    let Some(iface) = iface else {
        return text(StatusCode::NOT_FOUND, "no matching interface\n");
    };
    let netboot = iface.netboot.clone().unwrap_or_default();
    if netboot.allow_pxe != Some(true) {
        tracing::info!(%client, hardware = ?hw.metadata.name, "ipxe script: allowPXE is not true");
        return text(
            StatusCode::NOT_FOUND,
            "netboot not allowed for this machine (allowPXE is false)\n",
        );
    }
    let ipxe = netboot.ipxe.clone().unwrap_or_default();
    let url = ipxe.url.unwrap_or_default();
    let contents = ipxe.contents.unwrap_or_default();
    if !url.is_empty() || !contents.is_empty() {
        return match script::custom(&url, &contents) {
            Ok(s) => {
                if let Some(rec) = &st.recorder {
                    rec.hardware(
                        &hw,
                        Phase::IpxeScript,
                        format!("/ipxe/script/{} (custom)", recorded_path(path)),
                    );
                }
                text(StatusCode::OK, s)
            }
            Err(e) => {
                tracing::warn!(%client, error = %e, "ipxe script: bad custom script");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "bad custom iPXE script\n",
                )
            }
        };
    }
    let dhcp = iface.dhcp.clone().unwrap_or_default();
    let mac_addr = dhcp
        .mac
        .as_deref()
        .and_then(MacAddr::parse_stored)
        .map(|m| m.to_string())
        .or(mac.clone())
        .unwrap_or_default();
    let reserved = dhcp
        .ip
        .as_ref()
        .and_then(|ip| ip.address.as_deref())
        .and_then(|a| a.parse::<IpAddr>().ok());
    let worker_id = hw
        .spec
        .agent_id
        .clone()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| mac_addr.clone());
    let osie = netboot.osie.unwrap_or_default();
    let machine = script::Machine {
        arch: dhcp.arch.unwrap_or_default(),
        vlan_id: dhcp.vlan_id.unwrap_or_default(),
        facility: hw
            .spec
            .metadata
            .as_ref()
            .and_then(|m| m.facility.as_ref())
            .and_then(|f| f.facility_code.clone())
            .unwrap_or_default(),
        worker_token: worker_token(st, &worker_id, reserved, caller, &client),
        worker_id,
        mac: mac_addr,
        osie_base_url: osie.base_url.unwrap_or_default(),
        kernel: osie.kernel.unwrap_or_default(),
        initrd: osie.initrd.unwrap_or_default(),
        kernel_params: osie.kernel_params.unwrap_or_default(),
    };
    tracing::info!(%client, hardware = ?hw.metadata.name, "ipxe script: hook");
    if let Some(rec) = &st.recorder {
        rec.hardware(
            &hw,
            Phase::IpxeScript,
            format!("/ipxe/script/{}", recorded_path(path)),
        );
    }
    if let Some(r) = hookos_not_ready(st, &machine.osie_base_url) {
        return r;
    }
    let script_config = st.config.script.for_host(request_host(headers).as_deref());
    text(
        StatusCode::OK,
        script::hook(&script_config, &machine, &own_hookos_url(st, headers)),
    )
}

/// When the script would send the machine to this listener's `/hookos` (no OSIE URL in the
/// configuration or the Hardware) and that directory is not ready: a script that says so on
/// the machine's console and asks again in 30 s, instead of a kernel download that 404s. The
/// machine boots once the operator runs `tinkerbell hookos fetch` (or build).
fn hookos_not_ready(st: &AppState, hardware_osie_url: &str) -> Option<Response> {
    if !hardware_osie_url.is_empty() || !st.config.script.osie_url.is_empty() {
        return None;
    }
    let problem = st.hookos.as_ref()?.status().err()?;
    tracing::warn!(error = %problem, "ipxe script: HookOS is not ready; the machine waits");
    let why = match problem {
        crate::hookos::Problem::Missing { .. } => "is missing",
        crate::hookos::Problem::Corrupt { .. } => "is corrupt (sha256 mismatch)",
        crate::hookos::Problem::Unusable { .. } => "has an unusable SHA256SUMS",
    };
    Some(text(
        StatusCode::OK,
        format!(
            "#!ipxe\necho tinkerbell: HookOS {why} on the provisioning appliance (tinkerbell hookos fetch)\n\
             echo tinkerbell: asking again in 30 s\nsleep 30\nchain --autofree auto.ipxe\n"
        ),
    ))
}

/// The most of a requested script path the timeline keeps, in bytes.
const MAX_RECORDED_PATH: usize = 256;

/// `path` as the timeline keeps it: the caller chooses the path (up to the whole URI), so at
/// most [`MAX_RECORDED_PATH`] bytes of it, cut at a character boundary and marked with `…`.
fn recorded_path(path: &str) -> std::borrow::Cow<'_, str> {
    if path.len() <= MAX_RECORDED_PATH {
        return path.into();
    }
    let mut end = MAX_RECORDED_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &path[..end]).into()
}

/// The worker token for `worker_id`, when the caller is the machine (see
/// [`tinkerbell_core::worker_token`]): a Hardware interface that reserves an address gets a
/// plain token only when the request comes from that address (anyone else gets the script
/// without a token, and a warning is logged); without a reservation the token is bound to the
/// address that asked, and the tink server accepts it from there only.
fn worker_token(
    st: &AppState,
    worker_id: &str,
    reserved: Option<IpAddr>,
    caller: Option<IpAddr>,
    client: &str,
) -> Option<String> {
    let key = st.config.worker_token_key.as_ref()?;
    let expiry = worker_token::unix_now() + worker_token::TOKEN_TTL.as_secs();
    let caller = caller.map(canonical);
    match (reserved, caller) {
        (Some(r), Some(c)) if r == c => Some(key.issue(worker_id, expiry)),
        (Some(r), c) => {
            tracing::warn!(%client, reserved = %r, from = ?c,
                "ipxe script: worker token withheld, the request does not come from the machine's reserved address");
            None
        }
        (None, Some(c)) => Some(key.issue_bound(worker_id, expiry, c)),
        (None, None) => None,
    }
}

/// The host part of the `Host` header (the address the client sent the request to).
fn request_host(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let auth: http::uri::Authority = host.parse().ok()?;
    let h = auth.host();
    Some(h.trim_start_matches('[').trim_end_matches(']').to_string())
}

fn effective_osie(st: &AppState, headers: &HeaderMap) -> String {
    if st.config.script.osie_url.is_empty() {
        own_hookos_url(st, headers)
    } else {
        st.config.script.osie_url.clone()
    }
}

/// A MAC in a request path, in any form upstream writes there, as Hardware stores it.
fn url_mac(s: &str) -> Option<String> {
    MacAddr::parse_any(s).map(|m| m.to_string())
}

fn interface_by_mac(hw: &Hardware, mac: &str) -> Option<Interface> {
    hw.spec.interfaces.as_ref()?.iter().find_map(|i| {
        let m = i.dhcp.as_ref()?.mac.as_deref()?;
        (MacAddr::parse_stored(m).map(|m| m.to_string()).as_deref() == Some(mac)).then(|| i.clone())
    })
}

fn peer_ip_interface(
    hw: &Hardware,
    headers: &HeaderMap,
    st: &AppState,
    peer: Option<SocketAddr>,
) -> Option<Interface> {
    let peer = peer?;
    let ip: IpAddr = client_ip(peer.ip(), headers, &st.config.trusted_proxies).ok()?;
    let ip = ip.to_string();
    hw.spec.interfaces.as_ref()?.iter().find_map(|i| {
        let a = i.dhcp.as_ref()?.ip.as_ref()?.address.as_deref()?;
        (a == ip).then(|| i.clone())
    })
}

/// The standalone HTTP server (the `boots` binary; `tinkerbell serve` merges [`router`]).
#[derive(Debug)]
pub struct Http {
    metrics: HttpMetrics,
    server: tinkerbell_edge::HttpServer,
}

impl Http {
    /// Build the router, bind `config.listen` and serve until `cancel` fires (in-flight
    /// requests then get `shutdown_grace`). The socket is bound when this returns.
    pub async fn start(
        config: &Config,
        backend: Arc<dyn HardwareLookup>,
        extra: Option<Router>,
        recorder: Option<Recorder>,
        cancel: CancellationToken,
    ) -> Result<Http, HttpError> {
        let metrics = HttpMetrics::default();
        let mut app = router(backend, config, metrics.clone(), recorder)?;
        if let Some(extra) = extra {
            app = app.merge(extra);
        }
        // The shared listener: header-read timeout and connection cap of the open port.
        let server = tinkerbell_edge::HttpServer::start(
            config.listen,
            app,
            cancel,
            tinkerbell_edge::ServeOptions::new(config.shutdown_grace),
        )
        .await?;
        tracing::info!(addr = %server.local_addr(), "boots http listening");
        Ok(Http { metrics, server })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The request counters.
    pub fn metrics(&self) -> &HttpMetrics {
        &self.metrics
    }

    /// Wait for the server to stop.
    pub async fn join(self) -> Result<(), HttpError> {
        Ok(self.server.join().await?)
    }
}
