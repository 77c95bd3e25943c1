//! reboot and kexec. Both only *prepare* (kexec loads the new kernel with kexec_file_load)
//! and return SUCCESS with an [`AfterReport`]; the agent reboots once SUCCESS has been
//! reported, so the workflow can complete. Upstream env for kexec: `BLOCK_DEVICE`, `FS_TYPE`,
//! `KERNEL_PATH`, `INITRD_PATH`, `CMD_LINE` (`GRUBCFG_PATH` parsing is not supported).

use std::path::Path;

use super::mount::{Mounted, inside};
use super::{ActionContext, ActionError, AfterReport, Env};

pub(crate) fn reboot(ctx: &ActionContext) -> Result<(String, Option<AfterReport>), ActionError> {
    if !ctx.allow_power {
        return Err(ActionError::PowerDisabled("reboot"));
    }
    Ok((
        "rebooting once this status is reported".into(),
        Some(AfterReport::Reboot),
    ))
}

pub(crate) async fn kexec(
    env: &Env<'_>,
    ctx: &ActionContext,
) -> Result<(String, Option<AfterReport>), ActionError> {
    let dev = env.required("BLOCK_DEVICE")?.to_string();
    let fstype = env.required("FS_TYPE")?.to_string();
    if env.get("GRUBCFG_PATH").is_some() && env.get("KERNEL_PATH").is_none() {
        return Err(ActionError::InvalidEnv {
            name: "GRUBCFG_PATH",
            reason:
                "grub.cfg parsing is not supported; set KERNEL_PATH (and INITRD_PATH, CMD_LINE)"
                    .into(),
        });
    }
    let kernel = env.required("KERNEL_PATH")?.to_string();
    let initrd = env.get("INITRD_PATH").map(str::to_string);
    let cmdline = env.get("CMD_LINE").unwrap_or("").to_string();
    let base = ctx.mount_base.clone();
    let allow = ctx.allow_power;
    tokio::task::spawn_blocking(move || {
        let m = Mounted::new(Path::new(&dev), &fstype, &base)?;
        let open = |p: &str, name| -> Result<std::fs::File, ActionError> {
            let path = inside(m.root(), name, p)?;
            std::fs::File::open(&path)
                .map_err(|e| ActionError::io(format!("opening {p} on {dev}"), e))
        };
        let k = open(&kernel, "KERNEL_PATH")?;
        let i = initrd
            .as_deref()
            .map(|p| open(p, "INITRD_PATH"))
            .transpose()?;
        if !allow {
            return Err(ActionError::PowerDisabled("kexec"));
        }
        crate::sys::kexec_file_load(&k, i.as_ref(), &cmdline)
            .map_err(|e| ActionError::io(format!("kexec_file_load {kernel}"), e))?;
        drop((k, i));
        m.unmount()?;
        Ok((
            format!("loaded {kernel}; kexec once this status is reported"),
            Some(AfterReport::Kexec),
        ))
    })
    .await
    .map_err(|e| ActionError::io("kexec thread", std::io::Error::other(e)))?
}

/// Perform `after` (never returns on success).
pub fn perform(after: AfterReport) -> std::io::Error {
    use nix::sys::reboot::{RebootMode, reboot};
    nix::unistd::sync();
    let mode = match after {
        AfterReport::Reboot => RebootMode::RB_AUTOBOOT,
        AfterReport::Kexec => RebootMode::RB_KEXEC,
    };
    match reboot(mode) {
        Ok(never) => match never {},
        Err(e) => e.into(),
    }
}
