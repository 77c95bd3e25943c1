//! qemuimg2disk: write a qcow2 (or raw) image onto a disk with our own qcow2 reader instead of
//! `qemu-img convert` (upstream env: `IMG_URL`, `DEST_DISK`, `FORMAT` — only the defaults
//! `host_device`/`raw` make sense for a disk target; `EXTRA_ARGS` is not supported).
//!
//! `IMG_URL` is http(s) — read with Range requests, so the server must support them — or a
//! local path / `file://` URL. A source that is not qcow2 is copied as raw.

use std::path::PathBuf;
use std::time::Instant;

use reqwest::header::{CONTENT_RANGE, RANGE};
use tokio_util::sync::CancellationToken;

use super::qcow2::{self, FileSource, ReadAt};
use super::sink::{Sink, TargetKind};
use super::{ActionContext, ActionError, Env, Progress};

/// Reads ranges of an http(s) URL from a blocking thread.
struct HttpRange {
    client: reqwest::Client,
    url: String,
    len: u64,
    rt: tokio::runtime::Handle,
    cancel: CancellationToken,
}

impl HttpRange {
    async fn open(
        client: reqwest::Client,
        url: &str,
        cancel: CancellationToken,
    ) -> Result<HttpRange, ActionError> {
        let resp = client
            .get(url)
            .header(RANGE, "bytes=0-0")
            .send()
            .await
            .map_err(|source| ActionError::Http {
                url: url.into(),
                source,
            })?;
        if resp.status() != reqwest::StatusCode::PARTIAL_CONTENT {
            return Err(if resp.status().is_success() {
                ActionError::InvalidEnv {
                    name: "IMG_URL",
                    reason: format!(
                        "{url}: the server does not support Range requests (needed for qcow2)"
                    ),
                }
            } else {
                ActionError::HttpStatus {
                    url: url.into(),
                    status: resp.status(),
                }
            });
        }
        let len = resp
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit('/').next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ActionError::InvalidEnv {
                name: "IMG_URL",
                reason: format!("{url}: no total size in Content-Range"),
            })?;
        Ok(HttpRange {
            client,
            url: url.into(),
            len,
            rt: tokio::runtime::Handle::current(),
            cancel,
        })
    }
}

impl ReadAt for HttpRange {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        if offset >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let end = (offset + buf.len() as u64).min(self.len) - 1;
        let want = (end - offset + 1) as usize;
        let fut = async {
            let resp = self
                .client
                .get(&self.url)
                .header(RANGE, format!("bytes={offset}-{end}"))
                .send()
                .await
                .map_err(|e| std::io::Error::other(super::error_chain(&e)))?;
            if resp.status() != reqwest::StatusCode::PARTIAL_CONTENT {
                return Err(std::io::Error::other(format!(
                    "range request: HTTP {}",
                    resp.status()
                )));
            }
            resp.bytes()
                .await
                .map_err(|e| std::io::Error::other(super::error_chain(&e)))
        };
        let cancel = self.cancel.clone();
        let bytes = self.rt.block_on(async {
            tokio::select! {
                () = cancel.cancelled() => Err(std::io::Error::other("cancelled")),
                r = fut => r,
            }
        })?;
        if bytes.len() != want {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("range {offset}-{end}: got {} bytes", bytes.len()),
            ));
        }
        buf[..want].copy_from_slice(&bytes);
        Ok(want)
    }
}

pub(crate) async fn run(
    env: &Env<'_>,
    ctx: &ActionContext,
    cancel: CancellationToken,
) -> Result<String, ActionError> {
    let url = env.required("IMG_URL")?.to_string();
    let dest = PathBuf::from(env.required("DEST_DISK")?);
    if let Some(f) = env.get("FORMAT")
        && f != "host_device"
        && f != "raw"
    {
        return Err(ActionError::InvalidEnv {
            name: "FORMAT",
            reason: format!("{f:?}: only host_device/raw output is supported"),
        });
    }
    let sparse = env.bool("SPARSE", true)?;
    let mut src: Box<dyn ReadAt> = if url.starts_with("http://") || url.starts_with("https://") {
        let client = ctx.http.for_action(env)?.client()?;
        Box::new(HttpRange::open(client, &url, cancel.clone()).await?)
    } else {
        let path = url.strip_prefix("file://").unwrap_or(&url).to_string();
        let f = std::fs::File::open(&path)
            .map_err(|e| ActionError::io(format!("opening {path}"), e))?;
        let len = f
            .metadata()
            .map_err(|e| ActionError::io(format!("stat {path}"), e))?
            .len();
        Box::new(FileSource(f, len))
    };
    let progress = ctx.progress.clone();
    let interval = ctx.progress_interval;
    let started = Instant::now();
    let stats = tokio::task::spawn_blocking(move || -> Result<_, ActionError> {
        let mut head = vec![0u8; 112.min(src.len() as usize)];
        let n = src
            .read_at(0, &mut head)
            .map_err(|e| ActionError::io("reading the header", e))?;
        head.truncate(n);
        let mut sink = Sink::open(&dest, sparse)
            .map_err(|e| ActionError::io(format!("opening {}", dest.display()), e))?;
        let mut last = Instant::now();
        let total = src.len();
        let mut report = |done: u64, s: &Sink| {
            if last.elapsed() >= interval {
                last = Instant::now();
                let st = s.stats();
                progress(
                    "qemuimg2disk",
                    Progress {
                        read: done,
                        read_total: Some(total),
                        written: st.size,
                        zero_skipped: st.zero_skipped,
                    },
                );
            }
        };
        let size = if qcow2::is_qcow2(&head) {
            let h = qcow2::parse_header(&head)?;
            check_capacity(&sink, h.size, &dest)?;
            qcow2::convert(src.as_mut(), &h, &mut sink, &cancel, &mut report)?;
            h.size
        } else {
            check_capacity(&sink, total, &dest)?;
            let mut buf = vec![0u8; 1 << 20];
            let mut off = 0;
            while off < total {
                if cancel.is_cancelled() {
                    return Err(ActionError::Cancelled);
                }
                let n = src
                    .read_at(off, &mut buf)
                    .map_err(|e| ActionError::io(format!("reading at {off}"), e))?;
                if n == 0 {
                    break;
                }
                sink.write_at(off, &buf[..n])
                    .map_err(|e| ActionError::io("writing the target", e))?;
                off += n as u64;
                report(off, &sink);
            }
            total
        };
        let stats = sink
            .finish()
            .map_err(|e| ActionError::io(format!("flushing {}", dest.display()), e))?;
        debug_assert_eq!(stats.size, size);
        Ok((stats, dest))
    })
    .await
    .map_err(|e| ActionError::io("qemuimg2disk thread", std::io::Error::other(e)))??;
    Ok(super::image2disk::summary(
        &url,
        &stats.1,
        stats.0,
        started.elapsed(),
    ))
}

fn check_capacity(sink: &Sink, size: u64, dest: &std::path::Path) -> Result<(), ActionError> {
    if sink.kind() == TargetKind::BlockDevice
        && let Some(cap) = sink.capacity()
        && size > cap
    {
        return Err(ActionError::io(
            format!(
                "image of {size} bytes does not fit {} ({cap} bytes)",
                dest.display()
            ),
            std::io::Error::from(std::io::ErrorKind::StorageFull),
        ));
    }
    Ok(())
}
