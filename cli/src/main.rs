//! `tinkerbell`: the all-in-one appliance binary and its command-line client.
//!
//! This file only parses arguments and the environment, sets up logging and the runtime, and
//! maps errors to exit codes (2 usage, 1 failure). The work is in `tinkerbell-core` and the
//! service crates; the subcommands are in [`commands`] and [`serve`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod bmc;
mod commands;
mod hookos;
mod lab;
mod logs;
mod mover_cmd;
mod output;
mod serve;
mod timeline;
mod workflow;

/// Bare-metal provisioning appliance, compatible with Tinkerbell.
#[derive(Debug, Parser)]
#[command(name = "tinkerbell", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand understands.
#[derive(Debug, Args)]
pub struct Global {
    /// The store flags every binary shares: backend, store API URL, token, CA, data
    /// directory (also holding `api-token` and `api-url`), kubeconfig.
    #[command(flatten)]
    pub store: tinkerbell_process::StoreArgs,

    /// Namespace for objects that name none, and for get/delete.
    #[arg(
        short,
        long,
        env = "TINKERBELL_NAMESPACE",
        global = true,
        default_value = "default"
    )]
    pub namespace: String,

    /// Log filter (tracing env-filter syntax), e.g. `info` or `tinkerbell_core=debug`.
    #[arg(
        long,
        env = "TINKERBELL_LOG_LEVEL",
        global = true,
        default_value = "info"
    )]
    pub log_level: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the appliance on the embedded store.
    Serve(ServeArgs),
    /// Create or update objects from YAML/JSON files, a directory or `-` (stdin). All or nothing.
    Apply {
        /// File, directory (its *.yaml, *.yml, *.json) or `-`. Repeatable.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
    },
    /// Show objects.
    Get(commands::GetArgs),
    /// Delete an object.
    Delete {
        /// Kind, as for `get`.
        kind: String,
        /// Object name.
        name: String,
    },
    /// Hardware inventory commands.
    Hardware {
        #[command(subcommand)]
        command: HardwareCommand,
    },
    /// Write every object in the store as multi-document YAML (status included).
    Export {
        /// Output file; stdout when omitted.
        #[arg(short = 'o', long = "output")]
        file: Option<PathBuf>,
        /// Include Secrets (BMC credentials). Without it they are left out.
        #[arg(long)]
        show_secrets: bool,
    },
    /// Control a BMC: power and boot device, by address or by Machine name.
    Bmc {
        #[command(subcommand)]
        command: bmc::BmcCommand,
    },
    /// Move Hardware, bmc Machines and their Secrets (and, if asked, Templates and Workflows)
    /// to another store, handing DHCP over without two servers answering.
    #[command(name = "move")]
    Move(mover_cmd::MoveArgs),
    /// Workflows: create one for a Hardware, watch it run, read its action logs.
    Workflow {
        #[command(subcommand)]
        command: workflow::WorkflowCommand,
    },
    /// Show what a machine logged to boots' syslog receiver (by Hardware name or sender IP).
    Logs(logs::LogsArgs),
    /// When each provisioning phase of a machine happened: power-on, DHCP, TFTP, iPXE,
    /// kernel, worker, actions, reboot, metadata read.
    Timeline(timeline::TimelineArgs),
    /// The QEMU + virtual-BMC lab (tests/lab/lab.sh, built in): machines with IPMI/Redfish
    /// BMCs on a private bridge, and the appliance serving them. Needs root.
    Lab(lab::LabArgs),
    /// HookOS, the in-memory OS netbooted machines run: fetch or build it into the directory
    /// `serve` serves by default (<data dir>/hookos), or check it.
    Hookos {
        #[command(subcommand)]
        command: hookos::HookosCommand,
    },
    /// Load an export (or any YAML) into the store, status included. All or nothing.
    Import {
        /// File, directory or `-`. Repeatable.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum HardwareCommand {
    /// Import an EKS Anywhere hardware.csv: Hardware, bmc Machine and Secret per row.
    Import {
        /// The CSV file (`-` for stdin).
        #[arg(long)]
        csv: String,
        /// Validate and show what would be created, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Output formats for `get`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    /// YAML.
    Yaml,
    /// JSON.
    Json,
    /// A table with extra columns.
    Wide,
}

/// `serve` options.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Netboot the machines on this interface (turnkey): DHCP (bound to it), TFTP, syslog and
    /// the IPv6 RA responder on, and the HTTP, TFTP and syslog listeners on its IPv4 address
    /// (unless given). Refused when another DHCP server answers on the link, unless
    /// --dhcp-mode proxy (boot alongside it) or --force.
    #[arg(long, env = "TINKERBELL_NETBOOT_INTERFACE")]
    pub netboot_interface: Option<String>,

    /// With --netboot-interface: answer DHCP even though another DHCP server answers on the
    /// link.
    #[arg(long, env = "TINKERBELL_NETBOOT_FORCE")]
    pub force: bool,

    /// The worker token key (at least 32 bytes) the tink server checks and boots' scripts hand
    /// to HookOS, from a file (a Kubernetes Secret mounted into the pod, shared by replicas
    /// and restarts). Default: the data directory's `worker-token-key`, created if missing.
    #[arg(long, env = "TINKERBELL_WORKER_TOKEN_KEY_FILE")]
    pub worker_token_key_file: Option<PathBuf>,

    /// Show what opening the embedded store would migrate (an older format version), then
    /// exit without changing anything or starting a service.
    #[arg(long)]
    pub dry_run_migrate: bool,

    /// Listen address of the store API (used by the CLI and by separately started services).
    #[arg(
        long,
        env = "TINKERBELL_STORE_API_ADDR",
        default_value = "127.0.0.1:7081"
    )]
    pub store_api_addr: SocketAddr,

    /// TLS certificate chain (PEM) for the store API, which then serves HTTPS (and may listen
    /// off loopback). Default: --tls-cert-file. Clients on this machine trust it through
    /// <data-dir>/api-cert.pem; others pass --ca-file.
    #[arg(
        long,
        env = "TINKERBELL_STORE_API_TLS_CERT_FILE",
        requires = "store_api_tls_key_file"
    )]
    pub store_api_tls_cert_file: Option<PathBuf>,

    /// The store API certificate's private key (PEM). Default: --tls-key-file.
    #[arg(
        long,
        env = "TINKERBELL_STORE_API_TLS_KEY_FILE",
        requires = "store_api_tls_cert_file"
    )]
    pub store_api_tls_key_file: Option<PathBuf>,

    /// Allow a --store-api-addr that is not a loopback address without a certificate. The
    /// store API then speaks plain HTTP: its token and every Secret (BMC passwords) cross the
    /// network unencrypted, so `serve` refuses such an address unless this is given (a lab, a
    /// trusted management network).
    #[arg(
        long,
        env = "TINKERBELL_STORE_API_ALLOW_PLAINTEXT",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub store_api_allow_plaintext: bool,

    /// Serve EC2-style instance metadata (hegel; upstream's name is tootles) on the HTTP port.
    #[arg(
        long,
        env = "TINKERBELL_ENABLE_TOOTLES",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub enable_tootles: bool,

    /// Run the tink controller (renders workflows, boot options, timeouts, POST).
    #[arg(
        long,
        env = "TINKERBELL_ENABLE_TINK_CONTROLLER",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub enable_tink_controller: bool,

    /// Port of the consolidated HTTP listener (metadata, iPXE, HookOS; 0 picks a free port).
    #[arg(long, env = "TINKERBELL_HTTP_PORT", default_value_t = 7080)]
    pub http_port: u16,

    /// Address the consolidated HTTP listener binds.
    #[arg(long, env = "TINKERBELL_BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind_address: std::net::IpAddr,

    /// Comma-separated CIDRs/IPs of proxies whose X-Forwarded-For is believed.
    #[arg(long, env = "TINKERBELL_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,

    /// Serve metadata by instance ID under /tootles/instanceID/<id>/2009-04-04/.
    #[arg(long, env = "TINKERBELL_TOOTLES_INSTANCE_ENDPOINT")]
    pub tootles_instance_endpoint: bool,

    /// Run the BMC controllers (rufio: bmc.tinkerbell.org Machines, Jobs and Tasks).
    #[arg(
        long,
        env = "TINKERBELL_ENABLE_RUFIO_CONTROLLER",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub enable_rufio_controller: bool,

    /// How often rufio reads each Machine's power state (30m, 90s, ...).
    #[arg(
        long,
        env = "TINKERBELL_RUFIO_POWER_CHECK_INTERVAL",
        default_value = "30m",
        value_parser = tinkerbell_core::duration::parse
    )]
    pub rufio_power_check_interval: std::time::Duration,

    /// Run the tink gRPC server (workers fetch actions and report status).
    #[arg(
        long,
        env = "TINKERBELL_ENABLE_TINK_SERVER",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub enable_tink_server: bool,

    /// Address the tink gRPC server binds (default: --bind-address).
    #[arg(long, env = "TINKERBELL_TINK_SERVER_BIND_ADDR")]
    pub tink_server_bind_addr: Option<std::net::IpAddr>,

    /// Port of the tink gRPC server (0 picks a free port).
    #[arg(
        long,
        env = "TINKERBELL_TINK_SERVER_BIND_PORT",
        default_value_t = 42113
    )]
    pub tink_server_bind_port: u16,

    /// Require worker tokens on the tink gRPC server. Turn off for stock upstream workers.
    #[arg(
        long,
        env = "TINKERBELL_TINK_SERVER_WORKER_AUTH",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub tink_server_worker_auth: bool,

    /// TLS certificate chain (PEM) for the tink gRPC server.
    #[arg(long, env = "TINKERBELL_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// TLS private key (PEM).
    #[arg(long, env = "TINKERBELL_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// Serve DHCP (boots). Off by default here: it binds UDP 67.
    #[arg(long, env = "TINKERBELL_DHCP_ENABLED", default_value_t = false, num_args = 0..=1,
        default_missing_value = "true", action = clap::ArgAction::Set)]
    pub dhcp_enabled: bool,

    /// Receive syslog (boots; read with `tinkerbell logs`). Off by default: it binds UDP 514.
    #[arg(long, env = "TINKERBELL_SYSLOG_ENABLED", default_value_t = false, num_args = 0..=1,
        default_missing_value = "true", action = clap::ArgAction::Set)]
    pub syslog_enabled: bool,

    /// Serve the iPXE binaries over TFTP (boots). Off by default here: it binds UDP 69.
    #[arg(long, env = "TINKERBELL_TFTP_SERVER_ENABLED", default_value_t = false, num_args = 0..=1,
        default_missing_value = "true", action = clap::ArgAction::Set)]
    pub tftp_enabled: bool,

    /// boots' flags: DHCP, syslog, the IPv6 RA responder, TFTP, and the iPXE binaries,
    /// scripts and HookOS on the consolidated HTTP port (always on).
    #[command(flatten)]
    pub boots: tinkerbell_boots::flags::BootsArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_level = cli.global.log_level.clone();
    // A bad --log-level exits 2; every other error 1.
    tinkerbell_process::service_main(&log_level, |_| false, async move {
        let g = &cli.global;
        match cli.command {
            Command::Serve(args) => serve::run(g, &args).await,
            Command::Apply { files } => commands::apply(g, &files, false).await,
            Command::Import { files } => commands::apply(g, &files, true).await,
            Command::Get(args) => commands::get(g, &args).await,
            Command::Delete { kind, name } => commands::delete(g, &kind, &name).await,
            Command::Hardware {
                command: HardwareCommand::Import { csv, dry_run },
            } => commands::hardware_import(g, &csv, dry_run).await,
            Command::Bmc { command } => bmc::run(g, command).await,
            Command::Workflow { command } => workflow::run(g, command).await,
            Command::Move(args) => mover_cmd::run(g, &args).await,
            Command::Logs(args) => logs::run(g, &args).await,
            Command::Timeline(args) => timeline::run(g, &args).await,
            Command::Lab(args) => lab::run(g, &args),
            Command::Hookos { command } => hookos::run(g, command).await,
            Command::Export { file, show_secrets } => {
                commands::export(g, file.as_deref(), show_secrets).await
            }
        }
    })
}
