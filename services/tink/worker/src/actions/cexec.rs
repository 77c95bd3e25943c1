//! cexec: mount a partition and run a command in it, chrooted by default (upstream env:
//! `BLOCK_DEVICE`, `FS_TYPE`, `CMD_LINE`, `CHROOT` (default y), `DEFAULT_INTERPRETER`,
//! `UPDATE_RESOLV_CONF`). With `DEFAULT_INTERPRETER` (e.g. `/bin/sh -c`) the whole `CMD_LINE`
//! is its last argument; without, `CMD_LINE` is split on whitespace and executed directly.
//! The host's `/dev`, `/proc` and `/sys` are bind-mounted in. The command's output goes to
//! the log line by line; its tail is kept for the failure message. Cancellation kills it.

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

use super::mount::Mounted;
use super::{ActionContext, ActionError, Env};

const TAIL: usize = 2048;

pub(crate) async fn run(
    env: &Env<'_>,
    command: &[String],
    ctx: &ActionContext,
    cancel: CancellationToken,
) -> Result<String, ActionError> {
    let dev = env.required("BLOCK_DEVICE")?.to_string();
    let fstype = env.required("FS_TYPE")?.to_string();
    let cmdline = match env.get("CMD_LINE") {
        Some(c) => c.to_string(),
        None if !command.is_empty() => command.join(" "),
        None => return Err(ActionError::MissingEnv("CMD_LINE")),
    };
    let chroot = env.bool("CHROOT", true)?;
    let argv: Vec<String> = match env.get("DEFAULT_INTERPRETER") {
        Some(i) => i
            .split_whitespace()
            .map(str::to_string)
            .chain([cmdline.clone()])
            .collect(),
        None => cmdline.split_whitespace().map(str::to_string).collect(),
    };
    if argv.is_empty() {
        return Err(ActionError::MissingEnv("CMD_LINE"));
    }
    let mut m = Mounted::new(Path::new(&dev), &fstype, &ctx.mount_base)?;
    for d in ["/dev", "/proc", "/sys"] {
        m.bind(d)?;
    }
    if env.bool("UPDATE_RESOLV_CONF", false)?
        && let Ok(rc) = std::fs::read("/etc/resolv.conf")
    {
        let target = m.root().join("etc/resolv.conf");
        let _ = std::fs::remove_file(&target);
        std::fs::write(&target, rc).map_err(|e| ActionError::io("updating /etc/resolv.conf", e))?;
    }
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if chroot {
        crate::sys::chroot_command(&mut cmd, m.root().to_path_buf());
    } else {
        cmd.current_dir(m.root());
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| ActionError::io(format!("starting {:?}", argv[0]), e))?;
    let out = child.stdout.take().map(|o| BufReader::new(o).lines());
    let err = child.stderr.take().map(|o| BufReader::new(o).lines());
    let mut tail = String::new();
    let pump = async {
        let (mut out, mut err) = (out, err);
        loop {
            let (stream, line) = tokio::select! {
                l = async { match &mut out { Some(o) => o.next_line().await, None => std::future::pending().await } } => match l {
                    Ok(Some(l)) => ("stdout", l), _ => { out = None; if err.is_none() { break } continue }
                },
                l = async { match &mut err { Some(e) => e.next_line().await, None => std::future::pending().await } } => match l {
                    Ok(Some(l)) => ("stderr", l), _ => { err = None; if out.is_none() { break } continue }
                },
            };
            tracing::info!(action = "cexec", stream, "{line}");
            (ctx.log)(stream, &line);
            tail.push_str(&line);
            tail.push('\n');
            if tail.len() > TAIL {
                let cut = tail.len() - TAIL;
                let cut = (cut..tail.len())
                    .find(|&i| tail.is_char_boundary(i))
                    .unwrap_or(0);
                tail.drain(..cut);
            }
        }
    };
    let status = tokio::select! {
        () = cancel.cancelled() => {
            let _ = child.kill().await;
            drop(m);
            return Err(ActionError::Cancelled);
        }
        (s, ()) = async { tokio::join!(child.wait(), pump) } => s,
    }
    .map_err(|e| ActionError::io("waiting for the command", e))?;
    m.unmount()?;
    if status.success() {
        Ok(format!("{cmdline:?} succeeded"))
    } else {
        Err(ActionError::Command {
            what: format!("{cmdline:?} (output tail: {})", tail.trim_end()),
            status,
        })
    }
}
