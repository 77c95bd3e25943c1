//! HookOS artifacts from a directory: `GET`/`HEAD` of whole files and single byte ranges.
//!
//! Why not tower-http's `ServeDir` (what served these before): it reads through
//! `tokio::fs::File`, which reads into a buffer of its own on a blocking thread and then copies
//! that into the body's buffer, so every byte of a kernel or initramfs was copied twice in user
//! space before the socket write copied it again. Here each chunk is read with `pread(2)`
//! straight into the spare capacity of the buffer that becomes the body frame, and that buffer
//! goes back to a pool when hyper has written and dropped the frame: a fresh 1 MiB allocation
//! is fresh pages, and pread into them page-faults 256 times per chunk (measured: that cost more
//! system time than the copy saved). bench/http.sh has the figures.
//!
//! What netboot clients and `curl -C -` need, and no more: whole files and one range
//! (`bytes=a-b`, `bytes=a-`, `bytes=-n`; a request for several ranges, or a Range we cannot
//! parse, gets the whole file, as RFC 9110 §14.2 allows), `Last-Modified` with
//! `If-Modified-Since` and `If-Range`, `HEAD`. Paths are percent-decoded and stay inside the
//! directory: `.`, `..`, empty segments, backslashes and NUL are refused, as are directories
//! (404). Symbolic links in the directory are followed: it is the operator's.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

/// Bytes read per body frame. Kernels and initramfs are tens of MiB; bigger reads mean fewer
/// system calls and wakeups per MiB. bench/http.sh, 64 parallel 64 MiB downloads through
/// `ServeDir`: 64 KiB reads 0.51x nginx, 256 KiB 0.71x, 1 MiB 0.91-0.92x. At most one chunk is
/// in flight per download (64 MiB for 64 downloads).
pub const CHUNK: usize = 1 << 20;

/// How many idle read buffers the pool keeps (64 MiB at most); a busier moment allocates more
/// and frees them when they come back to a full pool.
const POOL_MAX: usize = 64;

/// The directory served and the pool of its read buffers.
#[derive(Debug)]
pub struct HookosDir {
    root: PathBuf,
    pool: Arc<BufPool>,
}

impl HookosDir {
    /// Serve files from `root`.
    pub fn new(root: PathBuf) -> Self {
        HookosDir {
            root,
            pool: Arc::new(BufPool::default()),
        }
    }
}

/// Serve `req` (its path relative to the HookOS prefix) from `dir`.
pub async fn serve(dir: Arc<HookosDir>, req: Request) -> Response {
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            return (
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::ALLOW, "GET, HEAD")],
            )
                .into_response();
        }
    };
    let Some(path) = resolve(&dir.root, req.uri().path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let shown = path.display().to_string();
    let (file, len, modified) = match tokio::task::spawn_blocking(move || open(&path)).await {
        Ok(Ok(Some(opened))) => opened,
        Ok(Ok(None)) => return StatusCode::NOT_FOUND.into_response(),
        Ok(Err(e)) => {
            tracing::warn!(path = %shown, error = %e, "hookos: cannot open");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        Err(e) => {
            tracing::warn!(path = %shown, error = %e, "hookos: open task failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let headers = req.headers();
    let last_modified = modified.map(httpdate::fmt_http_date);
    if let Some(m) = modified
        && not_modified(headers, m)
    {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        set(&mut r, header::LAST_MODIFIED, last_modified.as_deref());
        return r;
    }
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(v) if if_range_holds(headers, last_modified.as_deref()) => parse_range(v, len),
        _ => ByteRange::Full,
    };
    let (status, start, end) = match range {
        ByteRange::Full => (StatusCode::OK, 0, len),
        ByteRange::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end + 1),
        ByteRange::Unsatisfiable => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            set(
                &mut r,
                header::CONTENT_RANGE,
                Some(&format!("bytes */{len}")),
            );
            return r;
        }
    };
    let body = if head {
        Body::empty()
    } else {
        body(Arc::new(file), dir.pool.clone(), start, end)
    };
    let mut r = (status, body).into_response();
    let mime = mime_guess::from_path(req.uri().path()).first_or_octet_stream();
    set(&mut r, header::CONTENT_TYPE, Some(mime.as_ref()));
    set(
        &mut r,
        header::CONTENT_LENGTH,
        Some(&(end - start).to_string()),
    );
    set(&mut r, header::ACCEPT_RANGES, Some("bytes"));
    set(&mut r, header::LAST_MODIFIED, last_modified.as_deref());
    if status == StatusCode::PARTIAL_CONTENT {
        let v = format!("bytes {start}-{}/{len}", end - 1);
        set(&mut r, header::CONTENT_RANGE, Some(&v));
    }
    r
}

fn set(r: &mut Response, name: header::HeaderName, value: Option<&str>) {
    if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
        r.headers_mut().insert(name, v);
    }
}

/// The file under `root` that the request path names, or `None` when the path would leave
/// the directory or is not a plain relative path.
fn resolve(root: &Path, uri_path: &str) -> Option<PathBuf> {
    let decoded = percent_encoding::percent_decode_str(uri_path)
        .decode_utf8()
        .ok()?;
    let rel = decoded.strip_prefix('/').unwrap_or(&decoded);
    let mut path = root.to_path_buf();
    for seg in rel.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." || seg.contains(['\\', '\0']) {
            return None;
        }
        path.push(seg);
    }
    Some(path)
}

/// Open a regular file: `None` when there is none (or it is a directory).
fn open(path: &Path) -> io::Result<Option<(File, u64, Option<SystemTime>)>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound
                    | io::ErrorKind::NotADirectory
                    | io::ErrorKind::InvalidFilename
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(None);
    }
    Ok(Some((file, meta.len(), meta.modified().ok())))
}

/// `If-Modified-Since` at or after the file's time (whole seconds, as HTTP dates are), and no
/// `If-None-Match` (which takes precedence; we send no entity tags, so it never matches).
fn not_modified(headers: &HeaderMap, modified: SystemTime) -> bool {
    if headers.contains_key(header::IF_NONE_MATCH) {
        return false;
    }
    let Some(since) = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
    else {
        return false;
    };
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    secs(modified) <= secs(since)
}

/// Whether a Range applies: no `If-Range`, or one equal to our `Last-Modified`.
fn if_range_holds(headers: &HeaderMap, last_modified: Option<&str>) -> bool {
    match headers.get(header::IF_RANGE) {
        None => true,
        Some(v) => last_modified.is_some_and(|lm| v.as_bytes() == lm.as_bytes()),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum ByteRange {
    Full,
    /// Inclusive bounds, within the file.
    Part {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

/// One `Range` header against a file of `len` bytes.
fn parse_range(value: &str, len: u64) -> ByteRange {
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return ByteRange::Full;
    };
    let Some((a, b)) = spec.split_once('-').filter(|_| !spec.contains(',')) else {
        return ByteRange::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return match number(b) {
            None => ByteRange::Full,
            Some(0) => ByteRange::Unsatisfiable,
            Some(_) if len == 0 => ByteRange::Unsatisfiable,
            Some(n) => ByteRange::Part {
                start: len - n.min(len),
                end: len - 1,
            },
        };
    }
    let Some(start) = number(a) else {
        return ByteRange::Full;
    };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        match number(b) {
            Some(e) if e >= start => e,
            _ => return ByteRange::Full,
        }
    };
    if start >= len {
        return ByteRange::Unsatisfiable;
    }
    ByteRange::Part {
        start,
        end: end.min(len - 1),
    }
}

/// Idle [`CHUNK`]-sized read buffers, already faulted in.
#[derive(Debug, Default)]
struct BufPool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl BufPool {
    fn take(&self) -> Vec<u8> {
        let reused = self.free.lock().ok().and_then(|mut f| f.pop());
        reused.unwrap_or_else(|| Vec::with_capacity(CHUNK))
    }

    fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        if let Ok(mut f) = self.free.lock()
            && f.len() < POOL_MAX
        {
            f.push(buf);
        }
    }
}

/// A pooled buffer as a frame's bytes: back to the pool when the frame is dropped.
struct Pooled {
    buf: Vec<u8>,
    pool: Arc<BufPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

/// Bytes `start..end` of `file`, one frame per [`CHUNK`]. Whole chunks use pooled buffers; a
/// shorter tail (or a short range) gets one of its own size.
fn body(file: Arc<File>, pool: Arc<BufPool>, start: u64, end: u64) -> Body {
    let chunks = futures::stream::try_unfold(start, move |pos| {
        let file = file.clone();
        let pool = pool.clone();
        async move {
            if pos >= end {
                return Ok(None);
            }
            let want = usize::try_from(end - pos).map_or(CHUNK, |n| n.min(CHUNK));
            let bytes = tokio::task::spawn_blocking(move || {
                if want == CHUNK {
                    let buf = read_chunk(&file, pos, want, pool.take())?;
                    Ok::<_, io::Error>(Bytes::from_owner(Pooled { buf, pool }))
                } else {
                    Ok(Bytes::from(read_chunk(
                        &file,
                        pos,
                        want,
                        Vec::with_capacity(want),
                    )?))
                }
            })
            .await
            .map_err(io::Error::other)??;
            let next = pos + bytes.len() as u64;
            Ok::<_, io::Error>(Some((bytes, next)))
        }
    });
    Body::from_stream(chunks)
}

/// `want` bytes at `pos`, read into `buf` (empty, with at least `want` of capacity) without
/// zeroing it first. A file that shrank under us is an error: the response already promised
/// its length.
fn read_chunk(file: &File, pos: u64, want: usize, mut buf: Vec<u8>) -> io::Result<Vec<u8>> {
    debug_assert!(buf.is_empty() && buf.capacity() >= want);
    while buf.len() < want {
        let off = pos + buf.len() as u64;
        let n = rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), off)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being served",
            ));
        }
    }
    // The capacity may be larger than asked for, and pread fills all of it.
    buf.truncate(want);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use ByteRange::*;
        let p = |start, end| Part { start, end };
        assert_eq!(parse_range("bytes=0-99", 1000), p(0, 99));
        assert_eq!(parse_range("bytes=990-2000", 1000), p(990, 999));
        assert_eq!(parse_range("bytes=500-", 1000), p(500, 999));
        assert_eq!(parse_range("bytes=-100", 1000), p(900, 999));
        assert_eq!(parse_range("bytes=-5000", 1000), p(0, 999));
        assert_eq!(parse_range(" bytes= 1 - 2 ", 1000), p(1, 2));
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        // Ignored: other units, several ranges, reversed, signs, garbage.
        for v in [
            "items=0-1",
            "bytes=0-1,5-6",
            "bytes=5-1",
            "bytes=+1-2",
            "bytes=a-b",
            "bytes=",
            "bytes=-",
            "bytes=5",
            "bytes=99999999999999999999-",
        ] {
            assert_eq!(parse_range(v, 1000), Full, "{v}");
        }
    }

    #[test]
    fn paths_stay_inside() {
        let root = Path::new("/srv/hookos");
        assert_eq!(
            resolve(root, "/vmlinuz-x86_64"),
            Some(root.join("vmlinuz-x86_64"))
        );
        assert_eq!(resolve(root, "/a/b%20c"), Some(root.join("a/b c")));
        for p in [
            "/",
            "",
            "/../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/a/%2E%2E/%2e%2e/x",
            "/a//b",
            "/./a",
            "/a%5c..%5cb",
            "/a%00b",
            "/%ff",
        ] {
            assert_eq!(resolve(root, p), None, "{p}");
        }
    }

    #[test]
    fn chunks_read_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let f = File::open(&path).unwrap();
        let read = |pos, want, cap| read_chunk(&f, pos, want, Vec::with_capacity(cap));
        assert_eq!(read(0, 10, 10).unwrap(), &data[..10]);
        assert_eq!(read(99_990, 10, 10).unwrap(), &data[99_990..]);
        assert_eq!(read(5, 70_000, 70_000).unwrap(), &data[5..70_005]);
        // More room than asked for: the extra read is cut off.
        assert_eq!(read(5, 10, 4096).unwrap(), &data[5..15]);
        let e = read(99_995, 10, 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn buffers_come_back_to_the_pool() {
        let pool = Arc::new(BufPool::default());
        let mut buf = pool.take();
        buf.extend_from_slice(b"frame");
        let ptr = buf.as_ptr();
        let bytes = Bytes::from_owner(Pooled {
            buf,
            pool: pool.clone(),
        });
        let clone = bytes.slice(1..3);
        drop(bytes);
        assert!(pool.free.lock().unwrap().is_empty(), "still referenced");
        drop(clone);
        let back = pool.take();
        assert_eq!((back.as_ptr(), back.len()), (ptr, 0));
        assert_eq!(back.capacity(), CHUNK);
        for _ in 0..POOL_MAX + 5 {
            pool.give(Vec::with_capacity(CHUNK));
        }
        assert_eq!(pool.free.lock().unwrap().len(), POOL_MAX);
    }
}
