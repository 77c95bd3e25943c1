//! The HTTP surface: routes, identity (source IP, trusted X-Forwarded-For), session tokens,
//! and the one place errors become responses.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use tinkerbell_core::model::Hardware;
use tinkerbell_core::store::{HardwareLookup, StoreError};
use tinkerbell_core::timeline::{Phase, Subject, Timeline};
use tinkerbell_edge::metrics::prometheus_client::encoding::DescriptorEncoder;
use tinkerbell_edge::metrics::{Collector, Registry};
use tinkerbell_edge::net::{ForwardedForError, X_FORWARDED_FOR as XFF};
use tinkerbell_edge::{Cidr, canonical, client_ip};

use crate::config::Config;
use crate::ec2::{self, Node};
use crate::metrics::Metrics;
use crate::tokens::{IssueError, TokenCheck, TokenStore};

/// The API versions served; `latest` is the same tree.
pub const VERSIONS: &[&str] = &["2009-04-04", "latest"];
/// The session token request path.
pub const TOKEN_PATH: &str = "/latest/api/token";
/// Header carrying a session token (EC2's name).
pub const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
/// Header asking for a token lifetime (EC2's name).
pub const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
/// Firecracker MMDS's names for the same two headers, also accepted.
const MMDS_TOKEN_HEADER: &str = "x-metadata-token";
const MMDS_TTL_HEADER: &str = "x-metadata-token-ttl-seconds";

/// Everything the handlers share.
pub struct AppState {
    backend: Arc<dyn HardwareLookup>,
    trusted_proxies: Vec<Cidr>,
    require_tokens: bool,
    token_ttl_max: Duration,
    /// Session tokens.
    pub tokens: TokenStore,
    /// Request counters.
    pub metrics: Metrics,
    timeline: Option<Arc<Timeline>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("trusted_proxies", &self.trusted_proxies)
            .field("require_tokens", &self.require_tokens)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

type Shared = Arc<AppState>;

/// Why a request was not answered with data. Mapped to a status and a terse body in
/// [`IntoResponse`]; details go to the log.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The connection's peer address is unknown (the router was served without connect info).
    #[error("invalid remote address")]
    NoPeer,
    /// A trusted proxy sent an X-Forwarded-For that is not a list of IP addresses.
    #[error("invalid X-Forwarded-For header")]
    BadForwardedFor,
    /// No Hardware holds the caller's address.
    #[error("no hardware found for source ip: {0}")]
    NoHardwareForIp(IpAddr),
    /// No Hardware has this instance ID.
    #[error("no hardware found for instance id: {0}")]
    NoHardwareForInstance(String),
    /// The Hardware with this instance ID does not hold the caller's address. Answered like
    /// an unknown instance ID, so the route does not tell which IDs exist.
    #[error("no hardware found for instance id: {id}")]
    NotTheInstance {
        /// The instance ID asked for.
        id: String,
        /// The caller's address.
        ip: IpAddr,
    },
    /// The path is not part of the tree.
    #[error("not found")]
    NotFound,
    /// The path exists but the Hardware has no value for it.
    #[error("{0} is not set for this instance")]
    Unset(&'static str),
    /// Tokens are required and none was sent.
    #[error(
        "a session token is required: PUT {TOKEN_PATH} with {TTL_HEADER}, then send it in {TOKEN_HEADER}"
    )]
    TokenRequired,
    /// The token is unknown, expired or was issued to another address.
    #[error("invalid or expired session token")]
    TokenInvalid,
    /// A token request without a lifetime.
    #[error("missing {TTL_HEADER} header")]
    TtlMissing,
    /// A token request with a lifetime out of range.
    #[error("{TTL_HEADER} must be an integer between 1 and {0}")]
    TtlInvalid(u64),
    /// A token request relayed by an untrusted proxy.
    #[error("token requests must not carry X-Forwarded-For")]
    ForwardedTokenRequest,
    /// The token table is full of other addresses' live tokens.
    #[error("too many session tokens; retry later")]
    TokensExhausted,
    /// The backend failed.
    #[error("backend lookup failed")]
    Backend(#[source] StoreError),
    /// The system random source failed.
    #[error("cannot generate a token: {0}")]
    Random(getrandom::Error),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::NoPeer
            | ApiError::BadForwardedFor
            | ApiError::TtlMissing
            | ApiError::TtlInvalid(_)
            | ApiError::ForwardedTokenRequest => StatusCode::BAD_REQUEST,
            ApiError::NoHardwareForIp(_)
            | ApiError::NoHardwareForInstance(_)
            | ApiError::NotTheInstance { .. }
            | ApiError::NotFound
            | ApiError::Unset(_) => StatusCode::NOT_FOUND,
            ApiError::TokenRequired | ApiError::TokenInvalid => StatusCode::UNAUTHORIZED,
            ApiError::TokensExhausted => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Backend(_) | ApiError::Random(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<ForwardedForError> for ApiError {
    fn from(_: ForwardedForError) -> ApiError {
        ApiError::BadForwardedFor
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            let source = std::error::Error::source(&self)
                .map(|s| s.to_string())
                .unwrap_or_default();
            tracing::error!(error = %self, %source, "request failed");
        } else if let ApiError::NotTheInstance { id, ip } = &self {
            tracing::debug!(%id, %ip, "instance metadata refused: not the instance's address");
        } else {
            tracing::debug!(error = %self, status = status.as_u16(), "request refused");
        }
        let body = if status.is_server_error() {
            "internal server error".to_string()
        } else {
            self.to_string()
        };
        (status, [(header::CONTENT_TYPE, ec2::TEXT)], body).into_response()
    }
}

/// Count an answer under its route label (every handler ends here) and log it at debug.
fn labelled(st: &AppState, route: &'static str, resp: Response) -> Response {
    let status = resp.status().as_u16();
    st.metrics.record(route, status);
    tracing::debug!(route, status, "answered");
    resp
}

/// Hegel's routes. The caller serves the router with
/// `into_make_service_with_connect_info::<SocketAddr>()` (identity is the peer address).
///
/// Routes: `/` (versions), `/2009-04-04/…` and `/latest/…` (the EC2 tree), `PUT
/// /latest/api/token`, `/metadata` (rootio JSON), `/healthz`, and with
/// `config.instance_endpoint`, `/tootles/instanceID/<id>/2009-04-04/…` (served only to an
/// address of that instance's Hardware, with the same token rules as the rest).
pub fn router(
    backend: Arc<dyn HardwareLookup>,
    config: &Config,
    registry: &mut Registry,
) -> Router {
    let state: Shared = Arc::new(AppState {
        backend,
        trusted_proxies: config.trusted_proxies.clone(),
        require_tokens: config.require_tokens,
        token_ttl_max: config.token_ttl_max,
        tokens: TokenStore::new(config.max_tokens, config.max_tokens_per_address),
        metrics: Metrics::default(),
        timeline: config.timeline.clone(),
    });
    registry.register_collector(Box::new(Scrape(state.clone())));
    router_with_state(state, config.instance_endpoint)
}

/// hegel's metrics at scrape time: request counters and the session tokens held.
#[derive(Debug)]
pub struct Scrape(pub Arc<AppState>);

impl Collector for Scrape {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.metrics.encode(encoder, self.0.tokens.len())
    }
}

/// [`router`] on a given state, so tests can look at tokens and metrics. Its metrics are
/// registered by [`router`] (here: register a [`Scrape`] of the state yourself). `/metrics` is
/// the process's to mount, on its one registry.
pub fn router_with_state(state: Arc<AppState>, instance_endpoint: bool) -> Router {
    let mut r = Router::new()
        .route("/", get(root))
        .route("/metadata", get(hack))
        .route("/healthz", get(healthz))
        .route(TOKEN_PATH, put(token));
    for v in VERSIONS {
        r = r
            .route(&format!("/{v}"), get(ec2_by_ip))
            .route(&format!("/{v}/"), get(ec2_by_ip))
            .route(&format!("/{v}/{{*rest}}"), get(ec2_by_ip));
    }
    if instance_endpoint {
        r = r
            .route("/tootles/instanceID/{id}/2009-04-04", get(ec2_by_instance))
            .route("/tootles/instanceID/{id}/2009-04-04/", get(ec2_by_instance))
            .route(
                "/tootles/instanceID/{id}/2009-04-04/{*rest}",
                get(ec2_by_instance),
            );
    }
    r.with_state(state)
}

/// The peer address of the connection, from axum's connect info.
fn peer(req_ext: &axum::http::Extensions) -> Result<IpAddr, ApiError> {
    req_ext
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| canonical(ci.0.ip()))
        .ok_or(ApiError::NoPeer)
}

fn header_str<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| headers.get(*n))
        .map(|v| v.to_str().unwrap_or(""))
}

/// Enforce the token rules for a metadata read from `ip`: a presented token must be valid;
/// with `require_tokens`, one must be presented.
fn check_token(st: &AppState, headers: &HeaderMap, ip: IpAddr) -> Result<(), ApiError> {
    match header_str(headers, &[TOKEN_HEADER, MMDS_TOKEN_HEADER]) {
        Some(t) => match st.tokens.check(t, ip) {
            TokenCheck::Valid => Ok(()),
            other => {
                tracing::debug!(%ip, result = ?other, "session token refused");
                Err(ApiError::TokenInvalid)
            }
        },
        None if st.require_tokens => Err(ApiError::TokenRequired),
        None => Ok(()),
    }
}

/// Identify the caller and check its token; returns the caller's address.
fn caller(st: &AppState, req: &Parts) -> Result<IpAddr, ApiError> {
    let peer = peer(&req.extensions)?;
    let ip = client_ip(peer, &req.headers, &st.trusted_proxies)?;
    check_token(st, &req.headers, ip)?;
    Ok(ip)
}

/// The Hardware of the caller's address (its token checked first).
async fn caller_hardware(st: &AppState, req: &Parts) -> Result<Arc<Hardware>, ApiError> {
    let ip = caller(st, req)?;
    st.backend
        .hardware_by_ip(&ip.to_string())
        .await
        .map_err(ApiError::Backend)?
        .ok_or(ApiError::NoHardwareForIp(ip))
}

/// Split the path below the version prefix into segments (empty ones dropped, so a trailing
/// slash is accepted).
fn segments_after(path: &str, prefix_segments: usize) -> Vec<&str> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .skip(prefix_segments)
        .collect()
}

/// The first metadata read of a burst goes into the timeline (cloud-init reads dozens of keys).
fn record_read(st: &AppState, hw: &Hardware, path: &str) {
    if let Some(t) = &st.timeline {
        t.record_first(Subject::of_hardware(hw), Phase::MetadataRead, "hegel", path);
    }
}

fn answer(st: &AppState, hw: &Hardware, segs: &[&str]) -> Response {
    let resolved = ec2::resolve(hw, segs);
    if resolved.is_some() {
        record_read(st, hw, &format!("/{}", segs.join("/")));
    }
    match resolved {
        None => labelled(st, "unmatched", ApiError::NotFound.into_response()),
        Some(r) => {
            let resp = match r.node {
                Node::Dir(body) => ([(header::CONTENT_TYPE, ec2::TEXT)], body).into_response(),
                Node::Leaf(body, ct) => ([(header::CONTENT_TYPE, ct)], body).into_response(),
                Node::Unset => ApiError::Unset(r.route.trim_start_matches('/')).into_response(),
            };
            labelled(st, r.route, resp)
        }
    }
}

/// A route label for errors before the tree is consulted.
fn early_label(segs: &[&str]) -> &'static str {
    // Resolve against an empty Hardware: same template, no data.
    ec2::resolve(&Hardware::default(), segs)
        .map(|r| r.route)
        .unwrap_or("unmatched")
}

async fn ec2_by_ip(State(st): State<Shared>, req: Parts) -> Response {
    let segs = segments_after(req.uri.path(), 1);
    let result = caller_hardware(&st, &req).await;
    match result {
        Ok(hw) => answer(&st, &hw, &segs),
        Err(e) => labelled(&st, early_label(&segs), e.into_response()),
    }
}

async fn ec2_by_instance(
    State(st): State<Shared>,
    Path(params): Path<Vec<(String, String)>>,
    req: Parts,
) -> Response {
    // /tootles/instanceID/<id>/2009-04-04/...
    let segs = segments_after(req.uri.path(), 4);
    let id = params
        .into_iter()
        .find(|(k, _)| k == "id")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let result = async {
        let ip = caller(&st, &req)?;
        let hw = st
            .backend
            .hardware_by_instance_id(&id)
            .await
            .map_err(ApiError::Backend)?
            .ok_or_else(|| ApiError::NoHardwareForInstance(id.clone()))?;
        // The path names the instance, but only the instance itself may read it: the caller's
        // address (the same identity, tokens included, as the by-address routes) must be one
        // of the Hardware's. Session tokens are bound to the address they were issued to, so
        // a token only ever speaks for its own address.
        if !holds_address(&hw, ip) {
            return Err(ApiError::NotTheInstance { id: id.clone(), ip });
        }
        Ok(hw)
    }
    .await;
    match result {
        Ok(hw) => answer(&st, &hw, &segs),
        Err(e) => labelled(&st, early_label(&segs), e.into_response()),
    }
}

/// Whether `ip` is one of `hw`'s interface addresses (`interfaces[].dhcp.ip.address`, the
/// addresses the by-address routes look Hardware up by).
fn holds_address(hw: &Hardware, ip: IpAddr) -> bool {
    let ip = canonical(ip);
    hw.ips()
        .iter()
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .any(|a| canonical(a) == ip)
}

async fn root(State(st): State<Shared>) -> Response {
    labelled(
        &st,
        "/",
        ([(header::CONTENT_TYPE, ec2::TEXT)], VERSIONS.join("\n")).into_response(),
    )
}

async fn healthz(State(st): State<Shared>) -> Response {
    labelled(
        &st,
        "/healthz",
        ([(header::CONTENT_TYPE, ec2::TEXT)], "ok").into_response(),
    )
}

async fn hack(State(st): State<Shared>, req: Parts) -> Response {
    let result = caller_hardware(&st, &req).await;
    let resp = match result {
        Ok(hw) => {
            record_read(&st, &hw, "/metadata");
            axum::Json(ec2::hack_instance(&hw)).into_response()
        }
        Err(e) => e.into_response(),
    };
    labelled(&st, "/metadata", resp)
}

async fn token(State(st): State<Shared>, req: Parts) -> Response {
    let resp = issue_token(&st, &req).map_or_else(IntoResponse::into_response, |(tok, ttl)| {
        let mut resp = Response::new(Body::from(tok));
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ec2::TEXT));
        h.insert(TTL_HEADER, HeaderValue::from(ttl));
        resp
    });
    labelled(&st, TOKEN_PATH, resp)
}

fn issue_token(st: &AppState, req: &Parts) -> Result<(String, u64), ApiError> {
    let peer = peer(&req.extensions)?;
    let trusted = st.trusted_proxies.iter().any(|c| c.contains(peer));
    // EC2 and firecracker refuse relayed token requests; only our own trusted proxies may relay.
    if !trusted && req.headers.contains_key(XFF) {
        return Err(ApiError::ForwardedTokenRequest);
    }
    let ip = client_ip(peer, &req.headers, &st.trusted_proxies)?;
    let max = st.token_ttl_max.as_secs();
    let raw =
        header_str(&req.headers, &[TTL_HEADER, MMDS_TTL_HEADER]).ok_or(ApiError::TtlMissing)?;
    let ttl: u64 = raw
        .trim()
        .parse()
        .ok()
        .filter(|t| (1..=max).contains(t))
        .ok_or(ApiError::TtlInvalid(max))?;
    let tok = st
        .tokens
        .issue(ip, Duration::from_secs(ttl))
        .map_err(|e| match e {
            IssueError::Full => {
                // Debug, not warn: whoever fills the table would also fill the log. The
                // 503s are counted under the token route.
                tracing::debug!(%ip, "session token refused: the token table is full");
                ApiError::TokensExhausted
            }
            IssueError::Random(e) => ApiError::Random(e),
        })?;
    tracing::debug!(%ip, ttl, "session token issued");
    Ok((tok, ttl))
}
