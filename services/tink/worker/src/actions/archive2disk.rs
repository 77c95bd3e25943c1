//! archive2disk: mount a partition and unpack a tar or tar.gz from http(s) into it (upstream
//! env: `ARCHIVE_URL`, `ARCHIVE_TYPE` = `tar`|`targz`, `DEST_DISK` — the partition —
//! `FS_TYPE`, `DEST_PATH`, `TARFILE_CHECKSUM` = `sha256:<hex>`|`sha512:<hex>`, required unless
//! `INSECURE_NO_TARFILE_CHECKSUM_VERIFICATION=true`).
//!
//! The archive is streamed, never stored: it is unpacked while it is hashed and the digest is
//! checked at the end, so a mismatch is FAILED after files were written (the partition is
//! being provisioned anyway; nothing claims success). Entries escaping `DEST_PATH` (`..`,
//! absolute links outside) are refused by the tar crate's `unpack_in`.

use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::compression::{Compression, peek};
use super::download::{self, Checksum};
use super::mount::{Mounted, inside};
use super::{ActionContext, ActionError, Env};

pub(crate) async fn run(
    env: &Env<'_>,
    ctx: &ActionContext,
    cancel: CancellationToken,
) -> Result<String, ActionError> {
    let url = env.required("ARCHIVE_URL")?.to_string();
    let gz = match env.required("ARCHIVE_TYPE")? {
        "tar" => false,
        "targz" | "tar.gz" | "tgz" => true,
        other => {
            return Err(ActionError::InvalidEnv {
                name: "ARCHIVE_TYPE",
                reason: format!("{other:?}: expected tar or targz"),
            });
        }
    };
    let disk = env.required("DEST_DISK")?.to_string();
    let fstype = env.required("FS_TYPE")?.to_string();
    let dest = env.required("DEST_PATH")?.to_string();
    let checksum = match env.get("TARFILE_CHECKSUM") {
        Some(c) => Some(Checksum::parse("TARFILE_CHECKSUM", c)?),
        None if env.bool("INSECURE_NO_TARFILE_CHECKSUM_VERIFICATION", false)? => None,
        None => return Err(ActionError::MissingEnv("TARFILE_CHECKSUM")),
    };
    let client = ctx.http.for_action(env)?.client()?;
    let resp = download::get(&client, &url).await?;
    let len = resp.content_length();
    let mut body = download::spawn_body(
        download::response_stream(resp),
        len,
        checksum.as_ref().map(Checksum::hasher),
        cancel.clone(),
    );
    let base = ctx.mount_base.clone();
    tokio::task::spawn_blocking(move || {
        let m = Mounted::new(Path::new(&disk), &fstype, &base)?;
        let target = inside(m.root(), "DEST_PATH", &dest)?;
        std::fs::create_dir_all(&target)
            .map_err(|e| ActionError::io(format!("creating {dest}"), e))?;
        let read_err = |e: std::io::Error| {
            if cancel.is_cancelled() {
                ActionError::Cancelled
            } else {
                ActionError::io(format!("unpacking {url}"), e)
            }
        };
        let head = peek(&mut body, 6).map_err(read_err)?;
        let found = Compression::from_magic(&head);
        if gz && found != Compression::Gzip {
            return Err(ActionError::Magic {
                url: url.clone(),
                expected: "gzip",
                found: found.name(),
            });
        }
        let entries;
        {
            let chained = std::io::Read::chain(std::io::Cursor::new(head), &mut body);
            let dec = if gz {
                Compression::Gzip
            } else {
                Compression::None
            }
            .decoder(chained)
            .map_err(read_err)?;
            let mut ar = tar::Archive::new(dec);
            ar.set_preserve_permissions(true);
            ar.set_preserve_ownerships(true);
            ar.set_overwrite(true);
            let mut n = 0u64;
            for entry in ar.entries().map_err(read_err)? {
                let mut entry = entry.map_err(read_err)?;
                entry.unpack_in(&target).map_err(read_err)?;
                n += 1;
            }
            entries = n;
        }
        body.drain().map_err(read_err)?;
        if let (Some(c), Some(h)) = (&checksum, body.take_hasher()) {
            c.verify(h)?;
        }
        m.unmount()?;
        Ok(format!(
            "unpacked {entries} entries from {url} into {dest} on {disk}"
        ))
    })
    .await
    .map_err(|e| ActionError::io("archive2disk thread", std::io::Error::other(e)))?
}
