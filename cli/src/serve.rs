//! `tinkerbell serve`: open the store (embedded by default, or the CRDs on a cluster with
//! `--backend kube`) and run every service on it in one process: the
//! store API, the consolidated HTTP port (hegel's metadata; boots' iPXE binaries, scripts and
//! HookOS artifacts, logs and metrics), boots (DHCP, TFTP and syslog, each off unless enabled,
//! since they bind privileged ports), the tink gRPC server and controller, and the BMC
//! controllers (rufio); run until a signal. One process is enough to netboot a machine: the
//! scripts' defaults point HookOS at this process (its HookOS directory, tink server, syslog).
//!
//! Supervision follows one pattern for every service that joins later: a root
//! `CancellationToken`, one child token per service, every service started (and its sockets
//! bound) before any is awaited, the first service to fail cancels the rest, and shutdown has a
//! grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tinkerbell_boots::flags::{Enabled, IpxeContext};
use tinkerbell_core::api::server::{ApiConfig, ApiServer};
use tinkerbell_core::api::token;
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::kube::KubeStore;
use tinkerbell_core::store::{Backend, Kind};
use tinkerbell_core::timeline::Timeline;
use tinkerbell_core::worker_token::WorkerTokenKey;
use tinkerbell_edge::{HttpServer, ServeOptions};
use tinkerbell_process::BackendKind;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::commands::data_dir;
use crate::{Global, ServeArgs};

/// How long services get to finish in-flight work after shutdown begins.
const GRACE: Duration = Duration::from_secs(5);

use tinkerbell_process::URL_FILE;

/// How long `--netboot-interface` listens for another DHCP server's OFFER: servers that ping
/// an address before offering it (dnsmasq, ISC dhcpd) answer only after that check, up to
/// ~3 s.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// `--netboot-interface IF`: the flags a netboot on `IF` needs — DHCP bound to it, TFTP,
/// syslog and the RA responder on; the HTTP, TFTP and syslog listeners on its IPv4 address
/// where they were left at 0.0.0.0 — once no other DHCP server answers on the link (a DISCOVER
/// probe; skipped in proxy mode, which exists for such links, and with `--force`).
fn netboot_interface(args: &ServeArgs) -> anyhow::Result<ServeArgs> {
    use tinkerbell_boots::dhcp::{Mode, probe};
    let mut args = args.clone();
    let Some(name) = args.netboot_interface.clone() else {
        return Ok(args);
    };
    let usage = |m: String| anyhow::Error::new(tinkerbell_process::UsageError(m));
    let ip =
        probe::interface_ipv4(&name).map_err(|e| usage(format!("--netboot-interface: {e}")))?;
    if args.boots.dhcp.dhcp_mode != Mode::Proxy && !args.force {
        let other = probe::probe(&name, PROBE_TIMEOUT)
            .with_context(|| format!("--netboot-interface {name}"))?;
        if let Some(other) = other {
            return Err(usage(format!(
                "--netboot-interface {name}: another DHCP server ({}) answers on this link (it offered {}); \
                 boot machines alongside it with --dhcp-mode proxy, or answer anyway with --force",
                other.address, other.offered
            )));
        }
        tracing::info!(interface = %name, "no other DHCP server answered on the link");
    }
    args.dhcp_enabled = true;
    args.tftp_enabled = true;
    args.syslog_enabled = true;
    args.boots.ra.ipv6_ra_enabled = true;
    args.boots.dhcp.dhcp_bind_interface.get_or_insert(name);
    for addr in [
        &mut args.bind_address,
        &mut args.boots.tftp.tftp_server_bind_addr,
        &mut args.boots.syslog.syslog_bind_addr,
    ] {
        if addr.is_unspecified() {
            *addr = ip.into();
        }
    }
    Ok(args)
}

/// Where HookOS is served from when `--hookos-dir` is not given: `<data dir>/hookos`, created
/// empty if need be (`tinkerbell hookos fetch|build` fill it).
pub const HOOKOS_SUBDIR: &str = "hookos";

/// The HookOS directory `serve` serves: `--hookos-dir`, else `<data dir>/hookos` unless an OSIE
/// URL sends machines elsewhere. Checked now (missing or corrupt artifacts are said at start)
/// and watched for `/healthz`.
fn hookos_dir(
    args: &mut ServeArgs,
    data: &std::path::Path,
) -> anyhow::Result<Option<Arc<tinkerbell_boots::hookos::Watch>>> {
    let ipxe = &mut args.boots.ipxe;
    if ipxe.hookos_dir.is_none() && ipxe.ipxe_http_script_osie_url.is_empty() {
        let d = data.join(HOOKOS_SUBDIR);
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        ipxe.hookos_dir = Some(d);
    }
    let Some(d) = ipxe.hookos_dir.clone() else {
        return Ok(None);
    };
    let watch = tinkerbell_boots::hookos::Watch::new(d);
    match watch.status() {
        Ok(ready) if ready.verified > 0 => eprintln!(
            "tinkerbell: HookOS in {} ({} files match its SHA256SUMS)",
            watch.dir().display(),
            ready.verified
        ),
        Ok(_) => eprintln!(
            "tinkerbell: HookOS in {} (no SHA256SUMS: not verified)",
            watch.dir().display()
        ),
        Err(problem) => {
            tracing::warn!(error = %problem, "HookOS is not ready");
            eprintln!("tinkerbell: WARNING: {problem}");
        }
    }
    Ok(Some(Arc::new(watch)))
}

/// `/healthz`'s HookOS check: a corrupt HookOS always fails it; a missing one only where this
/// appliance netboots machines itself (DHCP or TFTP on).
fn hookos_health(
    watch: Option<Arc<tinkerbell_boots::hookos::Watch>>,
    netboots: bool,
) -> tinkerbell_core::api::HealthChecks {
    use tinkerbell_boots::hookos::Problem;
    let checks = watch.map(|w| {
        let check: tinkerbell_core::api::HealthCheck = Arc::new(move || match w.status() {
            Ok(_) => Ok(()),
            Err(Problem::Missing { .. }) if !netboots => Ok(()),
            Err(p) => Err(p.to_string()),
        });
        ("hookos", check)
    });
    tinkerbell_core::api::HealthChecks(checks.into_iter().collect())
}

/// `serve --dry-run-migrate`: the embedded store's format version and the steps opening it
/// would take, found without writing.
fn dry_run_migrate(g: &Global, dir: &std::path::Path) -> anyhow::Result<()> {
    if g.store.backend != BackendKind::Embedded {
        return Err(tinkerbell_process::UsageError(
            "--dry-run-migrate: only the embedded store has a format to migrate".into(),
        )
        .into());
    }
    let plan = EmbeddedStore::plan_migration(dir).context("reading the embedded store")?;
    let path = plan.path.display();
    match plan.found {
        None => println!(
            "{path}: no store yet; serve creates one at format version {}",
            plan.target
        ),
        Some(v) if plan.steps.is_empty() => {
            println!("{path}: format version {v}, current; nothing to migrate");
        }
        Some(v) => {
            println!(
                "{path}: format version {v}; serve would migrate it to version {} in one transaction:",
                plan.target
            );
            for (i, step) in plan.steps.iter().enumerate() {
                println!("  {}. {step}", i + 1);
            }
        }
    }
    Ok(())
}

pub async fn run(g: &Global, args: &ServeArgs) -> anyhow::Result<()> {
    let dir = data_dir(g)?;
    if args.dry_run_migrate {
        return dry_run_migrate(g, &dir);
    }
    let mut args = netboot_interface(args)?;
    let hookos = hookos_dir(&mut args, &dir)?;
    let args = &args;
    // The store every service shares: the embedded one (default), or the Tinkerbell CRDs on a
    // cluster (`--backend kube`), checked before anything is bound. The store API, the CLI's
    // way in, serves either.
    let store: Arc<dyn Backend> = match g.store.backend {
        BackendKind::Embedded => {
            let store = EmbeddedStore::open(&dir).context("opening the embedded store")?;
            tracing::info!(path = %store.path().display(), objects = store.len(), revision = store.revision(), "embedded store open");
            Arc::new(store)
        }
        BackendKind::Kube => {
            let store = KubeStore::connect(
                g.store.backend_kube_config.as_deref(),
                &g.store.backend_kube_namespace,
                &Kind::ALL,
            )
            .await
            .context("the kube backend")?;
            tracing::info!(namespace = %g.store.backend_kube_namespace, "kube backend connected");
            Arc::new(store)
        }
    };
    let token = token::load_or_create(&dir).context("store API token")?;
    // Reading logs and timelines takes its own token, never the store API's (which can write
    // everything).
    let reader =
        token::load_or_create_named(&dir, token::READER_FILE_NAME).context("reader token")?;

    // One timeline for every service in this process (`tinkerbell timeline`).
    let timeline = Arc::new(Timeline::new());
    // Validate before binding anything.
    let hegel_config = tinkerbell_hegel::Config {
        listen: SocketAddr::new(args.bind_address, args.http_port),
        trusted_proxies: tinkerbell_edge::Cidr::parse_list(&args.trusted_proxies).map_err(
            |errs| {
                let errs: Vec<String> = errs.iter().map(ToString::to_string).collect();
                anyhow::anyhow!("--trusted-proxies: {}", errs.join("; "))
            },
        )?,
        instance_endpoint: args.tootles_instance_endpoint,
        shutdown_grace: GRACE,
        timeline: Some(timeline.clone()),
        ..tinkerbell_hegel::Config::default()
    };
    hegel_config.validate()?;
    // Boots' flags, validated with the configured HTTP port before anything is bound; built
    // again below with the ports actually bound.
    boots_config(args, &hegel_config, args.http_port, None, None)?;

    // With a certificate (its own, else --tls-cert-file's, as the tink server's gRPC) the
    // store API serves HTTPS.
    let api_cert = match (&args.store_api_tls_cert_file, &args.store_api_tls_key_file) {
        (Some(cert), Some(key)) => Some((cert, key)),
        _ => args.tls_cert_file.as_ref().zip(args.tls_key_file.as_ref()),
    };
    let api_tls = match api_cert {
        Some((cert, key)) => Some(tinkerbell_edge::tls::server_config(cert, key)?),
        None => None,
    };
    if !args.store_api_addr.ip().is_loopback() && api_tls.is_none() {
        if !args.store_api_allow_plaintext {
            anyhow::bail!(
                "--store-api-addr {}: not a loopback address, and without --tls-cert-file and --tls-key-file the store API speaks plain HTTP (its token and every Secret would cross the network unencrypted); give it a certificate, keep it on loopback (the default, 127.0.0.1:7081), or pass --store-api-allow-plaintext on a network you trust",
                args.store_api_addr
            );
        }
        tracing::warn!(addr = %args.store_api_addr,
            "the store API listens off loopback in plain HTTP (--store-api-allow-plaintext): its token and Secrets cross the network unencrypted");
    }
    let root = CancellationToken::new();
    let config = ApiConfig {
        listen: args.store_api_addr,
        shutdown_grace: GRACE,
        tls: api_tls.clone(),
        health: hookos_health(hookos, args.dhcp_enabled || args.tftp_enabled),
    };
    let api = ApiServer::start(&config, store.clone(), &token, root.child_token()).await?;
    // One worker token key for the tink server (which checks tokens) and boots (whose
    // scripts hand them to HookOS).
    let key = match (&args.worker_token_key_file, args.tink_server_worker_auth) {
        (_, false) => None,
        (Some(file), true) => Some(WorkerTokenKey::from_file(file)?),
        (None, true) => Some(WorkerTokenKey::load_or_create(&dir).context("worker token key")?),
    };
    // The tink gRPC server (42113), on the same store; its log readers use the reader
    // token. Started before boots: the scripts' grpc_authority default is its bound port.
    let tink = if args.enable_tink_server {
        if key.is_none() {
            tracing::warn!("tink server: worker authentication is off");
        }
        let config = tinkerbell_tink_server::Config {
            listen: SocketAddr::new(
                args.tink_server_bind_addr.unwrap_or(args.bind_address),
                args.tink_server_bind_port,
            ),
            tls: match (&args.tls_cert_file, &args.tls_key_file) {
                (Some(cert), Some(key)) => Some(tinkerbell_tink_server::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
            auth: tinkerbell_tink_server::Auth {
                key: key.clone(),
                admin_token: Some(reader.clone()),
            },
            shutdown_grace: GRACE,
            timeline: Some(timeline.clone()),
            ..tinkerbell_tink_server::Config::default()
        };
        let server =
            tinkerbell_tink_server::start(config, store.clone(), store.clone(), root.child_token())
                .await?;
        let scheme = if args.tls_cert_file.is_some() {
            "https"
        } else {
            "http"
        };
        let grpc_url = format!("{scheme}://{}", server.local_addr());
        write_file_atomic(&dir, crate::workflow::GRPC_URL_FILE, &grpc_url)?;
        eprintln!("tinkerbell: tink gRPC server at {grpc_url}");
        Some(server)
    } else {
        None
    };
    // The consolidated HTTP listener (upstream's --http-port), bound before boots starts so
    // the DHCP iPXE URLs carry the port actually bound (--http-port 0 in tests).
    let listener = tokio::net::TcpListener::bind(hegel_config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", hegel_config.listen))?;
    let http_addr = listener.local_addr()?;
    let boots_config = boots_config(
        args,
        &hegel_config,
        http_addr.port(),
        tink.as_ref().map(|t| t.local_addr().port()),
        key,
    )?;
    let boots = tinkerbell_boots::Boots::start(
        &boots_config,
        store.clone(),
        timeline.clone(),
        root.child_token(),
    )
    .await?;
    for a in boots.local_addrs() {
        eprintln!("tinkerbell: boots listening on udp {a}");
    }
    // The listener carries boots' iPXE routes (binaries, scripts, HookOS), logs (store API
    // token required) and metrics, the timeline, and hegel's metadata.
    // One metrics registry for the process: /metrics (and /boots/metrics, its old path).
    let mut registry = tinkerbell_edge::metrics::Registry::default();
    boots.register_metrics(&mut registry);
    let hegel_routes = args
        .enable_tootles
        .then(|| tinkerbell_hegel::router(store.clone(), &hegel_config, &mut registry));
    let registry = Arc::new(registry);
    let mut router = boots
        .router(Some(reader.clone()), registry.clone())
        .route("/metrics", tinkerbell_edge::metrics::route(registry))
        .merge(tinkerbell_core::timeline::router(
            timeline.clone(),
            store.clone(),
            Some(reader.clone()),
        ));
    if let Some(hegel) = hegel_routes {
        router = router.merge(hegel);
    }
    let http = HttpServer::serve(
        listener,
        router,
        root.child_token(),
        ServeOptions::new(GRACE),
    )?;
    eprintln!(
        "tinkerbell: HTTP (iPXE, HookOS, metadata, logs) at http://{}",
        http.local_addr()
    );
    write_file_atomic(
        &dir,
        HTTP_URL_FILE,
        &format!("http://{}", http.local_addr()),
    )?;
    // The BMC controllers (rufio), in-process on the same store.
    let rufio = if args.enable_rufio_controller {
        let config = tinkerbell_rufio::controller::Config {
            power_check_interval: args.rufio_power_check_interval,
            timeline: Some(timeline.clone()),
            ..Default::default()
        };
        Some(tinkerbell_rufio::Controllers::start(
            config,
            store.clone(),
            root.child_token(),
        )?)
    } else {
        None
    };
    let controller = if args.enable_tink_controller {
        let store: Arc<dyn tinkerbell_core::store::Store> = store.clone();
        let controller = tinkerbell_tink_controller::Controller::start(
            tinkerbell_tink_controller::Config::default(),
            store,
            root.child_token(),
        )
        .await?;
        eprintln!("tinkerbell: tink controller running");
        Some(controller)
    } else {
        None
    };
    // Local clients trust the certificate as it is (pinned): see `process::CERT_FILE`.
    let cert_file = dir.join(tinkerbell_process::CERT_FILE);
    let scheme = match api_cert {
        Some((cert, _)) => {
            let pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
            write_file_atomic(
                &dir,
                tinkerbell_process::CERT_FILE,
                String::from_utf8_lossy(&pem).trim_end(),
            )?;
            "https"
        }
        _ => {
            match std::fs::remove_file(&cert_file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("removing {}", cert_file.display()));
                }
            }
            "http"
        }
    };
    let url = format!("{scheme}://{}", api.local_addr());
    write_url_file(&dir, &url)?;
    eprintln!(
        "tinkerbell: store API at {url} (token in {})",
        dir.join(token::FILE_NAME).display()
    );

    let signals = tokio::spawn({
        let root = root.clone();
        async move {
            tinkerbell_process::shutdown_signal().await;
            tracing::info!("shutting down");
            root.cancel();
        }
    });
    // Every service is running; the first to stop (or fail) stops the rest.
    let mut services = JoinSet::new();
    services.spawn(async move { api.join().await.context("store API") });
    services.spawn(async move { http.join().await.context("HTTP listener") });
    // With DHCP, TFTP, syslog and the RA responder all off boots has no task (its join
    // returns at once).
    if boots.serves_anything() {
        services.spawn(async move { boots.join().await.context("boots") });
    }
    if let Some(tink) = tink {
        services.spawn(async move { tink.join().await.context("tink gRPC server") });
    }
    if let Some(rufio) = rufio {
        services.spawn(async move { rufio.join().await.context("BMC controllers (rufio)") });
    }
    if let Some(controller) = controller {
        services.spawn(async move { controller.join().await.context("tink controller") });
    }
    let mut result = Ok(());
    while let Some(joined) = services.join_next().await {
        root.cancel();
        let r = joined.context("service task").and_then(|r| r);
        if result.is_ok() {
            result = r;
        }
    }
    signals.abort();
    result
}

/// Boots' configuration from serve's flags. `http_port` is the consolidated listener's
/// (bound) port, `tink_port` the tink server's, `key` the worker token key.
fn boots_config(
    args: &ServeArgs,
    hegel: &tinkerbell_hegel::Config,
    http_port: u16,
    tink_port: Option<u16>,
    key: Option<WorkerTokenKey>,
) -> anyhow::Result<tinkerbell_boots::Config> {
    let enabled = Enabled {
        dhcp: args.dhcp_enabled,
        syslog: args.syslog_enabled,
        tftp: args.tftp_enabled,
    };
    let ctx = IpxeContext {
        // Before the tink server is bound: the configured port stands in for validation.
        tink_server_port: match tink_port {
            Some(p) => Some(p),
            None => args
                .enable_tink_server
                .then_some(args.tink_server_bind_port),
        },
        tink_tls: args.tls_cert_file.is_some(),
        trusted_proxies: hegel.trusted_proxies.clone(),
        worker_token_key: key,
    };
    args.boots
        .to_config(enabled, ctx, http_port)
        .map_err(|problems| anyhow::anyhow!("{}", problems.join("; ")))
}

/// Where `serve` writes the consolidated HTTP listener's URL (read by `tinkerbell logs`).
pub const HTTP_URL_FILE: &str = "http-url";

fn write_url_file(dir: &std::path::Path, url: &str) -> anyhow::Result<()> {
    write_file_atomic(dir, URL_FILE, url)
}

fn write_file_atomic(dir: &std::path::Path, name: &str, url: &str) -> anyhow::Result<()> {
    // Write-then-rename so a client never reads half a URL.
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, format!("{url}\n"))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(name)).with_context(|| format!("renaming {}", tmp.display()))?;
    Ok(())
}
