//! The gRPC side: a channel to the tink server (plain or TLS, TLS roots from our own bundle so
//! nothing is read from the root filesystem, `--tinkerbell-insecure-tls` honoured), the worker
//! token as `authorization: Bearer` metadata on every call, and the two [`Transport`]s.
//!
//! Error classification follows upstream's agent: for GetAction, NotFound and
//! FailedPrecondition mean "nothing for you now" (poll again); for ReportActionStatus,
//! NotFound, InvalidArgument and FailedPrecondition are permanent; authentication failures are
//! permanent too (a misconfigured token does not fix itself, but the loop keeps polling so a
//! fixed server-side key is picked up); everything else (Unavailable, connection errors,
//! deadlines) is transient and retried with backoff.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tinkerbell_tink_proto::{current, legacy, logs};
use tonic::Code;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::actions::ActionSpec;
use crate::agent::{Assignment, LogLine, Report, State, Transport, TransportError};
use crate::config::Config;

/// Errors setting up the connection.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    /// The authority does not make a URI.
    #[error("invalid tink server address {0:?}")]
    Address(String),
    /// The token cannot be sent as metadata.
    #[error("the worker token contains characters not allowed in gRPC metadata")]
    Token,
    /// TLS setup failed.
    #[error("TLS setup")]
    Tls(#[source] rustls::Error),
}

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub struct Auth(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth(<redacted>)")
    }
}

impl Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

type Svc = InterceptedService<Channel, Auth>;

/// A lazily connecting channel to the tink server (connection errors surface per call, as
/// transient errors, so the loop's backoff handles a server that is not up yet).
pub fn channel(cfg: &Config) -> Result<(Channel, Auth), GrpcError> {
    let scheme = if cfg.tls { "https" } else { "http" };
    let uri = format!("{scheme}://{}", cfg.grpc_authority);
    let ep = Endpoint::from_shared(uri.clone())
        .map_err(|_| GrpcError::Address(cfg.grpc_authority.clone()))?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    let channel = if cfg.tls {
        ep.connect_with_connector_lazy(TlsConnector::new(cfg)?)
    } else {
        ep.connect_lazy()
    };
    let auth = match &cfg.token {
        None => Auth(None),
        Some(t) => Auth(Some(
            format!("Bearer {}", t.0.trim())
                .parse()
                .map_err(|_| GrpcError::Token)?,
        )),
    };
    Ok((channel, auth))
}

/// TCP + rustls (ring) with our roots, h2 by ALPN.
#[derive(Clone)]
struct TlsConnector {
    config: Arc<rustls::ClientConfig>,
}

impl TlsConnector {
    fn new(cfg: &Config) -> Result<TlsConnector, GrpcError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(GrpcError::Tls)?;
        let mut config = if cfg.insecure_tls {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
                .with_no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&cfg.http.ca_pem).flatten() {
                let _ = roots.add(c);
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(TlsConnector {
            config: Arc::new(config),
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let config = self.config.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or("no host in the tink server address")?
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let bare = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let tcp = tokio::net::TcpStream::connect((bare.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(bare)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok(TokioIo::new(tls))
        })
    }
}

/// `--tinkerbell-insecure-tls`: any certificate, signatures still checked for the handshake.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn transient_or(status: &tonic::Status, permanent: &[Code]) -> TransportError {
    let msg = format!("{:?}: {}", status.code(), status.message());
    if permanent.contains(&status.code()) {
        TransportError::Permanent(msg)
    } else {
        TransportError::Transient(msg)
    }
}

/// Asking for an action is refused for good: a bad request, or we may not ask.
const ACTION_PERMANENT: [Code; 3] = [
    Code::InvalidArgument,
    Code::Unauthenticated,
    Code::PermissionDenied,
];

/// A status report the server refuses for good: the workflow or action is gone or not in that
/// state, or we may not report.
const REPORT_PERMANENT: [Code; 5] = [
    Code::NotFound,
    Code::InvalidArgument,
    Code::FailedPrecondition,
    Code::Unauthenticated,
    Code::PermissionDenied,
];

fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// A [`Transport`] over one of the workflow APIs (`C`, its client) and WorkerLogs.
#[derive(Debug, Clone)]
pub struct GrpcTransport<C> {
    client: C,
    logs: logs::worker_logs_client::WorkerLogsClient<Svc>,
    worker_id: String,
}

/// The current API: GetAction / ReportActionStatus.
pub type CurrentTransport =
    GrpcTransport<current::workflow_service_client::WorkflowServiceClient<Svc>>;

/// The legacy API: GetWorkflowContexts / GetWorkflowActions / ReportActionStatus.
pub type LegacyTransport =
    GrpcTransport<legacy::workflow_service_client::WorkflowServiceClient<Svc>>;

impl<C> GrpcTransport<C> {
    /// A transport over `channel`; `client` is the API client's `with_interceptor`.
    pub fn new(
        channel: Channel,
        auth: Auth,
        worker_id: String,
        client: fn(Channel, Auth) -> C,
    ) -> Self {
        GrpcTransport {
            client: client(channel.clone(), auth.clone()),
            logs: logs::worker_logs_client::WorkerLogsClient::with_interceptor(channel, auth),
            worker_id,
        }
    }

    async fn send_logs(&self, a: &Assignment, lines: Vec<LogLine>) -> Result<(), TransportError> {
        let req = logs::PushLogsRequest {
            workflow_id: a.workflow_id.clone(),
            agent_id: self.worker_id.clone(),
            task_id: a.task_id.clone(),
            action_id: a.action_id.clone(),
            action_name: a.action.name.clone(),
            lines: lines
                .into_iter()
                .map(|l| logs::LogLine {
                    time: Some(timestamp(l.time)),
                    stream: l.stream,
                    text: l.text,
                })
                .collect(),
        };
        self.logs
            .clone()
            .push_logs(req)
            .await
            .map(drop)
            .map_err(|s| transient_or(&s, &[]))
    }
}

impl Transport for CurrentTransport {
    async fn next_action(&self) -> Result<Option<Assignment>, TransportError> {
        let req = current::ActionRequest {
            agent_id: Some(self.worker_id.clone()),
            agent_attributes: None,
        };
        match self.client.clone().get_action(req).await {
            Ok(r) => {
                let r = r.into_inner();
                let name = r.name.unwrap_or_default();
                Ok(Some(Assignment {
                    workflow_id: r.workflow_id.unwrap_or_default(),
                    task_id: r.task_id.unwrap_or_default(),
                    action_id: r.action_id.unwrap_or_default(),
                    action: ActionSpec {
                        name,
                        image: r.image.unwrap_or_default(),
                        env: ActionSpec::env_from_pairs(&r.environment),
                        command: r.command,
                        timeout: Duration::from_secs(r.timeout.unwrap_or(0).max(0) as u64),
                    },
                }))
            }
            Err(s) if matches!(s.code(), Code::NotFound | Code::FailedPrecondition) => Ok(None),
            Err(s) => Err(transient_or(&s, &ACTION_PERMANENT)),
        }
    }

    async fn report(&self, a: &Assignment, r: &Report) -> Result<(), TransportError> {
        use current::action_status_request::StateType;
        let state = match r.state {
            State::Running => StateType::Running,
            State::Success => StateType::Success,
            State::Failed => StateType::Failed,
            State::Timeout => StateType::Timeout,
        };
        let req = current::ActionStatusRequest {
            workflow_id: Some(a.workflow_id.clone()),
            agent_id: Some(self.worker_id.clone()),
            task_id: Some(a.task_id.clone()),
            action_id: Some(a.action_id.clone()),
            action_name: Some(a.action.name.clone()),
            action_state: Some(state as i32),
            execution_start: Some(timestamp(r.started)),
            execution_stop: r.stopped.map(timestamp),
            execution_duration: Some(tinkerbell_model::duration::format(r.duration)),
            message: Some(current::ActionMessage {
                message: Some(r.message.clone()),
            }),
        };
        self.client
            .clone()
            .report_action_status(req)
            .await
            .map(drop)
            .map_err(|s| transient_or(&s, &REPORT_PERMANENT))
    }
    async fn push_logs(&self, a: &Assignment, lines: Vec<LogLine>) -> Result<(), TransportError> {
        self.send_logs(a, lines).await
    }
}

impl Transport for LegacyTransport {
    async fn next_action(&self) -> Result<Option<Assignment>, TransportError> {
        let perm = ACTION_PERMANENT;
        let mut client = self.client.clone();
        let mut stream = client
            .get_workflow_contexts(legacy::WorkflowContextRequest {
                worker_id: self.worker_id.clone(),
            })
            .await
            .map_err(|s| transient_or(&s, &perm))?
            .into_inner();
        while let Some(ctx) = stream
            .message()
            .await
            .map_err(|s| transient_or(&s, &perm))?
        {
            let index = ctx.current_action_index.max(0) as usize;
            let next = match legacy::State::try_from(ctx.current_action_state) {
                Ok(legacy::State::Success) => index + 1,
                // RUNNING: a previous incarnation of this worker died mid-action; run it again.
                Ok(legacy::State::Pending | legacy::State::Running) => index,
                _ => continue,
            };
            if next as i64 >= ctx.total_number_of_actions {
                continue;
            }
            let actions = match client
                .get_workflow_actions(legacy::WorkflowActionsRequest {
                    workflow_id: ctx.workflow_id.clone(),
                })
                .await
            {
                Ok(a) => a.into_inner().action_list,
                Err(s) if s.code() == Code::NotFound => continue,
                Err(s) => return Err(transient_or(&s, &perm)),
            };
            let Some(action) = actions.into_iter().nth(next) else {
                continue;
            };
            if !action.worker_id.is_empty()
                && !action.worker_id.eq_ignore_ascii_case(&self.worker_id)
            {
                continue;
            }
            return Ok(Some(Assignment {
                workflow_id: ctx.workflow_id,
                task_id: action.task_name,
                action_id: action.name.clone(),
                action: ActionSpec {
                    name: action.name,
                    image: action.image,
                    env: ActionSpec::env_from_pairs(&action.environment),
                    command: action.command,
                    timeout: Duration::from_secs(action.timeout.max(0) as u64),
                },
            }));
        }
        Ok(None)
    }

    async fn report(&self, a: &Assignment, r: &Report) -> Result<(), TransportError> {
        let state = match r.state {
            State::Running => legacy::State::Running,
            State::Success => legacy::State::Success,
            State::Failed => legacy::State::Failed,
            State::Timeout => legacy::State::Timeout,
        };
        let req = legacy::WorkflowActionStatus {
            workflow_id: a.workflow_id.clone(),
            task_name: a.task_id.clone(),
            action_name: a.action.name.clone(),
            action_status: state as i32,
            seconds: r.duration.as_secs() as i64,
            message: r.message.clone(),
            created_at: Some(timestamp(SystemTime::now())),
            worker_id: self.worker_id.clone(),
        };
        self.client
            .clone()
            .report_action_status(req)
            .await
            .map(drop)
            .map_err(|s| transient_or(&s, &REPORT_PERMANENT))
    }
    async fn push_logs(&self, a: &Assignment, lines: Vec<LogLine>) -> Result<(), TransportError> {
        self.send_logs(a, lines).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_is_redacted() {
        assert_eq!(
            format!("{:?}", Auth(Some("Bearer x".parse().unwrap()))),
            "Auth(<redacted>)"
        );
    }
}
