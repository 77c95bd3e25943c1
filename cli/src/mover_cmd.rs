//! `tinkerbell move --from SRC --to DST`: open both sides and run [`tinkerbell_admin::mover`].
//!
//! A side is written as:
//! * a directory: an embedded data directory. When an appliance is running on it (the store
//!   is locked), its store API is used instead, found through the directory's `api-url` and
//!   `api-token` — so "a data dir" and "a running appliance" are the same argument.
//! * `https://HOST:PORT` (or http:// on loopback): a running appliance's store API; its token
//!   comes from `--from-token-file` / `--to-token-file`, and whom to trust for its certificate
//!   from `--from-ca-file` / `--to-ca-file` (the CA, or the appliance's `api-cert.pem`).
//! * `kube:KUBECONFIG` or `kube:KUBECONFIG#NAMESPACE`: the Tinkerbell CRDs on a Kubernetes API
//!   server (all namespaces when none is given).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use tinkerbell_admin::mover::{self, MoveOptions};
use tinkerbell_core::store::embedded::{self, EmbeddedStore};
use tinkerbell_core::store::kube::KubeStore;
use tinkerbell_core::store::remote::RemoteStore;
use tinkerbell_core::store::{Kind, Store, StoreError};
use tinkerbell_process::{BackendKind, StoreConnection};

use crate::Global;

/// Arguments of `tinkerbell move`.
#[derive(Debug, clap::Args)]
pub struct MoveArgs {
    /// Where from: a data directory (or a running appliance's), http://HOST:PORT, or
    /// kube:KUBECONFIG[#NAMESPACE].
    #[arg(long)]
    from: String,
    /// Where to, in the same forms. An empty or new directory gets a new embedded store.
    #[arg(long)]
    to: String,
    /// Store API token file for an http:// source.
    #[arg(long)]
    from_token_file: Option<PathBuf>,
    /// Store API token file for an http:// target.
    #[arg(long)]
    to_token_file: Option<PathBuf>,
    /// For an https:// source: the CA that signed its certificate, or the certificate itself
    /// (the appliance's <data-dir>/api-cert.pem). Default: the system's CAs.
    #[arg(long)]
    from_ca_file: Option<PathBuf>,
    /// For an https:// target: as --from-ca-file.
    #[arg(long)]
    to_ca_file: Option<PathBuf>,
    /// Also move Templates and Workflows (EKS Anywhere's move leaves them behind).
    #[arg(long)]
    include_workflows: bool,
    /// Print what would be created or changed on the target; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Move every namespace instead of only `--namespace`.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
}

pub async fn run(g: &Global, args: &MoveArgs) -> anyhow::Result<()> {
    if args.from == args.to {
        bail!("--from and --to are the same store ({})", args.from);
    }
    let src = open(
        &args.from,
        args.from_token_file.as_deref(),
        args.from_ca_file.as_deref(),
        false,
    )
    .await
    .with_context(|| format!("opening the source {}", args.from))?;
    let dst = open(
        &args.to,
        args.to_token_file.as_deref(),
        args.to_ca_file.as_deref(),
        true,
    )
    .await
    .with_context(|| format!("opening the target {}", args.to))?;
    let opts = MoveOptions {
        namespace: (!args.all_namespaces).then(|| g.namespace.clone()),
        include_workflows: args.include_workflows,
        dry_run: args.dry_run,
    };
    let mut progress = |line: &str| eprintln!("move: {line}");
    let report = mover::run(src.as_ref(), dst.as_ref(), &opts, &mut progress).await?;
    print!("{report}");
    Ok(())
}

async fn open(
    spec: &str,
    token_file: Option<&Path>,
    ca_file: Option<&Path>,
    is_target: bool,
) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(rest) = spec.strip_prefix("kube:") {
        let (path, namespace) = rest.split_once('#').unwrap_or((rest, ""));
        // Before anything is read or written: a cluster the move cannot use (unreachable,
        // credentials refused, RBAC, CRDs missing, no such namespace) stops it here, whole.
        let store = KubeStore::connect(Some(Path::new(path)), namespace, &Kind::ALL).await?;
        return Ok(Arc::new(store));
    }
    if spec.starts_with("http://") || spec.starts_with("https://") {
        let file = token_file.context("an http(s):// side needs its store API token: pass --from-token-file/--to-token-file (the appliance's <data-dir>/api-token)")?;
        let token =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let store = match ca_file {
            Some(ca) if spec.starts_with("https://") => {
                RemoteStore::with_tls(spec, token.trim(), tinkerbell_edge::tls::client_config(ca)?)?
            }
            Some(_) => bail!("a CA file is for an https:// side, not {spec}"),
            None => RemoteStore::new(spec, token.trim())?,
        };
        return Ok(Arc::new(store));
    }
    let dir = Path::new(spec);
    if !is_target && !dir.join(embedded::FILE_NAME).exists() {
        bail!(
            "{} holds no store ({} not found)",
            dir.display(),
            embedded::FILE_NAME
        );
    }
    match EmbeddedStore::open(dir) {
        Ok(store) => Ok(Arc::new(store)),
        Err(StoreError::Locked { .. }) => {
            // An appliance is running on this directory: go through its store API, as every
            // client on this machine does (its api-url, api-token and api-cert.pem).
            let conn = StoreConnection {
                backend: BackendKind::Embedded,
                data_dir: dir.to_path_buf(),
                server: None,
                token_file: None,
                ca_file: None,
                kube_config: None,
                kube_namespace: String::new(),
            };
            let store: Arc<dyn Store> = conn.connect().await?;
            Ok(store)
        }
        Err(e) => Err(e.into()),
    }
}
