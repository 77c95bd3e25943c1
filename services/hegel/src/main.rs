//! `hegel`: the metadata service as its own process.
//!
//! Parses flags and the environment (upstream Hegel/Tinkerbell names where the feature exists),
//! sets up logging and the runtime, connects the backend — the appliance's store API (the
//! embedded store `tinkerbell serve` owns) or Kubernetes — and runs [`tinkerbell_hegel::Hegel`]
//! until SIGTERM/SIGINT. Exit codes: 2 usage or configuration, 1 failure.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tinkerbell_core::store::HardwareLookup;
use tinkerbell_edge::Cidr;
use tinkerbell_hegel::{Config, Hegel, HegelError};
use tinkerbell_process as process;

/// EC2-compatible instance metadata for Tinkerbell Hardware (cloud-init's Ec2 datasource).
#[derive(Debug, Parser)]
#[command(name = "hegel", version, about)]
struct Cli {
    /// Listen address; `:PORT` listens on every IPv4 address (upstream's form).
    #[arg(long, env = "HEGEL_HTTP_ADDR", default_value = ":50061", value_parser = process::parse_listen_addr)]
    http_addr: SocketAddr,

    /// Comma-separated CIDRs/IPs of proxies whose X-Forwarded-For is believed.
    #[arg(long, env = "TINKERBELL_TRUSTED_PROXIES", default_value = "")]
    trusted_proxies: String,

    /// Serve /tootles/instanceID/<id>/2009-04-04/… (lookup by instance ID).
    #[arg(
        long,
        env = "TINKERBELL_TOOTLES_INSTANCE_ENDPOINT",
        default_value_t = false
    )]
    tootles_instance_endpoint: bool,

    /// IMDSv2-only: metadata reads need a session token (PUT /latest/api/token).
    #[arg(
        long,
        env = "TINKERBELL_TOOTLES_REQUIRE_TOKENS",
        default_value_t = false
    )]
    require_tokens: bool,

    /// Longest session token lifetime in seconds (1..=21600).
    #[arg(
        long,
        env = "TINKERBELL_TOOTLES_TOKEN_TTL_MAX",
        default_value_t = 21_600
    )]
    token_ttl_max: u64,

    #[command(flatten)]
    store: process::StoreArgs,

    #[command(flatten)]
    log: process::LogArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    process::service_main(
        &cli.log.log_level,
        |e| matches!(e.downcast_ref::<HegelError>(), Some(HegelError::Config(_))),
        run(&cli),
    )
}

/// Build and validate the configuration; every problem is reported at once.
fn config(cli: &Cli) -> Result<Config, String> {
    let mut problems = Vec::new();
    let trusted_proxies = Cidr::parse_list(&cli.trusted_proxies).unwrap_or_else(|errs| {
        problems.extend(errs.iter().map(|e| format!("--trusted-proxies: {e}")));
        Vec::new()
    });
    let config = Config {
        listen: cli.http_addr,
        trusted_proxies,
        instance_endpoint: cli.tootles_instance_endpoint,
        require_tokens: cli.require_tokens,
        token_ttl_max: Duration::from_secs(cli.token_ttl_max),
        ..Config::default()
    };
    if let Err(e) = config.validate() {
        problems.extend(e.problems);
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems.join("; "))
    }
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    let config = config(cli).map_err(process::UsageError)?;
    let backend: Arc<dyn HardwareLookup> = cli.store.connect(tinkerbell_hegel::STORE_KINDS).await?;
    process::until_shutdown(|cancel| async move {
        let hegel = Hegel::start(&config, backend, cancel).await?;
        eprintln!("hegel: serving metadata on http://{}", hegel.local_addr());
        hegel.join().await.context("hegel")
    })
    .await
}
