//! writefile: mount a partition and write one file (upstream env: `DEST_DISK` — the partition —
//! `FS_TYPE`, `DEST_PATH`, `CONTENTS`, `UID`, `GID`, `MODE`, `DIRMODE`; modes in octal).
//! Missing parent directories are created with `DIRMODE` (default 0755) and owned by
//! `UID`/`GID`, like upstream.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::mount::{Mounted, inside};
use super::{ActionContext, ActionError, Env};

pub(crate) async fn run(env: &Env<'_>, ctx: &ActionContext) -> Result<String, ActionError> {
    let disk = env.required("DEST_DISK")?.to_string();
    let fstype = env.required("FS_TYPE")?.to_string();
    let dest = env.required("DEST_PATH")?.to_string();
    let contents = env.0.get("CONTENTS").cloned().unwrap_or_default();
    let uid = env.u32("UID")?.unwrap_or(0);
    let gid = env.u32("GID")?.unwrap_or(0);
    let mode = env.u32_octal("MODE")?.unwrap_or(0o644);
    let dirmode = env.u32_octal("DIRMODE")?.unwrap_or(0o755);
    let base = ctx.mount_base.clone();
    tokio::task::spawn_blocking(move || {
        let m = Mounted::new(Path::new(&disk), &fstype, &base)?;
        let path = inside(m.root(), "DEST_PATH", &dest)?;
        // Create missing parents one by one so each gets DIRMODE and the owner.
        let mut missing = Vec::new();
        let mut cur = path.parent();
        while let Some(d) = cur {
            if d == m.root() || d.exists() {
                break;
            }
            missing.push(d.to_path_buf());
            cur = d.parent();
        }
        for d in missing.iter().rev() {
            std::fs::DirBuilder::new()
                .mode(dirmode)
                .create(d)
                .map_err(|e| ActionError::io(format!("creating {}", d.display()), e))?;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(dirmode))
                .and_then(|()| std::os::unix::fs::chown(d, Some(uid), Some(gid)))
                .map_err(|e| ActionError::io(format!("setting up {}", d.display()), e))?;
        }
        let io = |what: &str, e| ActionError::io(format!("{what} {dest}"), e);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&path)
            .map_err(|e| io("creating", e))?;
        f.write_all(contents.as_bytes())
            .map_err(|e| io("writing", e))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| io("chmod", e))?;
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(|e| io("chown", e))?;
        f.sync_all().map_err(|e| io("syncing", e))?;
        drop(f);
        m.unmount()?;
        Ok(format!(
            "wrote {} bytes to {dest} on {disk} (mode {mode:o}, owner {uid}:{gid})",
            contents.len()
        ))
    })
    .await
    .map_err(|e| ActionError::io("writefile thread", std::io::Error::other(e)))?
}
