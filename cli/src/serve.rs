//! `tinkerbell serve`: open the embedded store, serve the store API, the consolidated HTTP
//! port (hegel's metadata, boots' logs and metrics) and boots (DHCP and syslog, each off unless
//! enabled, since they bind privileged ports), run until a signal.
//!
//! Supervision follows one pattern for every service that joins later: a root
//! `CancellationToken`, one child token per service, every service started (and its sockets
//! bound) before any is awaited, the first service to fail cancels the rest, and shutdown has a
//! grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tinkerbell_core::api::server::{ApiConfig, ApiServer};
use tinkerbell_core::api::token;
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_hegel::HttpServer;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::commands::data_dir;
use crate::{Global, ServeArgs};

/// How long services get to finish in-flight work after shutdown begins.
const GRACE: Duration = Duration::from_secs(5);

use tinkerbell_core::connect::URL_FILE;

pub async fn run(g: &Global, args: &ServeArgs) -> anyhow::Result<()> {
    let dir = data_dir(g)?;
    let store = EmbeddedStore::open(&dir).context("opening the embedded store")?;
    tracing::info!(path = %store.path().display(), objects = store.len(), revision = store.revision(), "embedded store open");
    let token = token::load_or_create(&dir).context("store API token")?;

    // Validate before binding anything.
    let hegel_config = tinkerbell_hegel::Config {
        listen: SocketAddr::new(args.bind_address, args.http_port),
        trusted_proxies: tinkerbell_hegel::Cidr::parse_list(&args.trusted_proxies).map_err(
            |errs| {
                let errs: Vec<String> = errs.iter().map(ToString::to_string).collect();
                anyhow::anyhow!("--trusted-proxies: {}", errs.join("; "))
            },
        )?,
        instance_endpoint: args.tootles_instance_endpoint,
        shutdown_grace: GRACE,
        ..tinkerbell_hegel::Config::default()
    };
    hegel_config.validate()?;
    let boots_config = tinkerbell_boots::Config {
        dhcp: match args.dhcp_enabled {
            true => Some(
                args.dhcp
                    .to_config()
                    .map_err(|p| anyhow::anyhow!("{}", p.join("; ")))?,
            ),
            false => None,
        },
        syslog: args.syslog_enabled.then(|| args.syslog.to_config()),
    };
    if let Some(s) = &boots_config.syslog {
        s.validate()?;
    }

    let root = CancellationToken::new();
    let config = ApiConfig {
        listen: args.store_api_addr,
        shutdown_grace: GRACE,
    };
    let api =
        ApiServer::start(&config, Arc::new(store.clone()), &token, root.child_token()).await?;
    let boots =
        tinkerbell_boots::Boots::start(&boots_config, Arc::new(store.clone()), root.child_token())
            .await?;
    for a in boots.local_addrs() {
        eprintln!("tinkerbell: boots listening on udp {a}");
    }
    // The consolidated HTTP listener (upstream's --http-port), carrying hegel's routes and
    // boots' logs (store API token required) and metrics.
    let mut router = boots.router(Some(token.clone()));
    if args.enable_tootles {
        router = router.merge(tinkerbell_hegel::router(Arc::new(store), &hegel_config));
    }
    let http = HttpServer::start(hegel_config.listen, router, root.child_token(), GRACE).await?;
    eprintln!(
        "tinkerbell: HTTP (metadata, logs) at http://{}",
        http.local_addr()
    );
    write_file(
        &dir,
        HTTP_URL_FILE,
        &format!("http://{}", http.local_addr()),
    )?;
    let url = format!("http://{}", api.local_addr());
    write_file(&dir, URL_FILE, &url)?;
    eprintln!(
        "tinkerbell: store API at {url} (token in {})",
        dir.join(token::FILE_NAME).display()
    );

    let signals = tokio::spawn({
        let root = root.clone();
        async move {
            tinkerbell_core::connect::shutdown_signal().await;
            tracing::info!("shutting down");
            root.cancel();
        }
    });
    // Every service is running; the first to stop (or fail) stops the rest.
    let mut services = JoinSet::new();
    services.spawn(async move { api.join().await.context("store API") });
    services.spawn(async move { http.join().await.context("HTTP listener") });
    // With DHCP and syslog both off boots has nothing to run (its join returns at once).
    if !boots.local_addrs().is_empty() {
        services.spawn(async move { boots.join().await.context("boots") });
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

/// Where `serve` writes the consolidated HTTP listener's URL (read by `tinkerbell logs`).
pub const HTTP_URL_FILE: &str = "http-url";

fn write_file(dir: &std::path::Path, name: &str, url: &str) -> anyhow::Result<()> {
    // Write-then-rename so a client never reads half a URL.
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, format!("{url}\n"))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(name)).with_context(|| format!("renaming {}", tmp.display()))?;
    Ok(())
}
