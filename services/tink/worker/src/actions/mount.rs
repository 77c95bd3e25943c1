//! Mounting a partition for the file-level actions (writefile, cexec, kexec, archive2disk):
//! a fresh directory per mount, and a guard that always unmounts (lazily if busy) and removes
//! the directory, also when the action fails or is cancelled.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::mount::{MntFlags, MsFlags};

use super::ActionError;

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A mounted filesystem (and bind mounts stacked on it), unmounted on drop.
#[derive(Debug)]
pub(crate) struct Mounted {
    root: PathBuf,
    /// Mount points in mount order (the root first).
    points: Vec<PathBuf>,
}

impl Mounted {
    /// Mount `device` (type `fstype`) on a new directory under `base`.
    pub fn new(device: &Path, fstype: &str, base: &Path) -> Result<Mounted, ActionError> {
        let root = base.join(format!(
            "tink-worker-mnt-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&root)
            .map_err(|e| ActionError::io(format!("creating {}", root.display()), e))?;
        if let Err(e) = nix::mount::mount(
            Some(device),
            &root,
            Some(fstype),
            MsFlags::empty(),
            None::<&str>,
        ) {
            let _ = std::fs::remove_dir(&root);
            return Err(ActionError::io(
                format!(
                    "mounting {} ({fstype}) on {}",
                    device.display(),
                    root.display()
                ),
                e.into(),
            ));
        }
        Ok(Mounted {
            points: vec![root.clone()],
            root,
        })
    }

    /// Where the filesystem is mounted.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Bind-mount the host's `src` (e.g. `/dev`) at the same path inside, when both exist.
    pub fn bind(&mut self, src: &str) -> Result<(), ActionError> {
        let target = self.root.join(src.trim_start_matches('/'));
        if !Path::new(src).is_dir() || !target.is_dir() {
            return Ok(());
        }
        nix::mount::mount(
            Some(src),
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| ActionError::io(format!("bind-mounting {src}"), e.into()))?;
        self.points.push(target);
        Ok(())
    }

    /// Unmount everything, reporting a failure of the root unmount.
    pub fn unmount(mut self) -> Result<(), ActionError> {
        self.release(false)
    }

    fn release(&mut self, lazy: bool) -> Result<(), ActionError> {
        nix::unistd::sync();
        let mut result = Ok(());
        while let Some(p) = self.points.pop() {
            let flags = if lazy || p != self.root {
                MntFlags::MNT_DETACH
            } else {
                MntFlags::empty()
            };
            if let Err(e) = nix::mount::umount2(&p, flags)
                && p == self.root
            {
                let _ = nix::mount::umount2(&p, MntFlags::MNT_DETACH);
                result = Err(ActionError::io(
                    format!("unmounting {}", p.display()),
                    e.into(),
                ));
            }
        }
        let _ = std::fs::remove_dir(&self.root);
        result
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if !self.points.is_empty() {
            let _ = self.release(true);
        }
    }
}

/// `rel` (an absolute path inside the mounted filesystem) under `root`, refusing `..`.
pub(crate) fn inside(root: &Path, name: &'static str, rel: &str) -> Result<PathBuf, ActionError> {
    let p = Path::new(rel);
    if p.components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(ActionError::InvalidEnv {
            name,
            reason: format!("{rel:?} must not contain '..'"),
        });
    }
    Ok(root.join(rel.trim_start_matches('/')))
}
