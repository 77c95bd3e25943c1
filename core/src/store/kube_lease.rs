//! Leader election on a `coordination.k8s.io/v1` Lease, the way controller-runtime (and so
//! upstream's tink-controller and rufio) does it, so two replicas of a controller never
//! reconcile at once.
//!
//! * **Acquire.** Read the Lease; create it when absent. Take it over when it is ours, has no
//!   holder (released), or has not changed for `leaseDurationSeconds` *as measured on our own
//!   clock* since we first saw that version of it: the holder's `renewTime` is only compared
//!   by value, never against our clock, so clock skew between nodes cannot hand the lease to
//!   two processes. Every write is a PUT at the resourceVersion read, so of two candidates
//!   racing for an expired Lease the API server lets exactly one win (the other gets 409).
//! * **Renew.** The holder rewrites `renewTime` every `retry_period`. When it cannot renew
//!   within `renew_deadline` (API server unreachable, a request hanging), or finds another
//!   holder, leadership is lost: [`Leadership::lost`] resolves and the binary stops
//!   reconciling (and exits, as controller-runtime does), before `lease_duration` runs out
//!   and a standby may take over — hence `renew_deadline < lease_duration`.
//! * **Release.** On a clean shutdown the holder clears `holderIdentity` (and sets the
//!   duration to 1 s), so a standby takes over at its next try instead of waiting out the
//!   lease.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// controller-runtime's defaults.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// See [`DEFAULT_LEASE_DURATION`].
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// See [`DEFAULT_LEASE_DURATION`].
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);

/// Which Lease, who we are, and the timing.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease (one per controller: `tink-controller`, `rufio`).
    pub name: String,
    /// This process's identity (pod name plus a random suffix).
    pub identity: String,
    /// How long a Lease that stopped changing stays the holder's.
    pub lease_duration: Duration,
    /// How long the holder keeps trying to renew before it gives leadership up.
    pub renew_deadline: Duration,
    /// Pause between tries (acquire and renew).
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// A config with controller-runtime's timing (15 s / 10 s / 2 s).
    pub fn new(namespace: &str, name: &str, identity: &str) -> LeaseConfig {
        LeaseConfig {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_deadline: DEFAULT_RENEW_DEADLINE,
            retry_period: DEFAULT_RETRY_PERIOD,
        }
    }

    /// Every problem at once.
    pub fn validate(&self) -> Result<(), LeaseError> {
        let mut problems = Vec::new();
        for (field, v) in [
            ("namespace", &self.namespace),
            ("name", &self.name),
            ("identity", &self.identity),
        ] {
            if v.is_empty() {
                problems.push(format!("lease {field} is empty"));
            }
        }
        if self.retry_period.is_zero() {
            problems.push("retry period must be > 0".into());
        }
        if self.renew_deadline <= self.retry_period {
            problems.push(format!(
                "renew deadline {:?} must be longer than the retry period {:?}",
                self.renew_deadline, self.retry_period
            ));
        }
        if self.lease_duration <= self.renew_deadline {
            problems.push(format!(
                "lease duration {:?} must be longer than the renew deadline {:?}",
                self.lease_duration, self.renew_deadline
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(LeaseError::Config(problems.join("; ")))
        }
    }
}

/// Why leader election could not run.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The configuration is unusable.
    #[error("leader election: {0}")]
    Config(String),
    /// The API server refused a Lease request (not a lost race: RBAC, a missing namespace).
    #[error("Lease {namespace}/{name}")]
    Api {
        /// Namespace of the Lease.
        namespace: String,
        /// Name of the Lease.
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

/// What one try found.
#[derive(Debug, PartialEq, Eq)]
enum Try {
    /// We hold the Lease now.
    Held,
    /// Someone else does (and it has not expired).
    Other(String),
    /// Lost a race (409): try again later.
    Raced,
}

/// The version of the Lease last seen, and when (our clock) it was first seen.
#[derive(Debug, Default)]
struct Observed {
    resource_version: Option<String>,
    since: Option<Instant>,
}

/// Takes and keeps one Lease.
#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    cfg: LeaseConfig,
}

impl std::fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElector")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl LeaderElector {
    /// An elector for `cfg` on `client`.
    pub fn new(client: Client, cfg: LeaseConfig) -> Result<LeaderElector, LeaseError> {
        cfg.validate()?;
        Ok(LeaderElector {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
        })
    }

    fn api_err(&self, source: kube::Error) -> LeaseError {
        LeaseError::Api {
            namespace: self.cfg.namespace.clone(),
            name: self.cfg.name.clone(),
            source,
        }
    }

    /// Wait until this process holds the Lease; `None` when `cancel` fires first. The
    /// returned [`Leadership`] keeps renewing it in the background.
    pub async fn acquire(
        &self,
        cancel: &CancellationToken,
    ) -> Result<Option<Leadership>, LeaseError> {
        let mut observed = Observed::default();
        let mut last_holder = String::new();
        loop {
            let attempt = tokio::select! {
                () = cancel.cancelled() => return Ok(None),
                r = tokio::time::timeout(self.cfg.renew_deadline, self.try_once(&mut observed)) => r,
            };
            match attempt {
                Ok(Ok(Try::Held)) => break,
                Ok(Ok(Try::Other(holder))) => {
                    if holder != last_holder {
                        tracing::info!(lease = %self.cfg.name, %holder, "waiting for the leader's lease");
                        last_holder = holder;
                    }
                }
                Ok(Ok(Try::Raced)) => {}
                Ok(Err(e)) if is_transient(&e) => {
                    tracing::warn!(lease = %self.cfg.name, error = %e, "leader election");
                }
                Ok(Err(e)) => return Err(self.api_err(e)),
                Err(_) => {
                    tracing::warn!(lease = %self.cfg.name, "leader election: request timed out")
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return Ok(None),
                () = tokio::time::sleep(self.cfg.retry_period) => {}
            }
        }
        tracing::info!(lease = %self.cfg.name, identity = %self.cfg.identity, "became leader");
        let lost = CancellationToken::new();
        let stop = CancellationToken::new();
        let task = tokio::spawn(self.clone().renew(observed, lost.clone(), stop.clone()));
        Ok(Some(Leadership {
            elector: self.clone(),
            lost,
            stop,
            task,
        }))
    }

    /// Keep renewing until `stop`, or until renewing failed for `renew_deadline` (then
    /// `lost` is cancelled and the task ends).
    async fn renew(self, mut observed: Observed, lost: CancellationToken, stop: CancellationToken) {
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.cfg.retry_period) => {}
            }
            let left = self.cfg.renew_deadline.saturating_sub(renewed.elapsed());
            let attempt = tokio::select! {
                () = stop.cancelled() => return,
                r = tokio::time::timeout(left, self.try_once(&mut observed)) => r,
            };
            match attempt {
                Ok(Ok(Try::Held)) => {
                    renewed = Instant::now();
                    continue;
                }
                Ok(Ok(Try::Other(holder))) => {
                    tracing::error!(lease = %self.cfg.name, %holder, "leadership lost: another holder");
                    lost.cancel();
                    return;
                }
                Ok(Ok(Try::Raced)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(lease = %self.cfg.name, error = %e, "renewing the lease");
                }
                Err(_) => {}
            }
            if renewed.elapsed() >= self.cfg.renew_deadline {
                tracing::error!(
                    lease = %self.cfg.name,
                    deadline = ?self.cfg.renew_deadline,
                    "leadership lost: the lease could not be renewed in time"
                );
                lost.cancel();
                return;
            }
        }
    }

    /// One read-then-write of the Lease.
    async fn try_once(&self, observed: &mut Observed) -> Result<Try, kube::Error> {
        let now = MicroTime(jiff::Timestamp::now());
        let seconds = i32::try_from(self.cfg.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX);
        let Some(cur) = self.api.get_opt(&self.cfg.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    namespace: Some(self.cfg.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.cfg.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Try::Held),
                Err(e) if code(&e) == Some(409) => Ok(Try::Raced),
                Err(e) => Err(e),
            };
        };
        // Expiry is judged by how long *we* have seen this exact version unchanged.
        if observed.resource_version != cur.metadata.resource_version {
            observed.resource_version = cur.metadata.resource_version.clone();
            observed.since = Some(Instant::now());
        }
        let spec = cur.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let mine = holder == self.cfg.identity;
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.cfg.lease_duration, Duration::from_secs);
        let unchanged_for = observed.since.map_or(Duration::ZERO, |t| t.elapsed());
        if !mine && !holder.is_empty() && unchanged_for < duration {
            return Ok(Try::Other(holder));
        }
        let mut next = cur.clone();
        next.spec = Some(LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(seconds),
            acquire_time: if mine {
                spec.acquire_time.clone()
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + if mine { 0 } else { 1 }),
            ..spec
        });
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &next)
            .await
        {
            Ok(written) => {
                observed.resource_version = written.metadata.resource_version;
                observed.since = Some(Instant::now());
                Ok(Try::Held)
            }
            Err(e) if code(&e) == Some(409) => Ok(Try::Raced),
            Err(e) => Err(e),
        }
    }
}

fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Errors worth retrying while waiting for the lease (the API server restarting, a proxy);
/// 401/403/404/422 are configuration problems and stop the binary.
fn is_transient(e: &kube::Error) -> bool {
    !matches!(code(e), Some(400 | 401 | 403 | 404 | 422))
}

/// Holding the Lease. Renewed in the background until [`Leadership::release`]; dropping it
/// stops renewing without releasing (the lease then expires).
#[derive(Debug)]
pub struct Leadership {
    elector: LeaderElector,
    lost: CancellationToken,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// Resolves when leadership is lost (not renewed within the deadline, or taken over).
    pub async fn lost(&self) {
        self.lost.cancelled().await;
    }

    /// Whether leadership has been lost.
    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Stop renewing and hand the Lease back (holder cleared, duration 1 s) so a standby
    /// takes over at its next try. A failure is logged: the lease then simply expires.
    pub async fn release(mut self) {
        self.stop.cancel();
        let _ = (&mut self.task).await;
        if self.lost.is_cancelled() {
            return;
        }
        let e = &self.elector;
        let result = async {
            let mut cur = e.api.get(&e.cfg.name).await?;
            let spec = cur.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(e.cfg.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
            e.api
                .replace(&e.cfg.name, &PostParams::default(), &cur)
                .await
                .map(|_| ())
        };
        let result = tokio::time::timeout(e.cfg.renew_deadline, result).await;
        match result {
            Ok(Ok(())) => tracing::info!(lease = %e.cfg.name, "lease released"),
            Ok(Err(err)) => {
                tracing::warn!(lease = %e.cfg.name, error = %err, "releasing the lease")
            }
            Err(_) => tracing::warn!(lease = %e.cfg.name, "releasing the lease timed out"),
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
