//! `tinkerbell serve`: open the embedded store, serve the store API, run until a signal.
//!
//! Supervision follows one pattern for every service that joins later: a root
//! `CancellationToken`, one child token per service, every service started (and its sockets
//! bound) before any is awaited, the first service to fail cancels the rest, and shutdown has a
//! grace period.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tinkerbell_core::api::server::{ApiConfig, ApiServer};
use tinkerbell_core::api::token;
use tinkerbell_core::store::embedded::EmbeddedStore;
use tokio_util::sync::CancellationToken;

use crate::commands::data_dir;
use crate::{Global, ServeArgs};

/// Name of the file in the data directory that tells clients where the store API listens.
pub const URL_FILE: &str = "api-url";

pub async fn run(g: &Global, args: &ServeArgs) -> anyhow::Result<()> {
    let dir = data_dir(g)?;
    let store = EmbeddedStore::open(&dir).context("opening the embedded store")?;
    tracing::info!(path = %store.path().display(), objects = store.len(), revision = store.revision(), "embedded store open");
    let token = token::load_or_create(&dir).context("store API token")?;

    let root = CancellationToken::new();
    let config = ApiConfig {
        listen: args.store_api_addr,
        shutdown_grace: Duration::from_secs(5),
    };
    let api = ApiServer::start(&config, Arc::new(store), &token, root.child_token()).await?;
    let url = format!("http://{}", api.local_addr());
    write_url_file(&dir, &url)?;
    eprintln!(
        "tinkerbell: store API at {url} (token in {})",
        dir.join(token::FILE_NAME).display()
    );

    let signals = tokio::spawn({
        let root = root.clone();
        async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            root.cancel();
        }
    });
    let result = api.join().await;
    root.cancel();
    signals.abort();
    result.context("store API")
}

fn write_url_file(dir: &std::path::Path, url: &str) -> anyhow::Result<()> {
    // Write-then-rename so a client never reads half a URL.
    let tmp = dir.join(format!("{URL_FILE}.tmp"));
    std::fs::write(&tmp, format!("{url}\n"))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(URL_FILE))
        .with_context(|| format!("renaming {}", tmp.display()))?;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            // Without signal handlers, only ctrl-c (or kill) ends the process.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
