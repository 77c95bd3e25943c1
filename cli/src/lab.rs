//! `tinkerbell lab`: the QEMU + virtual-BMC lab of `tests/lab/lab.sh`, built into the binary,
//! plus the appliance serving it.
//!
//! The lab itself stays a shell script (namespaces, taps, QEMU and `ipmi_sim` are driven
//! with `ip`, `qemu-system-x86_64` and OpenIPMI's tools, which is what a script is for, and
//! the tests run the same script). This command embeds it with its two helpers, writes them
//! into the lab's state directory and runs it there, so a user with only the `tinkerbell`
//! binary gets the same lab. `up` then starts this binary's `serve` inside the lab's
//! namespace on the bridge (DHCP, TFTP, iPXE, syslog, the IPv6 RA responder; HookOS from
//! `--hookos-dir`) and imports the lab's hardware.csv; `run` runs any `tinkerbell` command
//! against that appliance from inside the namespace, the only place its address is
//! reachable.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::Global;

const LAB_SH: &str = include_str!("../../tests/lab/lab.sh");
const QMP_PY: &str = include_str!("../../tests/lab/qmp.py");
const NOTIFIER_PY: &str = include_str!("../../tests/lab/redfish_notifier.py");

/// Where the lab appliance listens inside the namespace (lab.sh's `LAB_APPLIANCE_IP`).
const HTTP_PORT: u16 = 7080;
const API_PORT: u16 = 7081;

/// Arguments of `tinkerbell lab`.
#[derive(Debug, clap::Args)]
pub struct LabArgs {
    /// The lab's state directory: machines, disks, consoles, BMCs, and the lab appliance's
    /// data (`appliance/`) and log (`appliance.log`). Default: <data-dir>/lab.
    #[arg(long, env = "LAB_STATE")]
    state: Option<PathBuf>,
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, clap::Subcommand)]
enum LabCommand {
    /// Create the namespace, bridge, machines (powered off) and their BMCs; start the
    /// appliance on the bridge and import the lab's hardware.csv.
    Up {
        /// Number of machines (1..200).
        #[arg(long, default_value_t = 2)]
        machines: u32,
        /// mixed (odd machines BIOS, even UEFI), bios or uefi.
        #[arg(long, default_value = "mixed")]
        firmware: String,
        /// Memory per machine, MiB.
        #[arg(long, default_value_t = 512)]
        memory: u32,
        /// Disk size per machine (sparse), as qemu-img takes it.
        #[arg(long, default_value = "2G")]
        disk: String,
        /// No sushy-tools Redfish emulator, IPMI only.
        #[arg(long)]
        no_redfish: bool,
        /// HookOS (vmlinuz-x86_64, initramfs-x86_64) for the appliance to netboot machines
        /// into. Default: <data-dir>/hookos, where `tinkerbell hookos build|fetch` put it.
        #[arg(long)]
        hookos_dir: Option<PathBuf>,
        /// Only the machines and BMCs; no appliance.
        #[arg(long)]
        no_appliance: bool,
    },
    /// Machines, power, boot device, BMC and console paths, and the appliance.
    Status,
    /// The lab's environment (LAB_NS, LAB_APPLIANCE_IP, LAB_CSV, ...) as shell assignments.
    Env,
    /// Stop every process of the lab (the appliance too) and delete its namespace.
    Down {
        /// Also delete the state directory (disks, consoles, the appliance's data).
        #[arg(long)]
        purge: bool,
    },
    /// ipmitool lanplus against a machine's BMC: `tinkerbell lab ipmi m1 power status`.
    Ipmi {
        /// The machine: m1, m2, ...
        machine: String,
        /// ipmitool's command.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
    /// Run a tinkerbell command against the lab's appliance, inside the lab's namespace:
    /// `tinkerbell lab run -- workflow create lab-m1 --template T --netboot`.
    Run {
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<OsString>,
    },
}

/// The lab's state directory and the script written into it.
struct Lab {
    state: PathBuf,
}

impl Lab {
    fn new(g: &Global, args: &LabArgs) -> anyhow::Result<Lab> {
        let state = match &args.state {
            Some(s) => s.clone(),
            None => crate::commands::data_dir(g)?.join("lab"),
        };
        fs::create_dir_all(&state)
            .with_context(|| format!("creating the lab state directory {}", state.display()))?;
        let state = state
            .canonicalize()
            .with_context(|| format!("resolving {}", state.display()))?;
        Ok(Lab { state })
    }

    /// Writes the embedded scripts into `<state>/bin` (when they differ) and returns lab.sh.
    fn script(&self) -> anyhow::Result<PathBuf> {
        let bin = self.state.join("bin");
        fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
        for (name, text) in [
            ("lab.sh", LAB_SH),
            ("qmp.py", QMP_PY),
            ("redfish_notifier.py", NOTIFIER_PY),
        ] {
            let path = bin.join(name);
            if fs::read_to_string(&path).ok().as_deref() != Some(text) {
                fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            }
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .with_context(|| format!("chmod {}", path.display()))?;
        }
        Ok(bin.join("lab.sh"))
    }

    fn lab_sh(&self, args: &[&str]) -> anyhow::Result<ExitStatus> {
        let script = self.script()?;
        Command::new("bash")
            .arg(&script)
            .args(args)
            .env("LAB_STATE", &self.state)
            .status()
            .with_context(|| format!("running {}", script.display()))
    }

    /// A value of `lab.env`, written by `lab.sh up`.
    fn env(&self, key: &str) -> anyhow::Result<String> {
        let path = self.state.join("lab.env");
        let text = fs::read_to_string(&path).with_context(|| {
            format!(
                "no lab in {} (run `tinkerbell lab up` first)",
                self.state.display()
            )
        })?;
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_string)
            .with_context(|| format!("{} has no {key}", path.display()))
    }

    fn appliance_dir(&self) -> PathBuf {
        self.state.join("appliance")
    }

    fn appliance_pid(&self) -> Option<i32> {
        let pid: i32 = fs::read_to_string(self.state.join("appliance.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }

    /// This binary inside the lab's namespace, on the lab appliance's data directory.
    fn tinkerbell_in_ns(&self) -> anyhow::Result<Command> {
        let ns = self.env("LAB_NS")?;
        let exe = std::env::current_exe().context("finding this binary")?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns])
            .arg(exe)
            .arg("--data-dir")
            .arg(self.appliance_dir());
        Ok(cmd)
    }

    fn start_appliance(&self, hookos_dir: Option<&Path>) -> anyhow::Result<()> {
        let ip = self.env("LAB_APPLIANCE_IP")?;
        let bridge = self.env("LAB_BRIDGE")?;
        let data = self.appliance_dir();
        fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        let url_file = data.join(tinkerbell_process::URL_FILE);
        let _ = fs::remove_file(&url_file);
        let log_path = self.state.join("appliance.log");
        let log = fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut cmd = self.tinkerbell_in_ns()?;
        cmd.arg("serve")
            .args(["--bind-address", &ip])
            .args(["--http-port", &HTTP_PORT.to_string()])
            // The lab's private bridge: plain HTTP off loopback is what a lab wants.
            .args(["--store-api-addr", &format!("{ip}:{API_PORT}")])
            .arg("--store-api-allow-plaintext")
            .args(["--dhcp-enabled", "--dhcp-bind-interface", &bridge])
            .args(["--tftp-enabled", "--syslog-enabled", "--ipv6-ra-enabled"]);
        if let Some(dir) = hookos_dir {
            let dir = dir
                .canonicalize()
                .with_context(|| format!("--hookos-dir {}", dir.display()))?;
            cmd.arg("--hookos-dir").arg(dir);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("appliance log")?)
            .stderr(log)
            // Its own process group: a ctrl-c at this terminal later must not stop it;
            // `lab down` does.
            .process_group(0)
            .spawn()
            .context("starting the lab appliance")?;
        fs::write(self.state.join("appliance.pid"), child.id().to_string())
            .context("writing appliance.pid")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !url_file.exists() {
            if let Some(status) = child.try_wait().context("waiting for the appliance")? {
                let text = fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                bail!(
                    "the lab appliance exited ({status}) before serving; {}:\n{}",
                    log_path.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the lab appliance did not start within 60 s; see {}",
                    log_path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let csv = self.env("LAB_CSV")?;
        let status = self
            .tinkerbell_in_ns()?
            .args(["hardware", "import", "--csv", &csv])
            .status()
            .context("importing the lab's hardware.csv")?;
        if !status.success() {
            bail!("importing {csv} into the lab appliance failed ({status})");
        }
        println!(
            "appliance: http://{ip}:{HTTP_PORT} (store API {ip}:{API_PORT}) in namespace {}, \
             data {}, log {}",
            self.env("LAB_NS")?,
            data.display(),
            log_path.display()
        );
        println!("  run commands against it with: tinkerbell lab run -- get hardware");
        Ok(())
    }
}

fn check(status: ExitStatus, what: &str) -> anyhow::Result<()> {
    if status.success() {
        Ok(())
    } else {
        bail!("{what} failed ({status})")
    }
}

/// `tinkerbell lab ...`.
pub fn run(g: &Global, args: &LabArgs) -> anyhow::Result<()> {
    let lab = Lab::new(g, args)?;
    match &args.command {
        LabCommand::Up {
            machines,
            firmware,
            memory,
            disk,
            no_redfish,
            hookos_dir,
            no_appliance,
        } => {
            let (m, mem) = (machines.to_string(), memory.to_string());
            let mut a = vec![
                "up",
                "--machines",
                &m,
                "--firmware",
                firmware,
                "--memory",
                &mem,
                "--disk",
                disk,
            ];
            if *no_redfish {
                a.push("--no-redfish");
            }
            check(lab.lab_sh(&a)?, "lab up")?;
            // The HookOS `tinkerbell hookos build|fetch` installed for this user, unless
            // another is named (the lab appliance's own data dir has none).
            let hookos = match hookos_dir {
                Some(d) => Some(d.clone()),
                None => Some(crate::commands::data_dir(g)?.join(crate::serve::HOOKOS_SUBDIR))
                    .filter(|d| d.is_dir()),
            };
            if !no_appliance && let Err(e) = lab.start_appliance(hookos.as_deref()) {
                // Nothing half up: the machines and namespace go again.
                let _ = lab.lab_sh(&["down"]);
                return Err(e);
            }
            check(lab.lab_sh(&["status"])?, "lab status")
        }
        LabCommand::Status => {
            check(lab.lab_sh(&["status"])?, "lab status")?;
            match lab.appliance_pid() {
                Some(pid) => println!(
                    "appliance: running (pid {pid}), log {}",
                    lab.state.join("appliance.log").display()
                ),
                None => println!("appliance: not running"),
            }
            Ok(())
        }
        LabCommand::Env => check(lab.lab_sh(&["env"])?, "lab env"),
        LabCommand::Down { purge } => {
            let a: &[&str] = if *purge {
                &["down", "--purge"]
            } else {
                &["down"]
            };
            // lab.sh stops every process in the namespace, the appliance included.
            check(lab.lab_sh(a)?, "lab down")?;
            let _ = fs::remove_file(lab.state.join("appliance.pid"));
            Ok(())
        }
        LabCommand::Ipmi { machine, args } => {
            let mut a = vec!["ipmi", machine.as_str()];
            a.extend(args.iter().map(String::as_str));
            check(lab.lab_sh(&a)?, "ipmitool")
        }
        LabCommand::Run { args } => {
            let status = lab
                .tinkerbell_in_ns()?
                .args(args)
                .status()
                .context("running tinkerbell in the lab's namespace")?;
            match status.code() {
                Some(0) => Ok(()),
                Some(code) => std::process::exit(code),
                None => bail!("tinkerbell in the lab's namespace: {status}"),
            }
        }
    }
}
