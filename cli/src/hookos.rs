//! `tinkerbell hookos fetch|build|status`: put HookOS where `serve` finds it without flags
//! (`<data dir>/hookos`, or `--dir`), checked against its `SHA256SUMS`.
//!
//! Installing is all or nothing: every file is first downloaded (or built, or copied) into a
//! staging directory beside the target and checked against its sha256; only then are they
//! renamed into place, `SHA256SUMS` last (the old one is removed first, so a `serve` looking
//! in between sees unverified files, never files that contradict their sums).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use tinkerbell_boots::hookos::{self, REQUIRED, SUMS, Sum};
use tokio::io::AsyncWriteExt;

use crate::Global;
use crate::commands::data_dir;
use crate::serve::HOOKOS_SUBDIR;

/// The most one downloaded file may be: HookOS kernels and initramfs are tens of MiB, an ISO
/// a few hundred.
const MAX_FILE_BYTES: u64 = 4 << 30;
/// The most a `SHA256SUMS` download may be.
const MAX_SUMS_BYTES: u64 = 64 << 10;

#[derive(Debug, Subcommand)]
pub enum HookosCommand {
    /// Download HookOS from a release: URL/SHA256SUMS, then every file it lists, each checked
    /// against its sha256. Or copy it from a directory (--from: a hookos/build.sh output, an
    /// unpacked release), checked the same way.
    Fetch {
        /// Base URL of the release (http or https), where SHA256SUMS and the files are.
        #[arg(long, env = "TINKERBELL_HOOKOS_URL", required_unless_present = "from")]
        url: Option<String>,
        /// A directory holding SHA256SUMS and the files it lists.
        #[arg(long, conflicts_with = "url")]
        from: Option<PathBuf>,
        /// Trust only these CAs (PEM bundle) for an https:// URL. Default: the system's CAs
        /// (a FROM-scratch image has none: plain HTTP works there, https needs this).
        #[arg(long, requires = "url")]
        url_ca_file: Option<PathBuf>,
        /// Where to install. Default: <data dir>/hookos, where `serve` looks.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build HookOS from a source checkout (hookos/build.sh: Debian's kernel, busybox and a
    /// static tink-worker) and install it.
    Build {
        /// The source checkout. Default: the one holding the current directory.
        #[arg(long)]
        source: Option<PathBuf>,
        /// Where to install. Default: <data dir>/hookos, where `serve` looks.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Arguments for hookos/build.sh (after `--`), e.g. `-- --firmware-dir /lib/firmware`.
        #[arg(last = true)]
        build_args: Vec<String>,
    },
    /// Say whether HookOS is installed and whole (exit 1 when it is not).
    Status {
        /// The directory to check. Default: <data dir>/hookos.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

pub async fn run(g: &Global, command: HookosCommand) -> anyhow::Result<()> {
    let target = |dir: &Option<PathBuf>| -> anyhow::Result<PathBuf> {
        match dir {
            Some(d) => Ok(d.clone()),
            None => Ok(data_dir(g)?.join(HOOKOS_SUBDIR)),
        }
    };
    match command {
        HookosCommand::Fetch {
            url,
            from,
            url_ca_file,
            dir,
        } => {
            let dir = target(&dir)?;
            let stage = Stage::new(&dir)?;
            match (url, from) {
                (Some(url), _) => download(&url, url_ca_file.as_deref(), &stage.path).await?,
                (None, Some(from)) => copy_release(&from, &stage.path)?,
                (None, None) => bail!("give --url or --from"),
            }
            install(stage, &dir)
        }
        HookosCommand::Build {
            source,
            dir,
            build_args,
        } => {
            let dir = target(&dir)?;
            let source = match source {
                Some(s) => s,
                None => find_source()?,
            };
            let stage = Stage::new(&dir)?;
            let script = source.join("hookos/build.sh");
            eprintln!("tinkerbell: building HookOS with {}", script.display());
            let status = tokio::process::Command::new("bash")
                .arg(&script)
                .arg("--out")
                .arg(&stage.path)
                .args(&build_args)
                .current_dir(&source)
                .status()
                .await
                .with_context(|| format!("running {}", script.display()))?;
            if !status.success() {
                bail!("{} failed ({status})", script.display());
            }
            install(stage, &dir)
        }
        HookosCommand::Status { dir } => {
            let dir = target(&dir)?;
            let ready = hookos::check(&dir)?;
            if ready.verified > 0 {
                println!(
                    "{}: HookOS ready; {} files match SHA256SUMS",
                    dir.display(),
                    ready.verified
                );
            } else {
                println!(
                    "{}: HookOS present, not verified (no SHA256SUMS)",
                    dir.display()
                );
            }
            Ok(())
        }
    }
}

/// The checkout holding the current directory (one with `hookos/build.sh`).
fn find_source() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir().context("current directory")?;
    cwd.ancestors()
        .find(|d| d.join("hookos/build.sh").is_file())
        .map(Path::to_path_buf)
        .with_context(|| {
            format!(
                "{} is not inside a tinkerbell-rs checkout (no hookos/build.sh above it); give --source, or use `tinkerbell hookos fetch`",
                cwd.display()
            )
        })
}

/// A staging directory beside the target, removed unless installed.
struct Stage {
    path: PathBuf,
}

impl Stage {
    fn new(dir: &Path) -> anyhow::Result<Stage> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!(".staging-{}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing {}", path.display()))?;
        }
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Stage { path })
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The sums of a release, checked to cover what a netboot needs.
fn release_sums(text: &str, origin: &str) -> anyhow::Result<Vec<Sum>> {
    let sums = hookos::parse_sums(text).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|r| !sums.iter().any(|s| s.file == *r))
        .collect();
    if !missing.is_empty() {
        bail!("{origin}: lists no {}", missing.join(", "));
    }
    Ok(sums)
}

/// An HTTP client trusting `ca` only, else the system's CAs; where there are none (a
/// FROM-scratch image) one that speaks plain HTTP and refuses every https:// peer.
fn client(ca: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    tinkerbell_edge::tls::install_crypto_provider();
    let builder = || {
        reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(30))
            .read_timeout(std::time::Duration::from_secs(120))
    };
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).with_context(|| format!("--url-ca-file {}", ca.display()))?;
        let roots = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("--url-ca-file {}: not a PEM bundle", ca.display()))?;
        return builder()
            .tls_certs_only(roots)
            .build()
            .context("HTTP client");
    }
    match builder().build() {
        Ok(c) => Ok(c),
        Err(_) => builder()
            .tls_certs_only(Vec::new())
            .build()
            .context("HTTP client"),
    }
}

/// `base/SHA256SUMS` and every file it lists, into `stage`, each checked as it arrives.
async fn download(base: &str, ca: Option<&Path>, stage: &Path) -> anyhow::Result<()> {
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        bail!("--url {base}: not an http:// or https:// URL");
    }
    let base = base
        .trim_end_matches('/')
        .trim_end_matches(SUMS)
        .trim_end_matches('/');
    let client = client(ca)?;
    let sums_url = format!("{base}/{SUMS}");
    let mut sums_text = Vec::new();
    fetch(&client, &sums_url, MAX_SUMS_BYTES, &mut sums_text).await?;
    let sums_text =
        String::from_utf8(sums_text).with_context(|| format!("{sums_url}: not UTF-8"))?;
    let sums = release_sums(&sums_text, &sums_url)?;
    for sum in &sums {
        let url = format!("{base}/{}", sum.file);
        let path = stage.join(&sum.file);
        let mut file = tokio::fs::File::create(&path)
            .await
            .with_context(|| format!("creating {}", path.display()))?;
        let digest = fetch(&client, &url, MAX_FILE_BYTES, &mut file).await?;
        file.flush().await?;
        file.sync_all().await?;
        verify(&url, sum, digest)?;
        eprintln!("tinkerbell: {url}: sha256 ok");
    }
    std::fs::write(stage.join(SUMS), sums_text).context("writing SHA256SUMS")?;
    Ok(())
}

/// GET `url` into `out` (at most `max` bytes); the body's sha256.
async fn fetch(
    client: &reqwest::Client,
    url: &str,
    max: u64,
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
) -> anyhow::Result<[u8; 32]> {
    use sha2::Digest;
    let mut resp = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    if !resp.status().is_success() {
        bail!("GET {url}: {}", resp.status());
    }
    let mut hasher = sha2::Sha256::new();
    let mut seen: u64 = 0;
    while let Some(chunk) = resp.chunk().await.with_context(|| format!("GET {url}"))? {
        seen += chunk.len() as u64;
        if seen > max {
            bail!("GET {url}: larger than {max} bytes");
        }
        hasher.update(&chunk);
        out.write_all(&chunk).await?;
    }
    Ok(hasher.finalize().into())
}

fn verify(origin: &str, sum: &Sum, actual: [u8; 32]) -> anyhow::Result<()> {
    if actual != sum.sha256 {
        bail!(
            "{origin}: sha256 {} does not match SHA256SUMS ({}); nothing was installed",
            hex::encode(actual),
            hex::encode(sum.sha256)
        );
    }
    Ok(())
}

/// Copy `from`'s SHA256SUMS and the files it lists into `stage`, checking each.
fn copy_release(from: &Path, stage: &Path) -> anyhow::Result<()> {
    let sums_path = from.join(SUMS);
    let text = std::fs::read_to_string(&sums_path)
        .with_context(|| format!("reading {}", sums_path.display()))?;
    let sums = release_sums(&text, &sums_path.display().to_string())?;
    for sum in &sums {
        let to = stage.join(&sum.file);
        let src = from.join(&sum.file);
        std::fs::copy(&src, &to).with_context(|| format!("copying {}", src.display()))?;
        let digest = hookos::sha256_file(&to)?;
        verify(&src.display().to_string(), sum, digest)?;
    }
    std::fs::write(stage.join(SUMS), text).context("writing SHA256SUMS")?;
    Ok(())
}

/// Check what `stage` holds, then move it into `dir`, SHA256SUMS last.
fn install(stage: Stage, dir: &Path) -> anyhow::Result<()> {
    let ready = hookos::check(&stage.path)?;
    let sums = hookos::read_sums(&stage.path)?.unwrap_or_default();
    if ready.verified == 0 {
        bail!("{}: the build wrote no {SUMS}", stage.path.display());
    }
    let old_sums = dir.join(SUMS);
    if old_sums.exists() {
        std::fs::remove_file(&old_sums)
            .with_context(|| format!("removing {}", old_sums.display()))?;
    }
    for sum in &sums {
        let to = dir.join(&sum.file);
        std::fs::rename(stage.path.join(&sum.file), &to)
            .with_context(|| format!("installing {}", to.display()))?;
    }
    std::fs::rename(stage.path.join(SUMS), &old_sums)
        .with_context(|| format!("installing {}", old_sums.display()))?;
    // What is installed is what was checked; check the result as serve will.
    let ready = hookos::check(dir)?;
    println!(
        "{}: HookOS installed; {} files match SHA256SUMS",
        dir.display(),
        ready.verified
    );
    Ok(())
}
