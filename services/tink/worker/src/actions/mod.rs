//! Native actions: the upstream action images (`quay.io/tinkerbell/actions/image2disk:…` and
//! friends), implemented in the worker itself, so templates written for upstream run unchanged
//! in an initramfs that has no container runtime.
//!
//! An action is chosen by the *name* of its image: the last path component without registry,
//! tag or digest (`127.0.0.1/embedded/image2disk`, `quay.io/tinkerbell/actions/image2disk:v1`
//! and `…/image2disk@sha256:…` all select [`ActionKind::Image2Disk`]). An image we have no
//! native action for fails with a message naming it.
//!
//! Every action gets its environment (upstream's env var names), a [`CancellationToken`] and
//! a timeout. [`run`] enforces the timeout by cancelling the token and waiting (bounded) for
//! the action to stop, so a timed-out action never leaves a writer behind. Actions that end
//! the machine's current boot (`reboot`, `kexec`) do their preparation, return SUCCESS with an
//! [`AfterReport`] and the agent performs the power action once SUCCESS is reported — upstream's
//! kexec action stays RUNNING forever because it reboots before reporting.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

mod archive2disk;
mod cexec;
pub mod compression;
mod download;
mod image2disk;
mod mount;
mod oci2disk;
mod power;
pub use power::perform as perform_power;
pub mod qcow2;
mod qemuimg2disk;
pub mod sink;
mod writefile;

pub use download::{HttpSettings, install_crypto_provider};

/// How long an action gets after its timeout or cancellation to stop cleanly before it is
/// abandoned.
pub const CANCEL_GRACE: Duration = Duration::from_secs(30);

/// The native actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// Stream a (compressed) raw image over HTTP(S) onto a disk.
    Image2Disk,
    /// Mount a partition and write one file.
    WriteFile,
    /// Mount a partition and run a command in a chroot.
    Cexec,
    /// Load the installed kernel and kexec into it.
    Kexec,
    /// Reboot the machine.
    Reboot,
    /// Mount a partition and unpack a tar / tar.gz into it.
    Archive2Disk,
    /// Convert a qcow2 (or raw) image onto a disk.
    QemuImg2Disk,
    /// Pull a raw image stored as an OCI artifact and write it to a disk.
    Oci2Disk,
}

impl ActionKind {
    /// The native action for `image`, by the image's name (registry, path, tag and digest
    /// ignored).
    pub fn from_image(image: &str) -> Option<ActionKind> {
        let name = image_name(image);
        Some(match name {
            "image2disk" => ActionKind::Image2Disk,
            "writefile" => ActionKind::WriteFile,
            "cexec" => ActionKind::Cexec,
            "kexec" => ActionKind::Kexec,
            "reboot" => ActionKind::Reboot,
            "archive2disk" => ActionKind::Archive2Disk,
            "qemuimg2disk" => ActionKind::QemuImg2Disk,
            "oci2disk" => ActionKind::Oci2Disk,
            _ => return None,
        })
    }

    /// The upstream name of the action.
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Image2Disk => "image2disk",
            ActionKind::WriteFile => "writefile",
            ActionKind::Cexec => "cexec",
            ActionKind::Kexec => "kexec",
            ActionKind::Reboot => "reboot",
            ActionKind::Archive2Disk => "archive2disk",
            ActionKind::QemuImg2Disk => "qemuimg2disk",
            ActionKind::Oci2Disk => "oci2disk",
        }
    }
}

/// The last path component of an image reference without tag or digest.
fn image_name(image: &str) -> &str {
    let image = image.trim();
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last)
}

/// One action to run, as the server sent it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ActionSpec {
    /// The action's name in the template.
    pub name: String,
    /// The action's image (selects the native action).
    pub image: String,
    /// The action's environment (task environment already merged by the server).
    pub env: BTreeMap<String, String>,
    /// The action's `command` (used by `cexec` when `CMD_LINE` is absent).
    pub command: Vec<String>,
    /// How long the action may run.
    pub timeout: Duration,
}

impl fmt::Debug for ActionSpec {
    // The environment may hold secrets (registry passwords, file contents): keys only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActionSpec")
            .field("name", &self.name)
            .field("image", &self.image)
            .field("env_keys", &self.env.keys().collect::<Vec<_>>())
            .field("command_len", &self.command.len())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ActionSpec {
    /// Parse upstream's `KEY=VALUE` environment strings (a string without `=` is a key with an
    /// empty value).
    pub fn env_from_pairs<I, S>(pairs: I) -> BTreeMap<String, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        pairs
            .into_iter()
            .map(|p| {
                let p = p.as_ref();
                match p.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (p.to_string(), String::new()),
                }
            })
            .collect()
    }
}

/// Progress of a long-running action (image writers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes received from the source so far.
    pub read: u64,
    /// Source size when known (Content-Length).
    pub read_total: Option<u64>,
    /// Bytes of image produced so far (written or skipped as zeroes).
    pub written: u64,
    /// Of `written`, bytes skipped as all-zero blocks.
    pub zero_skipped: u64,
}

/// Receives progress reports (called from the writer's thread; keep it cheap).
pub type ProgressFn = Arc<dyn Fn(&str, Progress) + Send + Sync>;

/// Receives lines of an action's output: (stream — "stdout", "stderr" or "worker" — and text).
pub type LogFn = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// What every action may use: HTTP settings, progress sink, and whether it may power the
/// machine off.
#[derive(Clone)]
pub struct ActionContext {
    /// TLS roots and proxies for downloads.
    pub http: HttpSettings,
    /// Progress callback (action name, progress).
    pub progress: ProgressFn,
    /// Output lines of the action (forwarded to the server by the agent).
    pub log: LogFn,
    /// How often image writers call `progress`.
    pub progress_interval: Duration,
    /// Whether `reboot`/`kexec` may act on this machine (false in tests and dry runs: they
    /// then fail with a message instead).
    pub allow_power: bool,
    /// Where partitions are mounted (a fresh directory is created per action).
    pub mount_base: std::path::PathBuf,
}

impl fmt::Debug for ActionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActionContext")
            .field("http", &self.http)
            .field("progress_interval", &self.progress_interval)
            .field("allow_power", &self.allow_power)
            .field("mount_base", &self.mount_base)
            .finish()
    }
}

impl ActionContext {
    /// A context with `http`, progress logged through `tracing`, power actions allowed.
    pub fn new(http: HttpSettings) -> ActionContext {
        ActionContext {
            http,
            progress: Arc::new(|name, p| {
                tracing::info!(
                    action = name,
                    read = p.read,
                    read_total = p.read_total,
                    written = p.written,
                    zero_skipped = p.zero_skipped,
                    "progress"
                )
            }),
            log: Arc::new(|_, _| {}),
            progress_interval: Duration::from_secs(3),
            allow_power: true,
            mount_base: std::env::temp_dir(),
        }
    }
}

/// A power action the agent performs after reporting SUCCESS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterReport {
    /// reboot(2) RB_AUTOBOOT.
    Reboot,
    /// reboot(2) RB_KEXEC into the kernel the action loaded.
    Kexec,
}

/// How an action ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; `message` says what was done; `after` is a power action to perform once reported.
    Success {
        /// Human-readable summary.
        message: String,
        /// Power action for the agent.
        after: Option<AfterReport>,
    },
    /// The action failed; the message says why.
    Failed(String),
    /// The action ran out of time and was stopped.
    Timeout,
    /// The worker is shutting down; the action was stopped and is not reported.
    Cancelled,
}

/// Errors of the native actions. `Display` never repeats the source's text; use
/// [`error_chain`] for the whole story.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// A required environment variable is missing or empty.
    #[error("environment variable {0} is required")]
    MissingEnv(&'static str),
    /// An environment variable has an unusable value.
    #[error("environment variable {name}: {reason}")]
    InvalidEnv {
        /// Variable name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    /// A request failed (connection, TLS, body).
    #[error("GET {url} failed")]
    Http {
        /// The URL.
        url: String,
        /// Cause.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("GET {url}: HTTP {status}")]
    HttpStatus {
        /// The URL.
        url: String,
        /// The status.
        status: reqwest::StatusCode,
    },
    /// The checksum of what was downloaded does not match.
    #[error("{algorithm} mismatch: expected {expected}, got {actual}")]
    Checksum {
        /// sha256 / sha512.
        algorithm: &'static str,
        /// The expected digest.
        expected: String,
        /// The digest of the received bytes.
        actual: String,
    },
    /// The stream does not look like the compression its name says.
    #[error("{url}: expected {expected} data (by its extension) but the magic bytes say {found}")]
    Magic {
        /// The URL.
        url: String,
        /// What the extension says.
        expected: &'static str,
        /// What the first bytes say.
        found: &'static str,
    },
    /// An I/O error while doing `what`.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A qcow2 image that we cannot or will not read.
    #[error("qcow2: {0}")]
    Qcow2(String),
    /// A registry operation failed.
    #[error("OCI {what}")]
    Oci {
        /// What was being done.
        what: String,
        /// Cause.
        #[source]
        source: oci_client::errors::OciDistributionError,
    },
    /// A command ran and failed.
    #[error("{what} exited with {status}")]
    Command {
        /// The command.
        what: String,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// Power actions are disabled in this worker.
    #[error("{0} refused: power actions are disabled in this worker")]
    PowerDisabled(&'static str),
    /// The action was cancelled.
    #[error("cancelled")]
    Cancelled,
}

impl ActionError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> ActionError {
        ActionError::Io {
            what: what.into(),
            source,
        }
    }
}

/// `err` and all its sources, joined with `: `.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let t = e.to_string();
        if !s.ends_with(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = e.source();
    }
    s
}

/// Environment lookups with upstream's conventions.
pub(crate) struct Env<'a>(pub &'a BTreeMap<String, String>);

impl Env<'_> {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(|s| s.as_str())
            .filter(|s| !s.trim().is_empty())
    }

    pub fn required(&self, name: &'static str) -> Result<&str, ActionError> {
        self.get(name).ok_or(ActionError::MissingEnv(name))
    }

    /// Go's strconv.ParseBool spellings; absent → `default`.
    pub fn bool(&self, name: &'static str, default: bool) -> Result<bool, ActionError> {
        match self.get(name).map(|s| s.trim()) {
            None => Ok(default),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True" | "y" | "Y" | "yes") => Ok(true),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False" | "n" | "N" | "no") => Ok(false),
            Some(other) => Err(ActionError::InvalidEnv {
                name,
                reason: format!("{other:?} is not a boolean"),
            }),
        }
    }

    pub fn u32_octal(&self, name: &'static str) -> Result<Option<u32>, ActionError> {
        self.get(name)
            .map(|s| {
                u32::from_str_radix(s.trim().trim_start_matches("0o"), 8).map_err(|_| {
                    ActionError::InvalidEnv {
                        name,
                        reason: format!("{s:?} is not an octal mode"),
                    }
                })
            })
            .transpose()
    }

    pub fn u32(&self, name: &'static str) -> Result<Option<u32>, ActionError> {
        self.get(name)
            .map(|s| {
                s.trim().parse().map_err(|_| ActionError::InvalidEnv {
                    name,
                    reason: format!("{s:?} is not a number"),
                })
            })
            .transpose()
    }
}

/// Run `spec` natively: pick the action by image, enforce the timeout, map the result.
pub async fn run(spec: &ActionSpec, ctx: &ActionContext, cancel: &CancellationToken) -> Outcome {
    let Some(kind) = ActionKind::from_image(&spec.image) else {
        return Outcome::Failed(format!(
            "no native action for image {:?} (supported: image2disk, writefile, cexec, kexec, \
             reboot, archive2disk, qemuimg2disk, oci2disk); running action containers is not \
             supported by this worker",
            spec.image
        ));
    };
    let token = cancel.child_token();
    let mut fut = std::pin::pin!(run_kind(kind, spec, ctx, token.clone()));
    let timeout = if spec.timeout.is_zero() {
        Duration::from_secs(3600)
    } else {
        spec.timeout
    };
    let result = tokio::select! {
        r = &mut fut => r,
        () = tokio::time::sleep(timeout) => {
            token.cancel();
            if tokio::time::timeout(CANCEL_GRACE, &mut fut).await.is_err() {
                tracing::warn!(action = kind.name(), "action did not stop within the grace period");
            }
            return Outcome::Timeout;
        }
        () = cancel.cancelled() => {
            let _ = tokio::time::timeout(CANCEL_GRACE, &mut fut).await;
            return Outcome::Cancelled;
        }
    };
    match result {
        Ok((message, after)) => Outcome::Success { message, after },
        Err(ActionError::Cancelled) if cancel.is_cancelled() => Outcome::Cancelled,
        Err(e) => Outcome::Failed(format!("{}: {}", kind.name(), error_chain(&e))),
    }
}

type ActionResult = Result<(String, Option<AfterReport>), ActionError>;

async fn run_kind(
    kind: ActionKind,
    spec: &ActionSpec,
    ctx: &ActionContext,
    cancel: CancellationToken,
) -> ActionResult {
    let env = Env(&spec.env);
    match kind {
        ActionKind::Image2Disk => image2disk::run(&env, ctx, cancel).await.map(|m| (m, None)),
        ActionKind::WriteFile => writefile::run(&env, ctx).await.map(|m| (m, None)),
        ActionKind::Cexec => cexec::run(&env, &spec.command, ctx, cancel)
            .await
            .map(|m| (m, None)),
        ActionKind::Kexec => power::kexec(&env, ctx).await,
        ActionKind::Reboot => power::reboot(ctx),
        ActionKind::Archive2Disk => archive2disk::run(&env, ctx, cancel)
            .await
            .map(|m| (m, None)),
        ActionKind::QemuImg2Disk => qemuimg2disk::run(&env, ctx, cancel)
            .await
            .map(|m| (m, None)),
        ActionKind::Oci2Disk => oci2disk::run(&env, ctx, cancel).await.map(|m| (m, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_select_actions_by_name() {
        for (image, kind) in [
            (
                "quay.io/tinkerbell/actions/image2disk:latest",
                Some(ActionKind::Image2Disk),
            ),
            (
                "127.0.0.1/embedded/image2disk",
                Some(ActionKind::Image2Disk),
            ),
            (
                "localhost:5000/actions/writefile:v1.0.0",
                Some(ActionKind::WriteFile),
            ),
            (
                "quay.io/tinkerbell/actions/cexec@sha256:abcd",
                Some(ActionKind::Cexec),
            ),
            ("kexec", Some(ActionKind::Kexec)),
            ("127.0.0.1/embedded/reboot", Some(ActionKind::Reboot)),
            ("ghcr.io/x/archive2disk:1", Some(ActionKind::Archive2Disk)),
            (
                "quay.io/tinkerbell/actions/qemuimg2disk:latest",
                Some(ActionKind::QemuImg2Disk),
            ),
            (
                "quay.io/tinkerbell/actions/oci2disk:latest",
                Some(ActionKind::Oci2Disk),
            ),
            ("quay.io/tinkerbell/actions/rootio:latest", None),
            ("docker.io/library/image2disk-fork:1", None),
            ("", None),
        ] {
            assert_eq!(ActionKind::from_image(image), kind, "{image}");
        }
    }

    #[test]
    fn env_pairs_and_bools() {
        let env = ActionSpec::env_from_pairs(["A=1", "B=x=y", "C", "D=true", "E=no"]);
        assert_eq!(env["B"], "x=y");
        assert_eq!(env["C"], "");
        let e = Env(&env);
        assert!(e.bool("D", false).unwrap());
        assert!(!e.bool("E", true).unwrap());
        assert!(e.bool("B", true).is_err());
        assert!(e.bool("C", true).unwrap(), "empty means default");
        assert!(matches!(e.required("C"), Err(ActionError::MissingEnv("C"))));
    }

    #[tokio::test]
    async fn unknown_image_fails_naming_it() {
        let spec = ActionSpec {
            name: "x".into(),
            image: "quay.io/tinkerbell/actions/rootio:latest".into(),
            ..Default::default()
        };
        let ctx = ActionContext::new(HttpSettings::default());
        match run(&spec, &ctx, &CancellationToken::new()).await {
            Outcome::Failed(m) => assert!(
                m.contains("quay.io/tinkerbell/actions/rootio:latest"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn debug_hides_env_values() {
        let spec = ActionSpec {
            env: ActionSpec::env_from_pairs(["REGISTRY_PASSWORD=hunter2"]),
            ..Default::default()
        };
        let s = format!("{spec:?}");
        assert!(
            s.contains("REGISTRY_PASSWORD") && !s.contains("hunter2"),
            "{s}"
        );
    }
}
